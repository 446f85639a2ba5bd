//! known_hosts files, read as OpenSSH reads them.
//!
//! Plain, wildcard (`*`, `?`, `!negated`) and hashed (`|1|salt|hash`) host
//! patterns, `[host]:port` for other ports, `@revoked` keys, comments. Line
//! numbers count every line of the file, so the number in a "host key
//! changed" message is the one an editor shows.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use hmac::{KeyInit, Mac};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line for this host holds this key.
    Match,
    /// No line for this host with this key type.
    Unknown,
    /// A line for this host holds another key of the same type.
    Changed { line: usize },
    /// The key is marked `@revoked`.
    Revoked { line: usize },
}

/// The name a host has in known_hosts.
pub fn host_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Check `key_type key_base64` for `host`:`port` against the file's text.
pub fn check(text: &str, host: &str, port: u16, key_type: &str, key_b64: &str) -> Verdict {
    let name = host_name(host, port);
    let mut changed = None;
    let mut matched = false;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let mut first = words.next().unwrap_or("");
        let marker = if first.starts_with('@') {
            let m = first;
            first = words.next().unwrap_or("");
            Some(m)
        } else {
            None
        };
        let (Some(kt), Some(kb)) = (words.next(), words.next()) else { continue };
        if !hosts_match(first, &name) {
            continue;
        }
        match marker {
            Some("@revoked") if kt == key_type && kb == key_b64 => return Verdict::Revoked { line: line_no },
            Some(_) => continue,
            None => {}
        }
        if kt == key_type && kb == key_b64 {
            matched = true;
        } else if kt == key_type && changed.is_none() {
            changed = Some(line_no);
        }
    }
    match (matched, changed) {
        (true, _) => Verdict::Match,
        (false, Some(line)) => Verdict::Changed { line },
        (false, None) => Verdict::Unknown,
    }
}

/// Append a line for `host`:`port` (creating the file and its folder).
pub fn append(path: &Path, host: &str, port: u16, key_type: &str, key_b64: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let existing = std::fs::read(path).unwrap_or_default();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    if !existing.is_empty() && !existing.ends_with(b"\n") {
        f.write_all(b"\n")?;
    }
    writeln!(f, "{} {key_type} {key_b64}", host_name(host, port))
}

fn hosts_match(patterns: &str, name: &str) -> bool {
    let mut hit = false;
    for p in patterns.split(',') {
        if let Some(neg) = p.strip_prefix('!') {
            if wildcard(neg, name) {
                return false;
            }
        } else if p.starts_with("|1|") {
            hit |= hashed_match(p, name);
        } else {
            hit |= wildcard(p, name);
        }
    }
    hit
}

/// OpenSSH host patterns: `*` and `?` only (`[` is literal, as in `[host]:port`).
fn wildcard(pattern: &str, text: &str) -> bool {
    fn m(p: &[u8], t: &[u8]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some(b'*') => (0..=t.len()).any(|i| m(&p[1..], &t[i..])),
            Some(b'?') => !t.is_empty() && m(&p[1..], &t[1..]),
            Some(c) => t.first().map(|x| x.eq_ignore_ascii_case(c)).unwrap_or(false) && m(&p[1..], &t[1..]),
        }
    }
    m(pattern.as_bytes(), text.as_bytes())
}

fn hashed_match(entry: &str, name: &str) -> bool {
    let mut parts = entry.split('|').skip(2);
    let b64 = base64::engine::general_purpose::STANDARD;
    let (Some(Ok(salt)), Some(Ok(hash))) = (parts.next().map(|s| b64.decode(s)), parts.next().map(|h| b64.decode(h))) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt) else { return false };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIEX2LZSjRayD1rMswa896fgUvtXwPqFFW30EWfYDEtcz";
    const K2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    #[test]
    fn verdicts_and_line_numbers() {
        let text = format!("# comment\n\n10.0.0.1 ssh-ed25519 {K2}\nweb*,!web9 ssh-ed25519 {K1}\n[10.0.0.2]:2222 ssh-ed25519 {K1}\n");
        assert_eq!(check(&text, "10.0.0.1", 22, "ssh-ed25519", K1), Verdict::Changed { line: 3 });
        assert_eq!(check(&text, "web1", 22, "ssh-ed25519", K1), Verdict::Match);
        assert_eq!(check(&text, "web9", 22, "ssh-ed25519", K1), Verdict::Unknown);
        assert_eq!(check(&text, "10.0.0.2", 2222, "ssh-ed25519", K1), Verdict::Match);
        assert_eq!(check(&text, "10.0.0.2", 22, "ssh-ed25519", K1), Verdict::Unknown);
        assert_eq!(check(&text, "10.0.0.1", 22, "ssh-rsa", "AAAA"), Verdict::Unknown);
        let revoked = format!("@revoked * ssh-ed25519 {K1}\nweb1 ssh-ed25519 {K1}\n");
        assert_eq!(check(&revoked, "web1", 22, "ssh-ed25519", K1), Verdict::Revoked { line: 1 });
    }

    #[test]
    fn hashed_entries_as_ssh_keygen_writes_them() {
        // `ssh-keygen -H` output for host "example.com".
        let salt = base64::engine::general_purpose::STANDARD.encode(b"0123456789abcdefghij");
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(b"0123456789abcdefghij").unwrap();
        mac.update(b"example.com");
        let hash = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let text = format!("|1|{salt}|{hash} ssh-ed25519 {K1}\n");
        assert_eq!(check(&text, "example.com", 22, "ssh-ed25519", K1), Verdict::Match);
        assert_eq!(check(&text, "example.org", 22, "ssh-ed25519", K1), Verdict::Unknown);
    }

    #[test]
    fn append_adds_a_line() {
        let dir = std::env::temp_dir().join(format!("bootstrap-kh-{}", std::process::id()));
        let path = dir.join("sub/known_hosts");
        append(&path, "h", 2200, "ssh-ed25519", K1).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(check(&text, "h", 2200, "ssh-ed25519", K1), Verdict::Match);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
