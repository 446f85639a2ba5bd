//! The module contract: what a module is to the playbook and the planner.
//!
//! A module has a [`Spec`] (its name, the arguments it accepts, the ones
//! rendered late with host facts) and parses typed arguments ([`Args`])
//! into an [`Action`], whose planner is a pure function from [`Facts`] to
//! [`Change`]s. The modules themselves live in `crate::modules`; this room
//! only needs the contract, so planning never depends on a module by name.
//!
//! Arguments arrive as JSON after templating. Fields listed as "late" may
//! use host facts (`ansible_distribution_release`, ...): they are rendered
//! after the probe. All other fields must be known before connecting,
//! because the probe is built from them.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use super::changes::{Attrs, Change};
use super::facts::{FactRequest, Facts};
use crate::gitlab::{RunnerSettings, Settled};
use crate::template::{parse_bool, Scope, Templates};

/// A module's name, the arguments it accepts, and those rendered late.
pub struct Spec {
    pub name: &'static str,
    pub args: &'static [&'static str],
    pub late: &'static [&'static str],
    /// The argument a free-form string value stands for (`command: ls`).
    pub free_form: Option<&'static str>,
}

/// A module as the playbook and the planner see it: a name, the
/// arguments it takes, and a parser that turns arguments into an
/// [`Action`]. One implementation per module file, listed once in
/// `crate::modules::REGISTRY`.
pub trait Module: Sync {
    fn spec(&self) -> &'static Spec;
    fn parse(&self, args: &Args, ctx: &ParseCtx) -> Result<Box<dyn Action>, ArgError>;
}

impl std::fmt::Debug for dyn Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "module `{}`", self.spec().name)
    }
}

/// A task's module with its arguments checked and typed: pure functions
/// of the facts.
pub trait Action: std::fmt::Debug + Send + Sync {
    /// The facts this action's plan reads. `diff`: also file contents.
    fn probes(&self, diff: bool, out: &mut BTreeSet<FactRequest>);
    /// The changes that bring the host from `facts` to what the action
    /// wants; empty when it is already there.
    fn plan(&self, facts: &Facts) -> Result<Vec<Change>, String>;
    /// URLs the controller must download before planning (`key_url`).
    fn downloads(&self) -> Vec<String> {
        Vec::new()
    }
    /// Local files the action sends (read once, before connecting).
    fn local_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// The runners this action registers in GitLab (or deletes there).
    fn runners(&self) -> &[RunnerSettings] {
        &[]
    }
    /// Notices for the end of the run (a privileged socket runner).
    fn notices(&self) -> Vec<String> {
        Vec::new()
    }
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

/// What `parse` may need besides the arguments. All of it is local: a
/// module never reads a file or the network while it is parsed or planned.
pub struct ParseCtx<'a> {
    /// Before connecting: facts are placeholders; check, don't conclude.
    pub trial: bool,
    /// Files the controller downloaded before connecting (`key_url`).
    pub downloads: &'a HashMap<String, Vec<u8>>,
    /// Local files (`copy src`), read once per run.
    pub files: &'a LocalFiles,
    pub templates: &'a Templates,
    /// Variables (and facts, or placeholders for them) for templates.
    pub vars: &'a Scope<'a>,
    /// The playbook's folder: `src` of `copy` is looked up in `files/` there.
    pub base_dir: &'a Path,
    /// What registration settled for each runner, by
    /// [`RunnerSettings::key`] (config.toml path and runner name; empty
    /// before connecting and when registration did not happen).
    pub runners: &'a HashMap<String, Settled>,
}

/// Local files that tasks send to hosts, read and hashed once per run and
/// shared by every host (a 60 MB runner binary is read and hashed once, not
/// once per host).
#[derive(Debug, Default)]
pub struct LocalFiles {
    files: std::sync::RwLock<HashMap<PathBuf, LocalFile>>,
}

/// A local file's content and its SHA-256 (hex).
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub content: Arc<Vec<u8>>,
    pub sha256: Arc<str>,
}

impl LocalFiles {
    /// The content of `path`, read now if it was not read yet.
    pub fn get(&self, path: &Path) -> std::io::Result<Arc<Vec<u8>>> {
        self.file(path).map(|f| f.content)
    }

    /// The content of `path` and its hash, read now if it was not read yet.
    pub fn file(&self, path: &Path) -> std::io::Result<LocalFile> {
        if let Some(c) = self.files.read().ok().and_then(|f| f.get(path).cloned()) {
            return Ok(c);
        }
        let content = Arc::new(std::fs::read(path)?);
        let file = LocalFile { sha256: crate::plan::changes::sha256_hex(&content).into(), content };
        if let Ok(mut f) = self.files.write() {
            f.insert(path.to_path_buf(), file.clone());
        }
        Ok(file)
    }

    /// Read `paths` now (before any connection), so that planning reads no
    /// file.
    pub fn preload<'p>(&self, paths: impl IntoIterator<Item = &'p PathBuf>) -> Result<(), (PathBuf, std::io::Error)> {
        for p in paths {
            self.get(p).map_err(|e| (p.clone(), e))?;
        }
        Ok(())
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
            Some(Json::String(s)) => {
                parse_bool(s).map(Some).ok_or_else(|| ArgError::field(k, format!("expected a boolean (true/false/yes/no), found `{s}`")))
            }
            Some(Json::Number(n)) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => Ok(Some(n.as_u64() == Some(1))),
            Some(other) => Err(ArgError::field(k, format!("expected a boolean, found {}", kind(other)))),
        }
    }

    pub fn opt_u64(&self, k: &str) -> Result<Option<u64>, ArgError> {
        match self.get(k) {
            None => Ok(None),
            Some(Json::Number(n)) => n.as_u64().map(Some).ok_or_else(|| ArgError::field(k, "expected a whole number")),
            Some(Json::String(s)) => {
                s.trim().parse().map(Some).map_err(|_| ArgError::field(k, format!("expected a whole number, found `{s}`")))
            }
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

    pub fn attrs(&self) -> Result<Attrs, ArgError> {
        let owner = self.opt_str("owner")?;
        let group = self.opt_str("group")?;
        for (k, v) in [("owner", &owner), ("group", &group)] {
            if let Some(v) = v {
                check_name(k, v)?;
            }
        }
        Ok(Attrs { mode: self.mode("mode")?, owner, group })
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
    let ok = !v.is_empty() && v.len() <= 32 && !v.starts_with('-') && v.chars().all(|c| c.is_ascii_alphanumeric() || "._-$".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ArgError::field(field, format!("`{}` is not a valid user or group name", v.escape_debug())))
    }
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
