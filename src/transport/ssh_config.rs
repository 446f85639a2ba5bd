//! Where and as whom to connect: the inventory's values over `~/.ssh/config`.
//!
//! [`resolve`] applies an ssh_config (HostName, User, Port, IdentityFile,
//! ProxyJump) under what the inventory says. [`jump_chain`] turns a
//! ProxyJump list into the hops to dial, in order, following each first
//! hop's own ProxyJump as OpenSSH does; a chain that loops or is deeper
//! than [`MAX_HOPS`] is refused, never bypassed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::InputError;

/// A login password. Its `Debug` is masked, so a `Target` printed for
/// debugging never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub(super) String);

impl Password {
    pub fn new(pw: &str) -> Password {
        Password(pw.to_string())
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::secrets::MASK)
    }
}

/// Jump hosts one connection may pass through.
pub const MAX_HOPS: usize = 8;

/// Where and as whom to connect, after `~/.ssh/config` is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub address: String,
    pub port: u16,
    pub user: String,
    pub key_files: Vec<PathBuf>,
    /// ProxyJump hops as written (`[user@]host[:port]`), first dialled first.
    pub proxy_jump: Vec<String>,
    /// Login password (`ansible_password`, `-k`): tried after the keys.
    pub password: Option<Password>,
}

/// What the inventory says about reaching a host.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted<'a> {
    pub port: Option<u16>,
    pub user: Option<&'a str>,
    pub key_file: Option<&'a Path>,
    pub password: Option<&'a str>,
}

/// Apply `config` to what the inventory says about `alias`. Inventory
/// values win.
pub fn resolve(alias: &str, wanted: Wanted, config: Option<&ssh2_config::SshConfig>) -> Target {
    let params = config.map(|c| c.query(alias));
    let p = params.as_ref();
    let address = p.and_then(|p| p.host_name.clone()).unwrap_or_else(|| alias.to_string());
    let mut key_files: Vec<PathBuf> = wanted.key_file.map(Path::to_path_buf).into_iter().collect();
    if key_files.is_empty() {
        key_files = p.and_then(|p| p.identity_file.clone()).unwrap_or_default();
    }
    let proxy_jump: Vec<String> = p
        .and_then(|p| p.proxy_jump.clone())
        .unwrap_or_default()
        .into_iter()
        .flat_map(|j| j.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>())
        .filter(|j| !j.is_empty())
        .collect();
    // `ProxyJump none` switches jumping off.
    let proxy_jump = if proxy_jump.first().map(|j| j.eq_ignore_ascii_case("none")).unwrap_or(false) { Vec::new() } else { proxy_jump };
    Target {
        address,
        port: wanted.port.or(p.and_then(|p| p.port)).unwrap_or(22),
        user: wanted
            .user
            .map(str::to_string)
            .or(p.and_then(|p| p.user.clone()))
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "root".into()),
        key_files,
        proxy_jump,
        password: wanted.password.map(Password::new),
    }
}

/// `[user@]host[:port]` of a ProxyJump hop, with the config applied to it.
pub fn parse_jump(spec: &str, config: Option<&ssh2_config::SshConfig>) -> Target {
    let spec = spec.strip_prefix("ssh://").unwrap_or(spec);
    let (user, rest) = match spec.split_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, spec),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h, p.parse().ok()),
        _ => (rest, None),
    };
    resolve(host, Wanted { port, user, key_file: None, password: None }, config)
}

/// The hops to dial before `target`, in order. `-J a,b`: a is dialled
/// (through a's own ProxyJump, if its config has one), then b through a,
/// then the target through b.
pub fn jump_chain(target: &Target, config: Option<&ssh2_config::SshConfig>) -> Result<Vec<Target>, String> {
    fn walk(t: &Target, config: Option<&ssh2_config::SshConfig>, seen: &mut Vec<String>, out: &mut Vec<Target>) -> Result<(), String> {
        let Some(first) = t.proxy_jump.first() else { return Ok(()) };
        let mut hops: Vec<Target> = t.proxy_jump.iter().map(|j| parse_jump(j, config)).collect();
        // Only the first hop's own ProxyJump applies (the later ones are
        // reached through the earlier ones, as with `ssh -J`).
        let head = hops.remove(0);
        let key = format!("{}@{}:{}", head.user, head.address, head.port);
        if seen.contains(&key) {
            return Err(format!("ProxyJump loops: {} is reached through itself ({})", first, seen.join(" -> ")));
        }
        seen.push(key);
        walk(&head, config, seen, out)?;
        let mut head = head;
        head.proxy_jump.clear();
        out.push(head);
        for mut h in hops {
            h.proxy_jump.clear();
            out.push(h);
        }
        if out.len() > MAX_HOPS {
            return Err(format!("ProxyJump chain of {} hops is longer than {MAX_HOPS}", out.len()));
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(target, config, &mut Vec::new(), &mut out)?;
    Ok(out)
}

/// Read the ssh config: `path` if given (then it must exist), else
/// `~/.ssh/config` if there is one.
pub fn load(path: Option<&Path>) -> Result<Option<Arc<ssh2_config::SshConfig>>, InputError> {
    let (path, explicit) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => match std::env::var_os("HOME") {
            Some(h) => (PathBuf::from(h).join(".ssh/config"), false),
            None => return Ok(None),
        },
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(InputError::new(format!("cannot read ssh config: {e}")).in_file(&path)),
    };
    let rules = ssh2_config::ParseRule::ALLOW_UNKNOWN_FIELDS | ssh2_config::ParseRule::ALLOW_UNSUPPORTED_FIELDS;
    ssh2_config::SshConfig::default()
        .parse(&mut std::io::BufReader::new(file), rules)
        .map(|c| Some(Arc::new(c)))
        .map_err(|e| InputError::new(format!("cannot parse ssh config: {e}")).in_file(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> ssh2_config::SshConfig {
        ssh2_config::SshConfig::default().parse(&mut text.as_bytes(), ssh2_config::ParseRule::ALLOW_UNKNOWN_FIELDS).unwrap()
    }

    #[test]
    fn ssh_config_applies_under_inventory() {
        let cfg = cfg("Host default\n  HostName 127.0.0.1\n  User vagrant\n  Port 2222\n  IdentityFile /tmp/k\n  ProxyJump bastion\n");
        let t = resolve("default", Wanted::default(), Some(&cfg));
        assert_eq!((t.address.as_str(), t.port, t.user.as_str()), ("127.0.0.1", 2222, "vagrant"));
        assert_eq!(t.key_files, vec![PathBuf::from("/tmp/k")]);
        assert_eq!(t.proxy_jump, vec!["bastion".to_string()]);
        let t = resolve("default", Wanted { port: Some(22), user: Some("root"), key_file: None, password: None }, Some(&cfg));
        assert_eq!((t.port, t.user.as_str()), (22, "root"));
    }

    #[test]
    fn every_hop_of_a_jump_list_is_dialled_in_order() {
        let cfg = cfg("Host target\n  ProxyJump a,ops@b:2201\nHost a\n  HostName 10.9.0.1\n  ProxyJump c\nHost c\n  Port 2022\n");
        let t = resolve("target", Wanted { user: Some("deploy"), ..Default::default() }, Some(&cfg));
        let chain = jump_chain(&t, Some(&cfg)).unwrap();
        let hops: Vec<(String, u16)> = chain.iter().map(|h| (h.address.clone(), h.port)).collect();
        assert_eq!(hops, vec![("c".to_string(), 2022), ("10.9.0.1".to_string(), 22), ("b".to_string(), 2201)]);
        assert_eq!(chain[2].user, "ops");
        assert!(chain.iter().all(|h| h.proxy_jump.is_empty()));
    }

    #[test]
    fn jump_loops_and_deep_chains_are_refused() {
        let cfg1 = cfg("Host t\n  ProxyJump a\nHost a\n  ProxyJump b\nHost b\n  ProxyJump a\n");
        let t = resolve("t", Wanted::default(), Some(&cfg1));
        let e = jump_chain(&t, Some(&cfg1)).unwrap_err();
        assert!(e.contains("loops"), "{e}");
        let deep: String = (0..12).map(|i| format!("Host h{i}\n  ProxyJump h{}\n", i + 1)).collect();
        let cfg2 = cfg(&deep);
        let t = resolve("h0", Wanted::default(), Some(&cfg2));
        let e = jump_chain(&t, Some(&cfg2)).unwrap_err();
        assert!(e.contains("longer than 8"), "{e}");
        let none = cfg("Host t\n  ProxyJump none\n");
        assert!(resolve("t", Wanted::default(), Some(&none)).proxy_jump.is_empty());
    }
}
