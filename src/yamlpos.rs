//! Line and column of keys in block-style YAML, for error messages.
//!
//! serde's YAML deserializers report a location for syntax errors and for
//! errors raised while deserializing, but not for the semantic checks we do
//! afterwards ("unknown module", "mode 0999 is not octal"). This module
//! indexes a source text once: every key path (`all.hosts.web1.ansible_port`,
//! `0.tasks.3.apt.name`) gets the line and column where it starts, so those
//! later errors can still say `hosts.yml:12:7`. It understands the block
//! style everybody writes (`key: value`, `- item`, `- key: value`); flow
//! collections are located at their parent key.

use std::collections::HashMap;

/// A position in a source file, 1-based like editors show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Key paths of one YAML document mapped to where they start.
#[derive(Debug, Default, Clone)]
pub struct PosIndex {
    map: HashMap<String, Pos>,
}

impl PosIndex {
    /// Index `source`. Never fails: lines it does not understand are skipped.
    pub fn new(source: &str) -> PosIndex {
        let mut map = HashMap::new();
        // Stack of (indent, path segment, next list index at this level).
        // (indent, segment, whether it is a key whose value is a block
        // below it: YAML allows that block's list at the key's own indent).
        let mut stack: Vec<(usize, String, bool)> = Vec::new();
        let mut list_counters: HashMap<String, usize> = HashMap::new();
        let mut in_block_scalar: Option<usize> = None;
        for (n, raw) in source.lines().enumerate() {
            let line_no = n + 1;
            let trimmed = raw.trim_start();
            let indent = raw.len() - trimmed.len();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
                continue;
            }
            if let Some(bi) = in_block_scalar {
                if indent > bi {
                    continue;
                }
                in_block_scalar = None;
            }
            let mut col = indent;
            let mut rest = trimmed;
            // Pop entries that are not parents of this line.
            let is_item = rest.starts_with("- ") || rest == "-";
            while let Some((i, _, open)) = stack.last() {
                if *i > indent || (*i == indent && !(is_item && *open)) {
                    stack.pop();
                } else {
                    break;
                }
            }
            // One or more "- " list markers.
            while rest.starts_with("- ") || rest == "-" {
                let parent = join(&stack);
                let counter = list_counters.entry(parent.clone()).or_insert(0);
                let idx = *counter;
                *counter += 1;
                stack.push((col, idx.to_string(), false));
                // Entering a fresh list item: forget counters below it.
                let prefix = join(&stack);
                list_counters.retain(|k, _| !k.starts_with(&format!("{prefix}.")));
                map.insert(prefix, Pos { line: line_no, column: col + 1 });
                let after = &rest[1..];
                let skip = after.len() - after.trim_start().len();
                col += 1 + skip;
                rest = after.trim_start();
                if rest.is_empty() {
                    break;
                }
            }
            if let Some(key) = key_of(rest) {
                while let Some((i, _, _)) = stack.last() {
                    if *i >= col {
                        stack.pop();
                    } else {
                        break;
                    }
                }
                let value = rest[rest.find(':').map(|i| i + 1).unwrap_or(rest.len())..].trim();
                let open = value.is_empty() || value.starts_with('#');
                stack.push((col, key.to_string(), open));
                let path = join(&stack);
                list_counters.retain(|k, _| !(k == &path || k.starts_with(&format!("{path}."))));
                map.insert(path, Pos { line: line_no, column: col + 1 });
                if value.starts_with('|') || value.starts_with('>') {
                    in_block_scalar = Some(col);
                }
            }
        }
        PosIndex { map }
    }

    /// Where `path` (segments joined by `.`) starts, or the nearest parent
    /// that was indexed.
    pub fn find(&self, path: &str) -> Option<Pos> {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.map.get(&p) {
                return Some(*pos);
            }
            match p.rfind('.') {
                Some(i) => p.truncate(i),
                None => return None,
            }
        }
    }
}

fn join(stack: &[(usize, String, bool)]) -> String {
    stack.iter().map(|(_, s, _)| s.as_str()).collect::<Vec<_>>().join(".")
}

/// The key of a `key: value` or `key:` line, unquoted.
fn key_of(rest: &str) -> Option<&str> {
    if rest.starts_with('{') || rest.starts_with('[') {
        return None;
    }
    for q in ['"', '\''] {
        if let Some(inner) = rest.strip_prefix(q) {
            let end = inner.find(q)?;
            let after = &inner[end + q.len_utf8()..];
            if !after.trim_start().starts_with(':') {
                return None;
            }
            return Some(inner[..end].trim());
        }
    }
    let end = rest.find(": ").or_else(|| rest.strip_suffix(':').map(|s| s.len()))?;
    Some(rest[..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_list_items() {
        let src = "all:\n  hosts:\n    web1:\n      ansible_port: abc\n  children:\n    db:\n      hosts:\n        db1:\n";
        let idx = PosIndex::new(src);
        assert_eq!(idx.find("all.hosts.web1.ansible_port"), Some(Pos { line: 4, column: 7 }));
        assert_eq!(idx.find("all.children.db.hosts.db1"), Some(Pos { line: 8, column: 9 }));
        // Unknown child falls back to the nearest parent.
        assert_eq!(idx.find("all.hosts.web1.nope"), Some(Pos { line: 3, column: 5 }));
    }

    #[test]
    fn finds_tasks_in_plays() {
        let src = "- hosts: all\n  tasks:\n    - name: one\n      apt:\n        name: x\n    - name: two\n      copy: {dest: /a}\n- hosts: db\n  tasks:\n  - name: three\n    file:\n      path: /b\n";
        let idx = PosIndex::new(src);
        assert_eq!(idx.find("0.tasks.0.apt.name"), Some(Pos { line: 5, column: 9 }));
        assert_eq!(idx.find("0.tasks.1"), Some(Pos { line: 6, column: 5 }));
        assert_eq!(idx.find("0.tasks.1.copy.dest"), Some(Pos { line: 7, column: 7 }));
        assert_eq!(idx.find("1.tasks.0.file.path"), Some(Pos { line: 12, column: 7 }));
        assert_eq!(idx.find("1.hosts"), Some(Pos { line: 8, column: 3 }));
    }

    #[test]
    fn odd_lines_do_not_panic() {
        for src in ["\"", "'", "- \"", "\"a\" :", "- - -", "-", "\u{e9}\"\u{e9}", ":"] {
            let _ = PosIndex::new(src);
        }
        let idx = PosIndex::new("\"quoted key\": 1\n");
        assert_eq!(idx.find("quoted key"), Some(Pos { line: 1, column: 1 }));
    }

    #[test]
    fn skips_block_scalars() {
        let src = "a:\n  content: |\n    b: not a key\n  mode: 1\n";
        let idx = PosIndex::new(src);
        assert_eq!(idx.find("a.content.b"), Some(Pos { line: 2, column: 3 }));
        assert_eq!(idx.find("a.mode"), Some(Pos { line: 4, column: 3 }));
    }
}
