//! Modules: pure functions from (desired state, facts) to changes.
//!
//! Each module file holds one module: its arguments, checked
//! ([`Action::parse`]), the facts it needs ([`Action::probes`]) and its
//! planner ([`Action::plan`]). No module does I/O on a host or sees a
//! connection: they are tested with facts made by hand.
//!
//! Arguments arrive as JSON after templating. Fields listed as "late" in
//! [`SPECS`] may use host facts (`ansible_distribution_release`, ...):
//! they are rendered after the probe. All other fields must be known
//! before connecting, because the probe is built from them.

pub mod apt;
pub mod apt_repository;
pub mod assert;
pub mod command;
pub mod copy;
pub mod file;
pub mod gitlab_runner;
pub mod service;
pub mod template;
pub mod user;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use crate::changes::Change;
use crate::facts::{FactRequest, Facts};
use crate::template::{parse_bool, Templates};

/// A module's name, the arguments it accepts, and those rendered late.
pub struct Spec {
    pub name: &'static str,
    pub args: &'static [&'static str],
    pub late: &'static [&'static str],
    /// The argument a free-form string value stands for (`command: ls`).
    pub free_form: Option<&'static str>,
}

const ATTRS: [&str; 3] = ["mode", "owner", "group"];

/// Every module the playbook may use.
pub const SPECS: &[Spec] = &[
    Spec { name: "apt", args: &["name", "pkg", "state", "update_cache", "cache_valid_time", "purge", "lock_timeout", "install_recommends"], late: &[], free_form: None },
    Spec { name: "apt_repository", args: &["name", "uris", "suites", "components", "types", "architectures", "key", "key_src", "key_url", "state"], late: &["uris", "suites", "components", "architectures", "key"], free_form: None },
    Spec { name: "copy", args: &["dest", "content", "src", ATTRS[0], ATTRS[1], ATTRS[2]], late: &["content"], free_form: None },
    Spec { name: "template", args: &["src", "dest", ATTRS[0], ATTRS[1], ATTRS[2]], late: &[], free_form: None },
    Spec { name: "file", args: &["path", "dest", "state", "src", ATTRS[0], ATTRS[1], ATTRS[2]], late: &[], free_form: None },
    Spec { name: "directory", args: &["path", "state", ATTRS[0], ATTRS[1], ATTRS[2]], late: &[], free_form: None },
    Spec { name: "user", args: &["name", "state", "uid", "group", "groups", "append", "shell", "home", "system", "create_home", "remove"], late: &[], free_form: None },
    Spec { name: "group", args: &["name", "state", "gid", "system"], late: &[], free_form: None },
    Spec { name: "service", args: &["name", "state", "enabled", "daemon_reload"], late: &[], free_form: None },
    Spec { name: "systemd", args: &["name", "state", "enabled", "daemon_reload"], late: &[], free_form: None },
    Spec { name: "command", args: &["cmd", "creates", "removes", "unless", "chdir"], late: &["cmd"], free_form: Some("cmd") },
    Spec { name: "shell", args: &["cmd", "creates", "removes", "unless", "chdir"], late: &["cmd"], free_form: Some("cmd") },
    Spec { name: "assert", args: &["that", "fail_msg", "msg"], late: &["fail_msg", "msg"], free_form: None },
    Spec {
        name: "gitlab_runner",
        args: &[
            "url", "config", "template", "registration", "name", "tags", "runner_type", "group_id", "project_id",
            "run_untagged", "locked", "access_level", "paused", "maximum_timeout",
        ],
        late: &[],
        free_form: None,
    },
];

pub fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

/// A problem with one argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    pub field: Option<String>,
    pub message: String,
}

impl ArgError {
    pub fn field(field: &str, message: impl Into<String>) -> ArgError {
        ArgError { field: Some(field.to_string()), message: message.into() }
    }
    pub fn general(message: impl Into<String>) -> ArgError {
        ArgError { field: None, message: message.into() }
    }
}

/// What `parse` may need besides the arguments.
pub struct ParseCtx<'a> {
    /// Before connecting: facts are placeholders; check, don't conclude.
    pub trial: bool,
    /// Files the controller downloaded before connecting (`key_url`).
    pub downloads: &'a std::collections::HashMap<String, Vec<u8>>,
    pub templates: &'a Templates,
    /// Variables (and facts, or placeholders for them) for templates.
    pub vars: &'a Json,
    /// The playbook's folder: `src` of `copy` is looked up in `files/` there.
    pub base_dir: &'a Path,
}

/// A task's module with its arguments checked and typed.
#[derive(Debug, Clone)]
pub enum Action {
    Apt(apt::Apt),
    AptRepository(apt_repository::AptRepository),
    File(file::FileContent),
    Path(file::PathState),
    User(user::User),
    Group(user::Group),
    Service(service::Service),
    Command(command::Command),
    Assert(assert::Assert),
    GitlabRunner(gitlab_runner::GitlabRunner),
}

impl Action {
    pub fn parse(module: &str, args: &Map<String, Json>, ctx: &ParseCtx) -> Result<Action, ArgError> {
        let a = Args(args);
        Ok(match module {
            "apt" => Action::Apt(apt::Apt::parse(&a)?),
            "apt_repository" => Action::AptRepository(apt_repository::AptRepository::parse(&a, ctx)?),
            "copy" => Action::File(copy::parse(&a, ctx)?),
            "template" => Action::File(template::parse(&a, ctx)?),
            "file" => Action::Path(file::PathState::parse(&a, false)?),
            "directory" => Action::Path(file::PathState::parse(&a, true)?),
            "user" => Action::User(user::User::parse(&a)?),
            "group" => Action::Group(user::Group::parse(&a)?),
            "service" | "systemd" => Action::Service(service::Service::parse(&a)?),
            "command" => Action::Command(command::Command::parse(&a, false)?),
            "shell" => Action::Command(command::Command::parse(&a, true)?),
            "assert" => Action::Assert(assert::Assert::parse(&a, ctx)?),
            "gitlab_runner" => Action::GitlabRunner(gitlab_runner::GitlabRunner::parse(&a, ctx)?),
            other => return Err(ArgError::general(format!("unknown module `{other}`"))),
        })
    }

    /// The facts this action's plan reads. `diff`: also file contents.
    pub fn probes(&self, diff: bool, out: &mut BTreeSet<FactRequest>) {
        match self {
            Action::Apt(a) => a.probes(out),
            Action::AptRepository(a) => a.probes(diff, out),
            Action::File(a) => a.probes(diff, out),
            Action::Path(a) => a.probes(out),
            Action::User(a) => a.probes(out),
            Action::Group(a) => a.probes(out),
            Action::Service(a) => a.probes(out),
            Action::Command(a) => a.probes(out),
            Action::Assert(_) => {}
            Action::GitlabRunner(a) => a.probes(out),
        }
    }

    /// The changes that bring the host from `facts` to what the action
    /// wants; empty when it is already there.
    pub fn plan(&self, facts: &Facts) -> Result<Vec<Change>, String> {
        match self {
            Action::Apt(a) => Ok(a.plan(facts)),
            Action::AptRepository(a) => a.plan(facts),
            Action::File(a) => a.plan(facts),
            Action::Path(a) => a.plan(facts),
            Action::User(a) => Ok(a.plan(facts)),
            Action::Group(a) => Ok(a.plan(facts)),
            Action::Service(a) => Ok(a.plan(facts)),
            Action::Command(a) => Ok(a.plan(facts)),
            Action::Assert(a) => a.plan(),
            Action::GitlabRunner(a) => a.plan(facts),
        }
    }
}

/// Typed access to a module's arguments.
pub struct Args<'a>(pub &'a Map<String, Json>);

impl<'a> Args<'a> {
    pub fn get(&self, k: &str) -> Option<&'a Json> {
        self.0.get(k).filter(|v| !v.is_null())
    }

    pub fn opt_str(&self, k: &str) -> Result<Option<String>, ArgError> {
        match self.get(k) {
            None => Ok(None),
            Some(Json::String(s)) => {
                if s.contains('\0') {
                    return Err(ArgError::field(k, "must not contain a NUL byte"));
                }
                Ok(Some(s.clone()))
            }
            Some(Json::Number(n)) => Ok(Some(n.to_string())),
            Some(Json::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(ArgError::field(k, format!("expected a string, found {}", kind(other)))),
        }
    }

    pub fn str(&self, k: &str) -> Result<String, ArgError> {
        self.opt_str(k)?.ok_or_else(|| ArgError::field(k, "is required"))
    }

    pub fn opt_bool(&self, k: &str) -> Result<Option<bool>, ArgError> {
        match self.get(k) {
            None => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(Json::String(s)) => parse_bool(s)
                .map(Some)
                .ok_or_else(|| ArgError::field(k, format!("expected a boolean (true/false/yes/no), found `{s}`"))),
            Some(Json::Number(n)) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => Ok(Some(n.as_u64() == Some(1))),
            Some(other) => Err(ArgError::field(k, format!("expected a boolean, found {}", kind(other)))),
        }
    }

    pub fn opt_u64(&self, k: &str) -> Result<Option<u64>, ArgError> {
        match self.get(k) {
            None => Ok(None),
            Some(Json::Number(n)) => n.as_u64().map(Some).ok_or_else(|| ArgError::field(k, "expected a whole number")),
            Some(Json::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ArgError::field(k, format!("expected a whole number, found `{s}`"))),
            Some(other) => Err(ArgError::field(k, format!("expected a whole number, found {}", kind(other)))),
        }
    }

    /// A list of strings: a YAML list, or one string with commas.
    pub fn list(&self, k: &str) -> Result<Vec<String>, ArgError> {
        match self.get(k) {
            None => Ok(Vec::new()),
            Some(Json::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Json::String(s) if !s.contains('\0') => Ok(s.clone()),
                    Json::Number(n) => Ok(n.to_string()),
                    other => Err(ArgError::field(k, format!("expected a list of strings, found {}", kind(other)))),
                })
                .collect(),
            Some(Json::String(s)) => {
                if s.contains('\0') {
                    return Err(ArgError::field(k, "must not contain a NUL byte"));
                }
                Ok(s.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect())
            }
            Some(other) => Err(ArgError::field(k, format!("expected a list, found {}", kind(other)))),
        }
    }

    /// One of `choices`, or `default`.
    pub fn choice(&self, k: &str, choices: &[&str], default: &str) -> Result<String, ArgError> {
        let v = self.opt_str(k)?.unwrap_or_else(|| default.to_string());
        if choices.contains(&v.as_str()) {
            Ok(v)
        } else {
            Err(ArgError::field(k, format!("must be one of {}, found `{v}`", choices.join(", "))))
        }
    }

    /// A file mode: `"0644"`, `"644"`, `0644` (YAML 1.1 octal, read as
    /// decimal 644 by YAML 1.2 parsers: its digits are taken as octal),
    /// or symbolic `u=rw,g=r,o=r`.
    pub fn mode(&self, k: &str) -> Result<Option<u32>, ArgError> {
        let text = match self.get(k) {
            None => return Ok(None),
            Some(Json::Number(n)) => n.to_string(),
            Some(Json::String(s)) => s.trim().to_string(),
            Some(other) => return Err(ArgError::field(k, format!("expected a mode like \"0644\", found {}", kind(other)))),
        };
        if let Some(m) = parse_symbolic_mode(&text) {
            return Ok(Some(m));
        }
        let digits = text.trim_start_matches("0o");
        match u32::from_str_radix(digits, 8) {
            Ok(m) if m <= 0o7777 && !digits.is_empty() => Ok(Some(m)),
            _ => Err(ArgError::field(k, format!("`{text}` is not an octal mode like \"0644\""))),
        }
    }

    pub fn attrs(&self) -> Result<crate::changes::Attrs, ArgError> {
        let owner = self.opt_str("owner")?;
        let group = self.opt_str("group")?;
        for (k, v) in [("owner", &owner), ("group", &group)] {
            if let Some(v) = v {
                check_name(k, v)?;
            }
        }
        Ok(crate::changes::Attrs { mode: self.mode("mode")?, owner, group })
    }
}

fn parse_symbolic_mode(s: &str) -> Option<u32> {
    if !s.contains('=') {
        return None;
    }
    let mut mode = 0;
    for part in s.split(',') {
        let (who, perms) = part.split_once('=')?;
        let mut bits = 0;
        for c in perms.chars() {
            bits |= match c {
                'r' => 4,
                'w' => 2,
                'x' => 1,
                _ => return None,
            };
        }
        for w in who.chars() {
            mode |= match w {
                'u' => bits << 6,
                'g' => bits << 3,
                'o' => bits,
                'a' => bits << 6 | bits << 3 | bits,
                _ => return None,
            };
        }
    }
    Some(mode)
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

/// A user or group name as useradd accepts it.
pub fn check_name(field: &str, v: &str) -> Result<(), ArgError> {
    let ok = !v.is_empty()
        && v.len() <= 32
        && !v.starts_with('-')
        && v.chars().all(|c| c.is_ascii_alphanumeric() || "._-$".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ArgError::field(field, format!("`{}` is not a valid user or group name", v.escape_debug())))
    }
}

/// An absolute path without NUL or newline.
pub fn check_path(field: &str, v: &str) -> Result<(), ArgError> {
    if !v.starts_with('/') {
        return Err(ArgError::field(field, format!("`{v}` must be an absolute path")));
    }
    if v.contains('\n') {
        return Err(ArgError::field(field, "must not contain a newline"));
    }
    Ok(())
}

/// Find a local file given by a task: absolute, or relative to the
/// playbook's `sub` folder, or to the playbook's folder.
pub fn local_file(base: &Path, sub: &str, name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    [base.join(sub).join(name), base.join(name)].into_iter().find(|c| c.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn modes() {
        let m = json!({"a": "0644", "b": 644, "c": "u=rw,g=r,o=r", "d": "0999", "e": 755});
        let a = Args(m.as_object().unwrap());
        assert_eq!(a.mode("a").unwrap(), Some(0o644));
        assert_eq!(a.mode("b").unwrap(), Some(0o644));
        assert_eq!(a.mode("c").unwrap(), Some(0o644));
        assert!(a.mode("d").is_err());
        assert_eq!(a.mode("e").unwrap(), Some(0o755));
    }

    #[test]
    fn booleans_yaml11() {
        let m = json!({"a": "yes", "b": "off", "c": "maybe"});
        let a = Args(m.as_object().unwrap());
        assert_eq!(a.opt_bool("a").unwrap(), Some(true));
        assert_eq!(a.opt_bool("b").unwrap(), Some(false));
        assert!(a.opt_bool("c").is_err());
    }
}
