//! INI inventories, as Ansible's `ini` plugin reads them.
//!
//! `[group]` sections hold hosts (`name`, `name:port`, ranges like
//! `web-[01:10]`) with `key=value` variables, split like a shell line;
//! `[group:vars]` holds one `key = value` per line; `[group:children]`
//! names child groups, which may be declared later in the file. Lines
//! before any section are `ungrouped` hosts. `#` and `;` start comments.
//! Every value is typed as Python's `ast.literal_eval` types it (see
//! [`super::pyliteral`]). A `[x:vars]` or a child for a group the file
//! never declares is an error, as in Ansible.

use std::path::PathBuf;
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value as Json;

use super::data::{Data, Loc};
use super::hostpattern;
use super::pyliteral::literal;
use crate::error::InputError;
use crate::yamlpos::Pos;

/// A value as the plugin types it.
fn value(v: &str) -> Json {
    literal(v).unwrap_or_else(|| Json::String(v.to_string()))
}

struct Pending {
    line: usize,
    vars: bool,
    parents: Vec<String>,
}

/// Read `text` (the file `file`) into `data`.
pub fn parse(file: &Arc<PathBuf>, text: &str, data: &mut Data) -> Result<(), InputError> {
    let mut group = "ungrouped".to_string();
    let mut state = "hosts";
    let mut pending: IndexMap<String, Pending> = IndexMap::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let at = |col: usize, path: String| Loc::new(file, Some(Pos { line: n, column: col }), path);
        let err = |msg: String| InputError::new(msg).in_file(file).at(Some(Pos { line: n, column: 1 }));
        let line = raw.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        let col = raw.len() - raw.trim_start().len() + 1;
        if let Some((name, kind)) = section(line) {
            let kind = kind.unwrap_or("hosts");
            if !matches!(kind, "hosts" | "children" | "vars") {
                return Err(err(format!("section [{name}:{kind}] has an unknown type: {kind} (hosts, children or vars)")));
            }
            super::check_group_name(&name).map_err(|m| err(m.to_string()))?;
            if !data.groups.contains_key(&name) {
                if kind == "vars" && !pending.contains_key(&name) {
                    pending.insert(name.clone(), Pending { line: n, vars: true, parents: Vec::new() });
                }
                data.add_group(&name, Some(at(col, name.clone())));
            }
            if kind != "vars" {
                if let Some(p) = pending.get(&name) {
                    if p.vars {
                        pending.shift_remove(&name);
                    } else {
                        add_pending_children(data, &name, &mut pending);
                    }
                }
            }
            group = name;
            state = match kind {
                "children" => "children",
                "vars" => "vars",
                _ => "hosts",
            };
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            return Err(err(format!("invalid section `{line}`: a section is [group], [group:vars] or [group:children], without spaces")));
        }
        match state {
            "hosts" => {
                let tokens = shlex::split(line).ok_or_else(|| err(format!("cannot split host line `{line}`: unbalanced quotes")))?;
                let Some(pattern) = tokens.first() else { continue };
                let (hosts, port) = hostpattern::expand(pattern).map_err(err)?;
                let mut vars: Vec<(String, Json)> = Vec::new();
                for t in &tokens[1..] {
                    let Some((k, v)) = t.split_once('=') else {
                        return Err(err(format!("expected key=value host variable assignment, got `{t}`"))
                            .hint("quote values that contain spaces: key=\"a b\""));
                    };
                    vars.push((k.to_string(), value(v)));
                }
                for h in &hosts {
                    super::check_host_name(h).map_err(|m| err(m.to_string()))?;
                    data.add_host(h, Some(&group), port, at(col, h.clone()));
                    for (k, v) in &vars {
                        let vcol = raw.find(&format!("{k}=")).map(|c| c + 1).unwrap_or(col);
                        data.set_host_var(h, k, v.clone(), at(vcol, format!("{h}.{k}")));
                    }
                }
            }
            "vars" => {
                let Some((k, v)) = line.split_once('=') else {
                    return Err(err(format!("expected key=value, got `{line}`")));
                };
                let k = k.trim();
                data.set_group_var(&group, k, value(v.trim()), at(col, format!("{group}:vars.{k}")))?;
            }
            _ => {
                let child = group_name(line).ok_or_else(|| err(format!("expected a group name, got `{line}`")))?;
                super::check_group_name(child).map_err(|m| err(m.to_string()))?;
                if !data.groups.contains_key(child) {
                    pending
                        .entry(child.to_string())
                        .or_insert_with(|| Pending { line: n, vars: false, parents: Vec::new() })
                        .parents
                        .push(group.clone());
                } else {
                    data.add_child(&group, child);
                }
            }
        }
    }
    if let Some((name, p)) = pending.into_iter().next() {
        let at = Some(Pos { line: p.line, column: 1 });
        let msg = if p.vars {
            format!("section [{name}:vars] is for a group the inventory never declares: `{name}`")
        } else {
            format!(
                "section [{}:children] names a group the inventory never declares: `{name}`",
                p.parents.last().cloned().unwrap_or_default()
            )
        };
        return Err(InputError::new(msg).in_file(file).at(at).hint(format!("declare it with a [{name}] section (it may be empty)")));
    }
    Ok(())
}

fn add_pending_children(data: &mut Data, group: &str, pending: &mut IndexMap<String, Pending>) {
    let Some(p) = pending.shift_remove(group) else { return };
    for parent in p.parents {
        data.add_child(&parent, group);
        if pending.get(&parent).map(|pp| !pp.vars).unwrap_or(false) {
            add_pending_children(data, &parent, pending);
        }
    }
}

/// `[name]` or `[name:kind]`, trailing spaces and a `#` comment allowed.
fn section(line: &str) -> Option<(String, Option<&str>)> {
    let rest = line.strip_prefix('[')?;
    let close = rest.find(']')?;
    let (inside, after) = (&rest[..close], &rest[close + 1..]);
    let after = after.trim_start();
    if !(after.is_empty() || after.starts_with('#')) {
        return None;
    }
    let (name, kind) = match inside.split_once(':') {
        Some((n, k)) => (n, Some(k)),
        None => (inside, None),
    };
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == ']') {
        return None;
    }
    if let Some(k) = kind {
        if k.is_empty() || !k.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return None;
        }
    }
    Some((name.to_string(), kind))
}

/// A child group line: a name, then nothing but spaces or a comment.
fn group_name(line: &str) -> Option<&str> {
    let end = line.find(|c: char| c.is_whitespace() || c == '#').unwrap_or(line.len());
    let (name, after) = line.split_at(end);
    let after = after.trim_start();
    if name.is_empty() || name.contains([':', ']']) || !(after.is_empty() || after.starts_with('#')) {
        return None;
    }
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(text: &str) -> Result<Data, InputError> {
        let mut d = Data::default();
        parse(&Arc::new(PathBuf::from("hosts.ini")), text, &mut d)?;
        d.reconcile();
        Ok(d)
    }

    #[test]
    fn sections_hosts_vars_children() {
        let d = data("top a=1 b=\"x y\" c='[1, 2]' d=yes\n[web]\nweb-[01:02]:2222\n[web:vars]\nx = 1 # c\ny=hello world\n[prod:children]\nweb\ndb\n[db]\ndb1\n").unwrap();
        assert_eq!(d.groups["ungrouped"].hosts, vec!["top"]);
        assert_eq!(d.hosts["top"].vars.vars["a"], json!(1));
        assert_eq!(d.hosts["top"].vars.vars["b"], json!("x y"));
        assert_eq!(d.hosts["top"].vars.vars["c"], json!([1, 2]));
        assert_eq!(d.hosts["top"].vars.vars["d"], json!("yes"));
        assert_eq!(d.hosts["web-02"].vars.vars["ansible_port"], json!(2222));
        assert_eq!(d.groups["web"].vars.vars["x"], json!(1));
        assert_eq!(d.groups["web"].vars.vars["y"], json!("hello world"));
        assert_eq!(d.groups["prod"].children, vec!["web", "db"]);
        assert_eq!(d.groups["all"].children, vec!["ungrouped", "prod"]);
    }

    #[test]
    fn errors_name_the_line() {
        let e = data("[web]\nh1\nh2 novalue\n").unwrap_err();
        assert_eq!(e.pos.map(|p| p.line), Some(3), "{e}");
        assert!(e.to_string().contains("key=value"), "{e}");
        let e = data("[web:vars]\nx=1\n").unwrap_err();
        assert!(e.to_string().contains("never declares"), "{e}");
        let e = data("[a:children]\nb\n").unwrap_err();
        assert!(e.to_string().contains("`b`"), "{e}");
        assert!(data("[web:stuff]\n").is_err());
        assert!(data("[web group]\n").is_err());
        // A child declared after the parent's section is fine.
        assert!(data("[a:children]\nb\n[b]\nh\n").is_ok());
        assert!(data("[b:vars]\nx=1\n[b]\nh\n").is_ok());
    }
}
