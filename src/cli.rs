//! The command line (clap derive): what the user typed, nothing more.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "bootstrap",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("BOOTSTRAP_GIT_COMMIT"), ")"),
    about = "Turn bare Debian/Ubuntu hosts into GitLab CI runner hosts over SSH, the way Ansible does it: fast, exact and safe.",
    after_help = "Exit status: 0 all hosts ok, 2 a host failed, 4 a host unreachable (none failed), 5 bad input (nothing contacted), 130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Converge hosts to what the playbook describes (default: the built-in runner playbook).
    #[command(
        after_help = "Examples:\n  bootstrap apply hosts.yml --limit 'runners:!runner-3' --diff\n  bootstrap apply hosts.yml --limit runner-3 --replace      # a host rebuilt under a dead host's name\n  bootstrap apply hosts.yml --serial 25%                    # rolling: a quarter at a time\n  bootstrap apply hosts.yml --playbook playbooks/example.yml"
    )]
    Apply(ApplyArgs),
    /// Find drift: probe and plan, change nothing; exit 3 if a host differs from the playbook.
    #[command(after_help = "Example:\n  bootstrap check hosts.yml --diff    # exit 0: converged, 3: drifted")]
    Check(CheckArgs),
    /// Prove runner hosts work: Docker answers, the runner runs with a valid token, builds hit the cache.
    #[command(after_help = "Example:\n  bootstrap verify hosts.yml --limit runner-3")]
    Verify(PlaybookArgs),
    /// Delete hosts' runners in GitLab, stop their service, remove their token (safe to run twice).
    #[command(after_help = "Example:\n  GITLAB_TOKEN=... bootstrap unregister hosts.yml --limit runner-3")]
    Unregister(PlaybookArgs),
    /// Connect, authenticate and become root on each host, and report.
    #[command(after_help = "Example:\n  bootstrap ping hosts.yml --limit runners")]
    Ping(CommonArgs),
    /// Print what the probe reads on each host, as JSON.
    #[command(after_help = "Example:\n  bootstrap facts hosts.yml --limit runner-1 --playbook playbooks/site.yml")]
    Facts(FactsArgs),
    /// Start from nothing: write a commented inventory, group_vars/all.yml and a .gitignore.
    #[command(
        after_help = "Examples:\n  bootstrap init runners        # runners/hosts.yml, runners/group_vars/all.yml, runners/.gitignore\n  bootstrap init --ini          # hosts.ini (Ansible's INI format) instead of hosts.yml\n\nExisting files are never overwritten (exit 5)."
    )]
    Init(InitArgs),
    /// Print a shell completion script to stdout.
    #[command(
        after_help = "Examples:\n  bootstrap completions bash > ~/.local/share/bash-completion/completions/bootstrap\n  bootstrap completions zsh > ~/.zfunc/_bootstrap\n  bootstrap completions fish > ~/.config/fish/completions/bootstrap.fish"
    )]
    Completions(CompletionsArgs),
    /// Print the manual page (roff) to stdout.
    #[command(after_help = "Example:\n  bootstrap man > ~/.local/share/man/man1/bootstrap.1 && man bootstrap")]
    Man,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The folder to write into (made if missing).
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Write hosts.ini (Ansible's INI inventory format) instead of hosts.yml.
    #[arg(long)]
    pub ini: bool,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The playbook to run.
    #[arg(long, short = 'p', value_name = "FILE")]
    pub playbook: Option<PathBuf>,
    /// Show what would change, change nothing.
    #[arg(long, short = 'C')]
    pub check: bool,
    /// Show unified diffs of the files that change (secrets masked).
    #[arg(long, short = 'D')]
    pub diff: bool,
    /// Delete runners in GitLab that have this host's name and tag but are not its own
    /// (a host rebuilt under a dead host's name), before registering. Needs GITLAB_TOKEN.
    #[arg(long)]
    pub replace: bool,
    /// Rolling change: this many hosts (or percent, like 25%) at a time; stop after a batch
    /// in which a host failed.
    #[arg(long, value_name = "N|N%")]
    pub serial: Option<String>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The playbook to compare with (default: the built-in runner playbook).
    #[arg(long, short = 'p', value_name = "FILE")]
    pub playbook: Option<PathBuf>,
    /// Show unified diffs of the files that drifted (secrets masked).
    #[arg(long, short = 'D')]
    pub diff: bool,
}

#[derive(Args, Debug)]
pub struct PlaybookArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The playbook that describes the runners (default: the built-in runner playbook).
    #[arg(long, short = 'p', value_name = "FILE")]
    pub playbook: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct FactsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Also read the facts this playbook needs.
    #[arg(long, short = 'p', value_name = "FILE")]
    pub playbook: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CommonArgs {
    /// Ansible YAML inventory.
    #[arg(value_name = "INVENTORY")]
    pub inventory: PathBuf,
    /// Only hosts matching this pattern: names, groups, globs; `,` or `:`
    /// separated; `!x` excludes, `&x` intersects.
    #[arg(long, short = 'l', value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Work on a stable slice of the selected hosts: `--shard 2/4` is the second of four,
    /// for N parallel CI jobs (each host falls in exactly one slice, by a hash of its name).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// How many hosts to work on at once.
    #[arg(long, short = 'f', default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub forks: u16,
    /// human: progress and a recap; json: one JSON event per line.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// More detail (-v: every task and round trips per host, -vv: output of commands).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only failures and the recap.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// No progress display (implied when stderr is not a terminal, with -q and with --output json).
    #[arg(long)]
    pub no_progress: bool,
    /// known_hosts file to check host keys against [default: ~/.ssh/known_hosts].
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Record the keys of hosts not yet in known_hosts (a changed key is always refused).
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Seconds to wait for a host's SSH server to answer.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub connect_timeout: u64,
    /// ssh_config file to read [default: ~/.ssh/config if it exists].
    #[arg(long, short = 'F', value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Ask for the SSH login password (read from the terminal without echo, or one line of
    /// stdin when it is not a terminal); tried after keys. Or set ansible_password.
    #[arg(long, short = 'k')]
    pub ask_pass: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Human,
    Json,
}
