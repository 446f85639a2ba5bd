//! The one integration test binary (as ripgrep does it): the real
//! `bootstrap` binary against real test hosts (`hosts`), against bad
//! input (`cli`), and what users meet around the engine (`usage`). Host
//! tests need root: they boot systemd-nspawn hosts through `tests/hosts/testhost` (see tests/hosts/README.md).

mod support;

mod ansible;
mod cli;
mod engine;
mod faults;
mod hosts;
mod lifecycle;
mod private_ca;
mod registration;
mod releases;
mod runner;
mod runners;
mod secrets;
mod usage;
mod verify;
