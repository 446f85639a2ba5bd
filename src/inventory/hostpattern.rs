//! Host patterns in inventory sources: `host`, `host:port`, `[v6]:port`
//! and ranges, `web-[01:10]`, `db-[a:c]`, `[1:9:2]`, several per name,
//! expanded as Ansible's `expand_hostname_range` does (a leading zero sets
//! the width, which begin and end must share).

/// The names a pattern stands for, and the port it gives them.
pub fn expand(pattern: &str) -> Result<(Vec<String>, Option<u16>), String> {
    let (name, port) = split_port(pattern)?;
    let names = if name.contains('[') { expand_ranges(&name)? } else { vec![name] };
    Ok((names, port))
}

/// `host:port` (the last `:` outside brackets, digits after it), or
/// `[v6]:port`; anything else has no port.
fn split_port(p: &str) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = p.strip_prefix('[') {
        // [2001:db8::1]:22 — but not a range like [01:10]web.
        if let Some((inside, after)) = rest.split_once(']') {
            if inside.matches(':').count() >= 2 && inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
                return match after.strip_prefix(':') {
                    Some(port) => Ok((inside.to_string(), Some(parse_port(port, p)?))),
                    None if after.is_empty() => Ok((inside.to_string(), None)),
                    None => Ok((p.to_string(), None)),
                };
            }
        }
    }
    let mut depth = 0i32;
    let mut last_colon = None;
    let mut colons = 0;
    for (i, c) in p.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => {
                colons += 1;
                last_colon = Some(i);
            }
            _ => {}
        }
    }
    if colons == 1 {
        if let Some(i) = last_colon {
            let (host, port) = (&p[..i], &p[i + 1..]);
            if port.is_empty() {
                return Err(format!("host pattern `{p}` ends in `:`, which is reserved for a port"));
            }
            if port.chars().all(|c| c.is_ascii_digit()) {
                return Ok((host.to_string(), Some(parse_port(port, p)?)));
            }
        }
    }
    Ok((p.to_string(), None))
}

fn parse_port(port: &str, p: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{port}` in `{p}` is not a port number (1-65535)")),
    }
}

/// Expand the first `[a:b(:step)]` of `line`, then the rest, recursively.
fn expand_ranges(line: &str) -> Result<Vec<String>, String> {
    let Some(open) = line.find('[') else { return Ok(vec![line.to_string()]) };
    let Some(close_rel) = line[open..].find(']') else {
        return Err(format!("host range in `{line}` has no closing `]`"));
    };
    let close = open + close_rel;
    let (head, range, tail) = (&line[..open], &line[open + 1..close], &line[close + 1..]);
    let bounds: Vec<&str> = range.split(':').collect();
    if bounds.len() != 2 && bounds.len() != 3 {
        return Err(format!("host range `[{range}]` must be begin:end or begin:end:step"));
    }
    let beg = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    if end.is_empty() {
        return Err(format!("host range `[{range}]` must specify an end"));
    }
    let step: usize = match bounds.get(2) {
        Some(s) => s.parse().ok().filter(|s| *s > 0).ok_or_else(|| format!("host range step `{s}` is not a positive number"))?,
        None => 1,
    };
    let width = if beg.len() > 1 && beg.starts_with('0') {
        if beg.len() != end.len() {
            return Err(format!("host range `[{range}]` must give begin and end the same width"));
        }
        Some(beg.len())
    } else {
        None
    };
    let letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let seq: Vec<String> = match (letters.find(beg).filter(|_| beg.len() == 1), letters.find(end).filter(|_| end.len() == 1)) {
        (Some(b), Some(e)) => {
            if b > e {
                return Err(format!("host range `[{range}]` must have begin <= end"));
            }
            letters[b..=e].chars().step_by(step).map(|c| c.to_string()).collect()
        }
        _ => {
            let (b, e): (u64, u64) = match (beg.parse(), end.parse()) {
                (Ok(b), Ok(e)) => (b, e),
                _ => return Err(format!("host range `[{range}]` is neither numeric nor alphabetic")),
            };
            if e.saturating_sub(b) > 100_000 {
                return Err(format!("host range `[{range}]` is too large"));
            }
            (b..=e)
                .step_by(step)
                .map(|i| match width {
                    Some(w) => format!("{i:0w$}"),
                    None => i.to_string(),
                })
                .collect()
        }
    };
    let mut out = Vec::new();
    for s in seq {
        let name = format!("{head}{s}{tail}");
        if name.contains('[') {
            out.extend(expand_ranges(&name)?);
        } else {
            out.push(name);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_ports() {
        assert_eq!(expand("web-[01:03]").unwrap().0, vec!["web-01", "web-02", "web-03"]);
        assert_eq!(expand("db-[a:c]").unwrap().0, vec!["db-a", "db-b", "db-c"]);
        assert_eq!(expand("n[1:7:3]x[1:2]").unwrap().0, vec!["n1x1", "n1x2", "n4x1", "n4x2", "n7x1", "n7x2"]);
        assert_eq!(expand("h:2222").unwrap(), (vec!["h".to_string()], Some(2222)));
        assert_eq!(expand("web[1:2]:22").unwrap(), (vec!["web1".to_string(), "web2".to_string()], Some(22)));
        assert_eq!(expand("[2001:db8::1]:2200").unwrap(), (vec!["2001:db8::1".to_string()], Some(2200)));
        assert_eq!(expand("2001:db8::1").unwrap(), (vec!["2001:db8::1".to_string()], None));
        assert!(expand("h:").is_err() && expand("w[01:1]").is_err() && expand("w[1:").is_err());
    }
}
