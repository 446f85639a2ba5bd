//! Playbooks: Ansible-style plays of named tasks, loaded and checked.
//!
//! Two stages, as ripgrep does with its flags: [`Playbook::load`] reads the
//! YAML (unknown keys and unknown modules are errors with a position) and
//! checks what needs no host: module arguments by name, `when` syntax,
//! `notify` targets. [`Playbook::compile`] (in `compile.rs`) then prepares
//! one host's program: variables merged, task arguments rendered and typed,
//! late fields rendered once against placeholder facts so that undefined
//! variables are found now, and the set of facts the probe must read.
//! Both happen before any connection. Modules are found by name (short or
//! `ansible.builtin.*`) in [`crate::modules::REGISTRY`].

mod compile;

pub use compile::CompileEnv;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::error::{InputError, InputErrors};
use crate::inventory::{Inventory, Vars};
use crate::modules;
use crate::plan::module::Module;
use crate::template::{parse_bool, Templates};
use crate::yamlpos::PosIndex;

type Y = serde_yaml_ng::Value;

/// The runner playbook, built in: what `bootstrap apply` runs without
/// `--playbook`.
pub const BUILTIN_PLAYBOOK: (&str, &str) = ("gitlab-runner.yml", include_str!("../../playbooks/gitlab-runner.yml"));

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
    tags: Option<Y>,
    #[serde(default)]
    tasks: Vec<RawTask>,
    #[serde(default)]
    handlers: Vec<RawTask>,
}

/// Task keywords as Ansible writes them; every other key must name a
/// module (checked against the registry, with a position).
#[derive(Deserialize)]
struct RawTask {
    name: Option<String>,
    when: Option<Y>,
    notify: Option<Y>,
    listen: Option<Y>,
    vars: Option<Map<String, Json>>,
    tags: Option<Y>,
    #[serde(flatten)]
    rest: Map<String, Json>,
}

/// One task as written, checked for shape.
#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub module: &'static dyn Module,
    pub args: Map<String, Json>,
    /// The key the module was written with (`copy`, `ansible.builtin.copy`).
    pub key: String,
    pub when: Vec<String>,
    pub notify: Vec<String>,
    /// Names a handler answers to: its name and its `listen` topics.
    pub listen: Vec<String>,
    pub vars: Vars,
    /// Its `tags:` and its play's.
    pub tags: Vec<String>,
    /// Key path in the file (`0.tasks.3`), for positions.
    pub path: String,
    /// Where it is written (`site.yml:12:7`), for messages.
    pub location: std::sync::Arc<str>,
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

/// Tags as Ansible takes them: a list, or one string with commas.
fn tag_list(v: &Y) -> Option<Vec<String>> {
    match v {
        Y::String(s) => Some(s.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()),
        Y::Number(n) => Some(vec![n.to_string()]),
        Y::Sequence(items) => items
            .iter()
            .map(|i| match i {
                Y::String(s) => Some(s.trim().to_string()),
                Y::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// `--tags` / `--skip-tags`, evaluated as Ansible's `Taggable.evaluate_tags`:
/// a task without tags is `untagged`; `always` runs unless skipped by
/// name, `never` only when one of its tags is asked for; `all`, `tagged`
/// and `untagged` select what they say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagFilter {
    pub only: Vec<String>,
    pub skip: Vec<String>,
}

impl TagFilter {
    pub fn runs(&self, task_tags: &[String]) -> bool {
        let untagged = vec!["untagged".to_string()];
        let tags: &[String] = if task_tags.is_empty() { &untagged } else { task_tags };
        let has = |t: &str| tags.iter().any(|x| x == t);
        let only: &[String] = &self.only;
        let only_all = ["all".to_string()];
        let only = if only.is_empty() { &only_all[..] } else { only };
        let in_only = |t: &str| only.iter().any(|x| x == t);
        let mut run = has("always")
            || (in_only("all") && !has("never"))
            || tags.iter().any(|t| in_only(t))
            || (in_only("tagged") && tags != untagged.as_slice() && !has("never"));
        if run && !self.skip.is_empty() {
            let in_skip = |t: &str| self.skip.iter().any(|x| x == t);
            if in_skip("all") {
                if !has("always") || in_skip("always") {
                    run = false;
                }
            } else if tags.iter().any(|t| in_skip(t)) || (in_skip("tagged") && tags != untagged.as_slice()) {
                run = false;
            }
        }
        run
    }
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
        let play_tags = match &rp.tags {
            None => vec![],
            Some(v) => match tag_list(v) {
                Some(t) => t,
                None => {
                    errors.push(self.err(&format!("{path}.tags"), "expected a tag or a list of tags").field("tags"));
                    vec![]
                }
            },
        };
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
        let mut tasks: Vec<Task> = Vec::new();
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
        for t in tasks.iter_mut().chain(handlers.iter_mut()) {
            for pt in &play_tags {
                if !t.tags.contains(pt) {
                    t.tags.push(pt.clone());
                }
            }
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
        let mut mods: Vec<(&str, &'static dyn Module, &Json)> = Vec::new();
        for (k, v) in &rt.rest {
            match modules::find(k) {
                Some(m) => mods.push((k.as_str(), m, v)),
                None => {
                    let keywords = ["name", "when", "notify", "listen", "vars", "tags"];
                    let mut known: Vec<&str> = modules::names();
                    known.extend(keywords);
                    let mut e =
                        self.err(&format!("{path}.{k}"), format!("unknown field `{k}`: not a task keyword or a module")).field(k.clone());
                    e = match crate::inventory::closest(k, &known) {
                        Some(c) => e.hint(format!("did you mean `{c}`?")),
                        None => e.hint(format!("modules: {}", modules::names().join(", "))),
                    };
                    return Err(e);
                }
            }
        }
        let (key, module, raw_args) = match mods.as_slice() {
            [one] => *one,
            [] => return Err(self.err(path, "the task names no module").hint(format!("use one of: {}", modules::names().join(", ")))),
            many => {
                return Err(self.err(
                    path,
                    format!(
                        "the task names several modules ({}); give each its own task",
                        many.iter().map(|m| m.0).collect::<Vec<_>>().join(", ")
                    ),
                ))
            }
        };
        let spec = module.spec();
        let mname = spec.name;
        let name = rt.name.clone().unwrap_or_else(|| mname.to_string());
        let mpath = format!("{path}.{key}");
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
                    let words = shlex::split(s).ok_or_else(|| self.err(&mpath, "unbalanced quotes").field(mname))?;
                    let mut m = Map::new();
                    for w in words {
                        let Some((k, v)) = w.split_once('=') else {
                            return Err(self.err(&mpath, format!("expected key=value arguments, found `{w}`")).field(mname));
                        };
                        m.insert(k.to_string(), Json::String(v.to_string()));
                    }
                    m
                }
            },
            Json::Null => Map::new(),
            _ => return Err(self.err(&mpath, "module arguments must be a mapping").field(mname)),
        };
        for k in args.keys() {
            if !spec.args.contains(&k.as_str()) {
                let mut e =
                    self.err(&format!("{mpath}.{k}"), format!("unknown argument `{k}` for module `{mname}`")).field(format!("{mname}.{k}"));
                if let Some(c) = crate::inventory::closest(k, spec.args) {
                    e = e.hint(format!("did you mean `{c}`?"));
                } else {
                    e = e.hint(format!("`{mname}` takes: {}", spec.args.join(", ")));
                }
                return Err(e);
            }
        }
        let templates = Templates::new(vec![]);
        let when = match &rt.when {
            None => vec![],
            Some(v) => {
                strings(v).ok_or_else(|| self.err(&format!("{path}.when"), "expected an expression or a list of them").field("when"))?
            }
        };
        for w in &when {
            let expr = w.trim().trim_start_matches("{{").trim_end_matches("}}");
            templates
                .check_expr(expr)
                .map_err(|e| self.err(&format!("{path}.when"), format!("`{w}` does not parse: {e}")).field("when"))?;
        }
        let notify = match &rt.notify {
            None => vec![],
            Some(v) => {
                strings(v).ok_or_else(|| self.err(&format!("{path}.notify"), "expected a handler name or a list").field("notify"))?
            }
        };
        let mut listen = vec![name.clone()];
        if let Some(v) = &rt.listen {
            listen.extend(strings(v).ok_or_else(|| self.err(&format!("{path}.listen"), "expected a name or a list").field("listen"))?);
        }
        let tags = match &rt.tags {
            None => vec![],
            Some(v) => tag_list(v).ok_or_else(|| self.err(&format!("{path}.tags"), "expected a tag or a list of tags").field("tags"))?,
        };
        Ok(Task {
            name,
            module,
            args,
            key: key.to_string(),
            when: when.into_iter().map(|w| w.trim().trim_start_matches("{{").trim_end_matches("}}").trim().to_string()).collect(),
            notify,
            listen,
            vars: rt.vars.unwrap_or_default(),
            tags,
            path: path.to_string(),
            location: self.location(path).into(),
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
        self.plays.iter().map(|p| inv.select(&p.hosts).map_err(|e| self.err(&format!("{}.hosts", p.path), e).field("hosts"))).collect()
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
    fn tags_select_as_ansible_does() {
        let f = |only: &[&str], skip: &[&str]| TagFilter {
            only: only.iter().map(|s| s.to_string()).collect(),
            skip: skip.iter().map(|s| s.to_string()).collect(),
        };
        let t = |tags: &[&str]| tags.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(f(&[], &[]).runs(&t(&[])) && f(&[], &[]).runs(&t(&["docker"])));
        assert!(!f(&[], &[]).runs(&t(&["never", "debug"])));
        assert!(f(&["debug"], &[]).runs(&t(&["never", "debug"])));
        assert!(f(&["docker"], &[]).runs(&t(&["always"])));
        assert!(!f(&["docker"], &[]).runs(&t(&["runner"])) && !f(&["docker"], &[]).runs(&t(&[])));
        assert!(f(&["untagged"], &[]).runs(&t(&[])));
        assert!(f(&["tagged"], &[]).runs(&t(&["x"])) && !f(&["tagged"], &[]).runs(&t(&[])));
        assert!(!f(&[], &["docker"]).runs(&t(&["docker", "x"])));
        assert!(f(&[], &["all"]).runs(&t(&["always"])) && !f(&[], &["all", "always"]).runs(&t(&["always"])));
        let pb = parse("- hosts: all\n  tags: [base]\n  tasks:\n    - command: echo\n      tags: x,y\n").unwrap();
        assert_eq!(pb.plays[0].tasks[0].tags, vec!["x", "y", "base"]);
    }

    #[test]
    fn free_forms() {
        let pb = parse("- hosts: all\n  tasks:\n    - command: echo hi\n    - apt: name=curl state=present\n").unwrap();
        assert_eq!(pb.plays[0].tasks[0].args["cmd"], "echo hi");
        assert_eq!(pb.plays[0].tasks[1].args["state"], "present");
    }
}
