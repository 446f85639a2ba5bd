//! bootstrap: turn bare Linux VMs into GitLab CI runner hosts over SSH.
//!
//! This file only wires the command line to the engine and maps the outcome
//! to an exit status. The data flows one way:
//! inventory + playbook ([`inventory`], [`playbook`], [`modules`]) ->
//! probe and plan ([`probe`], [`plan`], [`changes`]) -> transport ([`ssh`])
//! -> report ([`report`]), driven by [`engine`].

mod changes;
mod cli;
mod engine;
mod error;
mod facts;
mod gitlab;
#[cfg(test)]
mod fuzz;
mod inventory;
mod known_hosts;
mod lifecycle;
mod modules;
mod plan;
mod playbook;
mod probe;
mod registration;
mod report;
mod shell;
mod ssh;
mod template;
mod yamlpos;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::cli::{Cli, Command, CommonArgs, Output};
use crate::engine::{Mode, Options};
use crate::error::exit;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    ExitCode::from(runtime.block_on(run(cli)))
}

async fn run(cli: Cli) -> u8 {
    let mut replace = false;
    let mut serial = None;
    let (mode, common, playbook, diff, name) = match cli.command {
        Command::Apply(a) => {
            replace = a.replace;
            if let Some(s) = &a.serial {
                match engine::Serial::parse(s) {
                    Ok(s) => serial = Some(s),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return exit::BAD_INPUT;
                    }
                }
            }
            (if a.check { Mode::Check } else { Mode::Apply }, a.common, a.playbook, a.diff, "apply")
        }
        Command::Check(c) => (Mode::Drift, c.common, c.playbook, c.diff, "check"),
        Command::Verify(v) => (Mode::Verify, v.common, v.playbook, false, "verify"),
        Command::Unregister(u) => (Mode::Unregister, u.common, u.playbook, false, "unregister"),
        Command::Ping(c) => (Mode::Ping, c, None, false, "ping"),
        Command::Facts(f) => (Mode::Facts, f.common, f.playbook, false, "facts"),
    };
    let mut opts = options(mode, &common, playbook, diff);
    if let Some(s) = &common.shard {
        match engine::parse_shard(s) {
            Ok(v) => opts.shard = Some(v),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::BAD_INPUT;
            }
        }
    }
    opts.replace = replace;
    opts.serial = serial;
    let prepared = match engine::prepare(&opts).await {
        Ok(p) => p,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("nothing was contacted.");
            return exit::BAD_INPUT;
        }
    };
    let mut reporter: Box<dyn report::Reporter> = match common.output {
        Output::Json => Box::new(report::Json { redactor: prepared.redactor.clone() }),
        Output::Human => Box::new(report::Human::new(
            prepared.redactor.clone(),
            common.verbose,
            common.quiet,
            !common.no_progress,
        )),
    };
    let summary = engine::run(prepared, name, reporter.as_mut()).await;
    summary.exit_code()
}

fn options(mode: Mode, c: &CommonArgs, playbook: Option<PathBuf>, diff: bool) -> Options {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    Options {
        mode,
        inventory: c.inventory.clone(),
        playbook,
        limit: c.limit.clone(),
        forks: c.forks as usize,
        diff,
        known_hosts: c.known_hosts.clone().unwrap_or_else(|| home.join(".ssh/known_hosts")),
        accept_new_host_keys: c.accept_new_host_keys,
        connect_timeout: Duration::from_secs(c.connect_timeout.max(1)),
        ssh_config: c.ssh_config.clone(),
        replace: false,
        serial: None,
        shard: None,
    }
}
