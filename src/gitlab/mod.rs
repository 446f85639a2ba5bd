//! The GitLab side, in one room: the REST client ([`api`]), what a runner
//! is ([`runner`]), its timestamps ([`clock`]), its config.toml modelled ([`config_toml`]), settling a host's runner identity before planning
//! ([`registration`]), tokens created but not yet on a host ([`pending`]),
//! and the GitLab half of `unregister` and `verify` ([`unregister`]).
//!
//! Nothing here touches a host or the reporter: the run hands in what the
//! probe read and takes back typed results.

pub mod api;
pub mod clock;
pub mod config_toml;
pub mod pending;
pub mod registration;
pub mod runner;
pub mod shared;
pub mod unregister;

pub use registration::Secrets;
pub use runner::{RunnerSettings, Settled};
