//! Why a connection or a remote command failed.

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

/// A russh error in one line.
pub(super) fn describe(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => io.to_string(),
        other => other.to_string(),
    }
}
