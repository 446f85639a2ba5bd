//! Timestamps as GitLab and gitlab-runner write them (RFC 3339, UTC), and
//! back: the two halves of Howard Hinnant's civil-date algorithm, in one
//! place.

/// Seconds since the Unix epoch on the controller's clock (0 if the clock
/// is before 1970).
pub fn now_epoch() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The controller's clock as `2026-04-22T08:07:35Z`, the form gitlab-runner
/// writes `token_obtained_at` in.
pub fn now_rfc3339() -> String {
    rfc3339(now_epoch())
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: i64) -> String {
    let (y, m, d) = civil_of(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Seconds since the epoch of an RFC 3339 timestamp GitLab writes
/// (`2026-04-22T08:07:35.123Z`, or with an offset); `None` if it is not one.
pub fn epoch_of(ts: &str) -> Option<i64> {
    let ts = ts.trim();
    let (date, rest) = ts.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (d.next()?.parse().ok()?, d.next()?.parse().ok()?, d.next()?.parse().ok()?);
    let (hh, mm, ss) = (rest.get(0..2)?.parse::<i64>().ok()?, rest.get(3..5)?.parse::<i64>().ok()?, rest.get(6..8)?.parse::<i64>().ok()?);
    let tail = rest.get(8..)?.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match tail {
        "Z" | "z" | "" => 0,
        t => {
            let sign = if t.starts_with('-') { -1 } else { 1 };
            let t = t.get(1..)?;
            sign * (t.get(0..2)?.parse::<i64>().ok()? * 3600 + t.get(3..5)?.parse::<i64>().ok()? * 60)
        }
    };
    Some(days_of(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_of(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01: (year, month, day).
fn civil_of(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gitlab_timestamps() {
        assert_eq!(epoch_of("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(epoch_of("2026-04-22T08:07:35.123Z"), Some(1_776_845_255));
        assert_eq!(epoch_of("2026-04-22T10:07:35+02:00"), Some(1_776_845_255));
        assert_eq!(epoch_of("2026-04-22T06:07:35-02:00"), Some(1_776_845_255));
        assert_eq!(epoch_of("soon"), None);
        assert_eq!(epoch_of("2026-04-22T08:07"), None);
    }

    #[test]
    fn writes_what_it_reads() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_776_845_255), "2026-04-22T08:07:35Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        // Leap days, century and 400-year rules, both ways.
        for ts in ["2024-02-29T12:00:00Z", "2000-02-29T00:00:00Z", "1900-03-01T00:00:00Z", "2100-02-28T23:59:59Z", "0001-01-01T00:00:00Z"] {
            let secs = epoch_of(ts).unwrap_or_else(|| panic!("{ts}"));
            assert_eq!(rfc3339(secs), ts);
        }
        for secs in (-3_000_000_000i64..5_000_000_000).step_by(7_777_777) {
            assert_eq!(epoch_of(&rfc3339(secs)), Some(secs), "{secs}");
        }
    }

    #[test]
    fn the_clock_looks_like_upstreams() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T');
        assert!(t.as_str() > "2024-01-01");
    }
}
