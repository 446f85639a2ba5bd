//! `unregister`: a host's runner deleted in GitLab (by its token, else by
//! id, else by name), then its service stopped and the runner removed from
//! config.toml through the normal plan machinery, so it is safe to run
//! twice. A host that is gone can still be unregistered by name with
//! GITLAB_TOKEN.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::ctx::{config_text, HostCtx, TaskLines};
use super::execute::{execute, ExecOptions, Executed};
use crate::gitlab::runner::{read_existing, RunnerSettings};
use crate::gitlab::unregister::delete;
use crate::gitlab::Secrets;
use crate::plan::changes::{Attrs, Change, UnitAction};
use crate::plan::facts::Facts;
use crate::plan::{HostPlan, PlannedTask, TaskPlan};
use crate::report::{Counts, Event, TaskStatus};

/// Unregister a host that answers: GitLab first, then the host.
pub async fn unregister(ctx: &HostCtx<'_>, facts: &Facts, s: &RunnerSettings, secrets: &Secrets) -> Executed {
    let text = config_text(facts, &s.config);
    let existing = text.as_deref().map(|t| read_existing(t, &s.url)).unwrap_or_default();
    let gitlab = delete(s, existing.token.as_deref(), existing.id, secrets).await.map_err(|e| e.to_string());
    let mut tasks = Vec::new();
    tasks.push(PlannedTask {
        name: "runner deleted in GitLab".into(),
        location: String::new(),
        handler: false,
        plan: match &gitlab {
            Ok(d) if d.changed => TaskPlan::Changes(vec![Change::Controller { what: d.what.clone() }]),
            Ok(_) => TaskPlan::Ok,
            Err(e) => TaskPlan::Failed(e.clone()),
        },
    });
    if gitlab.is_ok() {
        let svc = facts.services.get("gitlab-runner");
        let mut stop = Vec::new();
        if svc.map(|s| s.is_active()).unwrap_or(false) {
            stop.push(Change::Unit { unit: "gitlab-runner.service".into(), action: UnitAction::Stop });
        }
        if svc.map(|s| s.enabled == "enabled").unwrap_or(false) {
            stop.push(Change::Unit { unit: "gitlab-runner.service".into(), action: UnitAction::Disable });
        }
        tasks.push(PlannedTask {
            name: "gitlab-runner stopped and disabled".into(),
            location: String::new(),
            handler: false,
            plan: if stop.is_empty() { TaskPlan::Ok } else { TaskPlan::Changes(stop) },
        });
        // config.toml without its runners: no token left on the host.
        let rewrite = text.as_deref().and_then(|t| {
            let mut doc = toml::from_str::<toml::Table>(t).ok()?;
            doc.remove("runners")?;
            let mut out = String::from("# Runner unregistered by `bootstrap unregister`.\n");
            out.push_str(&toml::to_string(&doc).ok()?);
            Some(out)
        });
        tasks.push(PlannedTask {
            name: "runner removed from config.toml".into(),
            location: String::new(),
            handler: false,
            plan: match rewrite {
                Some(content) => TaskPlan::Changes(vec![Change::WriteFile {
                    path: s.config.clone(),
                    content: Arc::new(content.into_bytes()),
                    attrs: Attrs { mode: Some(0o600), owner: Some("root".into()), group: Some("root".into()) },
                    old: facts.path(&s.config).cloned(),
                }]),
                None => TaskPlan::Ok,
            },
        });
    }
    // The GitLab part already happened; run the host part for real.
    execute(ctx, &HostPlan { tasks }, ExecOptions { check: false, diff: false, stop: None }).await
}

/// Unregister a host that cannot be reached: by name, in GitLab only.
pub async fn unregister_gone(s: &RunnerSettings, secrets: &Secrets, host: &str, tx: &mpsc::UnboundedSender<Event>) -> (Counts, bool) {
    let mut rep = TaskLines { host, tx, next: 0, counts: Counts::default(), failed: false };
    let name = "runner deleted in GitLab (host unreachable)";
    match delete(s, None, None, secrets).await {
        Ok(d) if d.changed => rep.task(name, TaskStatus::Changed, Some(d.what), 0),
        Ok(d) => rep.task(name, TaskStatus::Ok, Some(d.what), 0),
        Err(e) => rep.task(name, TaskStatus::Failed, Some(e.to_string()), 0),
    }
    (rep.counts, rep.failed)
}
