//! ansible.cfg, found and read as Ansible finds and reads it.
//!
//! The first of `$ANSIBLE_CONFIG` (a file, or a folder holding
//! ansible.cfg), `./ansible.cfg`, `~/.ansible.cfg`, `/etc/ansible/ansible.cfg`
//! is read (an ansible.cfg in a world-writable current folder is ignored, as
//! Ansible ignores it). The settings bootstrap honours: `[defaults]`
//! `inventory`, `remote_user`, `private_key_file`, `forks`,
//! `vault_password_file`, `host_key_checking`, `timeout`;
//! `[privilege_escalation]` `become`, `become_user`; `[ssh_connection]`
//! `ssh_args` (its `-F FILE`). Each may also come from its `ANSIBLE_*`
//! environment variable, which wins. Unknown settings are ignored; known
//! ones that bootstrap cannot honour are named once, as warnings.

use std::path::{Path, PathBuf};

use crate::error::InputError;
use crate::template::parse_bool;

/// What ansible.cfg (and the environment) set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnsibleCfg {
    /// The file read, if any.
    pub file: Option<PathBuf>,
    pub inventory: Vec<String>,
    pub remote_user: Option<String>,
    pub private_key_file: Option<PathBuf>,
    pub forks: Option<u16>,
    pub r#become: Option<bool>,
    pub become_user: Option<String>,
    pub vault_password_files: Vec<PathBuf>,
    pub host_key_checking: Option<bool>,
    pub timeout: Option<u64>,
    /// `-F FILE` of `[ssh_connection] ssh_args`.
    pub ssh_config: Option<PathBuf>,
    /// Settings that mean something to Ansible but that bootstrap does not
    /// honour, as warnings.
    pub warnings: Vec<String>,
}

/// Settings bootstrap knows Ansible has but does not apply.
const NOT_HONOURED: &[(&str, &str)] = &[
    ("defaults", "roles_path"),
    ("defaults", "strategy"),
    ("defaults", "gathering"),
    ("defaults", "transport"),
    ("defaults", "remote_port"),
    ("defaults", "hash_behaviour"),
    ("privilege_escalation", "become_method"),
    ("ssh_connection", "pipelining"),
    ("ssh_connection", "control_path"),
];

impl AnsibleCfg {
    /// Find and read the configuration; `env` looks up environment variables.
    pub fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<AnsibleCfg, InputError> {
        let file = find(env);
        let mut cfg = match &file {
            Some(f) => {
                let text = crate::error::read_text(f, "ansible.cfg")?;
                parse(f, &text)?
            }
            None => AnsibleCfg::default(),
        };
        cfg.file = file;
        cfg.apply_env(env)?;
        Ok(cfg)
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), InputError> {
        let bad = |k: &str, v: &str, what: &str| InputError::new(format!("environment variable {k}=`{v}` is not {what}"));
        if let Some(v) = env("ANSIBLE_INVENTORY") {
            self.inventory = split_list(&v);
        }
        if let Some(v) = env("ANSIBLE_REMOTE_USER") {
            self.remote_user = Some(v);
        }
        if let Some(v) = env("ANSIBLE_PRIVATE_KEY_FILE") {
            self.private_key_file = Some(expand(&v, None));
        }
        if let Some(v) = env("ANSIBLE_FORKS") {
            self.forks = Some(
                v.trim().parse().ok().filter(|n: &u16| *n > 0).ok_or_else(|| bad("ANSIBLE_FORKS", &v, "a number of hosts, at least 1"))?,
            );
        }
        if let Some(v) = env("ANSIBLE_BECOME") {
            self.r#become = Some(parse_bool(&v).ok_or_else(|| bad("ANSIBLE_BECOME", &v, "a boolean"))?);
        }
        if let Some(v) = env("ANSIBLE_BECOME_USER") {
            self.become_user = Some(v);
        }
        if let Some(v) = env("ANSIBLE_VAULT_PASSWORD_FILE") {
            self.vault_password_files = split_list(&v).iter().map(|p| expand(p, None)).collect();
        }
        if let Some(v) = env("ANSIBLE_HOST_KEY_CHECKING") {
            self.host_key_checking = Some(parse_bool(&v).ok_or_else(|| bad("ANSIBLE_HOST_KEY_CHECKING", &v, "a boolean"))?);
        }
        if let Some(v) = env("ANSIBLE_TIMEOUT") {
            self.timeout = Some(v.trim().parse().map_err(|_| bad("ANSIBLE_TIMEOUT", &v, "a number of seconds"))?);
        }
        Ok(())
    }
}

/// Which ansible.cfg Ansible would read.
fn find(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(p) = env("ANSIBLE_CONFIG").filter(|p| !p.is_empty()) {
        let p = expand(&p, None);
        let p = if p.is_dir() { p.join("ansible.cfg") } else { p };
        if p.exists() {
            return Some(p);
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        let here = cwd.join("ansible.cfg");
        if here.is_file() && !world_writable(&cwd) {
            return Some(here);
        }
    }
    if let Some(home) = env("HOME") {
        let p = PathBuf::from(home).join(".ansible.cfg");
        if p.is_file() {
            return Some(p);
        }
    }
    let etc = PathBuf::from("/etc/ansible/ansible.cfg");
    etc.is_file().then_some(etc)
}

fn world_writable(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(dir).map(|m| m.permissions().mode() & 0o002 != 0).unwrap_or(false)
}

/// `~` and, for paths in the file, relative to its folder.
fn expand(p: &str, base: Option<&Path>) -> PathBuf {
    let p = crate::inventory::expand_tilde(p.trim());
    match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p,
    }
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// Parse the file's text: INI sections, `key = value` or `key: value`,
/// `#` and `;` comment lines, `;` inline comments.
pub fn parse(file: &Path, text: &str) -> Result<AnsibleCfg, InputError> {
    let base = file.parent();
    let mut cfg = AnsibleCfg::default();
    let mut section = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let at = |msg: String| InputError::new(msg).in_file(file).at(Some(crate::yamlpos::Pos { line: i + 1, column: 1 }));
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.trim().to_string();
            continue;
        }
        let Some(idx) = line.find(['=', ':']) else {
            return Err(at(format!("expected `key = value`, found `{line}`")));
        };
        let key = line[..idx].trim().to_string();
        let mut value = line[idx + 1..].trim().to_string();
        if let Some(j) = value.find(" ;") {
            value.truncate(j);
            value = value.trim().to_string();
        }
        let bool_of =
            |v: &str| parse_bool(v).ok_or_else(|| at(format!("`{key}` must be a boolean, found `{v}`")).field(format!("{section}.{key}")));
        match (section.as_str(), key.as_str()) {
            ("defaults", "inventory") | ("defaults", "hostfile") => {
                cfg.inventory = split_list(&value)
                    .iter()
                    .map(|p| if p.contains(',') { p.clone() } else { expand(p, base).display().to_string() })
                    .collect()
            }
            ("defaults", "remote_user") => cfg.remote_user = Some(value),
            ("defaults", "private_key_file") => cfg.private_key_file = Some(expand(&value, base)),
            ("defaults", "forks") => {
                cfg.forks = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| at(format!("`forks` must be a number of hosts, found `{value}`")).field("defaults.forks"))?,
                )
            }
            ("defaults", "vault_password_file") => cfg.vault_password_files = split_list(&value).iter().map(|p| expand(p, base)).collect(),
            ("defaults", "host_key_checking") => cfg.host_key_checking = Some(bool_of(&value)?),
            ("defaults", "timeout") => {
                cfg.timeout = Some(
                    value
                        .parse()
                        .map_err(|_| at(format!("`timeout` must be a number of seconds, found `{value}`")).field("defaults.timeout"))?,
                )
            }
            ("privilege_escalation", "become") => cfg.r#become = Some(bool_of(&value)?),
            ("privilege_escalation", "become_user") => cfg.become_user = Some(value),
            ("ssh_connection", "ssh_args") => {
                let words = shlex::split(&value).unwrap_or_default();
                let mut it = words.iter();
                let mut others = Vec::new();
                while let Some(w) = it.next() {
                    if w == "-F" {
                        cfg.ssh_config = it.next().map(|p| expand(p, base));
                    } else if let Some(p) = w.strip_prefix("-F") {
                        cfg.ssh_config = Some(expand(p, base));
                    } else {
                        others.push(w.clone());
                    }
                }
                if !others.is_empty() {
                    cfg.warnings.push(format!(
                        "ansible.cfg [ssh_connection] ssh_args: only -F is honoured; ignored: {} (put such options in an ssh config file)",
                        others.join(" ")
                    ));
                }
            }
            (s, k) if NOT_HONOURED.contains(&(s, k)) => {
                cfg.warnings.push(format!("ansible.cfg [{s}] {k} is not honoured by bootstrap (line {})", i + 1))
            }
            _ => {}
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_settings_it_honours() {
        let text = "[defaults]\ninventory = inventories/prod, extra.ini\nremote_user=deploy\nforks = 50 ; inline comment\nhost_key_checking = False\nvault_password_file = ~/.vault\nstrategy = free\n[privilege_escalation]\nbecome = yes\n[ssh_connection]\nssh_args = -F ./ssh.cfg -o ControlMaster=auto\n";
        let c = parse(Path::new("/proj/ansible.cfg"), text).unwrap();
        assert_eq!(c.inventory, vec!["/proj/inventories/prod", "/proj/extra.ini"]);
        assert_eq!(c.remote_user.as_deref(), Some("deploy"));
        assert_eq!(c.forks, Some(50));
        assert_eq!(c.host_key_checking, Some(false));
        assert_eq!(c.r#become, Some(true));
        assert_eq!(c.ssh_config, Some(PathBuf::from("/proj/./ssh.cfg")));
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        let e = parse(Path::new("a.cfg"), "[defaults]\nforks = many\n").unwrap_err();
        assert!(e.to_string().contains("a.cfg:2:1"), "{e}");
    }

    #[test]
    fn the_environment_wins() {
        let env = |k: &str| match k {
            "ANSIBLE_FORKS" => Some("7".to_string()),
            "ANSIBLE_HOST_KEY_CHECKING" => Some("false".to_string()),
            _ => None,
        };
        let mut c = AnsibleCfg { forks: Some(50), ..Default::default() };
        c.apply_env(&env).unwrap();
        assert_eq!((c.forks, c.host_key_checking), (Some(7), Some(false)));
        for bad in ["0", "-3", "many"] {
            let env = |k: &str| (k == "ANSIBLE_FORKS").then(|| bad.to_string());
            let e = AnsibleCfg::default().apply_env(&env).unwrap_err();
            assert!(e.to_string().contains("ANSIBLE_FORKS"), "{e}");
        }
        let e = parse(Path::new("a.cfg"), "[defaults]\nforks = 0\n").unwrap_err();
        assert!(e.to_string().contains("defaults.forks") || e.to_string().contains("a.cfg:2:1"), "{e}");
    }
}
