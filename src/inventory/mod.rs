//! Ansible YAML inventories: groups, hosts, variables and host patterns.
//!
//! The format is Ansible's own (`all:` / `hosts:` / `children:` / `vars:`
//! at every level), so an inventory users already have just works. Variable
//! precedence follows Ansible: `all`'s vars first, then groups by depth
//! (parents before children), groups at the same depth by
//! `ansible_group_priority` and then by name, host vars last. A host listed
//! twice merges its vars, later wins.
//!
//! Everything is checked here, before any connection: structure, value
//! types of the connection variables, and key files. Errors name the file,
//! the line and column, and the field. Each host's variables are resolved
//! (templates in them rendered) exactly once, at load, and shared from
//! then on; the `groups` magic variable is one layer shared by all hosts.

mod pattern;
mod vars;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::error::InputError;
use crate::template::{parse_bool, Scope, Templates};
use crate::yamlpos::PosIndex;

pub use pattern::closest;
pub use vars::resolve_vars;

pub use crate::template::Vars;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    hosts: Option<IndexMap<String, Option<IndexMap<String, serde_yaml_ng::Value>>>>,
    #[serde(default)]
    children: Option<IndexMap<String, Option<RawGroup>>>,
    #[serde(default)]
    vars: Option<IndexMap<String, serde_yaml_ng::Value>>,
}

/// A group as defined in the inventory.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub name: String,
    pub hosts: Vec<String>,
    pub children: Vec<String>,
    pub vars: Vars,
    /// Key path in the file, for error positions.
    path: String,
}

/// A host with its variables merged by Ansible's precedence.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// Every group the host belongs to, `all` included, parents included.
    pub groups: BTreeSet<String>,
    /// The variables as written, merged by precedence.
    pub vars: Vars,
    /// The variables resolved (templates rendered) plus the magic ones
    /// (`inventory_hostname`, `group_names`), once, at load. Without
    /// `groups`, which is [`Inventory::groups_layer`].
    resolved: Arc<Vars>,
    /// Key path of the host's first definition, for error positions.
    path: String,
}

/// A parsed, validated inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub file: PathBuf,
    pub groups: IndexMap<String, Group>,
    pub hosts: IndexMap<String, Host>,
    /// `{"groups": {group: [hosts]}}`, shared by every host's scope.
    groups_layer: Arc<Vars>,
    index: PosIndex,
}

fn yaml_to_json(file: &Path, index: &PosIndex, path: &str, v: &serde_yaml_ng::Value) -> Result<Json, InputError> {
    serde_json::to_value(v).map_err(|e| {
        InputError::new(format!("value cannot be used as a variable: {e}")).in_file(file).at(index.find(path)).field(path.to_string())
    })
}

impl Inventory {
    /// Read and parse an inventory file.
    pub fn load(file: &Path) -> Result<Inventory, InputError> {
        let source = crate::error::read_text(file, "inventory")?;
        Inventory::parse(file, &source)
    }

    /// Parse an inventory from its text; `file` is used in messages.
    pub fn parse(file: &Path, source: &str) -> Result<Inventory, InputError> {
        let index = PosIndex::new(source);
        let raw: Option<IndexMap<String, Option<RawGroup>>> =
            serde_yaml_ng::from_str(source).map_err(|e| InputError::from_yaml(file, &e))?;
        let raw =
            raw.ok_or_else(|| InputError::new("the inventory is empty").in_file(file).hint("start it with `all:` and a `hosts:` mapping"))?;
        let mut inv =
            Inventory { file: file.to_path_buf(), groups: IndexMap::new(), hosts: IndexMap::new(), groups_layer: Arc::default(), index };
        let mut host_vars: IndexMap<String, (Vars, String)> = IndexMap::new();
        inv.groups.insert("all".into(), Group { name: "all".into(), path: "all".into(), ..Default::default() });
        for (name, group) in &raw {
            inv.add_group(name, group.as_ref(), name, &mut host_vars)?;
        }
        // Top-level groups other than `all` are children of `all`.
        let top: Vec<String> = raw.keys().filter(|k| *k != "all").cloned().collect();
        for name in top {
            let all = inv.groups.get_mut("all").expect("all exists");
            if !all.children.contains(&name) {
                all.children.push(name);
            }
        }
        // Hosts in no group but `all` are also in `ungrouped`, as in Ansible.
        inv.compute_hosts(host_vars)?;
        inv.resolve()?;
        Ok(inv)
    }

    fn add_group(
        &mut self,
        name: &str,
        raw: Option<&RawGroup>,
        path: &str,
        host_vars: &mut IndexMap<String, (Vars, String)>,
    ) -> Result<(), InputError> {
        check_name(&self.file, &self.index, path, name, "group")?;
        let entry = self.groups.entry(name.to_string()).or_insert_with(|| Group {
            name: name.to_string(),
            path: path.to_string(),
            ..Default::default()
        });
        if entry.path.is_empty() {
            entry.path = path.to_string();
        }
        let Some(raw) = raw else { return Ok(()) };
        let mut vars = Vars::new();
        if let Some(rv) = &raw.vars {
            for (k, v) in rv {
                let p = format!("{path}.vars.{k}");
                vars.insert(k.clone(), yaml_to_json(&self.file, &self.index, &p, v)?);
            }
        }
        let mut hosts = Vec::new();
        if let Some(rh) = &raw.hosts {
            for (h, hv) in rh {
                let hpath = format!("{path}.hosts.{h}");
                check_name(&self.file, &self.index, &hpath, h, "host")?;
                let slot = host_vars.entry(h.clone()).or_insert_with(|| (Vars::new(), hpath.clone()));
                if let Some(hv) = hv {
                    for (k, v) in hv {
                        let p = format!("{hpath}.{k}");
                        slot.0.insert(k.clone(), yaml_to_json(&self.file, &self.index, &p, v)?);
                    }
                }
                hosts.push(h.clone());
            }
        }
        let mut children = Vec::new();
        if let Some(rc) = &raw.children {
            for (c, cg) in rc {
                children.push(c.clone());
                let cpath = format!("{path}.children.{c}");
                self.add_group(c, cg.as_ref(), &cpath, host_vars)?;
            }
        }
        let g = self.groups.get_mut(name).expect("inserted above");
        for (k, v) in vars {
            g.vars.insert(k, v);
        }
        for h in hosts {
            if !g.hosts.contains(&h) {
                g.hosts.push(h);
            }
        }
        for c in children {
            if !g.children.contains(&c) {
                g.children.push(c);
            }
        }
        Ok(())
    }

    /// Depth of each group below `all` (longest path), and cycle check.
    fn depths(&self) -> Result<HashMap<String, usize>, InputError> {
        let mut depth: HashMap<String, usize> = HashMap::new();
        fn walk(
            inv: &Inventory,
            name: &str,
            d: usize,
            stack: &mut Vec<String>,
            depth: &mut HashMap<String, usize>,
        ) -> Result<(), InputError> {
            if stack.iter().any(|s| s == name) {
                let g = &inv.groups[name];
                return Err(InputError::new(format!("group `{name}` is its own ancestor ({} -> {name})", stack.join(" -> ")))
                    .in_file(&inv.file)
                    .at(inv.index.find(&g.path)));
            }
            let e = depth.entry(name.to_string()).or_insert(d);
            if *e < d {
                *e = d;
            }
            stack.push(name.to_string());
            if let Some(g) = inv.groups.get(name) {
                for c in &g.children {
                    walk(inv, c, d + 1, stack, depth)?;
                }
            }
            stack.pop();
            Ok(())
        }
        walk(self, "all", 0, &mut Vec::new(), &mut depth)?;
        Ok(depth)
    }

    fn compute_hosts(&mut self, host_vars: IndexMap<String, (Vars, String)>) -> Result<(), InputError> {
        let depth = self.depths()?;
        // Parents of each group.
        let mut parents: HashMap<String, Vec<String>> = HashMap::new();
        for g in self.groups.values() {
            for c in &g.children {
                parents.entry(c.clone()).or_default().push(g.name.clone());
            }
        }
        let mut ungrouped = Vec::new();
        for (h, (hvars, hpath)) in host_vars {
            let mut groups = BTreeSet::new();
            groups.insert("all".to_string());
            let mut todo: Vec<String> = self.groups.values().filter(|g| g.hosts.contains(&h)).map(|g| g.name.clone()).collect();
            if todo.iter().all(|g| g == "all" || g == "ungrouped") {
                ungrouped.push(h.clone());
            }
            while let Some(g) = todo.pop() {
                if groups.insert(g.clone()) {
                    if let Some(ps) = parents.get(&g) {
                        todo.extend(ps.iter().cloned());
                    }
                }
            }
            let mut ordered: Vec<&Group> = groups.iter().filter_map(|g| self.groups.get(g)).collect();
            ordered.sort_by_key(|g| {
                let prio = g.vars.get("ansible_group_priority").and_then(|v| v.as_i64()).unwrap_or(1);
                (depth.get(&g.name).copied().unwrap_or(0), prio, g.name.clone())
            });
            let mut vars = Vars::new();
            for g in ordered {
                for (k, v) in &g.vars {
                    vars.insert(k.clone(), v.clone());
                }
            }
            for (k, v) in hvars {
                vars.insert(k, v);
            }
            self.hosts.insert(h.clone(), Host { name: h, groups, vars, resolved: Arc::default(), path: hpath });
        }
        if !ungrouped.is_empty() {
            let g = self.groups.entry("ungrouped".into()).or_insert_with(|| Group { name: "ungrouped".into(), ..Default::default() });
            for h in ungrouped {
                if !g.hosts.contains(&h) {
                    g.hosts.push(h.clone());
                }
                if let Some(host) = self.hosts.get_mut(&h) {
                    host.groups.insert("ungrouped".into());
                }
            }
        }
        Ok(())
    }

    /// Resolve every host's variables once, and check the connection
    /// variables now, so a typo fails before the first connection. Values
    /// are checked after templating (a become password may be
    /// `{{ lookup('env', 'X') }}`).
    fn resolve(&mut self) -> Result<(), InputError> {
        let groups: Map<String, Json> = self
            .groups
            .values()
            .map(|g| (g.name.clone(), Json::Array(self.hosts_of_group(&g.name).into_iter().map(Json::String).collect())))
            .collect();
        let mut layer = Vars::new();
        layer.insert("groups".into(), Json::Object(groups));
        self.groups_layer = Arc::new(layer);
        let templates = Templates::new(vec![]);
        let mut resolved = Vec::with_capacity(self.hosts.len());
        for host in self.hosts.values() {
            let mut vars = host.vars.clone();
            vars.insert("inventory_hostname".into(), Json::String(host.name.clone()));
            vars.insert("inventory_hostname_short".into(), Json::String(host.name.split('.').next().unwrap_or(&host.name).to_string()));
            vars.insert(
                "group_names".into(),
                Json::Array(host.groups.iter().filter(|g| *g != "all" && *g != "ungrouped").map(|g| Json::String(g.clone())).collect()),
            );
            let base = Scope::new(vec![self.groups_layer.as_ref()]);
            let vars = resolve_vars(vars, &base, &templates).map_err(|(k, msg)| self.field_error(host, &k, msg))?;
            resolved.push(Arc::new(vars));
        }
        for (host, vars) in self.hosts.values_mut().zip(resolved) {
            host.resolved = vars;
        }
        for h in self.hosts.values() {
            self.connection(h)?;
        }
        Ok(())
    }

    /// Position of `field` of `host` (where it is set, or the host itself).
    pub fn field_error(&self, host: &Host, field: &str, msg: String) -> InputError {
        // The variable may be set on the host or on one of its groups.
        let mut pos = self.index.find(&format!("{}.{field}", host.path));
        let mut path = format!("{}.{field}", host.path);
        if pos.map(|p| Some(p) == self.index.find(&host.path)).unwrap_or(true) {
            for g in host.groups.iter().filter_map(|g| self.groups.get(g)) {
                if g.vars.contains_key(field) {
                    path = format!("{}.vars.{field}", g.path);
                    pos = self.index.find(&path);
                }
            }
        }
        InputError::new(msg).in_file(&self.file).at(pos).field(path)
    }

    /// Host variables with templates rendered (`{{ lookup('env', ...) }}`,
    /// references to other variables), plus Ansible's magic variables but
    /// `groups` (see [`Inventory::scope`]). Resolved once, at load.
    pub fn host_vars(&self, host: &Host) -> Arc<Vars> {
        host.resolved.clone()
    }

    /// The layer with the `groups` variable, shared by every host.
    pub fn groups_layer(&self) -> &Arc<Vars> {
        &self.groups_layer
    }

    /// Everything a template sees of `host` before plays add their own.
    #[cfg(test)]
    pub fn scope<'a>(&'a self, host: &'a Host) -> Scope<'a> {
        Scope::new(vec![self.groups_layer.as_ref(), host.resolved.as_ref()])
    }

    /// The hosts in `group` and its descendants, in inventory order.
    pub fn hosts_of_group(&self, group: &str) -> Vec<String> {
        self.hosts.values().filter(|h| h.groups.contains(group)).map(|h| h.name.clone()).collect()
    }

    /// How to reach `host`: the `ansible_*` connection variables, checked.
    pub fn connection(&self, host: &Host) -> Result<Connection, InputError> {
        let vars = &host.resolved;
        let s = |k: &str| -> Result<Option<String>, InputError> {
            match vars.get(k) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Ok(Some(s.clone())),
                Some(Json::Number(n)) => Ok(Some(n.to_string())),
                Some(other) => Err(self.field_error(host, k, format!("expected a string, found {other}"))),
            }
        };
        let b = |k: &str| -> Result<Option<bool>, InputError> {
            match vars.get(k) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::Bool(b)) => Ok(Some(*b)),
                Some(Json::String(st)) => parse_bool(st)
                    .map(Some)
                    .ok_or_else(|| self.field_error(host, k, format!("expected a boolean (true/false/yes/no), found `{st}`"))),
                Some(Json::Number(n)) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => Ok(Some(n.as_i64() == Some(1))),
                Some(other) => Err(self.field_error(host, k, format!("expected a boolean, found {other}"))),
            }
        };
        let port = match vars.get("ansible_port").or_else(|| vars.get("ansible_ssh_port")) {
            None | Some(Json::Null) => None,
            Some(v) => {
                let n = match v {
                    Json::Number(n) => n.as_u64(),
                    Json::String(s) => s.trim().parse::<u64>().ok(),
                    _ => None,
                };
                match n {
                    Some(n) if (1..=65535).contains(&n) => Some(n as u16),
                    _ => return Err(self.field_error(host, "ansible_port", format!("expected a port number from 1 to 65535, found {v}"))),
                }
            }
        };
        let key_file = s("ansible_ssh_private_key_file")?.or(s("ansible_private_key_file")?).map(|p| {
            let p = expand_tilde(&p);
            if p.is_relative() {
                self.file.parent().unwrap_or(Path::new(".")).join(p)
            } else {
                p
            }
        });
        if let Some(k) = &key_file {
            if !k.is_file() {
                return Err(self.field_error(host, "ansible_ssh_private_key_file", format!("key file {} does not exist", k.display())));
            }
        }
        let address = s("ansible_host")?.or(s("ansible_ssh_host")?).unwrap_or_else(|| host.name.clone());
        if address.is_empty() || address.contains(char::is_whitespace) {
            return Err(self.field_error(host, "ansible_host", format!("`{address}` is not a host name or address")));
        }
        let user = s("ansible_user")?.or(s("ansible_ssh_user")?);
        if let Some(u) = &user {
            if u.is_empty() || !u.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)) {
                return Err(self.field_error(host, "ansible_user", format!("`{u}` is not a valid user name")));
            }
        }
        let become_user = s("ansible_become_user")?.unwrap_or_else(|| "root".into());
        if !become_user.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) || become_user.is_empty() {
            return Err(self.field_error(host, "ansible_become_user", format!("`{become_user}` is not a valid user name")));
        }
        Ok(Connection {
            address,
            port,
            user,
            key_file,
            r#become: b("ansible_become")?,
            become_user,
            become_password: s("ansible_become_password")?.or(s("ansible_become_pass")?),
            password: s("ansible_password")?.or(s("ansible_ssh_pass")?).or(s("ansible_ssh_password")?),
        })
    }
}

/// How to reach one host.
#[derive(Debug, Clone)]
pub struct Connection {
    pub address: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub key_file: Option<PathBuf>,
    pub r#become: Option<bool>,
    pub become_user: String,
    pub become_password: Option<String>,
    /// SSH login password (`ansible_password`, `ansible_ssh_pass`).
    pub password: Option<String>,
}

fn check_name(file: &Path, index: &PosIndex, path: &str, name: &str, what: &str) -> Result<(), InputError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control() || "'\"$`;&|<>\\".contains(c)) {
        return Err(InputError::new(format!("`{}` is not a valid {what} name", name.escape_debug())).in_file(file).at(index.find(path)));
    }
    Ok(())
}

pub fn expand_tilde(p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(src: &str) -> Inventory {
        Inventory::parse(Path::new("hosts.yml"), src).unwrap()
    }

    #[test]
    fn precedence_follows_ansible() {
        let i = inv(
            "all:\n  vars:\n    x: all\n    y: all\n    z: all\n  children:\n    a:\n      vars:\n        x: a\n        y: a\n      hosts:\n        h1:\n          x: host\n      children:\n        b:\n          vars:\n            y: b\n          hosts:\n            h1:\n",
        );
        let h = &i.hosts["h1"];
        assert_eq!(h.vars["x"], "host");
        assert_eq!(h.vars["y"], "b", "child group beats parent group");
        assert_eq!(h.vars["z"], "all");
        assert!(h.groups.contains("a") && h.groups.contains("b"));
    }

    #[test]
    fn same_depth_groups_merge_by_name() {
        let i = inv("all:\n  children:\n    zeta:\n      vars: {v: zeta}\n      hosts: {h: }\n    alpha:\n      vars: {v: alpha}\n      hosts: {h: }\n");
        assert_eq!(i.hosts["h"].vars["v"], "zeta");
    }

    #[test]
    fn yaml11_booleans_and_ports() {
        let i = inv("all:\n  hosts:\n    h:\n      ansible_become: yes\n      ansible_port: '2222'\n");
        let c = i.connection(&i.hosts["h"]).unwrap();
        assert_eq!(c.r#become, Some(true));
        assert_eq!(c.port, Some(2222));
    }

    #[test]
    fn bad_port_names_line_and_field() {
        let err = Inventory::parse(Path::new("hosts.yml"), "all:\n  hosts:\n    web1:\n      ansible_port: abc\n").unwrap_err();
        let s = err.to_string();
        assert!(s.starts_with("hosts.yml:4:7: `all.hosts.web1.ansible_port`"), "{s}");
    }

    #[test]
    fn malformed_yaml_has_position() {
        let err = Inventory::parse(Path::new("hosts.yml"), "all:\n  hosts:\n    web1: [\n").unwrap_err();
        assert!(err.pos.is_some(), "{err}");
        let err = Inventory::parse(Path::new("hosts.yml"), "all:\n  host:\n    web1:\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `host`"), "{err}");
        assert!(err.pos.is_some());
    }

    #[test]
    fn patterns() {
        let i = inv("all:\n  hosts:\n    web1:\n    web2:\n    db1:\n  children:\n    dbs:\n      hosts: {db1: }\n");
        assert_eq!(i.select("web*").unwrap(), vec!["web1", "web2"]);
        assert_eq!(i.select("all:!dbs").unwrap(), vec!["web1", "web2", "db1"].into_iter().filter(|h| *h != "db1").collect::<Vec<_>>());
        assert_eq!(i.select("dbs,web2").unwrap(), vec!["db1", "web2"]);
        assert_eq!(i.select("all:&dbs").unwrap(), vec!["db1"]);
        let err = i.select("web3").unwrap_err();
        assert!(err.contains("did you mean"), "{err}");
    }

    #[test]
    fn env_reference_in_become_password() {
        std::env::set_var("BOOTSTRAP_TEST_BECOME_PW", "pw1");
        let i = inv("all:\n  hosts:\n    h:\n      ansible_become_password: \"{{ lookup('env', 'BOOTSTRAP_TEST_BECOME_PW') }}\"\n");
        let c = i.connection(&i.hosts["h"]).unwrap();
        assert_eq!(c.become_password.as_deref(), Some("pw1"));
        let err = Inventory::parse(
            Path::new("h.yml"),
            "all:\n  hosts:\n    h:\n      ansible_become_password: \"{{ lookup('env', 'BOOTSTRAP_TEST_NOPE_NOPE') }}\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("BOOTSTRAP_TEST_NOPE_NOPE"), "{err}");
    }

    #[test]
    fn groups_are_one_shared_layer() {
        let i = inv("all:\n  vars:\n    peers: \"{{ groups['web'] | length }}\"\n  children:\n    web:\n      hosts: {w1: , w2: }\n");
        let w1 = &i.hosts["w1"];
        assert_eq!(i.host_vars(w1)["peers"], 2, "a variable may read `groups`");
        assert!(!i.host_vars(w1).contains_key("groups"), "groups is not copied per host");
        assert_eq!(i.scope(w1).get("groups").and_then(|g| g.get("web")), Some(&serde_json::json!(["w1", "w2"])));
    }
}
