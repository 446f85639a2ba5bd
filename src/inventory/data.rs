//! The inventory as sources build it, before variables are merged: groups
//! with their hosts, children and variables, hosts with theirs, each value
//! remembering where it was written. The same rules as Ansible's
//! `InventoryData`: `all` and `ungrouped` exist from the start, a group
//! with no parent becomes a child of `all`, a host in no group is in
//! `ungrouped`, and a later source's value replaces an earlier one.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value as Json;

use crate::error::InputError;
use crate::template::Vars;
use crate::yamlpos::Pos;

/// Where a value was written: file, position, and the key path people
/// would look for (`all.hosts.web1.ansible_port`, `web1.ansible_port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<PathBuf>,
    pub pos: Option<Pos>,
    pub path: String,
}

impl Loc {
    pub fn new(file: &Arc<PathBuf>, pos: Option<Pos>, path: impl Into<String>) -> Loc {
        Loc { file: file.clone(), pos, path: path.into() }
    }

    /// An input error pointing here.
    pub fn error(&self, msg: impl Into<String>) -> InputError {
        let e = InputError::new(msg).in_file(&self.file).at(self.pos);
        if self.path.is_empty() {
            e
        } else {
            e.field(self.path.clone())
        }
    }
}

/// Variables with where each was set.
#[derive(Debug, Clone, Default)]
pub struct Located {
    pub vars: Vars,
    pub locs: IndexMap<String, Loc>,
}

impl Located {
    pub fn set(&mut self, k: &str, v: Json, loc: Loc) {
        self.vars.insert(k.to_string(), v);
        self.locs.insert(k.to_string(), loc);
    }

    /// `other` over this (Ansible's `combine_vars` with `replace`).
    pub fn merge(&mut self, other: &Located) {
        for (k, v) in &other.vars {
            self.vars.insert(k.clone(), v.clone());
            if let Some(l) = other.locs.get(k) {
                self.locs.insert(k.clone(), l.clone());
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct GroupData {
    pub hosts: Vec<String>,
    pub children: Vec<String>,
    pub parents: Vec<String>,
    pub vars: Located,
    /// `ansible_group_priority` (inventory sources only, as in Ansible).
    pub priority: i64,
    /// Where the group was first declared.
    pub loc: Option<Loc>,
}

#[derive(Debug, Clone, Default)]
pub struct HostData {
    pub vars: Located,
    /// Where the host was first declared.
    pub loc: Option<Loc>,
    /// The inventory source that declared it (`inventory_file`).
    pub source: Option<PathBuf>,
}

/// Groups and hosts, in the order sources declared them.
#[derive(Debug, Clone)]
pub struct Data {
    pub groups: IndexMap<String, GroupData>,
    pub hosts: IndexMap<String, HostData>,
    /// The source being read (for `inventory_file`).
    pub current_source: Option<PathBuf>,
}

impl Default for Data {
    fn default() -> Data {
        let mut d = Data { groups: IndexMap::new(), hosts: IndexMap::new(), current_source: None };
        d.add_group("all", None);
        d.add_group("ungrouped", None);
        d.add_child("all", "ungrouped");
        d
    }
}

impl Data {
    pub fn add_group(&mut self, name: &str, loc: Option<Loc>) {
        // Ansible's default priority is 1.
        let g = self.groups.entry(name.to_string()).or_insert_with(|| GroupData { priority: 1, ..GroupData::default() });
        if g.loc.is_none() {
            g.loc = loc;
        }
    }

    /// Add `host` (to `group`, if given); `port` sets `ansible_port`.
    pub fn add_host(&mut self, host: &str, group: Option<&str>, port: Option<u16>, loc: Loc) {
        let source = self.current_source.clone();
        let h = self.hosts.entry(host.to_string()).or_default();
        if h.loc.is_none() {
            h.loc = Some(loc.clone());
            h.source = source;
        }
        if let Some(p) = port {
            h.vars.set("ansible_port", Json::from(p), loc);
        }
        if let Some(g) = group {
            self.add_group(g, None);
            if let Some(gd) = self.groups.get_mut(g) {
                if !gd.hosts.iter().any(|x| x == host) {
                    gd.hosts.push(host.to_string());
                }
            }
        }
    }

    pub fn add_child(&mut self, parent: &str, child: &str) {
        self.add_group(parent, None);
        self.add_group(child, None);
        if let Some(p) = self.groups.get_mut(parent) {
            if !p.children.iter().any(|c| c == child) {
                p.children.push(child.to_string());
            }
        }
        if let Some(c) = self.groups.get_mut(child) {
            if !c.parents.iter().any(|p| p == parent) {
                c.parents.push(parent.to_string());
            }
        }
    }

    pub fn set_group_var(&mut self, group: &str, k: &str, v: Json, loc: Loc) -> Result<(), InputError> {
        if k == "ansible_group_priority" {
            let p = match &v {
                Json::Number(n) => n.as_i64(),
                Json::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            let p = p.ok_or_else(|| loc.error(format!("ansible_group_priority must be a whole number, found {v}")))?;
            self.add_group(group, None);
            if let Some(g) = self.groups.get_mut(group) {
                g.priority = p;
            }
            // Ansible keeps it as the group's priority, not as a variable.
            return Ok(());
        }
        self.add_group(group, None);
        if let Some(g) = self.groups.get_mut(group) {
            g.vars.set(k, v, loc);
        }
        Ok(())
    }

    pub fn set_host_var(&mut self, host: &str, k: &str, v: Json, loc: Loc) {
        if let Some(h) = self.hosts.get_mut(host) {
            h.vars.set(k, v, loc);
        }
    }

    /// Ancestors of `group` (not itself).
    pub fn ancestors(&self, group: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut todo: Vec<&str> = self.groups.get(group).map(|g| g.parents.iter().map(String::as_str).collect()).unwrap_or_default();
        while let Some(g) = todo.pop() {
            if out.iter().any(|x| x == g) {
                continue;
            }
            out.push(g.to_string());
            if let Some(gd) = self.groups.get(g) {
                todo.extend(gd.parents.iter().map(String::as_str));
            }
        }
        out
    }

    /// After every source: groups without a parent under `all`, hosts in no
    /// group in `ungrouped` (and only those).
    pub fn reconcile(&mut self) {
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for g in &names {
            if g != "all" && self.ancestors(g).is_empty() {
                self.add_child("all", g);
            }
        }
        // Per host: listed in `ungrouped`, listed in another group (one
        // pass over the groups, not one per host: linear in the inventory).
        let mut listed: HashMap<&str, (bool, bool)> = HashMap::new();
        for (g, gd) in &self.groups {
            for h in &gd.hosts {
                let e = listed.entry(h.as_str()).or_default();
                if g == "ungrouped" {
                    e.0 = true;
                } else if g != "all" {
                    e.1 = true;
                }
            }
        }
        let mut drop: HashSet<String> = HashSet::new();
        let mut add: Vec<String> = Vec::new();
        for h in self.hosts.keys() {
            let (in_ungrouped, others) = listed.get(h.as_str()).copied().unwrap_or_default();
            if in_ungrouped && others {
                drop.insert(h.clone());
            } else if !others && !in_ungrouped {
                add.push(h.clone());
            }
        }
        if let Some(u) = self.groups.get_mut("ungrouped") {
            u.hosts.retain(|x| !drop.contains(x));
            u.hosts.extend(add);
        }
        // `all` itself lists no hosts: every host is in it implicitly.
        if let Some(all) = self.groups.get_mut("all") {
            all.hosts.clear();
        }
    }

    /// A group that is its own ancestor: an error at its declaration.
    pub fn check_cycles(&self, file: &Path) -> Result<(), InputError> {
        for (name, g) in &self.groups {
            if self.ancestors(name).iter().any(|a| a == name) {
                let msg = format!("group `{name}` is its own ancestor");
                return Err(match &g.loc {
                    Some(l) => l.error(msg),
                    None => InputError::new(msg).in_file(file),
                });
            }
        }
        Ok(())
    }
}
