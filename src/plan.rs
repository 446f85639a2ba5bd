//! The plan: from a host's program and its facts to the changes to make.
//!
//! Pure and local. Tasks are planned in order against a copy of the facts
//! that each planned change updates ([`Change::simulate`]), so a later task
//! sees what an earlier one will have done. Handlers are planned after the
//! tasks, if a changed task notified them. A task that cannot be planned
//! fails the host there, as Ansible stops a host at its first failure.
//!
//! [`HostPlan::script`] turns the changes into the one script that the
//! apply step sends; each task's part is framed by markers so progress and
//! failures are reported per task.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Map, Value as Json};

use crate::changes::{prelude, Change};
use crate::facts::Facts;
use crate::playbook::{HostProgram, HostTask};
use crate::template::Templates;

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
    pub location: String,
    pub handler: bool,
    pub plan: TaskPlan,
}

#[derive(Debug, Clone, Default)]
pub struct HostPlan {
    pub tasks: Vec<PlannedTask>,
}

/// What planning needs besides a program and facts: all local, no I/O.
pub struct PlanEnv<'a> {
    pub templates: &'a Templates,
    /// The playbook's folder (`files/`, `templates/`).
    pub base_dir: &'a Path,
    /// Files the controller downloaded before connecting, by URL.
    pub downloads: &'a HashMap<String, Vec<u8>>,
}

/// Plan `program` against `facts`. `extra` are variables the engine found
/// out on the controller (runner registration), beside the facts.
pub fn plan_host(program: &HostProgram, facts: &Facts, extra: &Map<String, Json>, env: &PlanEnv) -> HostPlan {
    let templates = env.templates;
    let mut fact_vars = facts.template_vars();
    for (k, v) in extra {
        fact_vars.insert(k.clone(), v.clone());
    }
    let mut sim = facts.clone();
    let mut plan = HostPlan::default();
    let mut notified: Vec<String> = Vec::new();
    let one = |t: &HostTask, sim: &mut Facts| -> TaskPlan {
        if t.skip {
            return TaskPlan::Skipped;
        }
        match t.applies(templates, &fact_vars) {
            Ok(false) => return TaskPlan::Skipped,
            Ok(true) => {}
            Err(e) => return TaskPlan::Failed(e),
        }
        let action = match t.action(env, &fact_vars) {
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

    /// The apply script: every task with changes, in order, each in a
    /// subshell under `set -e` with its output captured, framed by
    /// `@@<nonce> start I` and `@@<nonce> end I RC`. The script stops at
    /// the first failed task.
    pub fn script(&self, nonce: &str) -> String {
        let mut s = String::from(prelude());
        s.push_str("umask 022\n__stop=\ntrap '__stop=1' INT\n");
        // Each step's output goes to a file first and is sent when the step
        // is done: if the connection drops, the step still finishes whole
        // (an apt install is never cut by a broken pipe), and the script
        // ends at its next word to the controller.
        s.push_str("__log=$(mktemp)\ntrap 'rm -f \"$__log\"; exit 141' PIPE HUP\ntrap 'rm -f \"$__log\"' EXIT\n");
        let _ = writeln!(s, "echo \"@@{nonce} pid $$\"");
        let eof = format!("BOOTSTRAP_EOF_{nonce}");
        for (i, _, changes) in self.changes() {
            let _ = writeln!(s, "echo '@@{nonce} start {i}'");
            s.push_str("(\nset -e\n");
            for c in changes {
                s.push_str(&c.script(&eof));
            }
            s.push_str(") </dev/null >\"$__log\" 2>&1\n");
            let _ = writeln!(s, "__rc=$?; cat \"$__log\"; echo; echo \"@@{nonce} end {i} $__rc\"; [ \"$__rc\" -eq 0 ] || exit 0");
            // Ctrl-C on the controller: finish this step, start no other.
            let _ = writeln!(s, "[ -z \"$__stop\" ] || {{ echo '@@{nonce} interrupted'; exit 0; }}");
        }
        let _ = writeln!(s, "echo '@@{nonce} done'");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Inventory;
    use crate::playbook::Playbook;
    use std::path::Path;

    fn env(t: &Templates) -> PlanEnv<'_> {
        static NONE: std::sync::OnceLock<HashMap<String, Vec<u8>>> = std::sync::OnceLock::new();
        PlanEnv { templates: t, base_dir: Path::new("."), downloads: NONE.get_or_init(HashMap::new) }
    }

    fn program(pb_src: &str) -> (HostProgram, Templates) {
        let inv = Inventory::parse(Path::new("h.yml"), "all:\n  hosts:\n    h1:\n").unwrap();
        let pb = Playbook::parse(Path::new("site.yml"), pb_src).unwrap();
        let t = Templates::new(vec![]);
        let ph = pb.play_hosts(&inv).unwrap();
        (pb.compile(&inv, "h1", &ph, &t, None, false).unwrap(), t)
    }

    #[test]
    fn later_tasks_see_earlier_changes_and_handlers_fire() {
        let (p, t) = program(
            "- hosts: all\n  tasks:\n    - name: conf\n      copy: {dest: /etc/app.conf, content: \"a={{ inventory_hostname }}\\n\"}\n      notify: restart app\n    - name: again\n      copy: {dest: /etc/app.conf, content: \"a={{ inventory_hostname }}\\n\"}\n  handlers:\n    - name: restart app\n      service: {name: app, state: restarted}\n",
        );
        let plan = plan_host(&p, &Facts::default(), &Map::new(), &env(&t));
        assert!(matches!(plan.tasks[0].plan, TaskPlan::Changes(_)));
        assert_eq!(plan.tasks[1].plan, TaskPlan::Ok, "the second copy sees the first one's write");
        assert!(plan.tasks[2].handler);
        let script = plan.script("N1");
        assert!(script.contains("@@N1 start 0") && script.contains("@@N1 start 2") && !script.contains("@@N1 start 1"));
    }

    #[test]
    fn when_uses_facts() {
        let (p, t) = program("- hosts: all\n  tasks:\n    - command: echo hi\n      when: ansible_distribution == 'Ubuntu'\n");
        let mut f = Facts::default();
        f.os.id = "debian".into();
        assert_eq!(plan_host(&p, &f, &Map::new(), &env(&t)).tasks[0].plan, TaskPlan::Skipped);
        f.os.id = "ubuntu".into();
        assert!(matches!(plan_host(&p, &f, &Map::new(), &env(&t)).tasks[0].plan, TaskPlan::Changes(_)));
    }

    #[test]
    fn failing_task_stops_the_host() {
        let (p, t) = program("- hosts: all\n  tasks:\n    - file: {path: /missing, state: file}\n    - command: echo after\n");
        let plan = plan_host(&p, &Facts::default(), &Map::new(), &env(&t));
        assert_eq!(plan.tasks.len(), 1);
        assert!(matches!(plan.tasks[0].plan, TaskPlan::Failed(_)));
    }
}
