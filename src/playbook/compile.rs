//! Compiling one host's program from the playbook, before connecting.
//!
//! Per host and play, the variables (role-style `defaults`, inventory,
//! play `vars`) are merged and resolved once and shared by the play's
//! tasks. Each task's early arguments are rendered now; its late ones (host
//! facts) are rendered once against placeholder facts and a placeholder
//! runner identity, only to find mistakes now: nothing rendered with
//! placeholders is kept. The module's trial parse says which facts the
//! probe must read, what to download and which local files to read.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Map;

use super::{Play, Playbook, Task};
use crate::error::{InputError, InputErrors};
use crate::inventory::{resolve_vars, Inventory, Vars};
use crate::plan::facts::Facts;
use crate::plan::module::{Args, LocalFiles, ParseCtx};
use crate::plan::{HostProgram, HostTask};
use crate::template::{Scope, Shared, Templates};

/// What compiling needs besides the playbook.
pub struct CompileEnv<'a> {
    pub inv: &'a Inventory,
    /// The hosts of each play, in play order.
    pub play_hosts: &'a [Vec<String>],
    pub templates: &'a Templates,
    /// `--diff`: the probe also reads file contents.
    pub diff: bool,
    /// `--tags` / `--skip-tags`: tasks that do not run are left out.
    pub tags: &'a super::TagFilter,
}

impl Playbook {
    /// Prepare `host`'s program (see the module docs). `conn_become` is the
    /// inventory's `ansible_become`.
    pub fn compile(&self, host: &str, conn_become: Option<bool>, env: &CompileEnv) -> Result<HostProgram, InputErrors> {
        let Some(h) = env.inv.hosts.get(host) else {
            return Err(InputError::new(format!("host `{host}` is not in the inventory")).into());
        };
        let inv_vars = env.inv.host_vars(h);
        let groups = env.inv.groups_layer().clone();
        let placeholder = Facts::placeholder(host).template_vars();
        let placeholder_shared = Shared::lazy(Arc::new(placeholder.clone()));
        let no_facts = Shared::lazy(Arc::new(Vars::new()));
        let mut program = HostProgram { r#become: conn_become.unwrap_or(false), groups: groups.clone(), ..Default::default() };
        let mut errors = Vec::new();
        for (pi, play) in self.plays.iter().enumerate() {
            if !env.play_hosts.get(pi).map(|hs| hs.iter().any(|x| x == host)).unwrap_or(false) {
                continue;
            }
            if let Some(n) = &play.notice {
                if !program.notices.contains(n) {
                    program.notices.push(n.clone());
                }
            }
            if let Some(b) = play.r#become {
                if conn_become.is_none() {
                    program.r#become |= b;
                }
            }
            let play_vars = match self.play_vars(play, &inv_vars, env.inv.extra_vars(), &groups, env.templates) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let play_shared = Arc::new(Shared::lazy(play_vars.clone()));
            for (list, is_handler) in [(&play.tasks, false), (&play.handlers, true)] {
                // Handlers run when notified, whatever the tags.
                for t in list.iter().filter(|t| is_handler || env.tags.runs(&t.tags)) {
                    let task_env = TaskEnv {
                        inv: env.inv,
                        host: h,
                        play_vars: &play_vars,
                        play_shared: &play_shared,
                        groups: &groups,
                        extra: env.inv.extra_vars(),
                        placeholder: &placeholder,
                        placeholder_shared: &placeholder_shared,
                        no_facts: &no_facts,
                        templates: env.templates,
                        diff: env.diff,
                    };
                    match self.compile_task(t, &task_env, &mut program) {
                        Ok(ht) if is_handler => program.handlers.push(ht),
                        Ok(ht) => program.tasks.push(ht),
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(program)
        } else {
            Err(InputErrors(errors))
        }
    }

    /// Play defaults under inventory vars, play vars over them, as Ansible
    /// ranks role defaults and play vars; resolved once.
    fn play_vars(
        &self,
        play: &Play,
        inv_vars: &Vars,
        extra: &Vars,
        groups: &Shared,
        templates: &Templates,
    ) -> Result<Arc<Vars>, InputError> {
        let mut vars = play.defaults.clone();
        for (k, v) in inv_vars {
            vars.insert(k.clone(), v.clone());
        }
        for (k, v) in &play.vars {
            vars.insert(k.clone(), v.clone());
        }
        // `-e` is over play variables too.
        for (k, v) in extra {
            vars.insert(k.clone(), v.clone());
        }
        resolve_vars(vars, &Scope::on(groups), templates)
            .map(Arc::new)
            .map_err(|(k, msg)| self.err(&format!("{}.vars.{k}", play.path), msg).field(format!("vars.{k}")))
    }

    fn compile_task(&self, t: &Task, env: &TaskEnv, program: &mut HostProgram) -> Result<HostTask, InputError> {
        let spec = t.module.spec();
        let mname = spec.name;
        let task_vars = if t.vars.is_empty() {
            None
        } else {
            let base = Scope::on(env.groups).with(env.play_vars.as_ref());
            let mut v = resolve_vars(t.vars.clone(), &base, env.templates)
                .map_err(|(k, msg)| self.err(&format!("{}.vars.{k}", t.path), msg).field(format!("vars.{k}")))?;
            // `-e` is over task variables too.
            for k in t.vars.keys() {
                if let Some(x) = env.play_vars.get(k).filter(|_| env.extra.contains_key(k)) {
                    v.insert(k.clone(), x.clone());
                }
            }
            Some(Arc::new(Shared::lazy(Arc::new(v))))
        };
        let mut host_task = HostTask {
            name: t.name.clone(),
            module: t.module,
            when: t.when.clone(),
            notify: t.notify.clone(),
            listen: t.listen.clone(),
            args: Map::new(),
            play_shared: env.play_shared.clone(),
            task_vars,
            location: t.location.clone(),
            tags: t.tags.clone(),
            skip: false,
        };
        let early_scope = host_task.scope(env.groups, env.no_facts);
        // A `when` that is false on variables alone (no facts needed): the
        // task does not apply to this host, and its arguments are not needed
        // (e.g. the Docker repository URL when docker_install is distro).
        if t.when.iter().any(|w| matches!(env.templates.eval_bool(w, &early_scope), Ok(false))) {
            host_task.skip = true;
            return Ok(host_task);
        }
        let late_scope = host_task.scope(env.groups, env.placeholder_shared);
        let mpath = format!("{}.{}", t.path, t.key);
        // Early fields now; late fields kept as written.
        let mut early = Map::new();
        let mut trial = Map::new();
        for (k, v) in &t.args {
            if spec.late.contains(&k.as_str()) {
                early.insert(k.clone(), v.clone());
                let r = env
                    .templates
                    .render_value(v, &late_scope)
                    .map_err(|e| self.err(&format!("{mpath}.{k}"), e).field(format!("{mname}.{k}")))?;
                trial.insert(k.clone(), r);
            } else {
                let r = env.templates.render_value(v, &early_scope).map_err(|e| {
                    let mut err = self.err(&format!("{mpath}.{k}"), e).field(format!("{mname}.{k}"));
                    if env.placeholder.keys().any(|f| v.to_string().contains(f.as_str())) {
                        err = err.hint(format!(
                            "host facts are known only after connecting; in `{mname}` they may be used in: {}",
                            if spec.late.is_empty() {
                                "no argument (use `when` or a template file)".to_string()
                            } else {
                                spec.late.join(", ")
                            }
                        ));
                    }
                    err
                })?;
                early.insert(k.clone(), r.clone());
                trial.insert(k.clone(), r);
            }
        }
        for w in &t.when {
            env.templates
                .eval_bool(w, &late_scope)
                .map_err(|e| self.err(&format!("{}.when", t.path), format!("`{w}`: {e}")).field("when"))?;
        }
        let no_downloads = HashMap::new();
        let no_files = LocalFiles::default();
        let runners = HashMap::new();
        let ctx = ParseCtx {
            trial: true,
            downloads: &no_downloads,
            files: &no_files,
            templates: env.templates,
            vars: &late_scope,
            base_dir: &self.base_dir,
            runners: &runners,
        };
        let action = t.module.parse(&Args(&trial), &ctx).map_err(|e| {
            let (p, field) = match &e.field {
                Some(f) => (format!("{mpath}.{f}"), format!("{mname}.{f}")),
                None => (mpath.clone(), mname.to_string()),
            };
            if let Some(err) = env.inv_error(t, &e) {
                return err.hint(format!("it is the argument `{field}` of the task at {}", t.location));
            }
            self.err(&p, e.message.clone()).field(field)
        })?;
        action.probes(env.diff, &mut program.probes);
        program.downloads.extend(action.downloads());
        program.local_files.extend(action.local_files());
        program.registrations.extend(action.runners().iter().cloned());
        for n in action.notices() {
            if !program.notices.contains(&n) {
                program.notices.push(n);
            }
        }
        host_task.args = early;
        Ok(host_task)
    }
}

/// What compiling one task needs.
struct TaskEnv<'a> {
    inv: &'a Inventory,
    host: &'a crate::inventory::Host,
    play_vars: &'a Arc<Vars>,
    play_shared: &'a Arc<Shared>,
    groups: &'a Shared,
    extra: &'a Vars,
    placeholder: &'a Vars,
    /// The same, converted for templates once per host.
    placeholder_shared: &'a Shared,
    /// No facts (the early arguments), converted once per host.
    no_facts: &'a Shared,
    templates: &'a Templates,
    diff: bool,
}

impl TaskEnv<'_> {
    /// An argument written as one inventory variable (`"{{ runners }}"`,
    /// `"{{ x | default(..) }}"`): its error points where the variable was
    /// written, with the path below it (`all.vars.runners[1].docker.memory`).
    fn inv_error(&self, t: &Task, e: &crate::plan::module::ArgError) -> Option<InputError> {
        let field = e.field.as_deref()?;
        let arg_end = field.find(['.', '[']).unwrap_or(field.len());
        let (arg, below) = field.split_at(arg_end);
        let raw = t.args.get(arg)?.as_str()?.trim();
        let inner = raw.strip_prefix("{{")?.strip_suffix("}}")?.trim();
        let name_end = inner.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(inner.len());
        let (var, rest) = inner.split_at(name_end);
        if var.is_empty() || !(rest.trim().is_empty() || rest.trim_start().starts_with('|')) || t.vars.contains_key(var) {
            return None;
        }
        let loc = self.inv.var_loc(self.host, var)?;
        let path = if loc.path.is_empty() { var.to_string() } else { loc.path.clone() };
        Some(InputError::new(e.message.clone()).in_file(&loc.file).at(loc.pos).field(format!("{path}{below}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{plan_host, trial_runners, Change, PlanEnv, TaskPlan};
    use std::path::Path;

    struct Env {
        templates: Templates,
        downloads: HashMap<String, Vec<u8>>,
        files: LocalFiles,
        runners: HashMap<String, crate::gitlab::Settled>,
    }

    impl Env {
        fn new() -> Env {
            Env { templates: Templates::new(vec![]), downloads: HashMap::new(), files: LocalFiles::default(), runners: HashMap::new() }
        }
        fn plan(&self) -> PlanEnv<'_> {
            PlanEnv {
                templates: &self.templates,
                base_dir: Path::new("."),
                downloads: &self.downloads,
                files: &self.files,
                runners: &self.runners,
            }
        }
    }

    fn program(pb_src: &str) -> HostProgram {
        let inv = Inventory::parse(Path::new("h.yml"), "all:\n  hosts:\n    h1:\n").unwrap();
        let pb = Playbook::parse(Path::new("site.yml"), pb_src).unwrap();
        let t = Templates::new(vec![]);
        let ph = pb.play_hosts(&inv).unwrap();
        pb.compile(
            "h1",
            None,
            &CompileEnv { inv: &inv, play_hosts: &ph, templates: &t, diff: false, tags: &super::super::TagFilter::default() },
        )
        .unwrap()
    }

    #[test]
    fn later_tasks_see_earlier_changes_and_handlers_fire() {
        let p = program(
            "- hosts: all\n  tasks:\n    - name: conf\n      copy: {dest: /etc/app.conf, content: \"a={{ inventory_hostname }}\\n\"}\n      notify: restart app\n    - name: again\n      ansible.builtin.copy: {dest: /etc/app.conf, content: \"a={{ inventory_hostname }}\\n\"}\n  handlers:\n    - name: restart app\n      service: {name: app, state: restarted}\n",
        );
        let env = Env::new();
        let plan = plan_host(&p, &Facts::default(), &env.plan());
        assert!(matches!(plan.tasks[0].plan, TaskPlan::Changes(_)));
        assert_eq!(plan.tasks[1].plan, TaskPlan::Ok, "the second copy sees the first one's write");
        assert!(plan.tasks[2].handler);
        let script = plan.script("N1");
        assert!(script.contains("@@N1 start 0") && script.contains("@@N1 start 2") && !script.contains("@@N1 start 1"));
    }

    #[test]
    fn when_uses_facts() {
        let p = program("- hosts: all\n  tasks:\n    - command: echo hi\n      when: ansible_distribution == 'Ubuntu'\n");
        let env = Env::new();
        let mut f = Facts::default();
        f.os.id = "debian".into();
        assert_eq!(plan_host(&p, &f, &env.plan()).tasks[0].plan, TaskPlan::Skipped);
        f.os.id = "ubuntu".into();
        assert!(matches!(plan_host(&p, &f, &env.plan()).tasks[0].plan, TaskPlan::Changes(_)));
    }

    #[test]
    fn failing_task_stops_the_host() {
        let p = program("- hosts: all\n  tasks:\n    - file: {path: /missing, state: file}\n    - command: echo after\n");
        let plan = plan_host(&p, &Facts::default(), &Env::new().plan());
        assert_eq!(plan.tasks.len(), 1);
        assert!(matches!(plan.tasks[0].plan, TaskPlan::Failed(_)));
    }

    #[test]
    fn tasks_of_a_play_share_its_variables() {
        let p = program(
            "- hosts: all\n  vars: {a: 1}\n  tasks:\n    - command: echo {{ a }}\n    - command: echo {{ b }}\n      vars: {b: 2}\n",
        );
        assert!(Arc::ptr_eq(&p.tasks[0].play_shared, &p.tasks[1].play_shared), "one copy per play and host");
        assert!(p.tasks[0].task_vars.is_none() && p.tasks[1].task_vars.is_some());
    }

    /// A task after `gitlab_runner` that cannot be planned: registration is
    /// skipped for the host, and the placeholder identity used to find that
    /// out must never reach the host's config.toml.
    #[test]
    fn a_placeholder_runner_identity_is_never_planned_for_a_host() {
        let p = program(
            "- hosts: all\n  vars: {runner_builds_dir: /b, runner_cache_dir: /c, runner_environment: '', runner_default_image: debian, runner_pull_policy: always, runner_allowed_images: '', runner_allowed_pull_policies: ''}\n  tasks:\n    - name: runner\n      gitlab_runner: {url: \"https://gitlab.example\", name: r1, tags: [dockerd], template: config.toml.j2}\n    - name: later\n      file: {path: /missing, state: file}\n",
        );
        assert_eq!(p.registrations.len(), 1);
        // The run asks whether the plan would fail, with stand-in identities...
        let mut env = Env::new();
        env.runners = trial_runners(&p.registrations);
        let trial = plan_host(&p, &Facts::default(), &env.plan());
        assert!(trial.refused().is_some(), "the later task fails in planning");
        // ...and, since it would, registers nothing and plans without them.
        let env = Env::new();
        let plan = plan_host(&p, &Facts::default(), &env.plan());
        let TaskPlan::Failed(msg) = &plan.tasks[0].plan else { panic!("the runner task must fail, not write: {:?}", plan.tasks[0].plan) };
        assert!(msg.contains("not registered"), "{msg}");
        for (_, _, changes) in plan.changes() {
            for c in changes {
                if let Change::WriteFile { content, .. } = c {
                    assert!(!String::from_utf8_lossy(content).contains("placeholder"), "a placeholder reached a file");
                }
            }
        }
    }
}
