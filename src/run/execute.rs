//! Executing a plan on a host, and turning what the host says into task
//! events, in task order.
//!
//! Large files go first, each on a channel of its own; then the one apply
//! script ([`HostPlan::script`]); its markers ([`Marker`]) become task
//! events as they arrive. Tasks the host did not need to run (ok, skipped,
//! would change in check mode) are reported from the plan, in their place.
//! Ctrl-C tells the remote script, on a second channel, to stop after its
//! current step.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::ctx::HostCtx;
use crate::plan::changes::staged_path;
use crate::plan::script::{parse_marker, Marker};
use crate::plan::{Change, HostPlan, TaskPlan};
use crate::report::{unified_diff, Counts, Event, TaskStatus};
use crate::transport::shell::quote;

/// How to execute.
#[derive(Clone)]
pub struct ExecOptions {
    /// Change nothing: report what would change.
    pub check: bool,
    /// Attach diffs of changed files.
    pub diff: bool,
    /// Turns true on Ctrl-C.
    pub stop: Option<watch::Receiver<bool>>,
}

/// What executing a plan on a host did.
pub struct Executed {
    pub counts: Counts,
    pub failed: bool,
    /// The connection was lost (the host counts as unreachable).
    pub lost: Option<String>,
    /// A failure that belongs to no task (the host's end message).
    pub msg: Option<String>,
    /// The first task that failed: every task before it ran.
    pub first_failed: Option<usize>,
}

/// A random word per run, so no output of a host can forge a marker.
pub fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    format!("{:016x}", h.finish())
}

/// Run a plan's changes on a host (unless `check`) and report every task.
pub async fn execute(ctx: &HostCtx<'_>, plan: &HostPlan, opts: ExecOptions) -> Executed {
    let mut emitter = Emitter::new(ctx, plan, opts.check, opts.diff);
    let mut lost: Option<String> = None;
    let run = plan.has_changes() && !opts.check;
    if run {
        lost = upload_staged(ctx, plan, &mut emitter).await;
    }
    if run && !emitter.failed {
        lost = run_script(ctx, plan, &mut emitter, opts.stop).await;
    }
    if emitter.interrupted {
        let left = plan.tasks.len() - emitter.next;
        ctx.send(Event::Warning {
            host: ctx.name.to_string(),
            msg: format!("interrupted: stopped after its current step; {left} task(s) not run (apply again to finish)"),
        });
    } else if !emitter.failed {
        emitter.emit_until(plan.tasks.len());
    }
    Executed { counts: emitter.counts, failed: emitter.failed, lost, msg: emitter.host_msg, first_failed: emitter.first_failed }
}

/// Large files travel before the script, each on a channel of its own.
async fn upload_staged(ctx: &HostCtx<'_>, plan: &HostPlan, emitter: &mut Emitter<'_, '_>) -> Option<String> {
    let staged: Vec<(usize, String, String, Arc<Vec<u8>>)> = plan
        .changes()
        .flat_map(|(i, _, cs)| cs.iter().map(move |c| (i, c)))
        .filter_map(|(i, c)| match c {
            Change::WriteFile { path, content, .. } => staged_path(path, content).map(|s| (i, path.clone(), s, content.clone())),
            _ => None,
        })
        .collect();
    for (task, dest, path, content) in staged {
        let cmd = format!("umask 077; cat > {}", quote(&path));
        let total = content.len() as u64;
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let progress = |n: u64| Event::UploadProgress { host: ctx.name.to_string(), task, path: dest.clone(), sent: n, total };
        ctx.send(progress(0));
        let upload = ctx.session.run_as_counted(&cmd, content.to_vec(), ctx.become_, |_| {}, Some(sent.clone()));
        tokio::pin!(upload);
        // Bytes sent, twice a second, while it travels.
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        tick.tick().await;
        let result = loop {
            tokio::select! {
                r = &mut upload => break r,
                _ = tick.tick() => ctx.send(progress(sent.load(std::sync::atomic::Ordering::Relaxed))),
            }
        };
        if result.as_ref().is_ok_and(|o| o.status == Some(0)) {
            ctx.send(progress(total));
        }
        match result {
            Ok(o) if o.status == Some(0) => {}
            Ok(o) => {
                emitter.fail_current(None, format!("uploading {path} failed: {}", String::from_utf8_lossy(&o.stderr).trim()));
                return None;
            }
            Err(e) => {
                emitter.fail_current(None, format!("uploading {path} failed: {e}"));
                return e.is_unreachable().then(|| e.to_string());
            }
        }
    }
    None
}

/// The apply script, its markers followed as they arrive.
async fn run_script(
    ctx: &HostCtx<'_>,
    plan: &HostPlan,
    emitter: &mut Emitter<'_, '_>,
    stop: Option<watch::Receiver<bool>>,
) -> Option<String> {
    let n = nonce();
    let script = plan.script(&n);
    let pid = Arc::new(AtomicU32::new(0));
    let mut streamer = Streamer::new(&n, emitter, pid.clone());
    let run = ctx.session.run_script(&script, ctx.become_, |chunk| streamer.feed(chunk));
    // On Ctrl-C, tell the script (on a channel of its own) to stop after
    // its current step; it then reports `interrupted` and ends.
    let watch = async {
        let Some(mut stop) = stop else { return std::future::pending::<std::convert::Infallible>().await };
        let _ = stop.wait_for(|v| *v).await;
        for _ in 0..100 {
            let p = pid.load(Ordering::SeqCst);
            if p > 0 {
                let _ = ctx.session.run_as(&format!("kill -INT {p}"), Vec::new(), ctx.become_, |_| {}).await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::future::pending::<std::convert::Infallible>().await
    };
    let result = tokio::select! {
        r = run => r,
        never = watch => match never {},
    };
    streamer.flush_partial();
    let current = streamer.current;
    let done = streamer.done;
    match result {
        Ok(o) if !done && !streamer.emitter.failed => {
            let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
            let status = o.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into());
            let msg = if err.is_empty() {
                format!(
                    "the host's shell ended before the apply script finished (exit status {status}, no error output); the steps after this one did not run: run the apply again (with -vv to see each step's output)"
                )
            } else {
                format!("the apply script stopped (exit status {status}): {err}")
            };
            streamer.emitter.fail_current(current, msg);
            None
        }
        Ok(_) => None,
        Err(e) => {
            let msg = match current {
                Some(i) => format!("{e} (during task `{}`)", plan.tasks[i].name),
                None => e.to_string(),
            };
            streamer.emitter.fail_current(current, msg.clone());
            e.is_unreachable().then_some(msg)
        }
    }
}

/// Emits task events in task order, whether a task was executed on the
/// host (streamed) or needed nothing (known from the plan).
struct Emitter<'a, 'c> {
    ctx: &'a HostCtx<'c>,
    plan: &'a HostPlan,
    check: bool,
    diff: bool,
    /// First task not reported yet.
    next: usize,
    counts: Counts,
    failed: bool,
    /// Stopped after a step on Ctrl-C: later tasks were not started.
    interrupted: bool,
    /// A failure no task can carry.
    host_msg: Option<String>,
    first_failed: Option<usize>,
}

impl<'a, 'c> Emitter<'a, 'c> {
    fn new(ctx: &'a HostCtx<'c>, plan: &'a HostPlan, check: bool, diff: bool) -> Emitter<'a, 'c> {
        Emitter {
            ctx,
            plan,
            check,
            diff,
            next: 0,
            counts: Counts::default(),
            failed: false,
            interrupted: false,
            host_msg: None,
            first_failed: None,
        }
    }

    fn start(&self, i: usize) {
        self.ctx.send(Event::TaskStart { host: self.ctx.name.to_string(), task: i, name: self.plan.tasks[i].name.clone() });
    }

    /// The diffs of a task's file writes, secrets masked in the contents
    /// before they are cut into lines.
    fn diffs(&self, changes: &[Change]) -> Option<String> {
        if !self.diff {
            return None;
        }
        let mask = |b: &[u8]| self.ctx.redactor.mask(&String::from_utf8_lossy(b)).into_bytes();
        let d: Vec<String> = changes
            .iter()
            .filter_map(|ch| match ch {
                Change::WriteFile { path, content, old, .. } => {
                    let old = old.as_ref().and_then(|o| o.content.as_deref()).map(mask);
                    Some(unified_diff(path, old.as_deref(), &mask(content)))
                }
                _ => None,
            })
            .collect();
        (!d.is_empty()).then(|| d.join(""))
    }

    fn end(&mut self, i: usize, status: TaskStatus, duration_ms: u64, msg: Option<String>, output: Option<String>) {
        let t = &self.plan.tasks[i];
        let (changes, diff) = match &t.plan {
            TaskPlan::Changes(c) if status != TaskStatus::Ok => (c.iter().map(Change::describe).collect(), self.diffs(c)),
            _ => (Vec::new(), None),
        };
        let failed = self.counts.record(status);
        if failed && self.first_failed.is_none() {
            self.first_failed = Some(i);
        }
        self.failed |= failed;
        self.ctx.send(Event::TaskEnd {
            host: self.ctx.name.to_string(),
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

    /// A task the host ran (`rc` its exit status); `unchanged`: it found
    /// nothing to do after all.
    fn executed(&mut self, i: usize, rc: i32, unchanged: bool, duration_ms: u64, output: Option<String>) {
        if rc != 0 {
            let msg = format!("a command failed (exit status {rc}; task at {})", self.plan.tasks[i].location);
            self.end(i, TaskStatus::Failed, duration_ms, Some(msg), output);
        } else if unchanged {
            let msg = "not run: its `unless` guard succeeds on the host now (an earlier task made it so)".to_string();
            self.end(i, TaskStatus::Ok, duration_ms, Some(msg), output);
        } else {
            self.end(i, TaskStatus::Changed, duration_ms, None, output);
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
                    // No task left to carry it: the host's own message.
                    self.failed = true;
                    self.host_msg = Some(msg);
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
struct Streamer<'s, 'a, 'c> {
    nonce: String,
    emitter: &'s mut Emitter<'a, 'c>,
    /// The remote script's process id, once it said it.
    pid: Arc<AtomicU32>,
    buf: Vec<u8>,
    current: Option<usize>,
    /// The current task said it had nothing to do.
    unchanged: bool,
    started: Option<Instant>,
    output: String,
    done: bool,
}

impl<'s, 'a, 'c> Streamer<'s, 'a, 'c> {
    fn new(nonce: &str, emitter: &'s mut Emitter<'a, 'c>, pid: Arc<AtomicU32>) -> Streamer<'s, 'a, 'c> {
        Streamer {
            nonce: nonce.to_string(),
            emitter,
            pid,
            buf: Vec::new(),
            current: None,
            unchanged: false,
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
        let Some(marker) = parse_marker(&self.nonce, line) else {
            if self.current.is_some() {
                self.output.push_str(line);
                self.output.push('\n');
            }
            return;
        };
        match marker {
            Marker::Start(i) if i < self.emitter.plan.tasks.len() => {
                self.emitter.emit_until(i);
                self.current = Some(i);
                self.unchanged = false;
                self.started = Some(Instant::now());
                self.output.clear();
                self.emitter.start(i);
            }
            Marker::Start(_) => {}
            Marker::Unchanged => self.unchanged = self.current.is_some(),
            Marker::End(i, rc) if self.current == Some(i) => {
                let ms = self.started.map(|s| s.elapsed().as_millis() as u64).unwrap_or(0);
                let out = self.output.trim().to_string();
                let out = (!out.is_empty()).then_some(out);
                self.emitter.executed(i, rc, self.unchanged, ms, out);
                self.current = None;
            }
            Marker::End(..) => {}
            Marker::Pid(p) => self.pid.store(p, Ordering::SeqCst),
            Marker::Note(msg) => {
                let ctx = self.emitter.ctx;
                ctx.send(Event::Warning { host: ctx.name.to_string(), msg });
            }
            Marker::Wait { elapsed, limit, lock, holder } => {
                if let Some(i) = self.current {
                    let ctx = self.emitter.ctx;
                    ctx.send(Event::TaskProgress {
                        host: ctx.name.to_string(),
                        task: i,
                        msg: Marker::wait_message(elapsed, limit, &lock, &holder),
                        elapsed_ms: self.started.map(|s| s.elapsed().as_millis() as u64).unwrap_or(0),
                    });
                }
            }
            Marker::Done => self.done = true,
            Marker::Interrupted => {
                self.done = true;
                self.emitter.interrupted = true;
            }
        }
    }
}
