//! `bootstrap inventory`: the inventory as `ansible-inventory` shows it.
//!
//! `--list` is the same JSON for the same sources: every group with its
//! `hosts` and `children` (empty keys and empty groups left out), and
//! `_meta.hostvars` with each host's variables merged by precedence,
//! magic variables left out; inline vault values are shown encrypted, as
//! `{"__ansible_vault": "..."}`. `--host NAME` is one host's variables,
//! `--graph` the tree of groups and hosts.

use std::collections::HashSet;

use serde_json::{json, Map, Value as Json};

use super::Inventory;

/// `ansible-inventory --list`.
pub fn list(inv: &Inventory) -> Json {
    let mut out = Map::new();
    let mut seen: HashSet<String> = HashSet::new();
    format_group(inv, "all", &mut seen, &mut out);
    let mut hostvars = Map::new();
    for h in inv.hosts.keys() {
        if let Some(v) = host(inv, h) {
            if v.as_object().map(|m| !m.is_empty()).unwrap_or(false) {
                hostvars.insert(h.clone(), v);
            }
        }
    }
    out.insert("_meta".into(), json!({ "hostvars": hostvars, "profile": "inventory_legacy" }));
    Json::Object(out)
}

fn format_group(inv: &Inventory, name: &str, seen: &mut HashSet<String>, out: &mut Map<String, Json>) {
    let Some(g) = inv.groups.get(name) else { return };
    let mut entry = Map::new();
    if name != "all" {
        let hosts: Vec<Json> = g.hosts.iter().map(|h| Json::String(h.clone())).collect();
        if !hosts.is_empty() {
            entry.insert("hosts".into(), Json::Array(hosts));
        }
    }
    let mut children = Vec::new();
    for c in &g.children {
        children.push(Json::String(c.clone()));
        if seen.insert(c.clone()) {
            format_group(inv, c, seen, out);
        }
    }
    if !children.is_empty() {
        entry.insert("children".into(), Json::Array(children));
    }
    if !entry.is_empty() {
        out.insert(name.to_string(), Json::Object(entry));
    }
}

/// `ansible-inventory --host NAME`.
pub fn host(inv: &Inventory, name: &str) -> Option<Json> {
    let vars = inv.listed_vars(name)?;
    let mut m = Map::new();
    for (k, v) in vars {
        m.insert(k.clone(), encrypted(inv, v));
    }
    Some(Json::Object(m))
}

/// Inline vault values as Ansible prints them.
fn encrypted(inv: &Inventory, v: &Json) -> Json {
    match v {
        Json::String(s) => match inv.inline_vault.iter().find(|(plain, _)| plain == s) {
            Some((_, cipher)) => json!({ "__ansible_vault": cipher }),
            None => v.clone(),
        },
        Json::Array(a) => Json::Array(a.iter().map(|i| encrypted(inv, i)).collect()),
        Json::Object(m) => Json::Object(m.iter().map(|(k, i)| (k.clone(), encrypted(inv, i))).collect()),
        other => other.clone(),
    }
}

/// `ansible-inventory --graph [GROUP]`.
pub fn graph(inv: &Inventory, group: &str) -> Option<String> {
    inv.groups.get(group)?;
    let mut lines = Vec::new();
    graph_group(inv, group, 0, &mut lines);
    Some(lines.join("\n"))
}

fn graph_group(inv: &Inventory, name: &str, depth: usize, lines: &mut Vec<String>) {
    let label = |n: &str, d: usize| if d == 0 { n.to_string() } else { format!("{}--{n}", "  |".repeat(d)) };
    lines.push(label(&format!("@{name}:"), depth));
    let Some(g) = inv.groups.get(name) else { return };
    for c in &g.children {
        if depth < 64 {
            graph_group(inv, c, depth + 1, lines);
        }
    }
    if name != "all" {
        for h in &g.hosts {
            lines.push(label(h, depth + 1));
        }
    }
}

/// JSON as ansible-inventory prints it: keys sorted, four-space indent,
/// non-ASCII escaped (Python's `json.dumps(sort_keys=True, indent=4)`).
pub fn to_text(v: &Json) -> String {
    fn sorted(v: &Json) -> Json {
        match v {
            Json::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Json::Object(keys.into_iter().map(|k| (k.clone(), sorted(&m[k]))).collect())
            }
            Json::Array(a) => Json::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if serde::Serialize::serialize(&sorted(v), &mut ser).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}
