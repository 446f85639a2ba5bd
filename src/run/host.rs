//! One host's run: connect, probe (one round trip), then what the mode
//! asks: report the facts, plan and apply, verify, or unregister.
//!
//! Every path ends with exactly one `host_end` event: the caller counts on
//! it for the recap.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::ctx::{config_text, HostCtx};
use super::execute::{execute, nonce, ExecOptions};
use super::options::Mode;
use super::prepare::HostJob;
use super::{unregister, verify};
use crate::gitlab::registration::{self, Request};
use crate::gitlab::runner::{read_named, runner_tokens, system_id_path};
use crate::gitlab::{config_toml, pending, Secrets, Settled};
use crate::plan::facts::{FactRequest, Facts};
use crate::plan::module::LocalFiles;
use crate::plan::{plan_host, probe, trial_runners, Change, PlanEnv, TaskPlan};
use crate::report::{Counts, Event, HostStatus};
use crate::secrets::Redactor;
use crate::template::Templates;
use crate::transport::{Session, SshOptions};

/// What every host of a run shares.
pub struct Shared {
    pub templates: Arc<Templates>,
    pub base_dir: std::path::PathBuf,
    pub ssh: SshOptions,
    pub mode: Mode,
    pub diff: bool,
    pub replace: bool,
    /// Turns true on Ctrl-C.
    pub stop: watch::Receiver<bool>,
    pub downloads: Arc<HashMap<String, Vec<u8>>>,
    pub files: Arc<LocalFiles>,
    pub secrets: Secrets,
    pub redactor: Redactor,
}

/// How a host's run ended.
struct End {
    status: HostStatus,
    msg: Option<String>,
}

impl End {
    fn failed(msg: impl Into<String>) -> End {
        End { status: HostStatus::Failed, msg: Some(msg.into()) }
    }
}

/// Run one host; always sends its `host_end`.
pub async fn run_host(job: HostJob, sh: &Shared, tx: &mpsc::UnboundedSender<Event>) -> Counts {
    let start = Instant::now();
    let _ = tx.send(Event::HostStart { host: job.name.clone() });
    let mut counts = Counts::default();
    let (end, rt) = match Session::connect(&job.target, &sh.ssh).await {
        Err(e) => (not_connected(&job, sh, tx, &e.to_string(), &mut counts).await, 0),
        Ok(session) => {
            let _ = tx.send(Event::Connected { host: job.name.clone(), ms: start.elapsed().as_millis() as u64 });
            let ctx = HostCtx { name: &job.name, session: &session, become_: &job.r#become, tx, redactor: &sh.redactor };
            let end = connected(&job, sh, &ctx, &mut counts).await;
            let rt = session.round_trips();
            session.close().await;
            (end, rt)
        }
    };
    match end.status {
        HostStatus::Failed => counts.failed = 1,
        HostStatus::Unreachable => counts.unreachable = 1,
        _ => {}
    }
    let _ = tx.send(Event::HostEnd {
        host: job.name.clone(),
        status: end.status,
        round_trips: rt,
        elapsed_ms: start.elapsed().as_millis() as u64,
        msg: end.msg,
    });
    counts
}

/// The host could not be reached. A dead host can still be unregistered:
/// by name, in GitLab.
async fn not_connected(job: &HostJob, sh: &Shared, tx: &mpsc::UnboundedSender<Event>, why: &str, counts: &mut Counts) -> End {
    if let (Mode::Unregister, Some(p)) = (sh.mode, job.program.as_ref().filter(|p| !p.registrations.is_empty())) {
        if sh.secrets.api.is_some() {
            let (c, failed) = unregister::unregister_gone(&p.registrations, &sh.secrets, &job.name, tx).await;
            *counts = c;
            let msg = Some(format!("host unreachable ({why}); the runner was handled in GitLab by name"));
            return End { status: if failed { HostStatus::Failed } else { HostStatus::Ok }, msg };
        }
    }
    End { status: HostStatus::Unreachable, msg: Some(why.to_string()) }
}

/// The lost connection, or the failure, of a transport error.
fn transport_end(e: &crate::transport::SshError) -> End {
    let status = if e.is_unreachable() { HostStatus::Unreachable } else { HostStatus::Failed };
    End { status, msg: Some(e.to_string()) }
}

async fn connected(job: &HostJob, sh: &Shared, ctx: &HostCtx<'_>, counts: &mut Counts) -> End {
    if sh.mode == Mode::Ping {
        return ping(job, ctx, counts).await;
    }
    let facts = match read_facts(job, sh, ctx).await {
        Ok(f) => f,
        Err(end) => return end,
    };
    if sh.mode == Mode::Facts {
        let mut value = serde_json::to_value(&facts).unwrap_or_default();
        if let (Some(p), Some(obj)) = (&job.program, value.as_object_mut()) {
            obj.insert("gitlab_runner_config".into(), runner_listing(p, &facts));
        }
        ctx.send(Event::Facts { host: job.name.clone(), facts: value });
        counts.ok = 1;
        return End { status: HostStatus::Ok, msg: None };
    }
    let Some(program) = &job.program else {
        return End::failed("no playbook to run (a bug: please report it)");
    };
    if let Some(why) = unsupported(&facts) {
        return End::failed(why);
    }
    // Tokens the host holds are secrets from now on.
    for r in &program.registrations {
        for t in config_text(&facts, &r.config).map(|t| runner_tokens(&t)).unwrap_or_default() {
            sh.redactor.add(&t);
        }
    }
    match sh.mode {
        Mode::Verify => {
            let vctx = verify::Verify { base_image: job.verify_base_image.as_deref(), nonce: nonce() };
            match verify::verify(ctx, &facts, program.registrations.first(), &vctx).await {
                Ok((c, failed)) => {
                    *counts = c;
                    finish(counts, None, failed, None)
                }
                Err(e) => transport_end(&e),
            }
        }
        Mode::Unregister if program.registrations.is_empty() => End::failed("the playbook registers no runner: nothing to unregister"),
        Mode::Unregister => {
            let ex = unregister::unregister(ctx, &facts, &program.registrations, &sh.secrets).await;
            *counts = ex.counts;
            finish(counts, ex.lost, ex.failed, ex.msg)
        }
        _ => apply(program, &facts, sh, ctx, counts).await,
    }
}

/// The runners of each config.toml the program manages: those it was told
/// about, and the others (registered by hand), left as they are.
fn runner_listing(program: &crate::plan::HostProgram, facts: &Facts) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for r in &program.registrations {
        let managed: Vec<&str> =
            program.registrations.iter().filter(|x| x.config == r.config).map(|x| x.spec.description.as_str()).collect();
        let unmanaged = config_text(facts, &r.config).map(|t| config_toml::unmanaged(&t, &managed)).unwrap_or_default();
        out.insert(r.config.clone(), serde_json::json!({"managed": managed, "unmanaged": unmanaged}));
    }
    serde_json::Value::Object(out)
}

/// The end of a host whose tasks were counted.
fn finish(counts: &mut Counts, lost: Option<String>, failed: bool, msg: Option<String>) -> End {
    End { status: counts.finish(lost.is_some(), failed), msg: lost.or(msg) }
}

async fn ping(job: &HostJob, ctx: &HostCtx<'_>, counts: &mut Counts) -> End {
    match ctx.session.run_script("id -un\n", ctx.become_, |_| {}).await {
        Ok(o) if o.status == Some(0) => {
            counts.ok = 1;
            let who = String::from_utf8_lossy(&o.stdout).trim().to_string();
            End { status: HostStatus::Ok, msg: Some(format!("pong: connected as {}, commands run as {who}", job.target.user)) }
        }
        Ok(o) => End::failed(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => transport_end(&e),
    }
}

/// The probe: one round trip. `verify` and `unregister` run no guards:
/// they do not plan the playbook.
async fn read_facts(job: &HostJob, sh: &Shared, ctx: &HostCtx<'_>) -> Result<Facts, End> {
    let mut requests: BTreeSet<FactRequest> = job.program.as_ref().map(|p| p.probes.clone()).unwrap_or_default();
    if !sh.mode.plans() {
        requests.retain(|r| !matches!(r, FactRequest::Guard(_)));
    }
    if sh.mode == Mode::Facts {
        requests.insert(FactRequest::AptCache);
    }
    let n = nonce();
    let script = probe::script(&n, &requests);
    match ctx.session.run_script(&script, ctx.become_, |_| {}).await {
        Ok(o) => probe::parse(&n, &requests, &String::from_utf8_lossy(&o.stdout)).map_err(|e| {
            let stderr = String::from_utf8_lossy(&o.stderr);
            let stderr = stderr.trim();
            End::failed(if stderr.is_empty() {
                format!("reading facts failed: {e}")
            } else {
                format!("reading facts failed: {e}: {stderr}")
            })
        }),
        Err(e) => Err(transport_end(&e)),
    }
}

/// Whether the host's config.toml holds what the plan wrote: the task
/// that writes it ran before any task failed (or it needed no write).
fn holds_config(plan: &crate::plan::HostPlan, regs: &[crate::gitlab::RunnerSettings], first_failed: Option<usize>, lost: bool) -> bool {
    let Some(config) = regs.first().map(|r| r.config.as_str()) else { return true };
    let writer = plan.tasks.iter().position(|t| match &t.plan {
        TaskPlan::Changes(cs) => cs.iter().any(|c| matches!(c, Change::WriteFile { path, .. } if path == config)),
        _ => false,
    });
    match (writer, first_failed) {
        (Some(w), Some(f)) => w < f,
        (Some(_), None) => !lost,
        (None, _) => true,
    }
}

/// Why bootstrap does not manage this host, if it does not.
fn unsupported(facts: &Facts) -> Option<String> {
    let os = &facts.os;
    let what = if os.pretty_name.is_empty() { os.id.clone() } else { os.pretty_name.clone() };
    if !os.systemd {
        Some(format!("unsupported host: {what} does not run systemd; nothing was changed"))
    } else if !(os.id == "debian" || os.id == "ubuntu") {
        Some(format!("unsupported host: {what}; bootstrap manages Debian and Ubuntu hosts; nothing was changed"))
    } else {
        None
    }
}

/// Settle registrations (controller <-> GitLab), plan locally, execute.
async fn apply(program: &crate::plan::HostProgram, facts: &Facts, sh: &Shared, ctx: &HostCtx<'_>, counts: &mut Counts) -> End {
    let check = sh.mode.plans_only();
    let env_with = |runners: &'_ HashMap<String, Settled>| -> crate::plan::HostPlan {
        let env = PlanEnv { templates: &sh.templates, base_dir: &sh.base_dir, downloads: &sh.downloads, files: &sh.files, runners };
        plan_host(program, facts, &env)
    };
    // No registration for a host the plan refuses (unsupported system, a
    // failed assertion, any task that cannot be planned): GitLab gets no
    // runner for a host that is not going to run one.
    let trial = (!program.registrations.is_empty()).then(|| env_with(&trial_runners(&program.registrations)));
    let refused = trial.as_ref().is_some_and(|t| t.refused().is_some());
    let mut settled: HashMap<String, Settled> = HashMap::new();
    let mut pendings = Vec::new();
    for reg in program.registrations.iter().filter(|_| !refused) {
        let existing = config_text(facts, &reg.config).map(|t| read_named(&t, &reg.spec.description)).unwrap_or_default();
        let system_id = config_text(facts, &system_id_path(&reg.config)).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let req = Request {
            settings: reg,
            existing: &existing,
            system_id: system_id.as_deref(),
            host: ctx.name,
            check,
            replace: sh.replace,
            secrets: &sh.secrets,
        };
        match registration::settle(&req).await {
            Ok(o) => {
                for s in &o.secrets {
                    sh.redactor.add(s);
                }
                sh.redactor.add(&o.settled.identity.token);
                for w in o.warnings {
                    ctx.send(Event::Warning { host: ctx.name.to_string(), msg: w });
                }
                settled.insert(reg.key(), o.settled);
                pendings.extend(o.pending);
            }
            Err(e) => return End::failed(format!("runner registration: {e}; nothing was changed")),
        }
    }
    if let Some(obj) = runner_listing(program, facts).as_object() {
        for (path, l) in obj {
            let names: Vec<&str> = l["unmanaged"].as_array().map(|a| a.iter().filter_map(|n| n.as_str()).collect()).unwrap_or_default();
            if !names.is_empty() {
                let msg = format!("{path}: runners not managed by bootstrap, left as they are: {}", names.join(", "));
                ctx.send(Event::Note { host: ctx.name.to_string(), msg });
            }
        }
    }
    // The plan: local and pure. Without registration, a runner task fails
    // in planning rather than write a placeholder.
    let mut plan = env_with(&settled);
    if let Some(trial) = trial.filter(|_| refused) {
        // A task that failed with stand-in identities says why; without any
        // it could only say "not registered".
        for (real, t) in plan.tasks.iter_mut().zip(trial.tasks) {
            if let (TaskPlan::Failed(_), TaskPlan::Failed(why)) = (&real.plan, t.plan) {
                real.plan = TaskPlan::Failed(why);
            }
        }
    }
    if !check && *sh.stop.borrow() && plan.has_changes() {
        // Ctrl-C came while this host was being read: start nothing new.
        ctx.send(Event::Warning { host: ctx.name.to_string(), msg: "interrupted before applying: nothing was changed".into() });
        return End { status: HostStatus::Ok, msg: None };
    }
    let ex = execute(ctx, &plan, ExecOptions { check, diff: sh.diff, stop: Some(sh.stop.clone()) }).await;
    *counts = ex.counts;
    if !check && holds_config(&plan, &program.registrations, ex.first_failed, ex.lost.is_some()) {
        // The host holds the runners' tokens now, whatever later tasks did.
        for p in &pendings {
            pending::forget(p);
        }
    }
    finish(counts, ex.lost, ex.failed, ex.msg)
}
