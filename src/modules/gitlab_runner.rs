//! `gitlab_runner`: the runners of a host, registered in GitLab once, and
//! the `config.toml` that holds them.
//!
//! The task describes one runner (its own arguments) or a list of them
//! (`runners`, each entry a mapping; its missing keys default to the
//! task's). The file is modelled ([`crate::gitlab::config_toml`]): the
//! global settings and the runners named here are bootstrap's, every other
//! `[[runners]]` entry of the host's file stays as it is. The token fields
//! (`token`, `token_obtained_at`, `token_expires_at`) and `id` belong to
//! the runner: registration reads them from the host's file and they are
//! written back as they are, so a token the runner rotated is kept.
//! Registration (checking the token in GitLab, creating a runner when there
//! is none, deleting one asked `absent`) is I/O on the controller, done by
//! the run before planning (`crate::gitlab::registration`); its typed
//! result reaches this module as a [`Settled`](crate::gitlab::Settled) per
//! runner in [`ParseCtx::runners`]. Without one (before connecting) the
//! file is only checked with placeholder identities that are never planned
//! for a host. A `config.toml.j2` of the user's in a templates folder (or a
//! `template` argument) still replaces the model, for one runner. The text
//! must be valid TOML; it is written 0600 root:root.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value as Json};
use toml::{Table, Value};

use super::{check_path, ArgError, Args, ParseCtx, Spec};
use crate::gitlab::config_toml::{self, datetime, deep_merge, from_json, Desired, Managed};
use crate::gitlab::runner::{ca_path_on_host, system_id_path, CaFile, Identity, Registration, RunnerSettings, RunnerSpec};
use crate::plan::changes::{Attrs, Change};
use crate::plan::facts::{FactRequest, Facts};
use crate::plan::module::{Action, Module};

/// The `gitlab_runner` module.
pub struct GitlabRunnerModule;
pub static GITLAB_RUNNER: GitlabRunnerModule = GitlabRunnerModule;
static SPEC: Spec = Spec {
    name: "gitlab_runner",
    args: &[
        "url",
        "config",
        "template",
        "registration",
        "name",
        "tags",
        "runner_type",
        "group_id",
        "project_id",
        "run_untagged",
        "locked",
        "access_level",
        "paused",
        "maximum_timeout",
        "runners",
        "concurrent",
        "check_interval",
        "shutdown_timeout",
        "log_level",
        "log_format",
        "listen_address",
        "sentry_dsn",
        "session_server",
        "global_config",
        "builds_dir",
        "cache_dir",
        "image",
        "pull_policy",
        "allowed_images",
        "allowed_pull_policies",
        "environment",
        "ca_file",
    ],
    late: &["concurrent"],
    free_form: None,
};

/// The keys of one `runners` entry.
pub const ENTRY_KEYS: &[&str] = &[
    "name",
    "tags",
    "type",
    "group_id",
    "project_id",
    "registration",
    "token",
    "run_untagged",
    "locked",
    "access_level",
    "paused",
    "maximum_timeout",
    "executor",
    "socket",
    "docker",
    "cache",
    "environment",
    "limit",
    "request_concurrency",
    "output_limit",
    "pre_build_script",
    "feature_flags",
    "config",
    "state",
];

/// Task arguments an entry inherits when it does not set them.
const INHERITED: &[&str] =
    &["url", "config", "registration", "tags", "run_untagged", "locked", "access_level", "paused", "maximum_timeout"];

impl Module for GitlabRunnerModule {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }
    fn parse(&self, a: &Args, ctx: &ParseCtx) -> Result<Box<dyn Action>, ArgError> {
        Ok(Box::new(GitlabRunner::parse(a, ctx)?))
    }
}

/// The runner settings of a task's arguments.
pub fn settings(a: &Args) -> Result<RunnerSettings, ArgError> {
    let url = a.str("url")?;
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.contains(char::is_whitespace) {
        return Err(ArgError::field("url", format!("`{url}` is not an http(s) URL of a GitLab instance")));
    }
    let config = a.opt_str("config")?.unwrap_or_else(|| "/etc/gitlab-runner/config.toml".into());
    check_path("config", &config)?;
    let registration = match a.choice("registration", &["api", "token", "legacy"], "api")?.as_str() {
        "token" => Registration::Token,
        "legacy" => Registration::Legacy,
        _ => Registration::Api,
    };
    let group_id = a.opt_u64("group_id")?;
    let project_id = a.opt_u64("project_id")?;
    let default_type = match (group_id, project_id) {
        (Some(_), None) => "group_type",
        (None, Some(_)) => "project_type",
        _ => "instance_type",
    };
    let runner_type = a.choice("runner_type", &["instance_type", "group_type", "project_type"], default_type)?;
    match (runner_type.as_str(), group_id, project_id) {
        ("group_type", None, _) => return Err(ArgError::field("group_id", "is required for a group runner (runner_group_id)")),
        ("project_type", _, None) => return Err(ArgError::field("project_id", "is required for a project runner (runner_project_id)")),
        ("instance_type", Some(_), _) | ("instance_type", _, Some(_)) => {
            return Err(ArgError::field("runner_type", "an instance runner takes no group_id or project_id"))
        }
        _ => {}
    }
    let name = a.str("name")?;
    if name.trim().is_empty() || name.contains('\n') {
        return Err(ArgError::field("name", "must be one non-empty line"));
    }
    let tags = a.list("tags")?;
    for t in &tags {
        if t.is_empty() || t.contains(',') || t.contains('\n') {
            return Err(ArgError::field("tags", format!("`{t}` is not a valid tag")));
        }
    }
    Ok(RunnerSettings {
        url: url.trim_end_matches('/').to_string(),
        config,
        template: a.opt_str("template")?.unwrap_or_else(|| "config.toml.j2".into()),
        registration,
        spec: RunnerSpec {
            runner_type,
            group_id: group_id.filter(|_| default_type != "instance_type"),
            project_id,
            description: name,
            tag_list: tags,
            run_untagged: a.opt_bool("run_untagged")?.unwrap_or(false),
            locked: a.opt_bool("locked")?.unwrap_or(true),
            access_level: a.choice("access_level", &["not_protected", "ref_protected"], "not_protected")?,
            paused: a.opt_bool("paused")?.unwrap_or(false),
            maximum_timeout: a.opt_u64("maximum_timeout")?,
        },
        token: None,
        absent: false,
        ca: None,
    })
}

/// What every runner of the task shares unless its entry says otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    pub builds_dir: String,
    pub cache_dir: String,
    pub image: String,
    pub pull_policy: Vec<String>,
    pub allowed_images: Vec<String>,
    pub allowed_pull_policies: Vec<String>,
    pub environment: Vec<String>,
}

/// One runner as asked: registration settings and its config.toml keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub settings: RunnerSettings,
    /// The host's Docker socket and the shared builds/cache folders mounted.
    pub socket: bool,
    /// `[runners.docker]` keys asked (checked; `volumes` added to the socket's).
    pub docker: Table,
    pub cache: Option<Table>,
    /// `environment`, `limit`, ... : keys of the runner's table.
    pub extra: Table,
    /// Merged into the runner's table as is.
    pub config: Table,
}

impl Entry {
    pub fn privileged(&self) -> bool {
        self.docker.get("privileged").and_then(Value::as_bool) == Some(true)
    }
}

fn prefixed(prefix: &str, e: ArgError) -> ArgError {
    ArgError { field: Some(format!("{prefix}{}", e.field.map(|f| format!(".{f}")).unwrap_or_default())), message: e.message }
}

/// A size as Docker takes it (`512m`, `1g`, `1073741824`).
pub fn is_size(s: &str) -> bool {
    let s = s.trim().to_ascii_lowercase();
    let digits = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let unit = unit.trim_start();
    !num.is_empty()
        && num.parse::<f64>().is_ok()
        && ["", "b", "k", "kb", "kib", "m", "mb", "mib", "g", "gb", "gib", "t", "tb", "tib"].contains(&unit)
}

fn string_list(v: &Json, field: &str) -> Result<Vec<String>, ArgError> {
    let one = Map::from_iter([(field.to_string(), v.clone())]);
    Args(&one).list(field)
}

/// The `docker` mapping of an entry, checked key by key.
fn docker_table(v: &Json) -> Result<Table, ArgError> {
    let Json::Object(o) = v else { return Err(ArgError::general("expected a mapping of [runners.docker] keys")) };
    let mut t = Table::new();
    let a = Args(o);
    for (k, x) in o {
        if x.is_null() {
            continue;
        }
        let value = match k.as_str() {
            "memory" | "memory_swap" | "memory_reservation" | "kernel_memory" => {
                let s = a.str(k)?;
                if !is_size(&s) {
                    return Err(ArgError::field(k, format!("`{s}` is not a size (a number with an optional unit: 512m, 2g)")));
                }
                Value::String(s)
            }
            "cpus" | "cpuset_cpus" | "image" | "network_mode" | "helper_image" | "host" | "hostname" | "userns_mode" | "runtime" => {
                Value::String(a.str(k)?)
            }
            "privileged" | "tls_verify" | "disable_cache" | "oom_kill_disable" | "disable_entrypoint_overwrite" => {
                Value::Boolean(a.opt_bool(k)?.unwrap_or(false))
            }
            "shm_size" | "network_mtu" | "cpu_shares" | "wait_for_services_timeout" => {
                let n = a.opt_u64(k)?.unwrap_or(0);
                Value::Integer(i64::try_from(n).map_err(|_| ArgError::field(k, "is too large"))?)
            }
            "volumes"
            | "dns"
            | "dns_search"
            | "extra_hosts"
            | "allowed_images"
            | "allowed_services"
            | "allowed_pull_policies"
            | "cap_add"
            | "cap_drop"
            | "devices"
            | "security_opt"
            | "pull_policy" => Value::Array(string_list(x, k)?.into_iter().map(Value::String).collect()),
            _ => from_json(x).map_err(|e| ArgError::field(k, e))?,
        };
        t.insert(k.clone(), value);
    }
    Ok(t)
}

fn table_of(v: &Json, what: &str) -> Result<Table, ArgError> {
    match from_json(v).map_err(ArgError::general)? {
        Value::Table(t) => Ok(t),
        _ => Err(ArgError::general(format!("expected a mapping ({what})"))),
    }
}

/// One `runners` entry, with the task's arguments as defaults.
fn entry(task: &Args, e: &Json) -> Result<Entry, ArgError> {
    let Json::Object(o) = e else { return Err(ArgError::general("expected a mapping (name, tags, docker, ...)")) };
    if let Some(k) = o.keys().find(|k| !ENTRY_KEYS.contains(&k.as_str())) {
        return Err(ArgError::field(k, format!("unknown key `{k}`; a runner takes {}", ENTRY_KEYS.join(", "))));
    }
    let a = Args(o);
    let mut merged = Map::new();
    for k in INHERITED {
        if let Some(v) = task.get(k) {
            merged.insert(k.to_string(), v.clone());
        }
    }
    // The scope is inherited whole, or not at all.
    if !["type", "group_id", "project_id"].iter().any(|k| a.get(k).is_some()) {
        for k in ["runner_type", "group_id", "project_id"] {
            if let Some(v) = task.get(k) {
                merged.insert(k.to_string(), v.clone());
            }
        }
    }
    // The entry's registration keys (its `config` is a table, not the path).
    const OWN: &[&str] = &[
        "name",
        "tags",
        "type",
        "group_id",
        "project_id",
        "registration",
        "run_untagged",
        "locked",
        "access_level",
        "paused",
        "maximum_timeout",
    ];
    for (k, v) in o.iter().filter(|(k, v)| !v.is_null() && OWN.contains(&k.as_str())) {
        let k = if k == "type" { "runner_type" } else { k.as_str() };
        merged.insert(k.to_string(), v.clone());
    }
    if a.get("name").is_none() {
        return Err(ArgError::field("name", "is required: each runner of a host has a name of its own"));
    }
    let mut settings = settings(&Args(&merged)).map_err(|mut e| {
        if e.field.as_deref() == Some("runner_type") {
            e.field = Some("type".into());
        }
        e
    })?;
    if let Some(t) = a.get("token") {
        let Json::String(t) = t else { return Err(ArgError::field("token", "expected a runner token (glrt-...)")) };
        if t.trim().is_empty() || t.contains(char::is_whitespace) {
            return Err(ArgError::field("token", "must be one runner token (glrt-...) without spaces"));
        }
        settings.token = Some(t.clone());
        settings.registration = Registration::Token;
    }
    settings.absent = a.choice("state", &["present", "absent"], "present")? == "absent";
    a.choice("executor", &["docker"], "docker")
        .map_err(|e| ArgError::field("executor", format!("{}: bootstrap's runners use the docker executor", e.message)))?;
    let docker = match a.get("docker") {
        Some(d) => docker_table(d).map_err(|e| prefixed("docker", e))?,
        None => Table::new(),
    };
    let cache = match a.get("cache") {
        Some(c) => {
            let t = table_of(c, "[runners.cache]: Type, Shared, s3, gcs, azure").map_err(|e| prefixed("cache", e))?;
            if let Some(ty) = t.get("Type") {
                if !matches!(ty.as_str(), Some("s3" | "gcs" | "azure")) {
                    return Err(ArgError::field("cache.Type", "must be s3, gcs or azure"));
                }
            }
            Some(t)
        }
        None => None,
    };
    let mut extra = Table::new();
    if a.get("environment").is_some() {
        let env = a.list("environment")?;
        if let Some(bad) = env.iter().find(|v| !v.contains('=')) {
            return Err(ArgError::field("environment", format!("`{bad}` is not NAME=value")));
        }
        extra.insert("environment".into(), Value::Array(env.into_iter().map(Value::String).collect()));
    }
    for k in ["limit", "request_concurrency", "output_limit"] {
        if let Some(n) = a.opt_u64(k)? {
            extra.insert(k.into(), Value::Integer(i64::try_from(n).map_err(|_| ArgError::field(k, "is too large"))?));
        }
    }
    if let Some(s) = a.opt_str("pre_build_script")? {
        extra.insert("pre_build_script".into(), Value::String(s));
    }
    if let Some(f) = a.get("feature_flags") {
        let t = table_of(f, "feature flag names to true or false").map_err(|e| prefixed("feature_flags", e))?;
        if let Some((k, _)) = t.iter().find(|(_, v)| !v.is_bool()) {
            return Err(ArgError::field(&format!("feature_flags.{k}"), "expected true or false"));
        }
        extra.insert("feature_flags".into(), Value::Table(t));
    }
    let config = match a.get("config") {
        Some(c) => table_of(c, "keys of the runner's table").map_err(|e| prefixed("config", e))?,
        None => Table::new(),
    };
    Ok(Entry { settings, socket: a.opt_bool("socket")?.unwrap_or(true), docker, cache, extra, config })
}

/// The entries of a `runners` list: each checked, names unique.
pub fn entries(task: &Args, list: &Json) -> Result<Vec<Entry>, ArgError> {
    let Json::Array(items) = list else { return Err(ArgError::field("runners", "expected a list of runners")) };
    let mut out: Vec<Entry> = Vec::new();
    for (i, e) in items.iter().enumerate() {
        let at = format!("runners[{i}]");
        let e = entry(task, e).map_err(|err| prefixed(&at, err))?;
        if let Some(j) = out.iter().position(|o| o.settings.spec.description == e.settings.spec.description) {
            return Err(ArgError::field(
                &format!("{at}.name"),
                format!("`{}` is also the name of runners[{j}]: names are unique per host", e.settings.spec.description),
            ));
        }
        if out.iter().any(|o| o.settings.url != e.settings.url || o.settings.config != e.settings.config) {
            return Err(ArgError::field(&at, "all runners of a host share one GitLab and one config.toml"));
        }
        out.push(e);
    }
    Ok(out)
}

/// The `[[runners]]` table of one present runner.
pub fn runner_table(e: &Entry, d: &Defaults, identity: &Identity) -> Table {
    let s = &e.settings;
    let mut t = Table::new();
    let put = |t: &mut Table, k: &str, v: Value| {
        t.insert(k.to_string(), v);
    };
    put(&mut t, "name", Value::String(s.spec.description.clone()));
    put(&mut t, "url", Value::String(s.url.clone()));
    if let Some(id) = identity.id.and_then(|i| i64::try_from(i).ok()) {
        put(&mut t, "id", Value::Integer(id));
    }
    put(&mut t, "token", Value::String(identity.token.clone()));
    put(&mut t, "token_obtained_at", datetime(&identity.token_obtained_at));
    put(&mut t, "token_expires_at", datetime(&identity.token_expires_at));
    if let Some(ca) = s.ca.as_ref().and(ca_path_on_host(&s.url)) {
        put(&mut t, "tls-ca-file", Value::String(ca));
    }
    put(&mut t, "executor", Value::String("docker".into()));
    if e.socket {
        put(&mut t, "builds_dir", Value::String(d.builds_dir.clone()));
        put(&mut t, "cache_dir", Value::String(d.cache_dir.clone()));
    }
    let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
    if !d.environment.is_empty() {
        put(&mut t, "environment", strings(&d.environment));
    }
    for (k, v) in &e.extra {
        put(&mut t, k, v.clone());
    }
    let mut docker = Table::new();
    put(&mut docker, "image", Value::String(d.image.clone()));
    put(&mut docker, "privileged", Value::Boolean(false));
    put(&mut docker, "tls_verify", Value::Boolean(false));
    put(&mut docker, "disable_cache", Value::Boolean(false));
    put(&mut docker, "shm_size", Value::Integer(0));
    let mut volumes: Vec<String> = if e.socket {
        vec!["/var/run/docker.sock:/var/run/docker.sock".into(), format!("{0}:{0}", d.cache_dir), format!("{0}:{0}", d.builds_dir)]
    } else {
        Vec::new()
    };
    if let Some(Value::Array(asked)) = e.docker.get("volumes") {
        for v in asked.iter().filter_map(Value::as_str) {
            if !volumes.iter().any(|x| x == v) {
                volumes.push(v.to_string());
            }
        }
    }
    if volumes.is_empty() {
        volumes.push("/cache".into());
    }
    put(&mut docker, "volumes", strings(&volumes));
    put(&mut docker, "pull_policy", strings(&d.pull_policy));
    if !d.allowed_images.is_empty() {
        put(&mut docker, "allowed_images", strings(&d.allowed_images));
    }
    if !d.allowed_pull_policies.is_empty() {
        put(&mut docker, "allowed_pull_policies", strings(&d.allowed_pull_policies));
    }
    for (k, v) in e.docker.iter().filter(|(k, _)| *k != "volumes") {
        put(&mut docker, k, v.clone());
    }
    put(&mut t, "docker", Value::Table(docker));
    if let Some(c) = &e.cache {
        put(&mut t, "cache", Value::Table(c.clone()));
    }
    deep_merge(&mut t, &e.config);
    t
}

/// The global section of config.toml.
fn global(a: &Args) -> Result<Table, ArgError> {
    let mut t = Table::new();
    let int = |k: &str, default: u64| -> Result<Value, ArgError> {
        let n = a.opt_u64(k)?.unwrap_or(default);
        Ok(Value::Integer(i64::try_from(n).map_err(|_| ArgError::field(k, "is too large"))?))
    };
    let concurrent = a.opt_u64("concurrent")?.unwrap_or(1);
    if concurrent == 0 {
        return Err(ArgError::field("concurrent", "must be at least 1"));
    }
    t.insert("concurrent".into(), int("concurrent", 1)?);
    t.insert("check_interval".into(), int("check_interval", 3)?);
    t.insert("shutdown_timeout".into(), int("shutdown_timeout", 0)?);
    t.insert("log_level".into(), Value::String(a.choice("log_level", &["debug", "info", "warn", "error", "fatal", "panic"], "info")?));
    if let Some(f) = a.opt_str("log_format")?.filter(|s| !s.is_empty()) {
        if !["runner", "text", "json"].contains(&f.as_str()) {
            return Err(ArgError::field("log_format", format!("must be one of runner, text, json, found `{f}`")));
        }
        t.insert("log_format".into(), Value::String(f));
    }
    for k in ["listen_address", "sentry_dsn"] {
        if let Some(v) = a.opt_str(k)?.filter(|s| !s.is_empty()) {
            t.insert(k.into(), Value::String(v));
        }
    }
    let mut session = Table::new();
    session.insert("session_timeout".into(), Value::Integer(1800));
    if let Some(s) = a.get("session_server") {
        deep_merge(&mut session, &table_of(s, "[session_server] keys").map_err(|e| prefixed("session_server", e))?);
    }
    t.insert("session_server".into(), Value::Table(session));
    if let Some(g) = a.get("global_config") {
        deep_merge(&mut t, &table_of(g, "global config.toml keys").map_err(|e| prefixed("global_config", e))?);
    }
    Ok(t)
}

fn defaults(a: &Args) -> Result<Defaults, ArgError> {
    let dir = |k: &str, d: &str| -> Result<String, ArgError> {
        let v = a.opt_str(k)?.unwrap_or_else(|| d.to_string());
        check_path(k, &v)?;
        Ok(v)
    };
    let pull = a.list("pull_policy")?;
    Ok(Defaults {
        builds_dir: dir("builds_dir", "/builds")?,
        cache_dir: dir("cache_dir", "/cache")?,
        image: a.opt_str("image")?.unwrap_or_else(|| "docker:cli".into()),
        pull_policy: if pull.is_empty() { vec!["if-not-present".into()] } else { pull },
        allowed_images: a.list("allowed_images")?,
        allowed_pull_policies: a.list("allowed_pull_policies")?,
        environment: a.list("environment")?,
    })
}

/// `ca_file` (`gitlab_ca_file`): the PEM file on the controller, read and
/// checked now, so that a bad one fails before any connection.
fn ca_file(a: &Args, ctx: &ParseCtx, url: &str) -> Result<Option<CaFile>, ArgError> {
    let Some(name) = a.opt_str("ca_file")?.filter(|s| !s.trim().is_empty()) else { return Ok(None) };
    let bad = |why: String| ArgError::field("ca_file", format!("gitlab_ca_file `{name}`: {why}"));
    let path = super::local_file(ctx.base_dir, "files", &name).ok_or_else(|| bad("no such file on the controller".into()))?;
    let pem = ctx.files.get(&path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    // Checked once per content, however many hosts share the file.
    static CHECKED: std::sync::Mutex<Vec<(String, Result<(), String>)>> = std::sync::Mutex::new(Vec::new());
    let sum = crate::plan::changes::sha256_hex(&pem);
    let known = CHECKED.lock().ok().and_then(|c| c.iter().find(|(k, _)| *k == sum).map(|(_, r)| r.clone()));
    let checked = match known {
        Some(r) => r,
        None => {
            let r = crate::gitlab::api::ca_certificates(&pem).map(|_| ());
            if let Ok(mut c) = CHECKED.lock() {
                c.push((sum, r.clone()));
            }
            r
        }
    };
    checked.map_err(bad)?;
    if ca_path_on_host(url).is_none() {
        return Err(ArgError::field("url", format!("`{url}` names no host for the CA file's name on the host")));
    }
    Ok(Some(CaFile { path, pem }))
}

/// What config.toml is made of.
#[derive(Debug, Clone, PartialEq)]
enum Content {
    /// Rendered from a template of the user's, whole.
    Fixed(Arc<Vec<u8>>),
    /// Modelled: merged into the host's file when planning.
    Model(Desired),
}

#[derive(Debug, Clone, PartialEq)]
pub struct GitlabRunner {
    /// Every runner of the task, `absent` ones included.
    pub registrations: Vec<RunnerSettings>,
    pub config: String,
    content: Content,
    /// What the controller did or would do in GitLab, for the report.
    pub registration_changes: Vec<String>,
    pub notices: Vec<String>,
}

impl GitlabRunner {
    pub fn parse(a: &Args, ctx: &ParseCtx) -> Result<GitlabRunner, ArgError> {
        let list =
            a.get("runners").filter(|l| !matches!(l, Json::Array(v) if v.is_empty()) && !matches!(l, Json::String(s) if s.is_empty()));
        let entries: Vec<Entry> = match list {
            Some(l) => entries(a, l)?,
            None => vec![Entry {
                settings: settings(a)?,
                socket: true,
                docker: Table::new(),
                cache: None,
                extra: Table::new(),
                config: Table::new(),
            }],
        };
        let mut entries = entries;
        if let Some(url) = entries.first().map(|e| e.settings.url.clone()) {
            let ca = ca_file(a, ctx, &url)?;
            for e in &mut entries {
                e.settings.ca = ca.clone();
            }
        }
        let Some(first) = entries.first() else {
            return Err(ArgError::field("runners", "lists no runner"));
        };
        let config = first.settings.config.clone();
        let identity = |s: &RunnerSettings| -> Result<(Identity, Option<String>), ArgError> {
            match ctx.runners.get(&s.key()) {
                Some(st) => Ok((st.identity.clone(), st.change.clone())),
                None if ctx.trial => Ok((Identity::placeholder(), None)),
                None => Err(ArgError::general(format!(
                    "runner `{}` is not registered: registration did not run for this host (a task of its plan cannot be planned), so {} is left as it is",
                    s.spec.description, s.config
                ))),
            }
        };
        let mut registration_changes = Vec::new();
        let mut notices = Vec::new();
        let template = a.opt_str("template")?;
        let content = if template.is_some() || ctx.templates.has_file("config.toml.j2") {
            if list.is_some() {
                return Err(ArgError::field(
                    "runners",
                    "a config.toml.j2 of your own renders one runner: remove it (templates/config.toml.j2) to use `runners`",
                ));
            }
            let s = &first.settings;
            let (id, change) = identity(s)?;
            registration_changes.extend(change);
            let mut own = id.template_vars();
            own.insert("runner_url".into(), Json::String(s.url.clone()));
            own.insert("runner_description".into(), Json::String(s.spec.description.clone()));
            let ca = s.ca.as_ref().and(ca_path_on_host(&s.url));
            own.insert("runner_tls_ca_file".into(), ca.map(Json::String).unwrap_or(Json::Null));
            let text = ctx
                .templates
                .render_file(&s.template, &ctx.vars.with(&own))
                .map_err(|e| ArgError::field("template", format!("template `{}`: {e}", s.template)))?;
            if let Err(e) = toml::from_str::<toml::Table>(&text) {
                return Err(ArgError::field("template", format!("`{}` does not render to valid TOML: {}", s.template, e.message())));
            }
            Content::Fixed(Arc::new(text.into_bytes()))
        } else {
            let d = defaults(a)?;
            let mut desired = Desired { global: global(a)?, runners: Vec::new() };
            for e in &entries {
                let name = e.settings.spec.description.clone();
                if e.settings.absent {
                    if let Some(Some(change)) = ctx.runners.get(&e.settings.key()).map(|s| s.change.clone()) {
                        registration_changes.push(change);
                    }
                    desired.runners.push(Managed { name, table: None });
                    continue;
                }
                let (id, change) = identity(&e.settings)?;
                registration_changes.extend(change);
                if e.socket && e.privileged() {
                    notices.push(format!(
                        "runner `{name}` is privileged and mounts the host's Docker socket: its jobs can do anything on the host; keep it for jobs that need Docker-in-Docker"
                    ));
                }
                desired.runners.push(Managed { name, table: Some(runner_table(e, &d, &id)) });
            }
            // Checked now: a model that cannot be written fails before connecting.
            config_toml::check(&desired).map_err(|e| ArgError::field("runners", e))?;
            Content::Model(desired)
        };
        Ok(GitlabRunner {
            registrations: entries.into_iter().map(|e| e.settings).collect(),
            config,
            content,
            registration_changes,
            notices,
        })
    }
}

impl Action for GitlabRunner {
    fn probes(&self, _diff: bool, out: &mut BTreeSet<FactRequest>) {
        out.insert(FactRequest::Path { path: self.config.clone(), content: true, checksum: true });
        out.insert(FactRequest::Path { path: system_id_path(&self.config), content: true, checksum: true });
    }

    fn plan(&self, facts: &Facts) -> Result<Vec<Change>, String> {
        let mut changes: Vec<Change> = self.registration_changes.iter().map(|w| Change::Controller { what: w.clone() }).collect();
        let attrs = Attrs { mode: Some(0o600), owner: Some("root".into()), group: Some("root".into()) };
        let state = facts.path(&self.config);
        let existing = state.and_then(|p| p.content.as_deref()).map(String::from_utf8_lossy);
        // A file that is not TOML: gitlab-runner cannot read it either, and
        // its runners' tokens are unknown. Never written over (that would
        // register a second runner beside the one it holds).
        let have = match existing.as_deref().map(config_toml::parse) {
            Some(Err(e)) => {
                return Err(format!(
                    "{} on the host is not valid TOML ({e}): bootstrap leaves it alone and registers no runner\n  help: fix the file, or move it away and apply with --replace (the same-named runner of the host's scope is deleted in GitLab and registered anew)",
                    self.config
                ))
            }
            Some(Ok(t)) => Some(t),
            None => None,
        };
        let content = match &self.content {
            Content::Fixed(c) => c.clone(),
            Content::Model(desired) => {
                let merged = config_toml::merge(existing.as_deref(), desired)?;
                // Compared as data: a file gitlab-runner re-encoded is converged.
                if let (Some(have), Some(st)) = (&have, state) {
                    if config_toml::same_config(have, &merged.doc) {
                        changes.extend(attrs.differing(st).map(|d| Change::SetAttrs { path: self.config.clone(), attrs: d }));
                        return Ok(changes);
                    }
                }
                Arc::new(merged.text.into_bytes())
            }
        };
        match super::apt_repository::write_if_different(&self.config, content, &attrs, facts) {
            // gitlab-runner may save the file between the probe and the write.
            Some(Change::WriteFile { path, content, attrs, old, .. }) => {
                changes.push(Change::WriteFile { path, content, attrs, old, swap: true })
            }
            Some(c) => changes.push(c),
            None => {}
        }
        Ok(changes)
    }

    fn runners(&self) -> &[RunnerSettings] {
        &self.registrations
    }

    fn notices(&self) -> Vec<String> {
        self.notices.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::gitlab::Settled;
    use crate::plan::facts::{PathKind, PathState};
    use std::collections::HashMap;

    fn task(runners: Json) -> Map<String, Json> {
        match serde_json::json!({
            "url": "https://g.example/", "name": "h1", "tags": ["dockerd"], "concurrent": 4,
            "builds_dir": "/builds", "cache_dir": "/cache", "image": "docker:cli", "runners": runners,
        }) {
            Json::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// Parse with settled identities for every runner (as after registration).
    fn parse_settled(args: &Map<String, Json>) -> Result<GitlabRunner, ArgError> {
        let templates = crate::template::Templates::new(vec![]);
        let vars = crate::template::Vars::new();
        let scope = crate::template::Scope::new(vec![&vars]);
        let trial = {
            let runners = HashMap::new();
            let ctx = test_ctx(&templates, &scope, &runners, true);
            GitlabRunner::parse(&Args(args), &ctx)?
        };
        let runners: HashMap<String, Settled> = trial
            .registrations
            .iter()
            .map(|r| {
                let id = Identity::new(&format!("glrt-{}", r.spec.description), Some(7), "2026-01-02T03:04:05Z", None);
                (r.key(), Settled { identity: id, change: None })
            })
            .collect();
        let ctx = test_ctx(&templates, &scope, &runners, false);
        GitlabRunner::parse(&Args(args), &ctx)
    }

    fn test_ctx<'a>(
        templates: &'a crate::template::Templates,
        scope: &'a crate::template::Scope<'a>,
        runners: &'a HashMap<String, Settled>,
        trial: bool,
    ) -> ParseCtx<'a> {
        static NO_DOWNLOADS: std::sync::OnceLock<HashMap<String, Vec<u8>>> = std::sync::OnceLock::new();
        static NO_FILES: std::sync::OnceLock<crate::plan::module::LocalFiles> = std::sync::OnceLock::new();
        ParseCtx {
            trial,
            downloads: NO_DOWNLOADS.get_or_init(HashMap::new),
            files: NO_FILES.get_or_init(Default::default),
            templates,
            vars: scope,
            base_dir: std::path::Path::new("."),
            runners,
        }
    }

    fn file(content: &[u8]) -> Option<PathState> {
        Some(PathState {
            kind: PathKind::File,
            mode: 0o600,
            owner: "root".into(),
            group: "root".into(),
            sha256: Some(crate::plan::changes::sha256_hex(content)),
            content: Some(content.to_vec()),
        })
    }

    /// The config.toml the plan writes over `existing`.
    fn written(r: &GitlabRunner, existing: Option<&str>) -> Option<Table> {
        let mut facts = Facts::default();
        if let Some(e) = existing {
            facts.paths.insert("/etc/gitlab-runner/config.toml".into(), file(e.as_bytes()));
        }
        r.plan(&facts).ok()?.into_iter().find_map(|c| match c {
            Change::WriteFile { content, .. } => toml::from_str(&String::from_utf8_lossy(&content)).ok(),
            _ => None,
        })
    }

    fn err(runners: Json) -> ArgError {
        parse_settled(&task(runners)).expect_err("must be refused")
    }

    #[test]
    fn socket_and_dind_runners_with_an_unmanaged_one_kept() {
        let r = parse_settled(&task(serde_json::json!([
            {"name": "sock", "tags": ["dockerd"]},
            {"name": "dind", "tags": ["dind"], "socket": false, "run_untagged": true,
             "docker": {"privileged": true, "volumes": ["/certs/client"], "memory": "2g", "dns": ["192.0.2.53"], "cpus": 2},
             "cache": {"Type": "s3", "Shared": true, "s3": {"ServerAddress": "s3.example", "BucketName": "c"}},
             "environment": ["A=1"], "limit": 3, "feature_flags": {"FF_NETWORK_PER_BUILD": true},
             "config": {"request_concurrency": 2, "docker": {"shm_size": 268435456}}},
            {"name": "sock2", "docker": {"volumes": ["/srv:/srv", "/cache:/cache"], "privileged": true}},
        ])))
        .unwrap();
        assert_eq!(r.registrations.len(), 3);
        assert_eq!(r.registrations[1].spec.tag_list, vec!["dind"]);
        assert!(r.registrations[1].spec.run_untagged && !r.registrations[0].spec.run_untagged);
        assert_eq!(r.notices.len(), 1, "privileged + socket: one notice, naming the runner: {:?}", r.notices);
        assert!(r.notices[0].contains("`sock2`"));
        let hand = "[[runners]]\nname = \"by-hand\"\ntoken = \"glrt-hand\"\nexecutor = \"shell\"\n";
        let doc = written(&r, Some(hand)).expect("config.toml is written");
        assert_eq!(doc["concurrent"].as_integer(), Some(4));
        let runners = doc["runners"].as_array().unwrap();
        let names: Vec<&str> = runners.iter().filter_map(|r| r["name"].as_str()).collect();
        assert_eq!(names, vec!["by-hand", "sock", "dind", "sock2"]);
        assert_eq!(runners[0]["executor"].as_str(), Some("shell"));
        let sock = &runners[1];
        assert_eq!(sock["token"].as_str(), Some("glrt-sock"));
        assert!(sock["token_obtained_at"].is_datetime());
        assert_eq!(sock["builds_dir"].as_str(), Some("/builds"));
        let vols = |r: &Value| -> Vec<String> { r["docker"]["volumes"].as_array().unwrap().iter().map(|v| v.to_string()).collect() };
        assert_eq!(vols(sock), vec!["\"/var/run/docker.sock:/var/run/docker.sock\"", "\"/cache:/cache\"", "\"/builds:/builds\""]);
        let dind = &runners[2];
        assert!(dind.get("builds_dir").is_none(), "a plain docker runner shares no folders");
        assert_eq!(vols(dind), vec!["\"/certs/client\""]);
        assert_eq!(dind["docker"]["privileged"].as_bool(), Some(true));
        assert_eq!(dind["docker"]["memory"].as_str(), Some("2g"));
        assert_eq!(dind["docker"]["cpus"].as_str(), Some("2"), "cpus is a string in config.toml");
        assert_eq!(dind["docker"]["dns"][0].as_str(), Some("192.0.2.53"));
        assert_eq!(dind["docker"]["shm_size"].as_integer(), Some(268435456), "`config` merged over");
        assert_eq!(dind["cache"]["s3"]["BucketName"].as_str(), Some("c"));
        assert_eq!(dind["environment"][0].as_str(), Some("A=1"));
        assert_eq!(dind["limit"].as_integer(), Some(3));
        assert_eq!(dind["request_concurrency"].as_integer(), Some(2));
        assert_eq!(dind["feature_flags"]["FF_NETWORK_PER_BUILD"].as_bool(), Some(true));
        // Volumes: the socket's, then the asked ones not already there.
        assert_eq!(vols(&runners[3]).len(), 4);
        assert_eq!(vols(&runners[3])[3], "\"/srv:/srv\"");
    }

    #[test]
    fn an_absent_runner_leaves_the_file_and_converged_is_converged() {
        let both = parse_settled(&task(serde_json::json!([{"name": "a"}, {"name": "b"}]))).unwrap();
        let mut facts = Facts::default();
        let first = written(&both, None).unwrap();
        assert_eq!(first["runners"].as_array().map(Vec::len), Some(2));
        let text = toml::to_string(&first).unwrap();
        let one = parse_settled(&task(serde_json::json!([{"name": "a", "state": "absent"}, {"name": "b"}]))).unwrap();
        assert!(one.registrations[0].absent);
        let after = written(&one, Some(&text)).unwrap();
        let names: Vec<&str> = after["runners"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
        assert_eq!(names, vec!["b"]);
        // What the plan writes, planned again, is nothing to do.
        let Some(Change::WriteFile { content, .. }) = one.plan(&facts).unwrap().into_iter().next() else { panic!("a write") };
        facts.paths.insert("/etc/gitlab-runner/config.toml".into(), file(&content));
        assert_eq!(one.plan(&facts).unwrap(), vec![], "converged");
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (serde_json::json!([{"name": "a", "docker": {"memory": "lots"}}]), "runners[0].docker.memory", "not a size"),
            (serde_json::json!([{"name": "a", "executor": "shell"}]), "runners[0].executor", "docker"),
            (serde_json::json!([{"name": "a"}, {"name": "a"}]), "runners[1].name", "also the name of runners[0]"),
            (serde_json::json!([{"name": "a", "privilegd": true}]), "runners[0].privilegd", "unknown key"),
            (serde_json::json!([{"tags": ["x"]}]), "runners[0].name", "is required"),
            (serde_json::json!([{"name": "a", "state": "gone"}]), "runners[0].state", "present, absent"),
            (serde_json::json!([{"name": "a", "type": "group_type"}]), "runners[0].group_id", "required"),
            (serde_json::json!([{"name": "a", "cache": {"Type": "ftp"}}]), "runners[0].cache.Type", "s3"),
            (serde_json::json!([{"name": "a", "docker": {"privileged": "maybe"}}]), "runners[0].docker.privileged", "boolean"),
            (serde_json::json!([{"name": "a", "environment": ["NOVALUE"]}]), "runners[0].environment", "NAME=value"),
            (serde_json::json!({"name": "a"}), "runners", "list"),
        ];
        for (runners, field, words) in cases {
            let e = err(runners.clone());
            assert_eq!(e.field.as_deref(), Some(field), "{runners}: {e:?}");
            assert!(e.message.contains(words), "{runners}: {}", e.message);
        }
        assert!(is_size("512m") && is_size("1.5g") && is_size("1073741824") && is_size("2 GiB"));
        assert!(!is_size("lots") && !is_size("") && !is_size("m") && !is_size("5x"));
    }

    #[test]
    fn a_token_from_the_inventory_registers_nothing_and_stays_out_of_messages() {
        let r = parse_settled(&task(serde_json::json!([{"name": "a", "token": "glrt-from-vault"}]))).unwrap();
        assert_eq!(r.registrations[0].registration, Registration::Token);
        assert_eq!(r.registrations[0].token.as_deref(), Some("glrt-from-vault"));
        let e = err(serde_json::json!([{"name": "a", "token": "glrt-has space"}]));
        assert_eq!(e.field.as_deref(), Some("runners[0].token"));
        assert!(!e.message.contains("glrt-has"), "{}", e.message);
    }

    #[test]
    fn without_runners_one_runner_from_the_task() {
        let mut t = task(Json::Array(vec![]));
        t.insert("environment".into(), serde_json::json!(["X=1"]));
        let r = parse_settled(&t).unwrap();
        assert_eq!(r.registrations.len(), 1);
        assert_eq!(r.registrations[0].spec.description, "h1");
        let doc = written(&r, None).unwrap();
        let one = &doc["runners"][0];
        assert_eq!(one["name"].as_str(), Some("h1"));
        assert_eq!(one["id"].as_integer(), Some(7));
        assert_eq!(one["environment"][0].as_str(), Some("X=1"));
        assert_eq!(one["docker"]["privileged"].as_bool(), Some(false));
        assert_eq!(doc["session_server"]["session_timeout"].as_integer(), Some(1800));
    }

    #[test]
    fn settings_check_runner_type() {
        let a = serde_json::json!({"url": "https://g.example", "name": "r1", "runner_type": "group_type"});
        let e = settings(&Args(a.as_object().unwrap())).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("group_id"));
        let a = serde_json::json!({"url": "https://g.example", "name": "r1", "group_id": 7, "tags": ["dockerd"]});
        let s = settings(&Args(a.as_object().unwrap())).unwrap();
        assert_eq!(s.spec.runner_type, "group_type");
        assert!(s.spec.locked && !s.spec.run_untagged);
    }
}
