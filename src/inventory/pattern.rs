//! Host patterns, as `--limit` and a play's `hosts:` take them: names,
//! groups and globs separated by `,` or `:`; `!x` excludes, `&x`
//! intersects. An unknown name is an error that suggests the closest one.

use std::collections::BTreeSet;

use super::Inventory;

impl Inventory {
    /// Select hosts by an Ansible host pattern: names, groups and globs,
    /// separated by `,` or `:`; `!x` excludes, `&x` intersects.
    pub fn select(&self, pattern: &str) -> Result<Vec<String>, String> {
        let mut include: Vec<String> = Vec::new();
        let mut intersect: Vec<Vec<String>> = Vec::new();
        let mut exclude: BTreeSet<String> = BTreeSet::new();
        let sep: &[char] = if pattern.contains(',') { &[','] } else { &[':'] };
        for part in pattern.split(sep).map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(p) = part.strip_prefix('!') {
                exclude.extend(self.match_one(p)?);
            } else if let Some(p) = part.strip_prefix('&') {
                intersect.push(self.match_one(p)?);
            } else {
                for h in self.match_one(part)? {
                    if !include.contains(&h) {
                        include.push(h);
                    }
                }
            }
        }
        Ok(include.into_iter().filter(|h| !exclude.contains(h) && intersect.iter().all(|set| set.contains(h))).collect())
    }

    fn match_one(&self, p: &str) -> Result<Vec<String>, String> {
        if p == "all" || p == "*" {
            return Ok(self.hosts.keys().cloned().collect());
        }
        let mut out: Vec<String> = Vec::new();
        let push = |h: String, out: &mut Vec<String>| {
            if !out.contains(&h) {
                out.push(h)
            }
        };
        for g in self.groups.keys() {
            if glob_match(p, g) {
                for h in self.hosts_of_group(g) {
                    push(h, &mut out);
                }
            }
        }
        for h in self.hosts.keys() {
            if glob_match(p, h) {
                push(h.clone(), &mut out);
            }
        }
        if out.is_empty() && !p.contains(['*', '?', '[']) {
            let mut known: Vec<&str> = self.hosts.keys().map(String::as_str).collect();
            known.extend(self.groups.keys().map(String::as_str));
            let hint = closest(p, &known).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default();
            return Err(format!("`{p}` matches no host or group in the inventory{hint}"));
        }
        Ok(out)
    }
}

/// Shell-style glob match: `*`, `?` and `[...]` classes.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn m(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|i| m(&p[1..], &t[i..])),
            Some('?') => !t.is_empty() && m(&p[1..], &t[1..]),
            Some('[') => {
                let Some(end) = p.iter().position(|c| *c == ']') else {
                    return !t.is_empty() && t[0] == '[' && m(&p[1..], &t[1..]);
                };
                let Some(&c) = t.first() else { return false };
                let class = &p[1..end];
                let (neg, class) = match class.first() {
                    Some('!') | Some('^') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != neg && m(&p[end + 1..], &t[1..])
            }
            Some(&c) => t.first() == Some(&c) && m(&p[1..], &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    m(&p, &t)
}

/// The candidate closest to `word` by edit distance, if close enough.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let v = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
                cur.push(v);
            }
            prev = cur;
        }
        prev[b.len()]
    }
    candidates.iter().map(|c| (dist(word, c), *c)).filter(|(d, c)| *d <= 2.max(c.len() / 3)).min_by_key(|(d, _)| *d).map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("web[0-9]", "web3"));
        assert!(!glob_match("web[!0-9]", "web3"));
        assert!(glob_match("w?b*", "web12"));
    }
}
