//! A host's program: what one host will run, compiled before connecting.
//!
//! The playbook compiles each selected host's program (`crate::playbook`):
//! variables resolved once per play and shared by its tasks, early task
//! arguments rendered, the module each task uses, and the set of facts the
//! probe must read. The planner then needs only the program and the facts.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use super::facts::FactRequest;
use super::module::{Action, Args, Module, ParseCtx};
use crate::gitlab::RunnerSettings;
use crate::template::{Scope, Shared, Templates};

/// A host's program.
#[derive(Debug, Clone, Default)]
pub struct HostProgram {
    pub r#become: bool,
    /// URLs the controller must download before planning (`key_url`).
    pub downloads: BTreeSet<String>,
    /// Local files the tasks send, read once before connecting.
    pub local_files: BTreeSet<PathBuf>,
    /// Runner registrations to settle with GitLab before planning.
    pub registrations: Vec<RunnerSettings>,
    /// Notices of the plays this host is in.
    pub notices: Vec<String>,
    pub tasks: Vec<HostTask>,
    pub handlers: Vec<HostTask>,
    /// Facts the probe must read.
    pub probes: BTreeSet<FactRequest>,
    /// The inventory's `groups` layer, shared by every host.
    pub groups: Arc<Shared>,
}

/// A task for one host, arguments rendered except the late ones.
#[derive(Debug, Clone)]
pub struct HostTask {
    pub name: String,
    pub module: &'static dyn Module,
    pub when: Vec<String>,
    pub notify: Vec<String>,
    pub listen: Vec<String>,
    /// Arguments with early fields rendered; late fields still templates.
    pub args: Map<String, Json>,
    /// The play's variables for this host (inventory, defaults, play),
    /// resolved and converted for templates once, shared by the play's
    /// tasks.
    pub play_shared: Arc<Shared>,
    /// The task's own `vars:`, resolved, if it has any.
    pub task_vars: Option<Arc<Shared>>,
    /// Where the task is written, for messages (`site.yml:12:7`).
    pub location: Arc<str>,
    /// Its tags (for `--list-tasks`).
    pub tags: Vec<String>,
    /// Its `when` is false on variables alone: skipped on this host.
    pub skip: bool,
}

impl HostTask {
    /// What templates of this task see: facts under the variables.
    pub fn scope<'a>(&'a self, groups: &'a Shared, facts: &'a Shared) -> Scope<'a> {
        let s = Scope::on(groups).with_shared(facts).with_shared(&self.play_shared);
        match &self.task_vars {
            Some(t) => s.with_shared(t),
            None => s,
        }
    }

    /// Whether every `when` holds.
    pub fn applies(&self, templates: &Templates, scope: &Scope) -> Result<bool, String> {
        for w in &self.when {
            if !templates.eval_bool(w, scope).map_err(|e| format!("when `{w}`: {e}"))? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Render the late fields and type the arguments. `ctx.vars` is the
    /// task's scope with the real facts.
    pub fn action(&self, ctx: &ParseCtx) -> Result<Box<dyn Action>, String> {
        let spec = self.module.spec();
        let mut args = Map::new();
        for (k, v) in &self.args {
            if spec.late.contains(&k.as_str()) {
                args.insert(k.clone(), ctx.templates.render_value(v, ctx.vars).map_err(|e| format!("`{k}`: {e}"))?);
            } else {
                args.insert(k.clone(), v.clone());
            }
        }
        self.module.parse(&Args(&args), ctx).map_err(|e| match e.field {
            Some(f) => format!("`{f}`: {}", e.message),
            None => e.message,
        })
    }
}
