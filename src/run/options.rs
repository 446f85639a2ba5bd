//! What the command line asked for, checked: the mode, the sources, the
//! host selection (`--limit`, `--shard`, `--serial`) and the transport
//! settings. No I/O here.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Cli, Command, CommonArgs, InventoryArgs, Output, SourceArgs, TaskSelection};
use crate::config::AnsibleCfg;
use crate::error::InputError;
use crate::playbook::TagFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    /// `apply --check`: plan, change nothing.
    Check,
    /// `check`: as `apply --check`, exit status 3 when a host drifted.
    Drift,
    Ping,
    Facts,
    Verify,
    Unregister,
}

impl Mode {
    /// Plans only, changes nothing.
    pub fn plans_only(self) -> bool {
        matches!(self, Mode::Check | Mode::Drift)
    }

    /// The command's name, for the report.
    pub fn command(self) -> &'static str {
        match self {
            Mode::Apply | Mode::Check => "apply",
            Mode::Drift => "check",
            Mode::Ping => "ping",
            Mode::Facts => "facts",
            Mode::Verify => "verify",
            Mode::Unregister => "unregister",
        }
    }

    /// Whether this mode runs the playbook's plan (and so its guards).
    pub fn plans(self) -> bool {
        matches!(self, Mode::Apply | Mode::Check | Mode::Drift)
    }
}

/// `--serial`: how many hosts per batch of a rolling change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serial {
    Hosts(usize),
    Percent(u8),
}

impl Serial {
    pub fn parse(s: &str) -> Result<Serial, InputError> {
        let bad = || InputError::new(format!("takes a number of hosts or a percentage (like 2 or 25%), not `{s}`")).field("--serial");
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if (1..=100).contains(&n) => Ok(Serial::Percent(n)),
                _ => Err(bad()),
            },
            None => match s.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Serial::Hosts(n)),
                _ => Err(bad()),
            },
        }
    }

    /// Batch size for `total` hosts (at least one).
    pub fn batch(self, total: usize) -> usize {
        match self {
            Serial::Hosts(n) => n,
            Serial::Percent(p) => (total * p as usize / 100).max(1),
        }
    }
}

/// `--shard I/N`: the I-th (1-based) of N stable slices of the hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub fn parse(s: &str) -> Result<Shard, InputError> {
        let bad = || InputError::new(format!("takes I/N with 1 <= I <= N, like 2/4, not `{s}`")).field("--shard");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (i, n) = (i.trim().parse::<u32>().map_err(|_| bad())?, n.trim().parse::<u32>().map_err(|_| bad())?);
        if i == 0 || n == 0 || i > n {
            return Err(bad());
        }
        Ok(Shard { index: i, count: n })
    }

    /// Whether `host` falls in this slice: a hash of its name, so the
    /// slices stay the same whatever the inventory's order or other hosts.
    pub fn contains(self, host: &str) -> bool {
        shard_of(host, self.count) == self.index
    }
}

/// Which of `n` shards (1-based) a host belongs to.
pub fn shard_of(host: &str, n: u32) -> u32 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(host.as_bytes());
    let v = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    v % n.max(1) + 1
}

/// How the report is printed.
#[derive(Debug, Clone, Copy)]
pub struct ReportOptions {
    pub output: Output,
    pub verbose: u8,
    pub quiet: bool,
    pub progress: bool,
}

/// Where hosts and variables come from: the command line over ansible.cfg.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Inventory sources, in order.
    pub inventory: Vec<String>,
    /// `-e` values, in order.
    pub extra_vars: Vec<String>,
    pub vault_password_files: Vec<PathBuf>,
    pub vault_ids: Vec<String>,
    pub ask_vault_pass: bool,
}

impl Sources {
    fn from_args(a: SourceArgs, cfg: &AnsibleCfg) -> Result<Sources, InputError> {
        let mut inventory: Vec<String> = a.inventory.into_iter().chain(a.inventories).collect();
        if inventory.is_empty() {
            inventory = cfg.inventory.clone();
        }
        if inventory.is_empty() {
            return Err(InputError::new("no inventory: give one (`bootstrap apply hosts.yml`, or -i SOURCE, repeatable)")
                .hint("or set `inventory` in ansible.cfg's [defaults], or ANSIBLE_INVENTORY"));
        }
        let mut vault_password_files = a.vault_password_files;
        if vault_password_files.is_empty() && a.vault_ids.is_empty() && !a.ask_vault_pass {
            vault_password_files = cfg.vault_password_files.clone();
        }
        Ok(Sources { inventory, extra_vars: a.extra_vars, vault_password_files, vault_ids: a.vault_ids, ask_vault_pass: a.ask_vault_pass })
    }
}

/// Connection settings that apply where the inventory says nothing.
#[derive(Debug, Clone, Default)]
pub struct ConnDefaults {
    pub user: Option<String>,
    pub private_key: Option<PathBuf>,
    /// `-b` or ansible.cfg `become`.
    pub r#become: Option<bool>,
    pub become_user: Option<String>,
    /// `-K`: ask for the sudo password.
    pub ask_become_pass: bool,
    /// `host_key_checking = False`: accept any host key.
    pub host_key_checking: bool,
}

/// `bootstrap inventory`.
#[derive(Debug, Clone)]
pub enum InventoryView {
    List,
    Host(String),
    Graph(String),
}

/// What `bootstrap inventory` asked for.
#[derive(Debug, Clone)]
pub struct InventoryOptions {
    pub sources: Sources,
    pub view: InventoryView,
    pub playbook_dir: Option<PathBuf>,
}

impl InventoryOptions {
    pub fn from_args(a: InventoryArgs, cfg: &AnsibleCfg) -> Result<InventoryOptions, InputError> {
        let view = match (a.list, a.host, a.graph) {
            (_, Some(h), _) => InventoryView::Host(h),
            (_, _, Some(g)) => InventoryView::Graph(g),
            (true, _, _) => InventoryView::List,
            _ => return Err(InputError::new("say what to show: --list, --host NAME or --graph [GROUP]")),
        };
        Ok(InventoryOptions { sources: Sources::from_args(a.sources, cfg)?, view, playbook_dir: a.playbook_dir })
    }
}

/// The parts of a command line that make its options.
struct Build {
    mode: Mode,
    common: CommonArgs,
    playbook: Option<PathBuf>,
    diff: bool,
    replace: bool,
    serial: Option<Serial>,
}

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    pub sources: Sources,
    pub conn: ConnDefaults,
    pub tags: TagFilter,
    /// `--list-hosts` / `--list-tasks`: print, contact nothing.
    pub list_hosts: bool,
    pub list_tasks: bool,
    /// ansible.cfg's warnings (settings not honoured).
    pub warnings: Vec<String>,
    pub playbook: Option<PathBuf>,
    pub limit: Option<String>,
    pub forks: usize,
    pub diff: bool,
    pub known_hosts: PathBuf,
    pub accept_new_host_keys: bool,
    pub connect_timeout: Duration,
    pub ssh_config: Option<PathBuf>,
    /// Delete same-named stale runners in GitLab before registering.
    pub replace: bool,
    pub shard: Option<Shard>,
    pub serial: Option<Serial>,
    pub report: ReportOptions,
    /// `-k`: ask for the SSH login password before connecting.
    pub ask_pass: bool,
    /// `verify --strict`: a posture warning makes the exit status 3.
    pub strict: bool,
}

impl Options {
    /// The options of a parsed command line over ansible.cfg; bad values
    /// are input errors.
    pub fn from_cli(cli: Cli, cfg: &AnsibleCfg) -> Result<Options, InputError> {
        let none = TaskSelection::default;
        let strict = matches!(&cli.command, Command::Verify(v) if v.strict);
        let (mode, common, playbook, diff, replace, serial, select) = match cli.command {
            Command::Apply(a) => {
                let serial = a.serial.as_deref().map(Serial::parse).transpose()?;
                (if a.check { Mode::Check } else { Mode::Apply }, a.common, a.playbook, a.diff, a.replace, serial, a.select)
            }
            Command::Check(c) => (Mode::Drift, c.common, c.playbook, c.diff, false, None, c.select),
            Command::Verify(v) => (Mode::Verify, v.common, v.playbook, false, false, None, none()),
            Command::Unregister(u) => (Mode::Unregister, u.common, u.playbook, false, false, None, none()),
            Command::Ping(c) => (Mode::Ping, c, None, false, false, None, none()),
            Command::Facts(f) => (Mode::Facts, f.common, f.playbook, false, false, None, none()),
            Command::Inventory(_) => return Err(InputError::new("`inventory` is not a host command (a bug: please report it)")),
            Command::Init(_) | Command::Completions(_) | Command::Man => {
                return Err(InputError::new("this command works on no host (it is handled before any run)"))
            }
        };
        let mut o = Options::build(Build { mode, common, playbook, diff, replace, serial }, cfg)?;
        o.tags = TagFilter { only: select.tags, skip: select.skip_tags };
        o.strict = strict;
        o.list_hosts = select.list_hosts;
        o.list_tasks = select.list_tasks;
        Ok(o)
    }

    fn build(b: Build, cfg: &AnsibleCfg) -> Result<Options, InputError> {
        let Build { mode, common: c, playbook, diff, replace, serial } = b;
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
        let host_key_checking = cfg.host_key_checking.unwrap_or(true);
        let mut warnings = cfg.warnings.clone();
        if !host_key_checking {
            warnings.push(
                "host key checking is off (ansible.cfg host_key_checking = False or ANSIBLE_HOST_KEY_CHECKING): any host key is accepted and none is recorded, so a man-in-the-middle would go unnoticed; turn it back on and use --accept-new-host-keys to record new hosts".into(),
            );
        }
        Ok(Options {
            mode,
            sources: Sources::from_args(c.sources, cfg)?,
            conn: ConnDefaults {
                user: c.user.or_else(|| cfg.remote_user.clone()),
                private_key: c.private_key.or_else(|| cfg.private_key_file.clone()),
                r#become: if c.r#become { Some(true) } else { cfg.r#become },
                become_user: cfg.become_user.clone(),
                ask_become_pass: c.ask_become_pass,
                host_key_checking,
            },
            tags: TagFilter::default(),
            list_hosts: false,
            list_tasks: false,
            warnings,
            playbook,
            limit: c.limit,
            forks: c.forks.or(cfg.forks).unwrap_or(20).max(1) as usize,
            diff,
            known_hosts: c.known_hosts.unwrap_or_else(|| home.join(".ssh/known_hosts")),
            accept_new_host_keys: c.accept_new_host_keys,
            connect_timeout: Duration::from_secs(c.connect_timeout.or(cfg.timeout).unwrap_or(10).max(1)),
            ssh_config: c.ssh_config.or_else(|| cfg.ssh_config.clone()),
            replace,
            shard: c.shard.as_deref().map(Shard::parse).transpose()?,
            serial,
            report: ReportOptions { output: c.output, verbose: c.verbose, quiet: c.quiet, progress: !c.no_progress },
            ask_pass: c.ask_pass,
            strict: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_hosts_exactly_once_and_stably() {
        let hosts: Vec<String> = (0..200).map(|i| format!("runner-{i}")).collect();
        let mut seen = std::collections::HashMap::new();
        for h in &hosts {
            let s = shard_of(h, 4);
            assert!((1..=4).contains(&s));
            *seen.entry(s).or_insert(0) += 1;
            assert_eq!(shard_of(h, 4), s, "stable");
        }
        assert_eq!(seen.values().sum::<i32>(), 200);
        assert!(seen.values().all(|n| *n > 25), "roughly even: {seen:?}");
        assert_eq!(Shard::parse("2/4").unwrap(), Shard { index: 2, count: 4 });
        assert!(Shard::parse("0/4").is_err() && Shard::parse("5/4").is_err() && Shard::parse("x").is_err());
    }

    #[test]
    fn serial_batches() {
        assert_eq!(Serial::parse("2").unwrap().batch(10), 2);
        assert_eq!(Serial::parse("25%").unwrap().batch(10), 2);
        assert_eq!(Serial::parse("1%").unwrap().batch(10), 1);
        assert!(Serial::parse("0").is_err() && Serial::parse("101%").is_err());
    }
}
