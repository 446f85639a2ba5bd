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
    #[command(
        after_help = "Examples:\n  bootstrap verify hosts.yml --limit runner-3\n  bootstrap verify hosts.yml --strict    # exit 3 on a security posture warning"
    )]
    Verify(VerifyArgs),
    /// Delete hosts' runners in GitLab, stop their service, remove their token (safe to run twice).
    #[command(after_help = "Example:\n  GITLAB_TOKEN=... bootstrap unregister hosts.yml --limit runner-3")]
    Unregister(PlaybookArgs),
    /// Connect, authenticate and become root on each host, and report.
    #[command(after_help = "Example:\n  bootstrap ping hosts.yml --limit runners")]
    Ping(CommonArgs),
    /// Show the inventory as Ansible reads it: --list, --host NAME or --graph.
    #[command(
        after_help = "Examples:\n  bootstrap inventory -i hosts.ini --list\n  bootstrap inventory -i inventories/prod/ --vault-password-file ~/.vault-pass --host runner-1\n  bootstrap inventory -i hosts.ini --graph runners"
    )]
    Inventory(InventoryArgs),
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
    #[command(flatten)]
    pub select: TaskSelection,
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
    #[command(flatten)]
    pub select: TaskSelection,
}

/// Which tasks run, and listing them instead of running, as ansible-playbook does.
#[derive(Args, Debug, Clone, Default)]
pub struct TaskSelection {
    /// Only tasks (and plays) with one of these tags; `always` tasks still run, `never`
    /// tasks only when named. Comma separated, repeatable.
    #[arg(long, short = 't', value_name = "TAGS", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Skip tasks with one of these tags. Comma separated, repeatable.
    #[arg(long = "skip-tags", value_name = "TAGS", value_delimiter = ',')]
    pub skip_tags: Vec<String>,
    /// List the hosts each play would run on, and stop (nothing is contacted).
    #[arg(long = "list-hosts")]
    pub list_hosts: bool,
    /// List the tasks each play would run, and stop (nothing is contacted).
    #[arg(long = "list-tasks")]
    pub list_tasks: bool,
}

/// `bootstrap inventory`: the inventory as ansible-inventory shows it.
#[derive(Args, Debug)]
pub struct InventoryArgs {
    #[command(flatten)]
    pub sources: SourceArgs,
    /// All groups and hosts with their variables, as JSON (`ansible-inventory --list`).
    #[arg(long, conflicts_with_all = ["host", "graph"])]
    pub list: bool,
    /// One host's variables, as JSON.
    #[arg(long, value_name = "NAME", conflicts_with = "graph")]
    pub host: Option<String>,
    /// The tree of groups and hosts, from GROUP [default: all].
    #[arg(long, value_name = "GROUP", num_args = 0..=1, default_missing_value = "all")]
    pub graph: Option<String>,
    /// The folder whose group_vars/ and host_vars/ count as the playbook's.
    #[arg(long = "playbook-dir", value_name = "DIR")]
    pub playbook_dir: Option<PathBuf>,
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
pub struct VerifyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The playbook that describes the runners (default: the built-in runner playbook).
    #[arg(long, short = 'p', value_name = "FILE")]
    pub playbook: Option<PathBuf>,
    /// Exit 3 when a runner's security posture has a warning (no host failed).
    #[arg(long)]
    pub strict: bool,
}

#[derive(Args, Debug)]
pub struct FactsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Also read the facts this playbook needs.
    #[arg(long, short = 'p', value_name = "FILE")]
    pub playbook: Option<PathBuf>,
}

/// Where hosts and variables come from, as Ansible takes them.
#[derive(Args, Debug, Clone, Default)]
pub struct SourceArgs {
    /// An inventory source (same as -i).
    #[arg(value_name = "INVENTORY")]
    pub inventory: Option<String>,
    /// Inventory source: an INI, YAML or JSON file, a folder of them, or a host list
    /// (`h1,h2,`); repeatable [default: ansible.cfg's `inventory`].
    #[arg(long = "inventory", short = 'i', value_name = "SOURCE")]
    pub inventories: Vec<String>,
    /// Extra variables, over everything: `k=v k2=v2`, JSON or YAML (`{"k": 1}`), or `@file`;
    /// repeatable, later wins.
    #[arg(long = "extra-vars", short = 'e', value_name = "VARS")]
    pub extra_vars: Vec<String>,
    /// A file with the vault password, or an executable that prints it; repeatable.
    #[arg(long = "vault-password-file", value_name = "FILE")]
    pub vault_password_files: Vec<PathBuf>,
    /// A vault id: `label@source` where source is a password file, a script or `prompt`.
    #[arg(long = "vault-id", value_name = "ID")]
    pub vault_ids: Vec<String>,
    /// Ask for the vault password.
    #[arg(long = "ask-vault-pass", visible_alias = "ask-vault-password", short = 'J')]
    pub ask_vault_pass: bool,
}

#[derive(Args, Debug)]
pub struct CommonArgs {
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Connect as this user where the inventory names none [default: ansible.cfg's `remote_user`].
    #[arg(long, short = 'u', value_name = "USER")]
    pub user: Option<String>,
    /// Key file to authenticate with where the inventory names none.
    #[arg(long = "private-key", visible_alias = "key-file", value_name = "FILE")]
    pub private_key: Option<PathBuf>,
    /// Run commands as root (sudo) where the inventory does not say otherwise.
    #[arg(long, short = 'b')]
    pub r#become: bool,
    /// Ask for the sudo password (used where the inventory sets none).
    #[arg(long = "ask-become-pass", short = 'K')]
    pub ask_become_pass: bool,
    /// Only hosts matching this pattern: names, groups, globs; `,` or `:`
    /// separated; `!x` excludes, `&x` intersects.
    #[arg(long, short = 'l', value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Work on a stable slice of the selected hosts: `--shard 2/4` is the second of four,
    /// for N parallel CI jobs (each host falls in exactly one slice, by a hash of its name).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// How many hosts to work on at once [default: ansible.cfg's `forks`, else 20].
    #[arg(long, short = 'f', value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub forks: Option<u16>,
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
    /// Seconds to wait for a host's SSH server to answer [default: ansible.cfg's `timeout`, else 10].
    #[arg(long, alias = "timeout", short = 'T', value_name = "SECS")]
    pub connect_timeout: Option<u64>,
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
