//! bootstrap: turn bare Linux VMs into GitLab CI runner hosts over SSH.
//!
//! This file only wires the command line to the run and maps the outcome
//! to an exit status. The folders are the pipeline, and data flows one way:
//!
//! - [`inventory`]: hosts, groups and variables, read and checked;
//! - [`playbook`]: plays and tasks, checked, compiled per host (with the
//!   [`modules`] of the [`modules::REGISTRY`]);
//! - [`plan`]: facts read by one probe, the local and pure plan, the
//!   typed changes and the one apply script;
//! - [`transport`]: one SSH connection per host, sudo in one place;
//! - [`gitlab`]: the API, runner identity, registration and its recovery;
//! - [`report`]: progress, recap and the JSON event stream;
//!
//! driven per host by [`run`], with [`secrets`] masked everywhere. Beside
//! the pipeline: [`init`] (starter files) and [`manual`] (completions and
//! the man page).

mod cli;
mod config;
mod error;
#[cfg(test)]
mod fuzz;
mod gitlab;
mod init;
mod inventory;
mod manual;
mod modules;
mod plan;
mod playbook;
mod prompt;
mod report;
mod run;
mod secrets;
mod template;
mod transport;
mod vault;
mod yaml11;
mod yamlpos;

use std::process::ExitCode;

use clap::Parser;

use crate::error::exit;

/// mimalloc: a run allocates and frees many small values per host (every
/// host's variables, programs and plans); glibc's malloc spent a third of
/// the time before the first connection at a thousand hosts. It asks for
/// transparent huge pages, which serve compiling; the run turns them off
/// before connecting (`run::small_pages`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A mistake on the command line is bad input (exit 5), like any other;
    // `--help` and `--version` are not mistakes.
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { exit::BAD_INPUT } else { exit::OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // Commands that touch no host need no runtime.
    match &cli.command {
        cli::Command::Init(a) => return ExitCode::from(init::run(&a.dir, a.ini)),
        cli::Command::Completions(a) => return ExitCode::from(manual::completions(a.shell)),
        cli::Command::Man => return ExitCode::from(manual::man()),
        _ => {}
    }
    // One thread drives every connection. The hosts are what a run waits
    // for, and a converged host costs the controller about 2 ms of CPU, so
    // one core serves hundreds of hosts a second. A second worker thread
    // cost more than it gave: it was woken and put back to sleep at nearly
    // every packet, and a run used 14-15% more CPU for the same wall time
    // (100 converged hosts, --forks 50 and 200, alternated). Compiling
    // every host's program before connecting uses every core on threads of
    // its own (`run::prepare`).
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    ExitCode::from(runtime.block_on(run::main(cli)))
}
