//! Playbooks: Ansible-style plays of named tasks, loaded and checked.
//!
//! Two stages, as ripgrep does with its flags: [`Playbook::load`] reads the
//! YAML (unknown keys and unknown modules are errors with a position) and
//! checks what needs no host: module arguments by name, `when` syntax,
//! `notify` targets, template files. [`Playbook::compile`] then prepares
//! one host's program: variables merged, task arguments rendered and typed,
//! late fields rendered once against placeholder facts so that undefined
//! variables are found now, and the set of facts the probe must read.
//! Both happen before any connection.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::error::{InputError, InputErrors};
use crate::facts::{FactRequest, Facts};
use crate::inventory::{resolve_vars, Inventory, Vars};
use crate::modules::{self, Action, ParseCtx};
use crate::template::{parse_bool, Templates};
use crate::yamlpos::PosIndex;

type Y = serde_yaml_ng::Value;

/// The runner playbook, built in: what `bootstrap apply` runs without
/// `--playbook`.
pub const BUILTIN_PLAYBOOK: (&str, &str) = ("gitlab-runner.yml", include_str!("../playbooks/gitlab-runner.yml"));

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlay {
    name: Option<String>,
    hosts: Option<String>,
    #[serde(rename = "become")]
    become_: Option<Y>,
    vars: Option<Map<String, Json>>,
    /// Like a role's defaults/main.yml: below inventory variables.
    defaults: Option<Map<String, Json>>,
    /// Printed once at the end of a run that applied this play.
    notice: Option<String>,
    gather_facts: Option<Y>,
    #[serde(default)]
    tasks: Vec<RawTask>,
    #[serde(default)]
    handlers: Vec<RawTask>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    name: Option<String>,
    when: Option<Y>,
    notify: Option<Y>,
    listen: Option<Y>,
    vars: Option<Map<String, Json>>,
    tags: Option<Y>,
    apt: Option<Json>,
    apt_repository: Option<Json>,
    copy: Option<Json>,
    template: Option<Json>,
    file: Option<Json>,
    directory: Option<Json>,
    user: Option<Json>,
    group: Option<Json>,
    service: Option<Json>,
    systemd: Option<Json>,
    command: Option<Json>,
    shell: Option<Json>,
    #[serde(rename = "assert")]
    assert_: Option<Json>,
    gitlab_runner: Option<Json>,
}

impl RawTask {
    fn modules(&self) -> Vec<(&'static str, &Json)> {
        let all: [(&'static str, &Option<Json>); 14] = [
            ("apt", &self.apt),
            ("apt_repository", &self.apt_repository),
            ("copy", &self.copy),
            ("template", &self.template),
            ("file", &self.file),
            ("directory", &self.directory),
            ("user", &self.user),
            ("group", &self.group),
            ("service", &self.service),
            ("systemd", &self.systemd),
            ("command", &self.command),
            ("shell", &self.shell),
            ("assert", &self.assert_),
            ("gitlab_runner", &self.gitlab_runner),
        ];
        all.into_iter().filter_map(|(n, v)| v.as_ref().map(|v| (n, v))).collect()
    }
}

/// One task as written, checked for shape.
#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub module: &'static str,
    pub args: Map<String, Json>,
    pub when: Vec<String>,
    pub notify: Vec<String>,
    /// Names a handler answers to: its name and its `listen` topics.
    pub listen: Vec<String>,
    pub vars: Vars,
    /// Key path in the file (`0.tasks.3`), for positions.
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct Play {
    pub hosts: String,
    pub r#become: Option<bool>,
    pub vars: Vars,
    pub defaults: Vars,
    pub notice: Option<String>,
    pub tasks: Vec<Task>,
    pub handlers: Vec<Task>,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct Playbook {
    pub file: PathBuf,
    /// Folder of the playbook: `templates/` and `files/` are looked up here.
    pub base_dir: PathBuf,
    pub plays: Vec<Play>,
    index: PosIndex,
}

fn strings(v: &Y) -> Option<Vec<String>> {
    match v {
        Y::String(s) => Some(vec![s.clone()]),
        Y::Bool(b) => Some(vec![b.to_string()]),
        Y::Sequence(items) => items
            .iter()
            .map(|i| match i {
                Y::String(s) => Some(s.clone()),
                Y::Bool(b) => Some(b.to_string()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// A host's program: what one host will run, prepared before connecting.
#[derive(Debug, Clone)]
pub struct HostProgram {
    pub r#become: bool,
    /// URLs the controller must download before planning (`key_url`).
    pub downloads: BTreeSet<String>,
    /// Runner registrations to settle with GitLab before planning.
    pub registrations: Vec<crate::modules::gitlab_runner::Settings>,
    /// Notices of the plays this host is in.
    pub notices: Vec<String>,
    pub tasks: Vec<HostTask>,
    pub handlers: Vec<HostTask>,
    /// Facts the probe must read.
    pub probes: BTreeSet<FactRequest>,
}

/// A task for one host, arguments rendered except the late ones.
#[derive(Debug, Clone)]
pub struct HostTask {
    pub name: String,
    pub module: &'static str,
    pub when: Vec<String>,
    pub notify: Vec<String>,
    pub listen: Vec<String>,
    /// Arguments with early fields rendered; late fields still templates.
    pub args: Map<String, Json>,
    /// Variables (inventory, play, task) without facts.
    pub vars: Vars,
    /// Where the task is written, for messages (`site.yml:12:7`).
    pub location: String,
    /// Its `when` is false on variables alone: skipped on this host.
    pub skip: bool,
}

impl Playbook {
    /// The built-in runner playbook; local files it names are looked up
    /// from the current folder.
    pub fn builtin() -> Result<Playbook, InputErrors> {
        let (name, source) = BUILTIN_PLAYBOOK;
        let mut pb = Playbook::parse(Path::new(&format!("(built-in) playbooks/{name}")), source)?;
        pb.base_dir = PathBuf::from(".");
        Ok(pb)
    }

    pub fn load(file: &Path) -> Result<Playbook, InputErrors> {
        let source = crate::error::read_text(file, "playbook")?;
        Playbook::parse(file, &source)
    }

    pub fn parse(file: &Path, source: &str) -> Result<Playbook, InputErrors> {
        let index = PosIndex::new(source);
        let raw: Vec<RawPlay> = serde_yaml_ng::from_str(source).map_err(|e| InputError::from_yaml(file, &e))?;
        let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let mut pb = Playbook { file: file.to_path_buf(), base_dir, plays: Vec::new(), index };
        let mut errors = Vec::new();
        for (pi, rp) in raw.into_iter().enumerate() {
            match pb.check_play(pi, rp) {
                Ok(play) => pb.plays.push(play),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if pb.plays.is_empty() && errors.is_empty() {
            errors.push(InputError::new("the playbook has no plays").in_file(file));
        }
        if errors.is_empty() {
            Ok(pb)
        } else {
            Err(InputErrors(errors))
        }
    }

    fn err(&self, path: &str, msg: impl Into<String>) -> InputError {
        InputError::new(msg).in_file(&self.file).at(self.index.find(path))
    }

    fn check_play(&self, pi: usize, rp: RawPlay) -> Result<Play, Vec<InputError>> {
        let path = pi.to_string();
        let mut errors = Vec::new();
        let _ = (&rp.gather_facts, &rp.name);
        let become_ = match &rp.become_ {
            None => None,
            Some(Y::Bool(b)) => Some(*b),
            Some(Y::String(s)) => match parse_bool(s) {
                Some(b) => Some(b),
                None => {
                    errors.push(self.err(&format!("{path}.become"), format!("expected a boolean, found `{s}`")).field("become"));
                    None
                }
            },
            Some(_) => {
                errors.push(self.err(&format!("{path}.become"), "expected a boolean").field("become"));
                None
            }
        };
        let mut tasks = Vec::new();
        for (ti, rt) in rp.tasks.into_iter().enumerate() {
            match self.check_task(&format!("{path}.tasks.{ti}"), rt) {
                Ok(t) => tasks.push(t),
                Err(e) => errors.push(e),
            }
        }
        let mut handlers = Vec::new();
        for (ti, rt) in rp.handlers.into_iter().enumerate() {
            match self.check_task(&format!("{path}.handlers.{ti}"), rt) {
                Ok(t) => handlers.push(t),
                Err(e) => errors.push(e),
            }
        }
        for t in &tasks {
            for n in &t.notify {
                if !handlers.iter().any(|h: &Task| h.listen.contains(n)) {
                    let known: Vec<&str> = handlers.iter().flat_map(|h| h.listen.iter().map(String::as_str)).collect();
                    let mut e = self.err(&format!("{}.notify", t.path), format!("no handler named `{n}` in this play")).field("notify");
                    if let Some(c) = crate::inventory::closest(n, &known) {
                        e = e.hint(format!("a handler with a similar name exists: `{c}`"));
                    }
                    errors.push(e);
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Play {
            hosts: rp.hosts.unwrap_or_else(|| "all".into()),
            r#become: become_,
            vars: rp.vars.unwrap_or_default(),
            defaults: rp.defaults.unwrap_or_default(),
            notice: rp.notice,
            tasks,
            handlers,
            path,
        })
    }

    fn check_task(&self, path: &str, rt: RawTask) -> Result<Task, InputError> {
        let mods = rt.modules();
        let (module, raw_args) = match mods.as_slice() {
            [one] => *one,
            [] => {
                return Err(self.err(path, "the task names no module").hint(format!(
                    "use one of: {}",
                    modules::SPECS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                )))
            }
            many => {
                return Err(self.err(
                    path,
                    format!("the task names several modules ({}); give each its own task", many.iter().map(|m| m.0).collect::<Vec<_>>().join(", ")),
                ))
            }
        };
        let spec = modules::spec(module).expect("every RawTask module has a spec");
        let name = rt.name.clone().unwrap_or_else(|| module.to_string());
        let mpath = format!("{path}.{module}");
        let args: Map<String, Json> = match raw_args {
            Json::Object(m) => m.clone(),
            Json::String(s) => match spec.free_form {
                Some(field) => {
                    let mut m = Map::new();
                    m.insert(field.into(), Json::String(s.clone()));
                    m
                }
                None => {
                    // key=value form, as Ansible accepts it.
                    let words = shlex::split(s).ok_or_else(|| self.err(&mpath, "unbalanced quotes").field(module))?;
                    let mut m = Map::new();
                    for w in words {
                        let Some((k, v)) = w.split_once('=') else {
                            return Err(self.err(&mpath, format!("expected key=value arguments, found `{w}`")).field(module));
                        };
                        m.insert(k.to_string(), Json::String(v.to_string()));
                    }
                    m
                }
            },
            Json::Null => Map::new(),
            _ => return Err(self.err(&mpath, "module arguments must be a mapping").field(module)),
        };
        for k in args.keys() {
            if !spec.args.contains(&k.as_str()) {
                let mut e = self
                    .err(&format!("{mpath}.{k}"), format!("unknown argument `{k}` for module `{module}`"))
                    .field(format!("{module}.{k}"));
                if let Some(c) = crate::inventory::closest(k, spec.args) {
                    e = e.hint(format!("did you mean `{c}`?"));
                } else {
                    e = e.hint(format!("`{module}` takes: {}", spec.args.join(", ")));
                }
                return Err(e);
            }
        }
        let templates = Templates::new(vec![]);
        let when = match &rt.when {
            None => vec![],
            Some(v) => strings(v).ok_or_else(|| self.err(&format!("{path}.when"), "expected an expression or a list of them").field("when"))?,
        };
        for w in &when {
            let expr = w.trim().trim_start_matches("{{").trim_end_matches("}}");
            templates
                .check_expr(expr)
                .map_err(|e| self.err(&format!("{path}.when"), format!("`{w}` does not parse: {e}")).field("when"))?;
        }
        let notify = match &rt.notify {
            None => vec![],
            Some(v) => strings(v).ok_or_else(|| self.err(&format!("{path}.notify"), "expected a handler name or a list").field("notify"))?,
        };
        let mut listen = vec![name.clone()];
        if let Some(v) = &rt.listen {
            listen.extend(strings(v).ok_or_else(|| self.err(&format!("{path}.listen"), "expected a name or a list").field("listen"))?);
        }
        let _ = &rt.tags;
        Ok(Task {
            name,
            module,
            args,
            when: when.into_iter().map(|w| w.trim().trim_start_matches("{{").trim_end_matches("}}").trim().to_string()).collect(),
            notify,
            listen,
            vars: rt.vars.unwrap_or_default(),
            path: path.to_string(),
        })
    }

    /// `file:line:column` of a task, for messages.
    pub fn location(&self, path: &str) -> String {
        match self.index.find(path) {
            Some(p) => format!("{}:{}:{}", self.file.display(), p.line, p.column),
            None => self.file.display().to_string(),
        }
    }

    /// The hosts each play applies to, checked against the inventory.
    pub fn play_hosts(&self, inv: &Inventory) -> Result<Vec<Vec<String>>, InputError> {
        self.plays
            .iter()
            .map(|p| inv.select(&p.hosts).map_err(|e| self.err(&format!("{}.hosts", p.path), e).field("hosts")))
            .collect()
    }

    /// Prepare `host`'s program (see the module docs). `conn_become` is the
    /// inventory's `ansible_become`.
    pub fn compile(
        &self,
        inv: &Inventory,
        host: &str,
        play_hosts: &[Vec<String>],
        templates: &Templates,
        conn_become: Option<bool>,
        diff: bool,
    ) -> Result<HostProgram, InputErrors> {
        let h = &inv.hosts[host];
        let inv_vars = inv.host_vars(h, templates)?;
        let mut placeholder = Facts::placeholder(host).template_vars();
        placeholder.extend(crate::modules::gitlab_runner::placeholder_vars());
        let mut program = HostProgram {
            r#become: conn_become.unwrap_or(false),
            notices: Vec::new(),
            downloads: BTreeSet::new(),
            registrations: Vec::new(),
            tasks: Vec::new(),
            handlers: Vec::new(),
            probes: BTreeSet::new(),
        };
        let mut errors = Vec::new();
        for (pi, play) in self.plays.iter().enumerate() {
            if !play_hosts[pi].iter().any(|x| x == host) {
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
            // Play defaults under inventory vars, play vars over them, as
            // Ansible ranks role defaults and play vars.
            let mut vars = play.defaults.clone();
            for (k, v) in &inv_vars {
                vars.insert(k.clone(), v.clone());
            }
            for (k, v) in &play.vars {
                vars.insert(k.clone(), v.clone());
            }
            let vars = match resolve_vars(vars, templates) {
                Ok(v) => v,
                Err((k, msg)) => {
                    errors.push(self.err(&format!("{}.vars.{k}", play.path), msg).field(format!("vars.{k}")));
                    continue;
                }
            };
            for (list, is_handler) in [(&play.tasks, false), (&play.handlers, true)] {
                for t in list {
                    match self.compile_task(t, &vars, &placeholder, templates, diff, &mut program) {
                        Ok(ht) => {
                            if is_handler {
                                program.handlers.push(ht)
                            } else {
                                program.tasks.push(ht)
                            }
                        }
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

    fn compile_task(
        &self,
        t: &Task,
        play_vars: &Vars,
        placeholder: &Map<String, Json>,
        templates: &Templates,
        diff: bool,
        program: &mut HostProgram,
    ) -> Result<HostTask, InputError> {
        let spec = modules::spec(t.module).expect("checked at load");
        let mut vars = play_vars.clone();
        for (k, v) in &t.vars {
            vars.insert(k.clone(), v.clone());
        }
        let vars = resolve_vars(vars, templates)
            .map_err(|(k, msg)| self.err(&format!("{}.vars.{k}", t.path), msg).field(format!("vars.{k}")))?;
        let early_ctx = Json::Object(vars.clone());
        let location = self.location(&t.path);
        // A `when` that is false on variables alone (no facts needed): the
        // task does not apply to this host, and its arguments are not needed
        // (e.g. the Docker repository URL when docker_install is distro).
        if t.when.iter().any(|w| matches!(templates.eval_bool(w, &early_ctx), Ok(false))) {
            return Ok(HostTask {
                name: t.name.clone(),
                module: t.module,
                when: t.when.clone(),
                notify: t.notify.clone(),
                listen: t.listen.clone(),
                args: Map::new(),
                vars,
                location,
                skip: true,
            });
        }
        let mut with_facts = vars.clone();
        for (k, v) in placeholder {
            with_facts.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let late_ctx = Json::Object(with_facts);
        let mpath = format!("{}.{}", t.path, t.module);
        // Early fields now; late fields kept as written.
        let mut early = Map::new();
        let mut trial = Map::new();
        for (k, v) in &t.args {
            if spec.late.contains(&k.as_str()) {
                early.insert(k.clone(), v.clone());
                let r = templates.render_value(v, &late_ctx).map_err(|e| self.err(&format!("{mpath}.{k}"), e).field(format!("{}.{k}", t.module)))?;
                trial.insert(k.clone(), r);
            } else {
                let r = templates.render_value(v, &early_ctx).map_err(|e| {
                    let mut err = self.err(&format!("{mpath}.{k}"), e).field(format!("{}.{k}", t.module));
                    if placeholder.keys().any(|f| v.to_string().contains(f.as_str())) {
                        err = err.hint(format!(
                            "host facts are known only after connecting; in `{}` they may be used in: {}",
                            t.module,
                            if spec.late.is_empty() { "no argument (use `when` or a template file)".to_string() } else { spec.late.join(", ") }
                        ));
                    }
                    err
                })?;
                early.insert(k.clone(), r.clone());
                trial.insert(k.clone(), r);
            }
        }
        for w in &t.when {
            templates
                .eval_bool(w, &late_ctx)
                .map_err(|e| self.err(&format!("{}.when", t.path), format!("`{w}`: {e}")).field("when"))?;
        }
        let no_downloads = std::collections::HashMap::new();
        let ctx = ParseCtx { trial: true, downloads: &no_downloads, templates, vars: &late_ctx, base_dir: &self.base_dir };
        let action = Action::parse(t.module, &trial, &ctx).map_err(|e| {
            let p = match &e.field {
                Some(f) => format!("{mpath}.{f}"),
                None => mpath.clone(),
            };
            let mut err = self.err(&p, e.message.clone());
            err = err.field(match &e.field {
                Some(f) => format!("{}.{f}", t.module),
                None => t.module.to_string(),
            });
            err
        })?;
        action.probes(diff, &mut program.probes);
        if let Some(Json::String(u)) = early.get("key_url") {
            program.downloads.insert(u.clone());
        }
        if let Action::GitlabRunner(g) = &action {
            program.registrations.push(g.settings.clone());
        }
        Ok(HostTask {
            name: t.name.clone(),
            module: t.module,
            when: t.when.clone(),
            notify: t.notify.clone(),
            listen: t.listen.clone(),
            args: early,
            vars,
            location,
            skip: false,
        })
    }
}

impl HostTask {
    /// Render the late fields with the real facts and type the arguments.
    pub fn action(&self, env: &crate::plan::PlanEnv, facts: &Map<String, Json>) -> Result<Action, String> {
        let templates = env.templates;
        let ctx = self.context(facts);
        let spec = modules::spec(self.module).expect("checked at load");
        let mut args = Map::new();
        for (k, v) in &self.args {
            if spec.late.contains(&k.as_str()) {
                args.insert(k.clone(), templates.render_value(v, &ctx).map_err(|e| format!("`{k}`: {e}"))?);
            } else {
                args.insert(k.clone(), v.clone());
            }
        }
        let pctx = ParseCtx { trial: false, downloads: env.downloads, templates, vars: &ctx, base_dir: env.base_dir };
        Action::parse(self.module, &args, &pctx).map_err(|e| match e.field {
            Some(f) => format!("`{f}`: {}", e.message),
            None => e.message,
        })
    }

    /// Variables plus facts.
    pub fn context(&self, facts: &Map<String, Json>) -> Json {
        let mut ctx = self.vars.clone();
        for (k, v) in facts {
            ctx.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Json::Object(ctx)
    }

    /// Whether every `when` holds.
    pub fn applies(&self, templates: &Templates, facts: &Map<String, Json>) -> Result<bool, String> {
        let ctx = self.context(facts);
        for w in &self.when {
            if !templates.eval_bool(w, &ctx).map_err(|e| format!("when `{w}`: {e}"))? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Playbook, InputErrors> {
        Playbook::parse(Path::new("site.yml"), src)
    }

    #[test]
    fn unknown_module_has_position() {
        let err = parse("- hosts: all\n  tasks:\n    - name: x\n      aptt:\n        name: curl\n").unwrap_err();
        let s = err.to_string();
        assert!(s.contains("site.yml:") && s.contains("unknown field `aptt`"), "{s}");
    }

    #[test]
    fn unknown_argument_names_field_and_line() {
        let err = parse("- hosts: all\n  tasks:\n    - name: x\n      apt:\n        nmae: curl\n").unwrap_err();
        let s = err.to_string();
        assert!(s.contains("site.yml:5:9: `apt.nmae`: unknown argument"), "{s}");
        assert!(s.contains("did you mean `name`"), "{s}");
    }

    #[test]
    fn bad_when_and_unknown_handler() {
        let err = parse("- hosts: all\n  tasks:\n    - name: x\n      command: ls\n      when: a ==\n").unwrap_err();
        let s = err.to_string();
        assert!(s.contains("site.yml:5:7: `when`"), "{s}");
        let err = parse("- hosts: all\n  tasks:\n    - name: x\n      command: ls\n      notify: restart dockr\n  handlers:\n    - name: restart docker\n      service: {name: docker, state: restarted}\n").unwrap_err();
        let s = err.to_string();
        assert!(s.contains("no handler named `restart dockr`") && s.contains("restart docker"), "{s}");
    }

    #[test]
    fn free_forms() {
        let pb = parse("- hosts: all\n  tasks:\n    - command: echo hi\n    - apt: name=curl state=present\n").unwrap();
        assert_eq!(pb.plays[0].tasks[0].args["cmd"], "echo hi");
        assert_eq!(pb.plays[0].tasks[1].args["state"], "present");
    }
}
