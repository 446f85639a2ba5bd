//! `unregister`: a host's runners deleted in GitLab (each by its token, else
//! by id, else by name), then its service stopped and those runners removed
//! from config.toml through the normal plan machinery, so it is safe to run
//! twice. A host that is gone can still be unregistered by name with
//! GITLAB_TOKEN.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::ctx::{config_text, HostCtx, TaskLines};
use super::execute::{execute, ExecOptions, Executed};
use crate::gitlab::runner::{read_existing, read_named, RunnerSettings};
use crate::gitlab::unregister::delete;
use crate::gitlab::Secrets;
use crate::plan::changes::{Attrs, Change, UnitAction};
use crate::plan::facts::Facts;
use crate::plan::{HostPlan, PlannedTask, TaskPlan};
use crate::report::{Counts, Event, TaskStatus};

/// Unregister a host that answers: GitLab first (each of its runners),
/// then the host.
pub async fn unregister(ctx: &HostCtx<'_>, facts: &Facts, regs: &[RunnerSettings], secrets: &Secrets) -> Executed {
    let Some(first) = regs.first() else {
        return execute(ctx, &HostPlan { tasks: Vec::new() }, ExecOptions { check: false, diff: false, stop: None }).await;
    };
    let text = config_text(facts, &first.config);
    let mut tasks = Vec::new();
    let mut all_ok = true;
    // One runner, not found by name (an older config.toml): the only entry.
    let mut whole_file = false;
    for s in regs {
        let mut existing = text.as_deref().map(|t| read_named(t, &s.spec.description)).unwrap_or_default();
        if regs.len() == 1 && existing.token.is_none() && existing.id.is_none() {
            existing = text.as_deref().map(|t| read_existing(t, &s.url)).unwrap_or_default();
            whole_file = true;
        }
        if s.absent && existing.token.is_none() && existing.id.is_none() {
            continue;
        }
        let gitlab = delete(s, existing.token.as_deref(), existing.id, secrets).await.map_err(|e| e.to_string());
        all_ok &= gitlab.is_ok();
        let name = if regs.len() == 1 {
            "runner deleted in GitLab".to_string()
        } else {
            format!("runner `{}` deleted in GitLab", s.spec.description)
        };
        tasks.push(PlannedTask {
            name,
            location: "".into(),
            handler: false,
            plan: match &gitlab {
                Ok(d) if d.changed => TaskPlan::Changes(vec![Change::Controller { what: d.what.clone() }]),
                Ok(_) => TaskPlan::Ok,
                Err(e) => TaskPlan::Failed(e.clone()),
            },
        });
    }
    let managed: Vec<&str> = regs.iter().map(|r| r.spec.description.as_str()).collect();
    let s = first;
    if all_ok {
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
            location: "".into(),
            handler: false,
            plan: if stop.is_empty() { TaskPlan::Ok } else { TaskPlan::Changes(stop) },
        });
        // config.toml without bootstrap's runners: none of their tokens left
        // on the host (runners registered by hand stay).
        let rewrite = text.as_deref().and_then(|t| {
            let mut doc = toml::from_str::<toml::Table>(t).ok()?;
            let all = doc.remove("runners")?;
            let kept: Vec<toml::Value> = match all {
                toml::Value::Array(a) if !whole_file => a
                    .into_iter()
                    .filter(|r| !r.get("name").and_then(|n| n.as_str()).map(|n| managed.contains(&n)).unwrap_or(false))
                    .collect(),
                _ => Vec::new(),
            };
            if !kept.is_empty() {
                doc.insert("runners".into(), toml::Value::Array(kept));
            }
            let mut out = String::from("# Runner unregistered by `bootstrap unregister`.\n");
            out.push_str(&toml::to_string(&doc).ok()?);
            Some(out)
        });
        tasks.push(PlannedTask {
            name: "runner removed from config.toml".into(),
            location: "".into(),
            handler: false,
            plan: match rewrite {
                Some(content) => TaskPlan::Changes(vec![Change::WriteFile {
                    path: s.config.clone(),
                    content: Arc::new(content.into_bytes()),
                    attrs: Attrs { mode: Some(0o600), owner: Some("root".into()), group: Some("root".into()) },
                    old: facts.path(&s.config).cloned(),
                    swap: true,
                }]),
                None => TaskPlan::Ok,
            },
        });
    }
    // The GitLab part already happened; run the host part for real.
    execute(ctx, &HostPlan { tasks }, ExecOptions { check: false, diff: false, stop: None }).await
}

/// Unregister a host that cannot be reached: its runners by name, in
/// GitLab only.
pub async fn unregister_gone(regs: &[RunnerSettings], secrets: &Secrets, host: &str, tx: &mpsc::UnboundedSender<Event>) -> (Counts, bool) {
    let mut rep = TaskLines { host, tx, next: 0, counts: Counts::default(), failed: false };
    for s in regs {
        let name = if regs.len() == 1 {
            "runner deleted in GitLab (host unreachable)".to_string()
        } else {
            format!("runner `{}` deleted in GitLab (host unreachable)", s.spec.description)
        };
        match delete(s, None, None, secrets).await {
            Ok(d) if d.changed => rep.task(&name, TaskStatus::Changed, Some(d.what), 0),
            Ok(d) => rep.task(&name, TaskStatus::Ok, Some(d.what), 0),
            Err(e) => rep.task(&name, TaskStatus::Failed, Some(e.to_string()), 0),
        }
    }
    (rep.counts, rep.failed)
}
