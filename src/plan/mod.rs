//! The plan: from a host's program and its facts to the changes to make.
//!
//! Pure and local: no I/O, no network, no clock. Tasks are planned in order
//! against a copy of the facts that each planned change updates
//! ([`Change::simulate`]), so a later task sees what an earlier one will
//! have done. Handlers are planned after the tasks, if a changed task
//! notified them. A task that cannot be planned fails the host there, as
//! Ansible stops a host at its first failure.
//!
//! The room holds what planning needs: the facts and the probe that reads
//! them in one round trip ([`facts`], [`probe`]), the module contract
//! ([`module`]), compiled programs ([`program`]), typed changes
//! ([`changes`]) and the apply script that carries them ([`script`]).

pub mod changes;
pub mod facts;
pub mod module;
pub mod probe;
pub mod program;
pub mod script;

use std::collections::HashMap;
use std::path::Path;

pub use changes::Change;
pub use facts::Facts;
pub use program::{HostProgram, HostTask};

use crate::gitlab::{RunnerSettings, Settled};
use crate::template::Templates;
use module::{LocalFiles, ParseCtx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskPlan {
    /// `when` was false.
    Skipped,
    /// Already as wanted.
    Ok,
    Changes(Vec<Change>),
    /// Could not be planned (the message says why).
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct PlannedTask {
    pub name: String,
    pub location: std::sync::Arc<str>,
    pub handler: bool,
    pub plan: TaskPlan,
}

#[derive(Debug, Clone, Default)]
pub struct HostPlan {
    pub tasks: Vec<PlannedTask>,
}

/// What planning needs besides a program and facts: all local, no I/O.
#[derive(Clone, Copy)]
pub struct PlanEnv<'a> {
    pub templates: &'a Templates,
    /// The playbook's folder (`files/`, `templates/`).
    pub base_dir: &'a Path,
    /// Files the controller downloaded before connecting, by URL.
    pub downloads: &'a HashMap<String, Vec<u8>>,
    /// Local files, read before connecting.
    pub files: &'a LocalFiles,
    /// Runner identities registration settled, by config.toml path and
    /// runner name ([`RunnerSettings::key`]).
    pub runners: &'a HashMap<String, Settled>,
}

/// Stand-in identities for `registrations`, to ask "would this host's plan
/// fail?" before anything is registered. A plan made with them is never
/// executed.
pub fn trial_runners(registrations: &[RunnerSettings]) -> HashMap<String, Settled> {
    registrations.iter().map(|r| (r.key(), Settled { identity: crate::gitlab::runner::Identity::placeholder(), change: None })).collect()
}

/// Plan `program` against `facts`.
pub fn plan_host(program: &HostProgram, facts: &Facts, env: &PlanEnv) -> HostPlan {
    let fact_vars = crate::template::Shared::lazy(std::sync::Arc::new(facts.template_vars()));
    let mut sim = facts.clone();
    let mut plan = HostPlan::default();
    let mut notified: Vec<String> = Vec::new();
    let one = |t: &HostTask, sim: &mut Facts| -> TaskPlan {
        if t.skip {
            return TaskPlan::Skipped;
        }
        let scope = t.scope(&program.groups, &fact_vars);
        match t.applies(env.templates, &scope) {
            Ok(false) => return TaskPlan::Skipped,
            Ok(true) => {}
            Err(e) => return TaskPlan::Failed(e),
        }
        let ctx = ParseCtx {
            trial: false,
            downloads: env.downloads,
            files: env.files,
            templates: env.templates,
            vars: &scope,
            base_dir: env.base_dir,
            runners: env.runners,
        };
        let action = match t.action(&ctx) {
            Ok(a) => a,
            Err(e) => return TaskPlan::Failed(e),
        };
        match action.plan(sim) {
            Ok(changes) if changes.is_empty() => TaskPlan::Ok,
            Ok(changes) => {
                for c in &changes {
                    c.simulate(sim);
                }
                TaskPlan::Changes(changes)
            }
            Err(e) => TaskPlan::Failed(e),
        }
    };
    for t in &program.tasks {
        let p = one(t, &mut sim);
        if matches!(p, TaskPlan::Changes(_)) {
            for n in &t.notify {
                if !notified.contains(n) {
                    notified.push(n.clone());
                }
            }
        }
        let failed = matches!(p, TaskPlan::Failed(_));
        plan.tasks.push(PlannedTask { name: t.name.clone(), location: t.location.clone(), handler: false, plan: p });
        if failed {
            return plan;
        }
    }
    for h in &program.handlers {
        if !h.listen.iter().any(|l| notified.contains(l)) {
            continue;
        }
        let p = one(h, &mut sim);
        let failed = matches!(p, TaskPlan::Failed(_));
        plan.tasks.push(PlannedTask { name: h.name.clone(), location: h.location.clone(), handler: true, plan: p });
        if failed {
            return plan;
        }
    }
    plan
}

impl HostPlan {
    pub fn changes(&self) -> impl Iterator<Item = (usize, &PlannedTask, &Vec<Change>)> {
        self.tasks.iter().enumerate().filter_map(|(i, t)| match &t.plan {
            TaskPlan::Changes(c) => Some((i, t, c)),
            _ => None,
        })
    }

    pub fn has_changes(&self) -> bool {
        self.changes().next().is_some()
    }

    /// Whether a task failed in planning.
    pub fn refused(&self) -> Option<&PlannedTask> {
        self.tasks.iter().find(|t| matches!(t.plan, TaskPlan::Failed(_)))
    }
}
