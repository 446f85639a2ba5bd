//! The run: inventory -> playbook -> plan -> transport -> report, for every
//! selected host.
//!
//! [`prepare`](prepare::prepare) does everything that needs no host; any
//! mistake stops there, before the first connection (exit 5). [`drive`]
//! then works on the hosts, at most `forks` at a time (in `--serial`
//! batches if asked): each host is connected, probed, planned and changed
//! by [`host::run_host`], whose events reach the reporter in the order they
//! happen. A host that fails, cannot be reached, or even panics does not
//! stop the others, and every selected host ends with a recap line.

mod ctx;
pub mod download;
pub mod execute;
pub mod host;
pub mod options;
pub mod posture;
pub mod prepare;
pub mod unregister;
pub mod verify;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Semaphore};

use crate::cli::{Cli, Command, Output};
use crate::config::AnsibleCfg;
use crate::error::{exit, InputError, InputErrors};
use crate::inventory::listing;
use crate::report::{self, Counts, Event, HostStatus, Reporter};
pub use options::{InventoryOptions, InventoryView, Mode, Options};
use prepare::{HostJob, Prepared};

/// The outcome of a run.
pub struct Summary {
    pub counts: BTreeMap<String, Counts>,
    pub interrupted: bool,
    pub mode: Mode,
    /// `verify --strict`: warnings count (exit 3).
    pub strict: bool,
}

impl Summary {
    pub fn exit_code(&self) -> u8 {
        if self.interrupted {
            exit::INTERRUPTED
        } else if self.counts.values().any(|c| c.failed > 0) {
            exit::FAILED
        } else if self.counts.values().any(|c| c.unreachable > 0) {
            exit::UNREACHABLE
        } else if self.mode == Mode::Drift && self.counts.values().any(|c| c.changed > 0)
            || self.strict && self.counts.values().any(|c| c.warned > 0)
        {
            // Drift, or (`verify --strict`) a posture warning.
            exit::DRIFT
        } else {
            exit::OK
        }
    }
}

/// The whole command: options, preparation, the run, the exit status.
pub async fn main(cli: Cli) -> u8 {
    let bad = |e: &dyn std::fmt::Display| {
        report::error(&format!("{e}\nnothing was contacted."));
        exit::BAD_INPUT
    };
    let cfg = match AnsibleCfg::load(&|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => return bad(&InputErrors::from(e)),
    };
    if let Command::Inventory(args) = cli.command {
        return match InventoryOptions::from_args(args, &cfg).and_then(|o| inventory_command(&o)) {
            Ok(()) => exit::OK,
            Err(e) => bad(&InputErrors::from(e)),
        };
    }
    let opts = match Options::from_cli(cli, &cfg) {
        Ok(o) => o,
        Err(e) => return bad(&InputErrors::from(e)),
    };
    for w in &opts.warnings {
        report::warning(w);
    }
    let prepared = match prepare::prepare(&opts).await {
        Ok(p) => p,
        Err(errors) => return bad(&errors),
    };
    if opts.list_hosts || opts.list_tasks {
        report::print(&listing(&prepared, opts.list_tasks));
        // The process ends now: freeing every host's program piece by piece
        // (a tenth of the time at a thousand hosts) would be wasted work.
        std::mem::forget(prepared);
        return exit::OK;
    }
    small_pages();
    let r = opts.report;
    let mut reporter: Box<dyn Reporter> = match r.output {
        Output::Json => Box::new(report::Json { redactor: prepared.redactor.clone() }),
        Output::Human => Box::new(report::Human::new(prepared.redactor.clone(), r.verbose, r.quiet, r.progress)),
    };
    let mut summary = drive(prepared, reporter.as_mut()).await;
    summary.strict = opts.strict;
    summary.exit_code()
}

/// From here on, new memory comes in 4 KiB pages. Compiling every host's
/// program at once gains from mimalloc's 2 MiB pages (fewer faults); the
/// hosts' connections, each a few small buffers, lose: at a hundred
/// converged hosts, zeroing 2 MiB pages was a tenth of the run's CPU and its
/// peak RSS 38 MiB instead of 24. Pages already in use stay as they are.
fn small_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes only this
    // process's page policy; no memory is passed or touched.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// `bootstrap inventory`: print the inventory as ansible-inventory does.
fn inventory_command(o: &InventoryOptions) -> Result<(), InputError> {
    let (inv, _) = prepare::load_inventory(&o.sources, o.playbook_dir.clone())?;
    let text = match &o.view {
        InventoryView::List => listing::to_text(&listing::list(&inv)),
        InventoryView::Host(h) => match listing::host(&inv, h) {
            Some(v) => listing::to_text(&v),
            None => return Err(InputError::new(format!("no host `{h}` in the inventory")).field("--host")),
        },
        InventoryView::Graph(g) => {
            listing::graph(&inv, g).ok_or_else(|| InputError::new(format!("no group `{g}` in the inventory")).field("--graph"))?
        }
    };
    report::print(&text);
    Ok(())
}

/// `--list-hosts` / `--list-tasks`, as ansible-playbook prints them.
fn listing(p: &Prepared, tasks: bool) -> String {
    let mut out = String::new();
    let hosts: Vec<&str> = p.hosts.iter().map(|h| h.name.as_str()).collect();
    out.push_str(&format!("  hosts ({}):\n", hosts.len()));
    for h in &hosts {
        out.push_str(&format!("    {h}\n"));
    }
    if tasks {
        let mut seen: Vec<&str> = Vec::new();
        out.push_str("  tasks:\n");
        for t in p.hosts.iter().flat_map(|h| h.program.iter().flat_map(|pr| pr.tasks.iter())) {
            let key: &str = &t.location;
            if !seen.contains(&key) {
                seen.push(key);
                let tags = if t.tags.is_empty() { String::new() } else { format!("\tTAGS: [{}]", t.tags.join(", ")) };
                out.push_str(&format!("    {}{tags}\n", t.name));
            }
        }
    }
    out
}

/// Drive every host; send events to `reporter`. With `--serial`, hosts go
/// in batches and the rollout stops after a batch in which a host failed.
pub async fn drive(prepared: Prepared, reporter: &mut dyn Reporter) -> Summary {
    let mode = prepared.mode;
    reporter.event(&Event::Start {
        schema: report::SCHEMA,
        command: mode.command().to_string(),
        hosts: prepared.hosts.iter().map(|h| h.name.clone()).collect(),
        check: mode.plans_only(),
    });
    let interrupted = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    {
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::SeqCst);
                let _ = stop_tx.send(true);
            }
        });
    }
    let shared = Arc::new(host::Shared {
        templates: prepared.templates.clone(),
        base_dir: prepared.base_dir.clone(),
        ssh: prepared.ssh.clone(),
        mode,
        diff: prepared.diff,
        replace: prepared.replace,
        stop: stop_rx,
        downloads: prepared.downloads.clone(),
        files: prepared.files.clone(),
        secrets: prepared.secrets.clone(),
        redactor: prepared.redactor.clone(),
    });
    let names: Vec<String> = prepared.hosts.iter().map(|h| h.name.clone()).collect();
    let batch_size = prepared.serial.map(|s| s.batch(names.len())).unwrap_or(names.len()).max(1);
    let sem = Arc::new(Semaphore::new(prepared.forks));
    let mut jobs = prepared.hosts.into_iter().peekable();
    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    let mut batch_no = 0;
    while jobs.peek().is_some() {
        batch_no += 1;
        let batch: Vec<HostJob> = jobs.by_ref().take(batch_size).collect();
        let batch_names: Vec<String> = batch.iter().map(|j| j.name.clone()).collect();
        let sh = shared.clone();
        let stopped = interrupted.clone();
        let run = move |job: HostJob, tx: mpsc::UnboundedSender<Event>| {
            let sh = sh.clone();
            let stopped = stopped.clone();
            async move {
                if stopped.load(Ordering::SeqCst) {
                    return None;
                }
                Some(host::run_host(job, &sh, &tx).await)
            }
        };
        counts.extend(run_batch(batch, sem.clone(), reporter, run).await);
        let failed = batch_names.iter().any(|n| counts.get(n).map(|c| c.failed > 0 || c.unreachable > 0).unwrap_or(false));
        if failed && jobs.peek().is_some() && prepared.serial.is_some() {
            let rest: Vec<String> = jobs.map(|j| j.name).collect();
            reporter.note(&format!("rollout stopped: a host of batch {batch_no} failed; not started: {}", rest.join(", ")));
            break;
        }
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
    }
    let interrupted = interrupted.load(Ordering::SeqCst);
    if interrupted {
        let skipped: Vec<&str> = names.iter().filter(|n| !counts.contains_key(*n)).map(String::as_str).collect();
        if !skipped.is_empty() {
            reporter.note(&format!("interrupted: {} host(s) not started: {}", skipped.len(), skipped.join(", ")));
        }
    }
    reporter.event(&Event::Recap { hosts: counts.clone() });
    if mode.plans() && counts.values().any(|c| c.ok > 0) {
        for n in &prepared.notices {
            reporter.note(&format!("note: {n}"));
        }
    }
    reporter.finish();
    Summary { counts, interrupted, mode, strict: false }
}

/// Run one batch of hosts, at most `sem`'s permits at a time, passing
/// their events to `reporter` as they come. A host whose task panicked
/// ends as failed, with a `host_end` event and a recap line of its own.
/// `None` from `run`: the host was not started (interrupted).
async fn run_batch<F, Fut>(batch: Vec<HostJob>, sem: Arc<Semaphore>, reporter: &mut dyn Reporter, run: F) -> BTreeMap<String, Counts>
where
    F: Fn(HostJob, mpsc::UnboundedSender<Event>) -> Fut,
    Fut: Future<Output = Option<Counts>> + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let mut set = tokio::task::JoinSet::new();
    let mut names: HashMap<tokio::task::Id, String> = HashMap::new();
    for job in batch {
        let name = job.name.clone();
        let fut = run(job, tx.clone());
        let sem = sem.clone();
        let handle = set.spawn(async move {
            let Ok(_permit) = sem.acquire_owned().await else { return None };
            fut.await
        });
        names.insert(handle.id(), name);
    }
    drop(tx);
    let mut counts = BTreeMap::new();
    let mut panicked: Vec<(String, String)> = Vec::new();
    while !set.is_empty() {
        tokio::select! {
            Some(e) = rx.recv() => reporter.event(&e),
            res = set.join_next_with_id() => match res {
                Some(Ok((id, Some(c)))) => {
                    if let Some(name) = names.remove(&id) {
                        counts.insert(name, c);
                    }
                }
                Some(Ok((id, None))) => {
                    names.remove(&id);
                }
                Some(Err(e)) => {
                    let name = names.remove(&e.id()).unwrap_or_else(|| "(unknown host)".into());
                    let why = if e.is_panic() { "an internal error (a panic) stopped its run" } else { "its run was cancelled" };
                    panicked.push((name, why.to_string()));
                }
                None => {}
            },
        }
    }
    while let Some(e) = rx.recv().await {
        reporter.event(&e);
    }
    for (name, why) in panicked {
        reporter.event(&Event::HostEnd {
            host: name.clone(),
            status: HostStatus::Failed,
            round_trips: 0,
            elapsed_ms: 0,
            msg: Some(format!("{why}; this is a bug in bootstrap: please report it with the output of -vv")),
        });
        counts.insert(name, Counts { failed: 1, ..Counts::default() });
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Become, Target};

    struct Collect(Vec<Event>);

    impl Reporter for Collect {
        fn event(&mut self, e: &Event) {
            self.0.push(e.clone());
        }
        fn note(&mut self, _: &str) {}
    }

    fn job(name: &str) -> HostJob {
        HostJob {
            name: name.into(),
            target: Target { address: name.into(), port: 22, user: "root".into(), key_files: vec![], proxy_jump: vec![], password: None },
            r#become: Become::No,
            program: None,
            verify_base_image: None,
        }
    }

    #[tokio::test]
    async fn a_host_that_panics_is_a_failed_host_with_a_recap_line() {
        let mut rep = Collect(Vec::new());
        let batch = vec![job("good"), job("bad"), job("also-good")];
        let counts = run_batch(batch, Arc::new(Semaphore::new(2)), &mut rep, |job: HostJob, tx: mpsc::UnboundedSender<Event>| async move {
            assert!(job.name != "bad", "simulated bug in a host's run");
            let _ = tx.send(Event::HostEnd { host: job.name.clone(), status: HostStatus::Ok, round_trips: 1, elapsed_ms: 1, msg: None });
            Some(Counts { ok: 1, ..Counts::default() })
        })
        .await;
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert_eq!(counts["bad"].failed, 1);
        assert_eq!(counts["good"].ok, 1);
        let summary = Summary { counts, interrupted: false, mode: Mode::Apply, strict: false };
        assert_eq!(summary.exit_code(), exit::FAILED);
        let ends: Vec<&Event> = rep.0.iter().filter(|e| matches!(e, Event::HostEnd { host, .. } if host == "bad")).collect();
        assert!(
            matches!(ends.as_slice(), [Event::HostEnd { status: HostStatus::Failed, msg: Some(m), .. }] if m.contains("bug")),
            "{ends:?}"
        );
    }
}
