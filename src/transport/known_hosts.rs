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

/// Check `key_type key_base64` for `host`:`port` against the file's text,
/// every line read: the reading [`Index`] is tested against.
#[cfg(test)]
pub fn check(text: &str, host: &str, port: u16, key_type: &str, key_b64: &str) -> Verdict {
    let lines: Vec<Line> = text.lines().enumerate().filter_map(|(i, raw)| Line::parse(i + 1, raw)).collect();
    verdict(lines.iter(), &host_name(host, port), key_type, key_b64)
}

/// One host key line: `[@marker] patterns key-type key`.
#[derive(Debug)]
struct Line {
    no: usize,
    marker: Option<String>,
    patterns: String,
    key_type: String,
    key: String,
}

impl Line {
    /// Line `no` of the file; None for blank lines, comments and lines
    /// without a key.
    fn parse(no: usize, raw: &str) -> Option<Line> {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut words = line.split_whitespace();
        let mut first = words.next()?;
        let marker = if first.starts_with('@') {
            let m = first;
            first = words.next().unwrap_or("");
            Some(m.to_string())
        } else {
            None
        };
        let (kt, kb) = (words.next()?, words.next()?);
        Some(Line { no, marker, patterns: first.to_string(), key_type: kt.to_string(), key: kb.to_string() })
    }

    /// The plain host names of a line whose patterns are all plain (no
    /// wildcard, negation or hash), lowercased; None for any other line.
    fn plain_names(&self) -> Option<Vec<String>> {
        self.patterns.split(',').map(|p| (!p.contains(['*', '?', '!']) && !p.starts_with('|')).then(|| p.to_ascii_lowercase())).collect()
    }
}

/// The verdict of `lines` (in file order) for the known_hosts name `name`.
fn verdict<'a>(lines: impl Iterator<Item = &'a Line>, name: &str, key_type: &str, key_b64: &str) -> Verdict {
    let mut changed = None;
    let mut matched = false;
    for l in lines {
        if !hosts_match(&l.patterns, name) {
            continue;
        }
        let same_key = l.key_type == key_type && l.key == key_b64;
        match l.marker.as_deref() {
            Some("@revoked") if same_key => return Verdict::Revoked { line: l.no },
            Some(_) => continue,
            None => {}
        }
        if same_key {
            matched = true;
        } else if l.key_type == key_type && changed.is_none() {
            changed = Some(l.no);
        }
    }
    match (matched, changed) {
        (true, _) => Verdict::Match,
        (false, Some(line)) => Verdict::Changed { line },
        (false, None) => Verdict::Unknown,
    }
}

/// A file's lines, parsed once, with the lines that name plain hosts
/// found by name: a check reads the lines for its host and the lines with
/// patterns (wildcards, negations, hashes), not the whole file, so a
/// thousand-host file costs a handshake no more than a ten-host one.
#[derive(Debug, Default)]
struct Index {
    lines: Vec<Line>,
    by_name: std::collections::HashMap<String, Vec<usize>>,
    patterned: Vec<usize>,
    /// Lines in the file (for the number of an appended line).
    count: usize,
}

impl Index {
    fn new(text: &str) -> Index {
        let mut ix = Index::default();
        for raw in text.lines() {
            ix.push(raw);
        }
        ix
    }

    /// Add the file's next line.
    fn push(&mut self, raw: &str) {
        self.count += 1;
        let Some(line) = Line::parse(self.count, raw) else { return };
        let i = self.lines.len();
        match line.plain_names() {
            Some(mut names) => {
                names.dedup();
                for n in names {
                    self.by_name.entry(n).or_default().push(i);
                }
            }
            None => self.patterned.push(i),
        }
        self.lines.push(line);
    }

    fn check(&self, host: &str, port: u16, key_type: &str, key_b64: &str) -> Verdict {
        let name = host_name(host, port);
        let mut at: Vec<usize> =
            self.by_name.get(&name.to_ascii_lowercase()).into_iter().flatten().chain(&self.patterned).copied().collect();
        at.sort_unstable();
        at.dedup();
        verdict(at.iter().map(|&i| &self.lines[i]), &name, key_type, key_b64)
    }
}

/// A known_hosts file, read once per run and shared by every connection.
///
/// Reading it on every handshake would block the async runtime once per
/// host; instead the text is kept here. New keys (`--accept-new-host-keys`)
/// are appended by one writer at a time, as whole lines, and checked again
/// under the lock so two connections to one new host record it once.
#[derive(Debug)]
pub struct KnownHosts {
    path: std::path::PathBuf,
    text: std::sync::Mutex<Index>,
}

impl KnownHosts {
    /// Read `path` (a missing file is an empty one).
    pub fn load(path: &Path) -> std::io::Result<KnownHosts> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        Ok(KnownHosts { path: path.to_path_buf(), text: std::sync::Mutex::new(Index::new(&text)) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The verdict for a host key, from the text as read (plus lines this
    /// run appended).
    pub fn check(&self, host: &str, port: u16, key_type: &str, key_b64: &str) -> Verdict {
        match self.text.lock() {
            Ok(ix) => ix.check(host, port, key_type, key_b64),
            Err(_) => Verdict::Unknown,
        }
    }

    /// Record a new host key: one whole line, appended under the lock,
    /// unless another connection recorded it meanwhile.
    pub fn accept(&self, host: &str, port: u16, key_type: &str, key_b64: &str) -> std::io::Result<()> {
        let mut ix = self.text.lock().map_err(|_| std::io::Error::other("known_hosts lock poisoned"))?;
        if ix.check(host, port, key_type, key_b64) == Verdict::Match {
            return Ok(());
        }
        let line = append(&self.path, host, port, key_type, key_b64)?;
        ix.push(line.trim_end());
        Ok(())
    }
}

/// Append a line for `host`:`port` (creating the file and its folder), in
/// one write so that it can never interleave with another writer's line.
/// Returns the line written.
pub fn append(path: &Path, host: &str, port: u16, key_type: &str, key_b64: &str) -> std::io::Result<String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).read(true).open(path)?;
    let needs_newline = {
        use std::io::{Read, Seek, SeekFrom};
        let len = f.metadata()?.len();
        if len == 0 {
            false
        } else {
            let mut last = [0u8; 1];
            f.seek(SeekFrom::Start(len - 1))?;
            f.read_exact(&mut last)?;
            last[0] != b'\n'
        }
    };
    let line = format!("{} {key_type} {key_b64}\n", host_name(host, port));
    let mut buf = Vec::with_capacity(line.len() + 1);
    if needs_newline {
        buf.push(b'\n');
    }
    buf.extend_from_slice(line.as_bytes());
    f.write_all(&buf)?;
    f.sync_all()?;
    Ok(line)
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

    /// The index gives the whole-file reading's verdict, line numbers too,
    /// for plain, mixed-case, patterned, negated, revoked and ported lines.
    #[test]
    fn the_index_agrees_with_reading_every_line() {
        let text = format!(
            "# c\n10.0.0.1 ssh-ed25519 {K2}\nweb*,!web9 ssh-ed25519 {K1}\n[10.0.0.2]:2222 ssh-ed25519 {K1}\nWeb1,db1 ssh-ed25519 {K2}\n\
             @revoked db2 ssh-ed25519 {K1}\ndb2 ssh-ed25519 {K1}\n@cert-authority *.x ssh-ed25519 {K1}\n10.0.0.1 ssh-ed25519 {K1}\nbroken-line\n"
        );
        let ix = Index::new(&text);
        for host in ["10.0.0.1", "web1", "WEB1", "web9", "db1", "db2", "a.x", "10.0.0.2", "nope"] {
            for port in [22, 2222] {
                for (kt, kb) in [("ssh-ed25519", K1), ("ssh-ed25519", K2), ("ssh-rsa", "AAAA")] {
                    assert_eq!(ix.check(host, port, kt, kb), check(&text, host, port, kt, kb), "{host}:{port} {kt} {kb}");
                }
            }
        }
        assert_eq!(ix.check("10.0.0.1", 22, "ssh-ed25519", K1), Verdict::Match, "a later line with the key matches");
        assert_eq!(ix.check("web1", 22, "ssh-ed25519", K2), Verdict::Match, "`Web1` on line 5: names are case-blind");
        assert_eq!(ix.check("web2", 22, "ssh-ed25519", K2), Verdict::Changed { line: 3 });
        let mut grown = Index::new("a ssh-ed25519 AAAA");
        grown.push(&format!("b ssh-ed25519 {K1}"));
        assert_eq!(grown.check("b", 22, "ssh-ed25519", K2), Verdict::Changed { line: 2 });
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
    fn concurrent_accepts_write_whole_lines_once() {
        let dir = std::env::temp_dir().join(format!("bootstrap-kh-c-{}", std::process::id()));
        let path = dir.join("known_hosts");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, "old ssh-ed25519 AAAA").unwrap(); // no final newline
        let kh = std::sync::Arc::new(KnownHosts::load(&path).unwrap());
        let threads: Vec<_> = (0..32)
            .map(|i| {
                let kh = kh.clone();
                std::thread::spawn(move || {
                    // Every host twice, as two connections to it would.
                    for _ in 0..2 {
                        kh.accept(&format!("host-{i}"), 2200 + i as u16, "ssh-ed25519", K1).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 33, "{text}");
        assert_eq!(lines[0], "old ssh-ed25519 AAAA");
        for i in 0..32u16 {
            let want = format!("[host-{i}]:{} ssh-ed25519 {K1}", 2200 + i);
            assert_eq!(lines.iter().filter(|l| **l == want).count(), 1, "{want} once, whole:\n{text}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
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
