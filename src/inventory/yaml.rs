//! YAML (and JSON) inventories, as Ansible's `yaml` plugin reads them:
//! top-level keys are groups; a group has `hosts` (patterns, each with its
//! variables), `vars` and `children` (groups, recursively). A section given
//! as a single string is a one-entry mapping. Values are YAML 1.1, inline
//! `!vault` values decrypted. Unlike Ansible, which warns and skips, an
//! unknown key in a group is an error: it is nearly always a typo (`host:`)
//! that would leave hosts out.

use std::path::PathBuf;
use std::sync::Arc;

use super::data::{Data, Loc};
use super::hostpattern;
use super::Unvault;
use crate::error::InputError;
use crate::yaml11::{Node, Value};

/// Read the document `doc` (from `file`) into `data`.
pub fn parse(file: &Arc<PathBuf>, doc: &Node, data: &mut Data, unvault: &mut Unvault) -> Result<(), InputError> {
    let Some(groups) = doc.as_map() else {
        return Err(InputError::new(format!("a YAML inventory is a mapping of groups, this is {}", doc.kind()))
            .in_file(file)
            .at(Some(doc.pos))
            .hint("start it with `all:` and a `hosts:` mapping"));
    };
    if groups.iter().any(|(k, _)| k == "plugin") {
        return Err(InputError::new("this is an inventory plugin's configuration, not an inventory; bootstrap reads static inventories")
            .in_file(file)
            .at(Some(doc.pos)));
    }
    for (name, g) in groups {
        group(file, name, g, name, data, unvault)?;
    }
    Ok(())
}

fn group(file: &Arc<PathBuf>, name: &str, node: &Node, path: &str, data: &mut Data, unvault: &mut Unvault) -> Result<(), InputError> {
    let loc = |n: &Node, p: &str| Loc::new(file, Some(n.at()), p);
    super::check_group_name(name).map_err(|m| loc(node, path).error(m))?;
    data.add_group(name, Some(loc(node, path)));
    let entries = match &node.value {
        Value::Null => return Ok(()),
        Value::Map(m) => m,
        _ => return Err(loc(node, path).error(format!("group `{name}` must be a mapping (hosts, vars, children), found {}", node.kind()))),
    };
    for (key, section) in entries {
        let spath = format!("{path}.{key}");
        if !matches!(key.as_str(), "hosts" | "vars" | "children") {
            let hint = match crate::inventory::closest(key, &["hosts", "vars", "children"]) {
                Some(c) => format!("did you mean `{c}`?"),
                None => "a group has `hosts`, `vars` and `children`".to_string(),
            };
            return Err(loc(section, &spath).error(format!("unknown field `{key}` in group `{name}`")).hint(hint));
        }
        // A single string is a one-entry mapping.
        let single;
        let items: &[(String, Node)] = match &section.value {
            Value::Null => continue,
            Value::Map(m) => m,
            Value::Str(s) => {
                single = [(s.clone(), Node { value: Value::Null, pos: section.pos, key_pos: None })];
                &single
            }
            _ => {
                return Err(loc(section, &spath).error(format!("`{key}` of group `{name}` must be a mapping, found {}", section.kind())));
            }
        };
        match key.as_str() {
            "vars" => {
                for (k, v) in items {
                    let vpath = format!("{spath}.{k}");
                    let j = v.to_json(&mut |c, p| unvault.decrypt(c, file, p))?;
                    data.set_group_var(name, k, j, loc(v, &vpath))?;
                }
            }
            "children" => {
                for (child, cnode) in items {
                    group(file, child, cnode, &format!("{spath}.{child}"), data, unvault)?;
                    data.add_child(name, child);
                }
            }
            _ => {
                for (pattern, hnode) in items {
                    let hpath = format!("{spath}.{pattern}");
                    let (hosts, port) = hostpattern::expand(pattern).map_err(|m| loc(hnode, &hpath).error(m))?;
                    let vars = match &hnode.value {
                        Value::Null => &[][..],
                        Value::Map(m) => m.as_slice(),
                        _ => {
                            return Err(
                                loc(hnode, &hpath).error(format!("host `{pattern}` takes a mapping of variables, found {}", hnode.kind()))
                            )
                        }
                    };
                    let mut typed = Vec::with_capacity(vars.len());
                    for (k, v) in vars {
                        typed.push((k, v.to_json(&mut |c, p| unvault.decrypt(c, file, p))?, loc(v, &format!("{hpath}.{k}"))));
                    }
                    for h in &hosts {
                        super::check_host_name(h).map_err(|m| loc(hnode, &hpath).error(m))?;
                        data.add_host(h, Some(name), port, loc(hnode, &hpath));
                        for (k, v, l) in &typed {
                            data.set_host_var(h, k, v.clone(), l.clone());
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
