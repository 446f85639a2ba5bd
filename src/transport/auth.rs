//! Authentication: which keys are offered, in which order, then a password.
//!
//! The inventory's key file or the ssh config's `IdentityFile`s first, then
//! the keys of ssh-agent, then the default key files of `~/.ssh`. Key files
//! are decrypted before the first connection ([`load_key`]), so a wrong
//! passphrase is bad input, not an unreachable host. When no key got in and
//! the host has a login [`Password`](super::ssh_config::Password) (`ansible_password`, `-k`), SSH
//! password authentication comes last; the password travels only inside
//! the encrypted SSH authentication request, never on a command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client;
use russh::client::AuthResult;
use russh::keys::{self, HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use russh::MethodKind;

use super::error::{describe, SshError};
use super::options::SshOptions;
use super::ssh_config::{Password, Target};

/// Environment variable with the passphrase of encrypted key files.
pub const PASSPHRASE_ENV: &str = "BOOTSTRAP_SSH_KEY_PASSPHRASE";

/// Load and decrypt a key file, for checking before any connection.
pub fn load_key(path: &Path) -> Result<PrivateKey, String> {
    let pass = std::env::var(PASSPHRASE_ENV).ok();
    match keys::load_secret_key(path, pass.as_deref()) {
        Ok(k) => Ok(k),
        Err(keys::Error::KeyIsEncrypted) => {
            Err(format!("key file {} is encrypted: set {PASSPHRASE_ENV} or load the key into ssh-agent", path.display()))
        }
        Err(e) if pass.is_some() => Err(format!("cannot load key file {} (wrong passphrase in {PASSPHRASE_ENV}?): {e}", path.display())),
        Err(e) => Err(format!("cannot load key file {}: {e}", path.display())),
    }
}

pub(super) async fn authenticate<H: client::Handler>(
    handle: &mut client::Handle<H>,
    target: &Target,
    opts: &SshOptions,
) -> Result<(), SshError> {
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
    let tried = if tried.is_empty() { "no key found".to_string() } else { tried.join(", ") };
    // 4. The login password, last.
    if let Some(Password(pw)) = &target.password {
        return match handle.authenticate_password(&user, pw.as_str()).await {
            Ok(AuthResult::Success) => Ok(()),
            Ok(AuthResult::Failure { remaining_methods, .. }) if !remaining_methods.contains(&MethodKind::Password) => {
                let offered: Vec<&str> = remaining_methods.iter().map(<&str>::from).collect();
                Err(SshError::Auth(format!(
                    "{}:{} refuses password authentication (it offers: {}); tried: {tried}\n  help: use a key (ansible_ssh_private_key_file), or allow `PasswordAuthentication yes` in the host's sshd_config",
                    target.address,
                    target.port,
                    if offered.is_empty() { "nothing more".to_string() } else { offered.join(", ") }
                )))
            }
            Ok(AuthResult::Failure { .. }) => Err(SshError::Auth(format!(
                "password authentication as {user}@{} failed: the password was refused (tried first: {tried})\n  help: check ansible_password (or what -k was given) for this host",
                target.address
            ))),
            Err(e) => Err(SshError::Unreachable(format!("connection lost during password authentication: {}", describe(&e)))),
        };
    }
    Err(SshError::Auth(format!(
        "authentication as {user}@{} failed (tried: {tried})\n  help: set ansible_ssh_private_key_file or load a key into ssh-agent (or ansible_password / -k for password login)",
        target.address,
    )))
}

async fn rsa_hash<H: client::Handler>(h: &client::Handle<H>) -> Option<HashAlg> {
    h.best_supported_rsa_hash().await.ok().flatten().flatten()
}
