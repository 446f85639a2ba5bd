//! The one integration test binary (as ripgrep does it): the real
//! `bootstrap` binary against real test hosts (`hosts`) and against bad
//! input (`cli`). Host tests need root: they boot systemd-nspawn hosts
//! through `tests/hosts/testhost` (see tests/hosts/README.md).

mod support;

mod ansible;
mod cli;
mod engine;
mod faults;
mod hosts;
mod lifecycle;
mod runner;
mod secrets;
