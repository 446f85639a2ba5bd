//! The engine: inventory -> plan -> transport -> report, for every host.
//!
//! [`prepare`] does everything that needs no host: it loads and checks the
//! inventory and playbook, compiles each selected host's program, loads key
//! files and the ssh config. Any mistake stops the run there, before the
//! first connection (exit 5). [`run`] then drives the hosts, at most
//! `forks` at a time: connect, probe (one round trip), plan (local), apply
//! the changes (one round trip, only if there are any), and turns what
//! happens into [`Event`]s for the reporter. A host that fails or cannot be
//! reached does not stop the others.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};

use std::collections::HashMap;

use crate::changes::{staged_path, Change};
use crate::modules::gitlab_runner::{read_existing, SYSTEM_ID_PATH};
use crate::lifecycle;
use crate::registration::{self, Secrets};
use crate::error::{exit, InputError, InputErrors};
use crate::facts::FactRequest;
use crate::inventory::Inventory;
use crate::plan::{plan_host, HostPlan, PlanEnv, TaskPlan};
use crate::playbook::{HostProgram, Playbook};
use crate::probe;
use crate::report::{unified_diff, Counts, Event, HostStatus, Redactor, Reporter, TaskStatus};
use crate::ssh::{self, Become, Session, SshOptions, Target};
use crate::template::Templates;

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
}

/// `--serial`: how many hosts per batch of a rolling change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serial {
    Hosts(usize),
    Percent(u8),
}

impl Serial {
    pub fn parse(s: &str) -> Result<Serial, String> {
        let bad = || format!("--serial takes a number of hosts or a percentage (like 2 or 25%), not `{s}`");
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

/// What the command line asked for.
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
    /// `--shard I/N`: (I, N), 1-based.
    pub shard: Option<(u32, u32)>,
    pub serial: Option<Serial>,
}

/// One host, ready to be contacted.
pub struct HostJob {
    pub name: String,
    pub target: Target,
    pub r#become: Become,
    pub program: Option<HostProgram>,
    /// `verify_base_image`: the image `verify` builds from (default: one
    /// made from the host's own shell, no registry needed).
    pub verify_base_image: Option<String>,
}

/// A run, prepared and checked, nothing contacted yet.
pub struct Prepared {
    pub hosts: Vec<HostJob>,
    pub templates: Arc<Templates>,
    pub base_dir: PathBuf,
    pub ssh: SshOptions,
    pub redactor: Redactor,
    pub mode: Mode,
    pub diff: bool,
    pub forks: usize,
    pub replace: bool,
    pub serial: Option<Serial>,
    /// Files downloaded by the controller (`key_url`), by URL.
    pub downloads: Arc<HashMap<String, Vec<u8>>>,
    pub secrets: Secrets,
    /// Notices of the plays that run, printed after the recap.
    pub notices: Vec<String>,
}

/// Load and check everything; contact no host.
pub async fn prepare(opts: &Options) -> Result<Prepared, InputErrors> {
    let inv = Inventory::load(&opts.inventory)?;
    let playbook = match &opts.playbook {
        Some(p) => Some(Playbook::load(p)?),
        None if !matches!(opts.mode, Mode::Ping | Mode::Facts) => Some(Playbook::builtin()?),
        None => None,
    };
    let base_dir = playbook.as_ref().map(|p| p.base_dir.clone()).unwrap_or_else(|| PathBuf::from("."));
    // Templates: beside the playbook, then the project's top-level folder
    // (playbooks/x.yml -> templates/).
    let templates = Arc::new(Templates::new(vec![base_dir.join("templates"), base_dir.join("../templates")]));
    let mut selected: Vec<String> = inv.hosts.keys().cloned().collect();
    if let Some(limit) = &opts.limit {
        let chosen = inv.select(limit).map_err(|e| InputError::new(e).field("--limit"))?;
        selected.retain(|h| chosen.contains(h));
    }
    let play_hosts = match &playbook {
        Some(pb) => Some(pb.play_hosts(&inv)?),
        None => None,
    };
    if let Some(ph) = &play_hosts {
        selected.retain(|h| ph.iter().any(|hosts| hosts.contains(h)));
    }
    if let Some((i, n)) = opts.shard {
        selected.retain(|h| shard_of(h, n) == i);
    }
    if selected.is_empty() {
        if opts.shard.is_some() {
            // A small fleet split many ways: this slice is simply empty.
            selected = Vec::new();
        } else {
            return Err(InputError::new("no host matches the inventory, the plays' `hosts:` and --limit together").into());
        }
    }
    let ssh_config = load_ssh_config(opts.ssh_config.as_deref())?;
    let redactor = Redactor::default();
    let mut errors = Vec::new();
    let mut hosts = Vec::new();
    let mut key_files: BTreeSet<PathBuf> = BTreeSet::new();
    for name in &selected {
        let host = &inv.hosts[name];
        let conn = match inv.connection(host, &templates) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if let Some(pw) = &conn.become_password {
            redactor.add(pw);
        }
        // Variables that look like secrets are masked wherever they appear.
        if let Ok(vars) = inv.host_vars(host, &templates) {
            for (k, v) in &vars {
                let lk = k.to_ascii_lowercase();
                if ["password", "passwd", "token", "secret", "passphrase"].iter().any(|w| lk.contains(w)) {
                    if let Some(s) = v.as_str() {
                        redactor.add(s);
                    }
                }
            }
        }
        let target = ssh::resolve(
            &conn.address,
            conn.port,
            conn.user.as_deref(),
            conn.key_file.as_deref(),
            ssh_config.as_deref(),
        );
        key_files.extend(target.key_files.iter().cloned());
        let program = match (&playbook, &play_hosts) {
            (Some(pb), Some(ph)) => match pb.compile(&inv, name, ph, &templates, conn.r#become, opts.diff) {
                Ok(p) => Some(p),
                Err(InputErrors(mut e)) => {
                    errors.append(&mut e);
                    continue;
                }
            },
            _ => None,
        };
        let wants_become = match &program {
            Some(p) => p.r#become,
            // ping and facts check become whenever it would be used.
            None => conn.r#become.unwrap_or(target.user != "root"),
        };
        let r#become = if wants_become && target.user != conn.become_user {
            Become::Sudo { user: conn.become_user.clone(), password: conn.become_password.clone() }
        } else {
            Become::No
        };
        let verify_base_image = inv
            .host_vars(host, &templates)
            .ok()
            .and_then(|v| v.get("verify_base_image").and_then(|i| i.as_str()).map(str::to_string))
            .filter(|s| !s.is_empty());
        hosts.push(HostJob { name: name.clone(), target, r#become, program, verify_base_image });
    }
    // Key files are decrypted now: a wrong passphrase is bad input.
    let mut keys = Vec::new();
    for k in key_files {
        if !k.exists() {
            errors.push(InputError::new(format!("key file {} does not exist", k.display())).field("IdentityFile"));
            continue;
        }
        match ssh::load_key(&k) {
            Ok(key) => keys.push((k, Arc::new(key))),
            Err(e) => errors.push(InputError::new(e)),
        }
    }
    // Secrets come from the environment only, and must be there before any
    // host is touched.
    let secrets = Secrets::from_env();
    let mut modes: BTreeSet<&'static str> = BTreeSet::new();
    for h in &hosts {
        for r in h.program.iter().flat_map(|p| p.registrations.iter()) {
            modes.insert(r.registration.env_var());
            if opts.mode == Mode::Apply && secrets.get(r.registration).is_none() {
                let what = match r.registration {
                    crate::modules::gitlab_runner::Registration::Api => "a GitLab token with the create_runner scope (runner_registration: api)",
                    crate::modules::gitlab_runner::Registration::Token => "an existing runner token, glrt-... (runner_registration: token)",
                    crate::modules::gitlab_runner::Registration::Legacy => "a runner registration token (runner_registration: legacy)",
                };
                let e = InputError::new(format!("environment variable {} is not set: it must hold {what}", r.registration.env_var()))
                    .hint(format!("export {}=... before running; secrets are read from the environment only", r.registration.env_var()));
                if !errors.iter().any(|x: &InputError| x.message == e.message) {
                    errors.push(e);
                }
            }
        }
    }
    for s in [&secrets.api, &secrets.runner, &secrets.legacy].into_iter().flatten() {
        redactor.add(s);
    }
    if !errors.is_empty() {
        return Err(InputErrors(errors));
    }
    // Files the plan needs from elsewhere (apt keys), fetched once.
    let mut downloads = HashMap::new();
    let urls: BTreeSet<String> = hosts.iter().flat_map(|h| h.program.iter().flat_map(|p| p.downloads.iter().cloned())).collect();
    for url in urls {
        match fetch(&url).await {
            Ok(bytes) => {
                downloads.insert(url, bytes);
            }
            Err(e) => errors.push(InputError::new(format!("cannot download {url}: {e}")).field("key_url")),
        }
    }
    if !errors.is_empty() {
        return Err(InputErrors(errors));
    }
    let mut notices: Vec<String> = Vec::new();
    for n in hosts.iter().flat_map(|h| h.program.iter().flat_map(|p| p.notices.iter())) {
        if !notices.contains(n) {
            notices.push(n.clone());
        }
    }
    if opts.replace && secrets.api.is_none() {
        return Err(InputError::new("--replace needs GITLAB_TOKEN: it lists and deletes runners by name").into());
    }
    Ok(Prepared {
        replace: opts.replace,
        serial: opts.serial,
        downloads: Arc::new(downloads),
        secrets,
        notices,
        hosts,
        templates,
        base_dir,
        ssh: SshOptions {
            known_hosts: opts.known_hosts.clone(),
            accept_new_host_keys: opts.accept_new_host_keys,
            connect_timeout: opts.connect_timeout,
            ssh_config,
            keys: Arc::new(keys),
        },
        redactor,
        mode: opts.mode,
        diff: opts.diff,
        forks: opts.forks.max(1),
    })
}

/// Which of `n` shards (1-based) a host belongs to: a hash of its name, so
/// the slices stay the same whatever the inventory's order or other hosts.
pub fn shard_of(host: &str, n: u32) -> u32 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(host.as_bytes());
    let v = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    v % n.max(1) + 1
}

/// Parse `I/N` (1 <= I <= N).
pub fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("--shard takes I/N with 1 <= I <= N, like 2/4, not `{s}`");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n) = (i.trim().parse::<u32>().map_err(|_| bad())?, n.trim().parse::<u32>().map_err(|_| bad())?);
    if i == 0 || n == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

/// Download a small file (an apt key) on the controller.
async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client.get(url).send().await.map_err(|e| {
        let mut cur: &dyn std::error::Error = &e;
        while let Some(n) = cur.source() {
            cur = n;
        }
        cur.to_string()
    })?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status().as_u16()));
    }
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    if bytes.len() > 1024 * 1024 {
        return Err("larger than 1 MiB; not a key".into());
    }
    Ok(bytes.to_vec())
}

fn load_ssh_config(path: Option<&Path>) -> Result<Option<Arc<ssh2_config::SshConfig>>, InputError> {
    let (path, explicit) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => match std::env::var_os("HOME") {
            Some(h) => (PathBuf::from(h).join(".ssh/config"), false),
            None => return Ok(None),
        },
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(InputError::new(format!("cannot read ssh config: {e}")).in_file(&path)),
    };
    let rules = ssh2_config::ParseRule::ALLOW_UNKNOWN_FIELDS | ssh2_config::ParseRule::ALLOW_UNSUPPORTED_FIELDS;
    ssh2_config::SshConfig::default()
        .parse(&mut std::io::BufReader::new(file), rules)
        .map(|c| Some(Arc::new(c)))
        .map_err(|e| InputError::new(format!("cannot parse ssh config: {e}")).in_file(&path))
}

/// The outcome of a run.
pub struct Summary {
    pub counts: BTreeMap<String, Counts>,
    pub interrupted: bool,
    pub mode: Mode,
}

impl Summary {
    pub fn exit_code(&self) -> u8 {
        if self.interrupted {
            exit::INTERRUPTED
        } else if self.counts.values().any(|c| c.failed > 0) {
            exit::FAILED
        } else if self.counts.values().any(|c| c.unreachable > 0) {
            exit::UNREACHABLE
        } else if self.mode == Mode::Drift && self.counts.values().any(|c| c.changed > 0) {
            exit::DRIFT
        } else {
            exit::OK
        }
    }
}

/// Drive every host; send events to `reporter`. With `--serial`, hosts go
/// in batches and the rollout stops after a batch in which a host failed.
pub async fn run(prepared: Prepared, command: &str, reporter: &mut dyn Reporter) -> Summary {
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    reporter.event(&Event::Start {
        command: command.to_string(),
        hosts: prepared.hosts.iter().map(|h| h.name.clone()).collect(),
        check: prepared.mode.plans_only(),
    });
    let interrupted = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    {
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::SeqCst);
                let _ = stop_tx.send(true);
            }
        });
    }
    let shared = Arc::new(Shared {
        templates: prepared.templates.clone(),
        base_dir: prepared.base_dir.clone(),
        ssh: prepared.ssh.clone(),
        mode: prepared.mode,
        diff: prepared.diff,
        replace: prepared.replace,
        stop: stop_rx,
        downloads: prepared.downloads.clone(),
        secrets: prepared.secrets.clone(),
        redactor: prepared.redactor.clone(),
    });
    let notices = prepared.notices.clone();
    let mode = prepared.mode;
    let sem = Arc::new(Semaphore::new(prepared.forks));
    let names: Vec<String> = prepared.hosts.iter().map(|h| h.name.clone()).collect();
    let total = prepared.hosts.len();
    let batch_size = prepared.serial.map(|s| s.batch(total)).unwrap_or(total).max(1);
    let mut jobs = prepared.hosts.into_iter().peekable();
    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    let mut stopped = false;
    let mut batch_no = 0;
    while jobs.peek().is_some() {
        batch_no += 1;
        let batch: Vec<HostJob> = jobs.by_ref().take(batch_size).collect();
        let batch_names: Vec<String> = batch.iter().map(|j| j.name.clone()).collect();
        let mut set = tokio::task::JoinSet::new();
        for job in batch {
            let sem = sem.clone();
            let tx = tx.clone();
            let shared = shared.clone();
            let interrupted = interrupted.clone();
            set.spawn(async move {
                let Ok(_permit) = sem.acquire_owned().await else { return (job.name, Counts::default(), false) };
                if interrupted.load(Ordering::SeqCst) {
                    return (job.name, Counts::default(), false);
                }
                let name = job.name.clone();
                let counts = run_host(job, &shared, &tx).await;
                (name, counts, true)
            });
        }
        while !set.is_empty() {
            tokio::select! {
                Some(e) = rx.recv() => reporter.event(&e),
                res = set.join_next() => {
                    if let Some(Ok((name, c, true))) = res {
                        counts.insert(name, c);
                    }
                }
            }
        }
        while let Ok(e) = rx.try_recv() {
            reporter.event(&e);
        }
        let failed = batch_names.iter().any(|n| counts.get(n).map(|c| c.failed > 0 || c.unreachable > 0).unwrap_or(false));
        if failed && jobs.peek().is_some() && prepared.serial.is_some() {
            let rest: Vec<String> = jobs.map(|j| j.name).collect();
            reporter.note(&format!(
                "rollout stopped: a host of batch {batch_no} failed; not started: {}",
                rest.join(", ")
            ));
            stopped = true;
            break;
        }
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
    }
    drop(tx);
    while let Some(e) = rx.recv().await {
        reporter.event(&e);
    }
    let interrupted = interrupted.load(Ordering::SeqCst);
    if interrupted {
        let skipped: Vec<&String> = names.iter().filter(|n| !counts.contains_key(*n)).collect();
        if !skipped.is_empty() {
            reporter.note(&format!(
                "interrupted: {} host(s) not started: {}",
                skipped.len(),
                skipped.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    reporter.event(&Event::Recap { hosts: counts.clone() });
    if matches!(mode, Mode::Apply | Mode::Check | Mode::Drift) && counts.values().any(|c| c.ok > 0) {
        for n in &notices {
            reporter.note(&format!("note: {n}"));
        }
    }
    reporter.finish();
    let _ = stopped;
    Summary { counts, interrupted, mode }
}

struct Shared {
    templates: Arc<Templates>,
    base_dir: PathBuf,
    ssh: SshOptions,
    mode: Mode,
    diff: bool,
    replace: bool,
    /// Turns true on Ctrl-C.
    stop: tokio::sync::watch::Receiver<bool>,
    downloads: Arc<HashMap<String, Vec<u8>>>,
    secrets: Secrets,
    redactor: Redactor,
}

fn nonce() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    format!("{:016x}", h.finish())
}

async fn run_host(job: HostJob, sh: &Shared, tx: &mpsc::UnboundedSender<Event>) -> Counts {
    let start = Instant::now();
    let host = job.name.clone();
    let mut counts = Counts::default();
    let send = |e: Event| {
        let _ = tx.send(e);
    };
    send(Event::HostStart { host: host.clone() });
    let end = |status: HostStatus, rt: u32, msg: Option<String>| Event::HostEnd {
        host: host.clone(),
        status,
        round_trips: rt,
        elapsed_ms: start.elapsed().as_millis() as u64,
        msg,
    };
    let session = match Session::connect(&job.target, &sh.ssh).await {
        Ok(s) => s,
        Err(e) => {
            // A dead host can still be unregistered: by name, in GitLab.
            if let (Mode::Unregister, Some(reg)) = (sh.mode, job.program.as_ref().and_then(|p| p.registrations.first())) {
                if sh.secrets.api.is_some() {
                    let (c, failed, _) = lifecycle::unregister_gone(reg, &sh.secrets, &host, tx).await;
                    counts = c;
                    let status = if failed {
                        counts.failed = 1;
                        HostStatus::Failed
                    } else {
                        HostStatus::Ok
                    };
                    send(end(status, 0, Some(format!("host unreachable ({e}); the runner was handled in GitLab by name"))));
                    return counts;
                }
            }
            counts.unreachable = 1;
            send(end(HostStatus::Unreachable, 0, Some(e.to_string())));
            return counts;
        }
    };
    send(Event::Connected { host: host.clone(), ms: start.elapsed().as_millis() as u64 });

    if sh.mode == Mode::Ping {
        let r = session.run_script("id -un\n", &job.r#become, |_| {}).await;
        let (status, msg) = match r {
            Ok(o) if o.status == Some(0) => {
                counts.ok = 1;
                (HostStatus::Ok, Some(format!("pong: connected as {}, commands run as {}", job.target.user, String::from_utf8_lossy(&o.stdout).trim())))
            }
            Ok(o) => {
                counts.failed = 1;
                (HostStatus::Failed, Some(String::from_utf8_lossy(&o.stderr).trim().to_string()))
            }
            Err(e) => {
                if e.is_unreachable() {
                    counts.unreachable = 1;
                    (HostStatus::Unreachable, Some(e.to_string()))
                } else {
                    counts.failed = 1;
                    (HostStatus::Failed, Some(e.to_string()))
                }
            }
        };
        let rt = session.round_trips();
        session.close().await;
        send(end(status, rt, msg));
        return counts;
    }

    // The probe: one round trip.
    let mut requests: BTreeSet<FactRequest> = job.program.as_ref().map(|p| p.probes.clone()).unwrap_or_default();
    if sh.mode == Mode::Facts {
        requests.insert(FactRequest::AptCache);
    }
    let n = nonce();
    let script = probe::script(&n, &requests);
    let facts = match session.run_script(&script, &job.r#become, |_| {}).await {
        Ok(o) => match probe::parse(&n, &requests, &String::from_utf8_lossy(&o.stdout)) {
            Ok(f) => f,
            Err(e) => {
                counts.failed = 1;
                let stderr = String::from_utf8_lossy(&o.stderr);
                send(end(HostStatus::Failed, session.round_trips(), Some(format!("reading facts failed: {e}: {}", stderr.trim()))));
                session.close().await;
                return counts;
            }
        },
        Err(e) => {
            let st = if e.is_unreachable() {
                counts.unreachable = 1;
                HostStatus::Unreachable
            } else {
                counts.failed = 1;
                HostStatus::Failed
            };
            send(end(st, session.round_trips(), Some(e.to_string())));
            session.close().await;
            return counts;
        }
    };
    if sh.mode == Mode::Facts {
        send(Event::Facts { host: host.clone(), facts: serde_json::to_value(&facts).unwrap_or_default() });
        counts.ok = 1;
        let rt = session.round_trips();
        session.close().await;
        send(end(HostStatus::Ok, rt, None));
        return counts;
    }
    let Some(program) = &job.program else {
        session.close().await;
        return counts;
    };
    if !facts.os.systemd || !(facts.os.id == "debian" || facts.os.id == "ubuntu") {
        counts.failed = 1;
        let what = if facts.os.pretty_name.is_empty() { facts.os.id.clone() } else { facts.os.pretty_name.clone() };
        let msg = if !facts.os.systemd {
            format!("unsupported host: {what} does not run systemd; nothing was changed")
        } else {
            format!("unsupported host: {what}; bootstrap manages Debian and Ubuntu hosts; nothing was changed")
        };
        send(end(HostStatus::Failed, session.round_trips(), Some(msg)));
        session.close().await;
        return counts;
    }

    if sh.mode == Mode::Verify || sh.mode == Mode::Unregister {
        let reg = program.registrations.first();
        let (c, failed, lost) = match (sh.mode, reg) {
            (Mode::Verify, _) => {
                match lifecycle::verify(&session, &job.r#become, &facts, reg, job.verify_base_image.as_deref(), &nonce(), &host, &sh.redactor, tx).await {
                    Ok((c, failed)) => (c, failed, None),
                    Err(e) => (Counts::default(), true, e.is_unreachable().then(|| e.to_string())),
                }
            }
            (_, Some(reg)) => {
                let ex = lifecycle::unregister(&session, &job.r#become, &facts, reg, &sh.secrets, &sh.redactor, &host, tx).await;
                (ex.counts, ex.failed, ex.lost)
            }
            (_, None) => (Counts::default(), true, None),
        };
        counts = c;
        let rt = session.round_trips();
        session.close().await;
        let status = counts.finish(lost.is_some(), failed);
        let msg = lost.or_else(|| (reg.is_none() && sh.mode == Mode::Unregister).then(|| "the playbook registers no runner: nothing to unregister".to_string()));
        send(end(status, rt, msg));
        return counts;
    }
    let check = sh.mode.plans_only();
    let env = PlanEnv { templates: &sh.templates, base_dir: &sh.base_dir, downloads: &sh.downloads };
    // The runner's registration: controller <-> GitLab, before planning;
    // but not for a host the plan already refuses (unsupported system, a
    // failed assertion): GitLab gets no runner for a host that is not
    // going to run one.
    let mut extra = serde_json::Map::new();
    let mut pending = Vec::new();
    let refused = !program.registrations.is_empty()
        && plan_host(program, &facts, &crate::modules::gitlab_runner::placeholder_vars(), &env)
            .tasks
            .iter()
            .any(|t| matches!(t.plan, TaskPlan::Failed(_)));
    for reg in program.registrations.iter().filter(|_| !refused) {
        let content = |p: &str| facts.path(p).and_then(|s| s.content.clone()).map(|c| String::from_utf8_lossy(&c).into_owned());
        let existing = content(&reg.config).map(|t| read_existing(&t, &reg.url)).unwrap_or_default();
        let system_id = content(SYSTEM_ID_PATH).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        match registration::settle(reg, &existing, system_id.as_deref(), &host, check, sh.replace, &sh.secrets, &sh.redactor).await {
            Ok(o) => {
                for w in o.warnings {
                    send(Event::Warning { host: host.clone(), msg: w });
                }
                extra.extend(o.vars);
                pending.extend(o.pending);
            }
            Err(e) => {
                counts.failed = 1;
                send(end(HostStatus::Failed, session.round_trips(), Some(format!("runner registration: {e}; nothing was changed"))));
                session.close().await;
                return counts;
            }
        }
    }
    // The plan: local and pure.
    if refused {
        extra = crate::modules::gitlab_runner::placeholder_vars();
    }
    let plan = plan_host(program, &facts, &extra, &env);
    if !check && *sh.stop.borrow() && plan.has_changes() {
        // Ctrl-C came while this host was being read: start nothing new.
        send(Event::Warning { host: host.clone(), msg: "interrupted before applying: nothing was changed".into() });
        let rt = session.round_trips();
        session.close().await;
        send(end(HostStatus::Ok, rt, None));
        return counts;
    }
    let ex = execute(&session, &job.r#become, &plan, check, sh.diff, &host, tx, Some(sh.stop.clone())).await;
    let mut counts = ex.counts;
    if !ex.failed && !check {
        // The host holds the runner's token now.
        for p in &pending {
            registration::forget(p);
        }
    }
    let rt = session.round_trips();
    session.close().await;
    let status = counts.finish(ex.lost.is_some(), ex.failed);
    send(end(status, rt, ex.lost));
    counts
}

/// What executing a plan on a host did.
pub(crate) struct Executed {
    pub counts: Counts,
    pub failed: bool,
    /// The connection was lost (the host counts as unreachable).
    pub lost: Option<String>,
}

/// Run a plan's changes on a host (unless `check`) and report every task,
/// in order: large files first on channels of their own, then the one
/// apply script, its markers turned into task events as they arrive.
pub(crate) async fn execute(
    session: &Session,
    become_: &Become,
    plan: &HostPlan,
    check: bool,
    diff: bool,
    host: &str,
    tx: &mpsc::UnboundedSender<Event>,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
) -> Executed {
    let mut emitter = Emitter { host, plan, tx, check, diff, next: 0, counts: Counts::default(), failed: false, interrupted: false };
    let mut lost: Option<String> = None;
    if plan.has_changes() && !check {
        let staged: Vec<(String, Arc<Vec<u8>>)> = plan
            .changes()
            .flat_map(|(_, _, cs)| cs.iter())
            .filter_map(|c| match c {
                Change::WriteFile { path, content, .. } => staged_path(path, content).map(|s| (s, content.clone())),
                _ => None,
            })
            .collect();
        for (path, content) in staged {
            let cmd = format!("umask 077; cat > {}", crate::shell::quote(&path));
            match session.run_as(&cmd, content.to_vec(), become_, |_| {}).await {
                Ok(o) if o.status == Some(0) => {}
                Ok(o) => {
                    emitter.fail_current(None, format!("uploading {path} failed: {}", String::from_utf8_lossy(&o.stderr).trim()));
                    break;
                }
                Err(e) => {
                    if e.is_unreachable() {
                        lost = Some(e.to_string());
                    }
                    emitter.fail_current(None, format!("uploading {path} failed: {e}"));
                    break;
                }
            }
        }
    }
    if plan.has_changes() && !check && !emitter.failed {
        let n = nonce();
        let script = plan.script(&n);
        let pid = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut streamer = Streamer::new(&n, &mut emitter, pid.clone());
        let run = session.run_script(&script, become_, |chunk| streamer.feed(chunk));
        // On Ctrl-C, tell the script (on a channel of its own) to stop after
        // its current step; it then reports `interrupted` and ends.
        let watch = async {
            let Some(mut stop) = stop else { return std::future::pending::<()>().await };
            let _ = stop.wait_for(|v| *v).await;
            for _ in 0..100 {
                let p = pid.load(Ordering::SeqCst);
                if p > 0 {
                    let _ = session.run_as(&format!("kill -INT {p}"), Vec::new(), become_, |_| {}).await;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            std::future::pending::<()>().await
        };
        let result = tokio::select! {
            r = run => r,
            _ = watch => unreachable!("the watcher never ends"),
        };
        streamer.flush_partial();
        let current = streamer.current;
        let done = streamer.done;
        match result {
            Ok(o) if !done && !streamer.emitter.failed => {
                let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
                let msg = if err.is_empty() { "the apply script stopped early".to_string() } else { err };
                streamer.emitter.fail_current(current, msg);
            }
            Ok(_) => {}
            Err(e) => {
                let msg = match current {
                    Some(i) => format!("{e} (during task `{}`)", plan.tasks[i].name),
                    None => e.to_string(),
                };
                if e.is_unreachable() {
                    lost = Some(msg.clone());
                }
                streamer.emitter.fail_current(current, msg);
            }
        }
    }
    if emitter.interrupted {
        let left = plan.tasks.len() - emitter.next;
        let _ = tx.send(Event::Warning {
            host: host.to_string(),
            msg: format!("interrupted: stopped after its current step; {left} task(s) not run (apply again to finish)"),
        });
    } else if !emitter.failed {
        emitter.emit_until(plan.tasks.len());
    }
    Executed { counts: emitter.counts, failed: emitter.failed, lost }
}

/// Emits task events in task order, whether a task was executed on the
/// host (streamed) or needed nothing (known from the plan).
struct Emitter<'a> {
    host: &'a str,
    plan: &'a HostPlan,
    tx: &'a mpsc::UnboundedSender<Event>,
    check: bool,
    diff: bool,
    /// First task not reported yet.
    next: usize,
    counts: Counts,
    failed: bool,
    /// Stopped after a step on Ctrl-C: later tasks were not started.
    interrupted: bool,
}

impl Emitter<'_> {
    fn send(&self, e: Event) {
        let _ = self.tx.send(e);
    }

    fn start(&self, i: usize) {
        self.send(Event::TaskStart { host: self.host.to_string(), task: i, name: self.plan.tasks[i].name.clone() });
    }

    fn end(&mut self, i: usize, status: TaskStatus, duration_ms: u64, msg: Option<String>, output: Option<String>) {
        let t = &self.plan.tasks[i];
        let (changes, diff) = match &t.plan {
            TaskPlan::Changes(c) => {
                let diff = if self.diff {
                    let d: Vec<String> = c
                        .iter()
                        .filter_map(|ch| match ch {
                            Change::WriteFile { path, content, old, .. } => {
                                Some(unified_diff(path, old.as_ref().and_then(|o| o.content.as_deref()), content))
                            }
                            _ => None,
                        })
                        .collect();
                    (!d.is_empty()).then(|| d.join(""))
                } else {
                    None
                };
                (c.iter().map(Change::describe).collect(), diff)
            }
            _ => (Vec::new(), None),
        };
        self.failed |= self.counts.record(status);
        self.send(Event::TaskEnd {
            host: self.host.to_string(),
            task: i,
            name: t.name.clone(),
            handler: t.handler,
            status,
            duration_ms,
            changes,
            msg,
            output,
            diff,
        });
        self.next = i + 1;
    }

    /// Report the tasks before `until` that the host did not run: ok,
    /// skipped, failed in planning, or (in check mode) would change.
    fn emit_until(&mut self, until: usize) {
        while self.next < until && !self.failed {
            let i = self.next;
            self.start(i);
            let (status, msg) = match &self.plan.tasks[i].plan {
                TaskPlan::Skipped => (TaskStatus::Skipped, None),
                TaskPlan::Ok => (TaskStatus::Ok, None),
                TaskPlan::Changes(_) if self.check => (TaskStatus::Changed, None),
                TaskPlan::Changes(_) => (TaskStatus::Failed, Some("not run: the apply script never reached it".to_string())),
                TaskPlan::Failed(m) => (TaskStatus::Failed, Some(format!("{m}\n  at {}", self.plan.tasks[i].location))),
            };
            self.end(i, status, 0, msg, None);
        }
    }

    /// A task the host ran (`rc` its exit status).
    fn executed(&mut self, i: usize, rc: i32, duration_ms: u64, output: Option<String>) {
        if rc == 0 {
            self.end(i, TaskStatus::Changed, duration_ms, None, output);
        } else {
            let msg = format!("a command failed (exit status {rc}; task at {})", self.plan.tasks[i].location);
            self.end(i, TaskStatus::Failed, duration_ms, Some(msg), output);
        }
    }

    /// The run stopped while task `current` (or the next one) was due.
    fn fail_current(&mut self, current: Option<usize>, msg: String) {
        let i = match current {
            Some(i) => i,
            None => {
                // Find the next task that had changes to run.
                let mut j = self.next;
                while j < self.plan.tasks.len() && !matches!(self.plan.tasks[j].plan, TaskPlan::Changes(_)) {
                    j += 1;
                }
                if j >= self.plan.tasks.len() {
                    self.failed = true;
                    return;
                }
                self.emit_until(j);
                self.start(j);
                j
            }
        };
        self.end(i, TaskStatus::Failed, 0, Some(msg), None);
    }
}

/// Follows the apply script's output: markers become task events, the
/// lines between them are the task's output.
struct Streamer<'a, 'b> {
    marker: String,
    emitter: &'b mut Emitter<'a>,
    /// The remote script's process id, once it said it.
    pid: Arc<std::sync::atomic::AtomicU32>,
    buf: Vec<u8>,
    current: Option<usize>,
    started: Option<Instant>,
    output: String,
    done: bool,
}

impl<'a, 'b> Streamer<'a, 'b> {
    fn new(nonce: &str, emitter: &'b mut Emitter<'a>, pid: Arc<std::sync::atomic::AtomicU32>) -> Streamer<'a, 'b> {
        Streamer {
            marker: format!("@@{nonce} "),
            emitter,
            pid,
            buf: Vec::new(),
            current: None,
            started: None,
            output: String::new(),
            done: false,
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            self.line(&line);
        }
    }

    fn flush_partial(&mut self) {
        if !self.buf.is_empty() {
            let line = String::from_utf8_lossy(&self.buf).into_owned();
            self.buf.clear();
            self.line(&line);
        }
    }

    fn line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix(&self.marker) else {
            if self.current.is_some() {
                self.output.push_str(line);
                self.output.push('\n');
            }
            return;
        };
        let words: Vec<&str> = rest.split(' ').collect();
        match words.as_slice() {
            ["start", i] => {
                if let Ok(i) = i.parse::<usize>() {
                    if i >= self.emitter.plan.tasks.len() {
                        return;
                    }
                    self.emitter.emit_until(i);
                    self.current = Some(i);
                    self.started = Some(Instant::now());
                    self.output.clear();
                    self.emitter.start(i);
                }
            }
            ["end", i, rc] => {
                if let (Ok(i), Ok(rc)) = (i.parse::<usize>(), rc.parse::<i32>()) {
                    if self.current != Some(i) {
                        return;
                    }
                    let ms = self.started.map(|s| s.elapsed().as_millis() as u64).unwrap_or(0);
                    let out = self.output.trim().to_string();
                    let out = (!out.is_empty()).then_some(out);
                    self.emitter.executed(i, rc, ms, out);
                    self.current = None;
                }
            }
            ["pid", p] => {
                if let Ok(p) = p.parse::<u32>() {
                    self.pid.store(p, Ordering::SeqCst);
                }
            }
            ["done"] => self.done = true,
            ["interrupted"] => {
                self.done = true;
                self.emitter.interrupted = true;
            }
            _ => {}
        }
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
        assert_eq!(parse_shard("2/4").unwrap(), (2, 4));
        assert!(parse_shard("0/4").is_err() && parse_shard("5/4").is_err() && parse_shard("x").is_err());
    }

    #[test]
    fn serial_batches() {
        assert_eq!(Serial::parse("2").unwrap().batch(10), 2);
        assert_eq!(Serial::parse("25%").unwrap().batch(10), 2);
        assert_eq!(Serial::parse("1%").unwrap().batch(10), 1);
        assert!(Serial::parse("0").is_err() && Serial::parse("101%").is_err());
    }
}
