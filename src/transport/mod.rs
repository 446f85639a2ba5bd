//! The transport: how commands reach a host.
//!
//! One SSH connection per host ([`session`]), checked against known_hosts
//! ([`known_hosts`]), reached as `~/.ssh/config` says ([`ssh_config`]),
//! authenticated with keys ([`auth`]); sudo in one place
//! ([`session::Become`]); and the quoting that keeps every value sent to a
//! host data, never shell syntax ([`shell`]). Nothing above this room opens
//! a socket to a host.

pub mod auth;
pub mod error;
pub mod known_hosts;
pub mod options;
pub mod session;
pub mod shell;
pub mod ssh_config;
mod tcp;

pub use error::SshError;
pub use options::SshOptions;
pub use session::{Become, Session};
pub use ssh_config::Target;
