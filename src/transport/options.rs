//! Settings shared by every connection of a run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PrivateKey;

use super::known_hosts::KnownHosts;

/// Settings shared by every connection of a run.
#[derive(Clone)]
pub struct SshOptions {
    /// Read once per run, shared by every connection.
    pub known_hosts: Arc<KnownHosts>,
    pub accept_new_host_keys: bool,
    /// `host_key_checking = False` (ansible.cfg): any key is accepted,
    /// none recorded.
    pub host_key_checking: bool,
    pub connect_timeout: Duration,
    pub ssh_config: Option<Arc<ssh2_config::SshConfig>>,
    /// Decrypted key files, loaded once before any connection.
    pub keys: Arc<Vec<(PathBuf, Arc<PrivateKey>)>>,
}
