//! Ansible inventories: groups, hosts, variables and host patterns, read
//! exactly as ansible-core reads them.
//!
//! Sources ([`sources`]): YAML and JSON ([`yaml`]), INI ([`ini`]), folders
//! of them, host lists, several at once, merged as Ansible merges them;
//! `group_vars/` and `host_vars/` beside each source and beside the
//! playbook; Vault-encrypted files and inline `!vault` values. Variable
//! precedence is Ansible's (`VARIABLE_PRECEDENCE`): the inventory's `all`,
//! then its groups by depth, `ansible_group_priority` and name, then
//! inventory-adjacent `group_vars/all`, playbook-adjacent `group_vars/all`,
//! inventory-adjacent and playbook-adjacent `group_vars/<group>`, the
//! host's inventory variables, `host_vars/<host>` beside the inventory and
//! beside the playbook, and `-e` over everything.
//!
//! Everything is checked here, before any connection, and errors name the
//! file, line and column and the field. Each host's variables are resolved
//! (templates in them rendered) exactly once, at load, and shared from then
//! on; the `groups` magic variable is one layer shared by all hosts.

mod data;
mod hostpattern;
mod ini;
pub mod listing;
mod pattern;
mod pyliteral;
mod sources;
mod vars;
mod yaml;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::{Map, Value as Json};

use crate::error::InputError;
use crate::template::{parse_bool, Scope, Shared, Templates};
use crate::yamlpos::Pos;
use data::Data;
pub use data::Loc;
pub use data::Located;

pub use pattern::closest;

/// The Python-literal reader, for the property tests.
#[cfg(test)]
pub fn pyliteral_for_fuzz(s: &str) -> Option<Json> {
    pyliteral::literal(s)
}
pub use sources::extra_vars;
pub use vars::resolve_vars;

pub use crate::template::Vars;

/// A group as the inventory defines it.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub name: String,
    pub hosts: Vec<String>,
    pub children: Vec<String>,
}

/// A host with its variables merged by Ansible's precedence.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// Every group the host belongs to, `all` included, parents included.
    pub groups: BTreeSet<String>,
    /// The variables as written, merged by precedence (`-e` included).
    pub vars: Vars,
    /// Where each variable's winning value was written.
    locs: IndexMap<String, Loc>,
    /// The variables resolved (templates rendered) plus the magic ones
    /// (`inventory_hostname`, `group_names`), once, at load. Without
    /// `groups`, which is [`Inventory::groups_layer`].
    resolved: Arc<Vars>,
    /// Where the host was first declared.
    loc: Option<Loc>,
}

/// Decrypts Vault values as they are read, and remembers what they were:
/// every decrypted value is a secret, and an inline value's ciphertext is
/// what `bootstrap inventory --list` prints, as Ansible does.
pub struct Unvault<'a> {
    decrypt: &'a dyn Fn(&str) -> Result<String, String>,
    /// Decrypted values, to be masked in every output.
    pub secrets: Vec<String>,
    /// (plain text, vault text) of each inline value.
    pub inline: Vec<(String, String)>,
}

impl<'a> Unvault<'a> {
    pub fn new(decrypt: &'a dyn Fn(&str) -> Result<String, String>) -> Unvault<'a> {
        Unvault { decrypt, secrets: Vec::new(), inline: Vec::new() }
    }

    /// An inline `!vault` value at `pos` of `file`.
    pub fn decrypt(&mut self, cipher: &str, file: &Path, pos: Pos) -> Result<String, InputError> {
        let plain = (self.decrypt)(cipher)
            .map_err(|e| InputError::new(format!("cannot decrypt this vault value: {e}")).in_file(file).at(Some(pos)))?;
        self.secrets.push(plain.clone());
        self.inline.push((plain.clone(), cipher.to_string()));
        Ok(plain)
    }

    /// A file encrypted whole.
    pub fn decrypt_file(&mut self, text: &str, file: &Path) -> Result<String, InputError> {
        (self.decrypt)(text).map_err(|e| InputError::new(format!("cannot decrypt this vault-encrypted file: {e}")).in_file(file))
    }

    /// Every string inside `v` is a secret (it came from an encrypted file).
    pub fn secret_values(&mut self, v: &Json) {
        match v {
            Json::String(s) => self.secrets.push(s.clone()),
            Json::Array(a) => a.iter().for_each(|i| self.secret_values(i)),
            Json::Object(m) => m.values().for_each(|i| self.secret_values(i)),
            _ => {}
        }
    }
}

/// What to read.
pub struct LoadOptions<'a> {
    /// Files, folders or host lists (`h1,h2,`), in order.
    pub sources: Vec<String>,
    /// The playbook's folder, for playbook-adjacent `group_vars/` and
    /// `host_vars/` (none for the built-in playbook).
    pub playbook_dir: Option<PathBuf>,
    /// `-e`: over everything.
    pub extra_vars: Located,
    pub unvault: Unvault<'a>,
}

/// A parsed, validated inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The first source, for messages.
    pub file: PathBuf,
    pub groups: IndexMap<String, Group>,
    pub hosts: IndexMap<String, Host>,
    /// `{"groups": {group: [hosts]}}`, shared by every host's scope.
    groups_layer: Arc<Shared>,
    /// Decrypted vault values (secrets).
    pub secrets: Vec<String>,
    /// (plain, ciphertext) of inline vault values, for listings.
    pub inline_vault: Vec<(String, String)>,
    /// Per host, its variables without `-e` and magic ones, as
    /// `ansible-inventory --list` shows them.
    listed: HashMap<String, Vars>,
    /// `-e`.
    extra: Vars,
}

impl Inventory {
    /// Parse a YAML inventory from its text; `file` is used in messages.
    #[cfg(test)]
    pub fn parse(file: &Path, source: &str) -> Result<Inventory, InputError> {
        let none = |_: &str| -> Result<String, String> { Err("no vault password given".into()) };
        let mut unvault = Unvault::new(&none);
        let f = Arc::new(file.to_path_buf());
        let doc = crate::yaml11::load(source)
            .map_err(|e| InputError::new(e.message).in_file(file).at(Some(e.pos)))?
            .ok_or_else(|| InputError::new("the inventory is empty").in_file(file).hint("start it with `all:` and a `hosts:` mapping"))?;
        let mut d = Data::default();
        yaml::parse(&f, &doc, &mut d, &mut unvault)?;
        d.reconcile();
        Inventory::build(file, d, &[], None, &Located::default(), &mut unvault)
    }

    /// Read every source, their variable files and the playbook's.
    pub fn load(mut opts: LoadOptions) -> Result<Inventory, InputError> {
        let mut d = Data::default();
        let bases = sources::read(&opts.sources, &mut d, &mut opts.unvault)?;
        let first = opts.sources.first().cloned().unwrap_or_default();
        let inv = Inventory::build(Path::new(&first), d, &bases, opts.playbook_dir.as_deref(), &opts.extra_vars, &mut opts.unvault)?;
        Ok(inv)
    }

    fn build(
        file: &Path,
        d: Data,
        bases: &[PathBuf],
        playbook_dir: Option<&Path>,
        extra: &Located,
        unvault: &mut Unvault,
    ) -> Result<Inventory, InputError> {
        d.check_cycles(file)?;
        let depth = depths(&d);
        let mut files = sources::VarFiles::default();
        let play: Vec<PathBuf> = playbook_dir.map(Path::to_path_buf).into_iter().filter(|p| !bases.contains(p)).collect();
        let all_inv = files.get(bases, "group_vars", "all", unvault)?;
        let all_play = files.get(&play, "group_vars", "all", unvault)?;
        let mut hosts = IndexMap::new();
        let mut listed = HashMap::new();
        // inventory_file and inventory_dir, resolved once per source file.
        let mut source_paths: HashMap<PathBuf, (String, String)> = HashMap::new();
        // Each host's groups with their ancestors, from one pass over the
        // groups (a scan of every group per host was quadratic in N).
        let mut member_of: HashMap<&str, BTreeSet<String>> = HashMap::new();
        for (g, gd) in &d.groups {
            if gd.hosts.is_empty() {
                continue;
            }
            let mut with_ancestors = d.ancestors(g);
            with_ancestors.push(g.clone());
            for host in &gd.hosts {
                member_of.entry(host.as_str()).or_default().extend(with_ancestors.iter().cloned());
            }
        }
        for (name, h) in &d.hosts {
            let mut groups: BTreeSet<String> = member_of.remove(name.as_str()).unwrap_or_default();
            groups.insert("all".into());
            let mut sorted: Vec<&String> = groups.iter().filter(|g| *g != "all").collect();
            sorted.sort_by_key(|g| (depth.get(*g).copied().unwrap_or(0), d.groups.get(*g).map(|x| x.priority).unwrap_or(1), (*g).clone()));
            let mut vars = Located::default();
            if let Some(all) = d.groups.get("all") {
                vars.merge(&all.vars);
            }
            for g in &sorted {
                if let Some(gd) = d.groups.get(*g) {
                    vars.merge(&gd.vars);
                }
            }
            vars.merge(&all_inv);
            vars.merge(&all_play);
            for b in bases {
                for g in &sorted {
                    vars.merge(&files.get(std::slice::from_ref(b), "group_vars", g, unvault)?);
                }
            }
            for g in &sorted {
                vars.merge(&files.get(&play, "group_vars", g, unvault)?);
            }
            vars.merge(&h.vars);
            vars.merge(&files.get(bases, "host_vars", name, unvault)?);
            vars.merge(&files.get(&play, "host_vars", name, unvault)?);
            listed.insert(name.clone(), vars.vars.clone());
            vars.merge(extra);
            if let Some(src) = &h.source {
                let (file, dir) = source_paths.entry(src.clone()).or_insert_with(|| {
                    let abs = std::fs::canonicalize(src).unwrap_or_else(|_| src.clone());
                    (abs.display().to_string(), abs.parent().map(|p| p.display().to_string()).unwrap_or_default())
                });
                vars.vars.entry("inventory_file").or_insert_with(|| Json::String(file.clone()));
                vars.vars.entry("inventory_dir").or_insert_with(|| Json::String(dir.clone()));
            }
            hosts.insert(
                name.clone(),
                Host { name: name.clone(), groups, vars: vars.vars, locs: vars.locs, resolved: Arc::default(), loc: h.loc.clone() },
            );
        }
        let groups = d
            .groups
            .iter()
            .map(|(n, g)| (n.clone(), Group { name: n.clone(), hosts: g.hosts.clone(), children: g.children.clone() }))
            .collect();
        let mut inv = Inventory {
            file: file.to_path_buf(),
            groups,
            hosts,
            groups_layer: Arc::default(),
            secrets: std::mem::take(&mut unvault.secrets),
            inline_vault: std::mem::take(&mut unvault.inline),
            listed,
            extra: extra.vars.clone(),
        };
        inv.resolve()?;
        Ok(inv)
    }

    /// `-e`: over everything, play variables included.
    pub fn extra_vars(&self) -> &Vars {
        &self.extra
    }

    /// The variables `ansible-inventory --list` shows for `host`.
    pub fn listed_vars(&self, host: &str) -> Option<&Vars> {
        self.listed.get(host)
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
        self.groups_layer = Arc::new(Shared::new(&layer));
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
            let base = Scope::on(&self.groups_layer);
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

    /// An error about variable `field` of `host`, at the place it was set.
    /// Where `host`'s variable `var` was written, if in the inventory.
    pub fn var_loc<'h>(&self, host: &'h Host, var: &str) -> Option<&'h Loc> {
        host.locs.get(var)
    }

    pub fn field_error(&self, host: &Host, field: &str, msg: String) -> InputError {
        match host.locs.get(field).or(host.loc.as_ref()) {
            Some(l) => l.error(msg),
            None => InputError::new(msg).in_file(&self.file).field(field.to_string()),
        }
    }

    /// Host variables with templates rendered (`{{ lookup('env', ...) }}`,
    /// references to other variables), plus Ansible's magic variables but
    /// `groups` (see [`Inventory::scope`]). Resolved once, at load.
    pub fn host_vars(&self, host: &Host) -> Arc<Vars> {
        host.resolved.clone()
    }

    /// The layer with the `groups` variable, shared by every host.
    pub fn groups_layer(&self) -> &Arc<Shared> {
        &self.groups_layer
    }

    /// Everything a template sees of `host` before plays add their own.
    #[cfg(test)]
    pub fn scope<'a>(&'a self, host: &'a Host) -> Scope<'a> {
        Scope::on(&self.groups_layer).with(&host.resolved)
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
                // Relative to the file that set it.
                let dir = host
                    .locs
                    .get("ansible_ssh_private_key_file")
                    .or(host.locs.get("ansible_private_key_file"))
                    .and_then(|l| l.file.parent().map(Path::to_path_buf));
                dir.unwrap_or_else(|| PathBuf::from(".")).join(p)
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

/// The depth of each group: its longest path from `all`.
fn depths(d: &Data) -> HashMap<String, usize> {
    fn walk(d: &Data, g: &str, n: usize, out: &mut HashMap<String, usize>, guard: usize) {
        if guard > 1000 {
            return;
        }
        let e = out.entry(g.to_string()).or_insert(n);
        if *e < n {
            *e = n;
        }
        if let Some(gd) = d.groups.get(g) {
            for c in &gd.children {
                walk(d, c, n + 1, out, guard + 1);
            }
        }
    }
    let mut out = HashMap::new();
    walk(d, "all", 0, &mut out, 0);
    out
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

/// A group name Ansible accepts and a shell cannot misread.
fn check_group_name(name: &str) -> Result<(), String> {
    check_name(name, "group")
}

fn check_host_name(name: &str) -> Result<(), String> {
    check_name(name, "host")
}

fn check_name(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control() || "'\"$`;&|<>\\".contains(c)) {
        return Err(format!("`{}` is not a valid {what} name", name.escape_debug()));
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
    fn membership_with_ancestors_and_ungrouped() {
        let i = inv(
            "all:\n  hosts:\n    lone:\n    both:\n  children:\n    ungrouped:\n      hosts: {both: , u2: }\n    a:\n      children:\n        b:\n          hosts: {both: , deep: }\n    c:\n      hosts: {deep: }\n",
        );
        let groups = |h: &str| i.hosts[h].groups.iter().cloned().collect::<Vec<_>>();
        assert_eq!(groups("deep"), ["a", "all", "b", "c"], "a listed group and its ancestors");
        assert_eq!(groups("both"), ["a", "all", "b"], "out of ungrouped once in another group");
        assert_eq!(groups("lone"), ["all", "ungrouped"]);
        assert_eq!(i.groups["ungrouped"].hosts, ["u2", "lone"], "listed ones keep their place, the rest follow in order");
    }

    #[test]
    fn groups_are_one_shared_layer() {
        let i = inv("all:\n  vars:\n    peers: \"{{ groups['web'] | length }}\"\n  children:\n    web:\n      hosts: {w1: , w2: }\n");
        let w1 = &i.hosts["w1"];
        assert_eq!(i.host_vars(w1)["peers"], 2, "a variable may read `groups`");
        assert!(!i.host_vars(w1).contains_key("groups"), "groups is not copied per host");
        assert_eq!(i.scope(w1).get("groups").and_then(|g| g.get("web").cloned()), Some(serde_json::json!(["w1", "w2"])));
    }
}
