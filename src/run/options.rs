//! What the command line asked for, checked: the mode, the sources, the
//! host selection (`--limit`, `--shard`, `--serial`) and the transport
//! settings. No I/O here.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Cli, Command, CommonArgs, Output};
use crate::error::InputError;

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

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    pub inventory: PathBuf,
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
}

impl Options {
    /// The options of a parsed command line; bad values are input errors.
    pub fn from_cli(cli: Cli) -> Result<Options, InputError> {
        let (mode, common, playbook, diff, replace, serial) = match cli.command {
            Command::Apply(a) => {
                let serial = a.serial.as_deref().map(Serial::parse).transpose()?;
                (if a.check { Mode::Check } else { Mode::Apply }, a.common, a.playbook, a.diff, a.replace, serial)
            }
            Command::Check(c) => (Mode::Drift, c.common, c.playbook, c.diff, false, None),
            Command::Verify(v) => (Mode::Verify, v.common, v.playbook, false, false, None),
            Command::Unregister(u) => (Mode::Unregister, u.common, u.playbook, false, false, None),
            Command::Ping(c) => (Mode::Ping, c, None, false, false, None),
            Command::Facts(f) => (Mode::Facts, f.common, f.playbook, false, false, None),
            Command::Init(_) | Command::Completions(_) | Command::Man => {
                return Err(InputError::new("this command works on no host (it is handled before any run)"))
            }
        };
        Options::build(mode, common, playbook, diff, replace, serial)
    }

    fn build(
        mode: Mode,
        c: CommonArgs,
        playbook: Option<PathBuf>,
        diff: bool,
        replace: bool,
        serial: Option<Serial>,
    ) -> Result<Options, InputError> {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
        Ok(Options {
            mode,
            inventory: c.inventory,
            playbook,
            limit: c.limit,
            forks: (c.forks as usize).max(1),
            diff,
            known_hosts: c.known_hosts.unwrap_or_else(|| home.join(".ssh/known_hosts")),
            accept_new_host_keys: c.accept_new_host_keys,
            connect_timeout: Duration::from_secs(c.connect_timeout.max(1)),
            ssh_config: c.ssh_config,
            replace,
            shard: c.shard.as_deref().map(Shard::parse).transpose()?,
            serial,
            report: ReportOptions { output: c.output, verbose: c.verbose, quiet: c.quiet, progress: !c.no_progress },
            ask_pass: c.ask_pass,
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
