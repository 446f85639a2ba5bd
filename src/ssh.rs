//! The transport: one SSH connection per host (russh), channels multiplexed.
//!
//! - Host keys are checked strictly against a known_hosts file. An unknown
//!   key is refused unless `--accept-new-host-keys`; a changed key is always
//!   refused, naming the line to fix. Nothing is sent before that check.
//! - Authentication: the inventory's key file, `IdentityFile`s from
//!   `~/.ssh/config`, keys in ssh-agent, then the default key files.
//! - `~/.ssh/config`: HostName, User, Port, IdentityFile, ProxyJump.
//! - At most [`MAX_CHANNELS`] channels are open at once on a connection,
//!   under OpenSSH's default `MaxSessions` of 10. Every channel is read to
//!   its end and closed.
//! - Privilege escalation (sudo) is done here and only here: [`Become`].
//!   A become password goes on the channel's stdin, never on a command line.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{self, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect};
use tokio::sync::Semaphore;

use crate::known_hosts::{self, Verdict};

/// Channels open at once on one connection (OpenSSH allows 10).
pub const MAX_CHANNELS: usize = 8;

/// Environment variable with the passphrase of encrypted key files.
pub const PASSPHRASE_ENV: &str = "BOOTSTRAP_SSH_KEY_PASSPHRASE";

/// Why a connection or a command failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SshError {
    /// TCP connect failed or timed out, or the connection dropped.
    #[error("{0}")]
    Unreachable(String),
    /// The host key is unknown or changed.
    #[error("{0}")]
    HostKey(String),
    #[error("{0}")]
    Auth(String),
    /// sudo refused.
    #[error("{0}")]
    Become(String),
    #[error("{0}")]
    Protocol(String),
}

impl SshError {
    /// Whether the host counts as unreachable (as Ansible counts it).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SshError::Unreachable(_) | SshError::HostKey(_) | SshError::Auth(_))
    }
}

/// Settings shared by every connection of a run.
#[derive(Clone)]
pub struct SshOptions {
    pub known_hosts: PathBuf,
    pub accept_new_host_keys: bool,
    pub connect_timeout: Duration,
    pub ssh_config: Option<Arc<ssh2_config::SshConfig>>,
    /// Decrypted key files, loaded once before any connection.
    pub keys: Arc<Vec<(PathBuf, Arc<PrivateKey>)>>,
}

/// Where and as whom to connect, after `~/.ssh/config` is applied.
#[derive(Debug, Clone)]
pub struct Target {
    pub address: String,
    pub port: u16,
    pub user: String,
    pub key_files: Vec<PathBuf>,
    pub proxy_jump: Option<String>,
}

/// Apply `~/.ssh/config` to what the inventory says. Inventory values win.
pub fn resolve(
    alias: &str,
    port: Option<u16>,
    user: Option<&str>,
    key_file: Option<&Path>,
    config: Option<&ssh2_config::SshConfig>,
) -> Target {
    let params = config.map(|c| c.query(alias));
    let p = params.as_ref();
    let address = p.and_then(|p| p.host_name.clone()).unwrap_or_else(|| alias.to_string());
    let mut key_files: Vec<PathBuf> = key_file.map(Path::to_path_buf).into_iter().collect();
    if key_files.is_empty() {
        key_files = p.and_then(|p| p.identity_file.clone()).unwrap_or_default();
    }
    Target {
        address,
        port: port.or(p.and_then(|p| p.port)).unwrap_or(22),
        user: user
            .map(str::to_string)
            .or(p.and_then(|p| p.user.clone()))
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "root".into()),
        key_files,
        proxy_jump: p.and_then(|p| p.proxy_jump.clone()).and_then(|j| j.into_iter().next()).filter(|j| j != "none"),
    }
}

/// Load and decrypt a key file, for checking before any connection.
pub fn load_key(path: &Path) -> Result<PrivateKey, String> {
    let pass = std::env::var(PASSPHRASE_ENV).ok();
    match keys::load_secret_key(path, pass.as_deref()) {
        Ok(k) => Ok(k),
        Err(keys::Error::KeyIsEncrypted) => Err(format!(
            "key file {} is encrypted: set {PASSPHRASE_ENV} or load the key into ssh-agent",
            path.display()
        )),
        Err(e) if pass.is_some() => Err(format!(
            "cannot load key file {} (wrong passphrase in {PASSPHRASE_ENV}?): {e}",
            path.display()
        )),
        Err(e) => Err(format!("cannot load key file {}: {e}", path.display())),
    }
}

#[derive(Debug, Clone)]
enum KeyVerdict {
    Unknown { fingerprint: String },
    Changed { line: usize },
    Error(String),
}

struct Client {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
    verdict: Arc<Mutex<Option<KeyVerdict>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let key: &PublicKey = match server {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key,
            _ => {
                self.set(KeyVerdict::Error("the host presented a certificate; host certificates are not supported".into()));
                return Ok(false);
            }
        };
        let openssh = match key.to_openssh() {
            Ok(s) => s,
            Err(e) => {
                self.set(KeyVerdict::Error(format!("cannot encode the host's key: {e}")));
                return Ok(false);
            }
        };
        let mut words = openssh.split_whitespace();
        let (kt, kb) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let text = match std::fs::read_to_string(&self.known_hosts) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                self.set(KeyVerdict::Error(format!("cannot read {}: {e}", self.known_hosts.display())));
                return Ok(false);
            }
        };
        match known_hosts::check(&text, &self.host, self.port, kt, kb) {
            Verdict::Match => Ok(true),
            Verdict::Unknown if self.accept_new => match known_hosts::append(&self.known_hosts, &self.host, self.port, kt, kb) {
                Ok(()) => Ok(true),
                Err(e) => {
                    self.set(KeyVerdict::Error(format!("cannot record the host key in {}: {e}", self.known_hosts.display())));
                    Ok(false)
                }
            },
            Verdict::Unknown => {
                self.set(KeyVerdict::Unknown { fingerprint: key.fingerprint(HashAlg::Sha256).to_string() });
                Ok(false)
            }
            Verdict::Changed { line } => {
                self.set(KeyVerdict::Changed { line });
                Ok(false)
            }
            Verdict::Revoked { line } => {
                self.set(KeyVerdict::Error(format!(
                    "the host key of {} is marked @revoked in {} line {line}; refusing to connect",
                    self.host,
                    self.known_hosts.display()
                )));
                Ok(false)
            }
        }
    }
}

impl Client {
    fn set(&self, v: KeyVerdict) {
        if let Ok(mut g) = self.verdict.lock() {
            *g = Some(v);
        }
    }
}

/// How commands are run on the host: as the login user, or through sudo.
#[derive(Clone)]
pub enum Become {
    No,
    Sudo { user: String, password: Option<String> },
}

/// First line of stdin after a sudo password, so the script starts in the
/// same place whether sudo read the password or not (NOPASSWD rules).
const SENTINEL: &str = "#bootstrap-script-follows";

/// The output of one remote command.
#[derive(Debug, Default)]
pub struct Output {
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// One authenticated connection.
pub struct Session {
    handle: client::Handle<Client>,
    channels: Arc<Semaphore>,
    round_trips: AtomicU32,
    // A ProxyJump connection must live as long as this one.
    _jump: Option<Box<Session>>,
}

impl Session {
    /// Connect, check the host key, authenticate.
    pub async fn connect(target: &Target, opts: &SshOptions) -> Result<Session, SshError> {
        let timeout = opts.connect_timeout;
        match tokio::time::timeout(timeout, Session::connect_inner(target, opts, 0)).await {
            Ok(r) => r,
            Err(_) => Err(SshError::Unreachable(format!(
                "no SSH answer from {}:{} within {}s (connect timeout)",
                target.address,
                target.port,
                timeout.as_secs()
            ))),
        }
    }

    fn connect_inner<'a>(
        target: &'a Target,
        opts: &'a SshOptions,
        depth: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Session, SshError>> + Send + 'a>> {
        Box::pin(async move {
            let config = Arc::new(client::Config {
                keepalive_interval: Some(Duration::from_secs(15)),
                keepalive_max: 3,
                nodelay: true,
                ..Default::default()
            });
            let verdict = Arc::new(Mutex::new(None));
            let handler = Client {
                host: target.address.clone(),
                port: target.port,
                known_hosts: opts.known_hosts.clone(),
                accept_new: opts.accept_new_host_keys,
                verdict: verdict.clone(),
            };
            let (handle, jump) = match &target.proxy_jump {
                Some(j) if depth < 4 => {
                    let jt = parse_jump(j, opts);
                    let jump = Session::connect_inner(&jt, opts, depth + 1).await?;
                    let ch = jump
                        .handle
                        .channel_open_direct_tcpip(target.address.clone(), target.port as u32, "127.0.0.1", 0)
                        .await
                        .map_err(|e| SshError::Unreachable(format!("ProxyJump {j}: cannot reach {}:{}: {e}", target.address, target.port)))?;
                    let h = client::connect_stream(config, ch.into_stream(), handler).await;
                    (h, Some(Box::new(jump)))
                }
                _ => (client::connect(config, (target.address.as_str(), target.port), handler).await, None),
            };
            let mut handle = handle.map_err(|e| {
                let v = verdict.lock().ok().and_then(|g| g.clone());
                match v {
                    Some(KeyVerdict::Unknown { fingerprint }) => SshError::HostKey(format!(
                        "host key of {}:{} is not in {} ({fingerprint}); refusing to connect\n  help: check the fingerprint, then run again with --accept-new-host-keys to record it",
                        target.address, target.port, opts.known_hosts.display()
                    )),
                    Some(KeyVerdict::Changed { line }) => SshError::HostKey(format!(
                        "HOST KEY CHANGED for {}:{}: it does not match {} line {line}; refusing to connect (possible man-in-the-middle)\n  help: if the host was rebuilt, remove that line (ssh-keygen -R {} -f {})",
                        target.address, target.port, opts.known_hosts.display(), known_hosts::host_name(&target.address, target.port), opts.known_hosts.display()
                    )),
                    Some(KeyVerdict::Error(m)) => SshError::HostKey(m),
                    None => SshError::Unreachable(format!("cannot connect to {}:{}: {}", target.address, target.port, describe(&e))),
                }
            })?;
            authenticate(&mut handle, target, opts).await?;
            Ok(Session {
                handle,
                channels: Arc::new(Semaphore::new(MAX_CHANNELS)),
                round_trips: AtomicU32::new(0),
                _jump: jump,
            })
        })
    }

    /// Command round trips made on this connection so far.
    pub fn round_trips(&self) -> u32 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Run `command` with `stdin`, calling `on_stdout` with output as it
    /// arrives. Stdin is written while output is read, so neither side can
    /// block the other.
    pub async fn exec(
        &self,
        command: &str,
        stdin: Vec<u8>,
        mut on_stdout: impl FnMut(&[u8]) + Send,
    ) -> Result<Output, SshError> {
        let _permit = self.channels.acquire().await.map_err(|_| SshError::Protocol("connection closed".into()))?;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| SshError::Unreachable(format!("cannot open a channel: {}", describe(&e))))?;
        let (mut read, write) = channel.split();
        if let Err(e) = write.exec(true, command).await {
            let _ = write.close().await;
            return Err(SshError::Unreachable(format!("cannot run a command: {}", describe(&e))));
        }
        let mut stdin_writer = write.make_writer();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let r = stdin_writer.write_all(&stdin).await;
            // Shutting the writer down sends EOF.
            let _ = stdin_writer.shutdown().await;
            r
        });
        let mut out = Output::default();
        let mut closed = false;
        while let Some(msg) = read.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    on_stdout(&data);
                    out.stdout.extend_from_slice(&data);
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                ChannelMsg::Close => {
                    closed = true;
                    break;
                }
                _ => {}
            }
        }
        let _ = writer.await;
        if !closed {
            let _ = write.close().await;
        }
        if out.status.is_none() {
            return Err(SshError::Unreachable("the connection was lost while a command ran".into()));
        }
        Ok(out)
    }

    /// Run a shell script (fed on stdin to `sh -s`) as the become user.
    pub async fn run_script(
        &self,
        script: &str,
        become_: &Become,
        on_stdout: impl FnMut(&[u8]) + Send,
    ) -> Result<Output, SshError> {
        self.run_as("exec sh -s", script.as_bytes().to_vec(), become_, on_stdout).await
    }

    /// Run the shell command `inner` as the become user with `data` on its
    /// stdin. This is the one place that knows how to use sudo.
    pub async fn run_as(
        &self,
        inner: &str,
        data: Vec<u8>,
        become_: &Become,
        on_stdout: impl FnMut(&[u8]) + Send,
    ) -> Result<Output, SshError> {
        use crate::shell::quote;
        let (command, mut stdin) = match become_ {
            Become::No => (format!("sh -c {}", quote(inner)), Vec::new()),
            Become::Sudo { user, password: None } => (format!("sudo -n -H -u {} -- sh -c {}", quote(user), quote(inner)), Vec::new()),
            Become::Sudo { user, password: Some(pw) } => {
                // The password is the first line of stdin; the sentinel line
                // after it lets the shell start at the same place whether
                // sudo read the password or not (NOPASSWD rules).
                let reader = format!("IFS= read -r l; [ \"$l\" = \"{SENTINEL}\" ] || IFS= read -r l; {inner}");
                let cmd = format!("sudo -k -S -p '' -H -u {} -- sh -c {}", quote(user), quote(&reader));
                let mut s = pw.as_bytes().to_vec();
                s.push(b'\n');
                s.extend_from_slice(SENTINEL.as_bytes());
                s.push(b'\n');
                (cmd, s)
            }
        };
        stdin.extend_from_slice(&data);
        let out = self.exec(&command, stdin, on_stdout).await?;
        if let Become::Sudo { user, .. } = become_ {
            if out.status == Some(1) && out.stdout.is_empty() {
                let err = String::from_utf8_lossy(&out.stderr);
                if err.contains("a password is required") || err.contains("a terminal is required") {
                    return Err(SshError::Become(format!(
                        "sudo to {user} needs a password: set ansible_become_password for this host"
                    )));
                }
                if err.contains("incorrect password") || err.contains("Sorry, try again") {
                    return Err(SshError::Become(format!("sudo to {user} refused the become password")));
                }
                if err.contains("sudo:") {
                    return Err(SshError::Become(format!("sudo to {user} failed: {}", err.trim())));
                }
            }
            if out.status == Some(127) && String::from_utf8_lossy(&out.stderr).contains("sudo: not found") {
                return Err(SshError::Become("become needs sudo, which is not installed on the host".into()));
            }
        }
        Ok(out)
    }

    pub async fn close(self) {
        let _ = self.handle.disconnect(Disconnect::ByApplication, "", "en").await;
    }
}

async fn authenticate(handle: &mut client::Handle<Client>, target: &Target, opts: &SshOptions) -> Result<(), SshError> {
    let user = target.user.clone();
    let mut tried: Vec<String> = Vec::new();
    // 1. Key files named by the inventory or ssh config.
    for path in &target.key_files {
        let key = match opts.keys.iter().find(|(p, _)| p == path) {
            Some((_, k)) => k.clone(),
            None => match load_key(path) {
                Ok(k) => Arc::new(k),
                Err(e) => {
                    tried.push(e);
                    continue;
                }
            },
        };
        let hash = if key.algorithm().is_rsa() { rsa_hash(handle).await } else { None };
        match handle.authenticate_publickey(&user, PrivateKeyWithHashAlg::new(key, hash)).await {
            Ok(r) if r.success() => return Ok(()),
            Ok(_) => tried.push(format!("key {}", path.display())),
            Err(e) => return Err(SshError::Unreachable(format!("connection lost during authentication: {}", describe(&e)))),
        }
    }
    // 2. ssh-agent.
    if let Ok(mut agent) = keys::agent::client::AgentClient::connect_env().await {
        if let Ok(ids) = agent.request_identities().await {
            for id in ids {
                let pk = id.public_key().into_owned();
                let hash = if pk.algorithm().is_rsa() { rsa_hash(handle).await } else { None };
                if let Ok(r) = handle.authenticate_publickey_with(&user, pk, hash, &mut agent).await {
                    if r.success() {
                        return Ok(());
                    }
                }
                tried.push("an ssh-agent key".into());
            }
        }
    }
    // 3. Default key files.
    if target.key_files.is_empty() {
        if let Some(home) = std::env::var_os("HOME") {
            for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                let path = PathBuf::from(&home).join(".ssh").join(name);
                if !path.is_file() {
                    continue;
                }
                let Ok(key) = load_key(&path) else { continue };
                let key = Arc::new(key);
                let hash = if key.algorithm().is_rsa() { rsa_hash(handle).await } else { None };
                if let Ok(r) = handle.authenticate_publickey(&user, PrivateKeyWithHashAlg::new(key, hash)).await {
                    if r.success() {
                        return Ok(());
                    }
                }
                tried.push(format!("key {}", path.display()));
            }
        }
    }
    Err(SshError::Auth(format!(
        "authentication as {user}@{} failed (tried: {})\n  help: set ansible_ssh_private_key_file or load a key into ssh-agent",
        target.address,
        if tried.is_empty() { "no key found".to_string() } else { tried.join(", ") }
    )))
}

/// `[user@]host[:port]` of a ProxyJump, with ssh config applied to it.
fn parse_jump(spec: &str, opts: &SshOptions) -> Target {
    let (user, rest) = match spec.split_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, spec),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h, p.parse().ok()),
        _ => (rest, None),
    };
    resolve(host, port, user, None, opts.ssh_config.as_deref())
}

fn describe(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => io.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_config_applies_under_inventory() {
        let text = "Host default\n  HostName 127.0.0.1\n  User vagrant\n  Port 2222\n  IdentityFile /tmp/k\n  ProxyJump bastion\n";
        let cfg = ssh2_config::SshConfig::default()
            .parse(&mut text.as_bytes(), ssh2_config::ParseRule::ALLOW_UNKNOWN_FIELDS)
            .unwrap();
        let t = resolve("default", None, None, None, Some(&cfg));
        assert_eq!((t.address.as_str(), t.port, t.user.as_str()), ("127.0.0.1", 2222, "vagrant"));
        assert_eq!(t.key_files, vec![PathBuf::from("/tmp/k")]);
        assert_eq!(t.proxy_jump.as_deref(), Some("bastion"));
        let t = resolve("default", Some(22), Some("root"), None, Some(&cfg));
        assert_eq!((t.port, t.user.as_str()), (22, "root"));
    }
}

async fn rsa_hash(h: &client::Handle<Client>) -> Option<HashAlg> {
    h.best_supported_rsa_hash().await.ok().flatten().flatten()
}
