//! `gitlab_runner`: the runner's `config.toml`, registered in GitLab once.
//!
//! The file is rendered from a template (`config.toml.j2`) and owned by it,
//! except the token fields (`token`, `token_obtained_at`,
//! `token_expires_at`) and the runner `id`, which belong to the runner:
//! they are read from the host's file by the probe and rendered back as
//! they are, so a token the runner rotated itself is kept and the hashes
//! still match. Registration (checking the token in GitLab, creating a
//! runner when there is none) is I/O on the controller and is done by the
//! engine before planning; its result reaches this module as the variables
//! `runner_token`, `runner_id`, `runner_token_obtained_at`,
//! `runner_token_expires_at` and `runner_registration_change`.
//! The rendered text must be valid TOML; it is written 0600 root:root.

use std::collections::BTreeSet;

use serde_json::{json, Value as Json};

use super::{check_path, ArgError, Args, ParseCtx};
use crate::changes::{Attrs, Change};
use crate::facts::{FactRequest, Facts};
use crate::gitlab::RunnerSpec;

pub const SYSTEM_ID_PATH: &str = "/etc/gitlab-runner/.runner_system_id";

/// How the runner gets its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// `POST /user/runners` with GITLAB_TOKEN (create_runner scope).
    Api,
    /// An existing `glrt-` token from GITLAB_RUNNER_TOKEN.
    Token,
    /// `POST /runners` with GITLAB_REGISTRATION_TOKEN (deprecated upstream).
    Legacy,
}

impl Registration {
    /// The environment variable holding this mode's secret.
    pub fn env_var(self) -> &'static str {
        match self {
            Registration::Api => "GITLAB_TOKEN",
            Registration::Token => "GITLAB_RUNNER_TOKEN",
            Registration::Legacy => "GITLAB_REGISTRATION_TOKEN",
        }
    }
}

/// Everything the engine needs to register, from the task's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub url: String,
    pub config: String,
    pub template: String,
    pub registration: Registration,
    pub spec: RunnerSpec,
}

impl Settings {
    pub fn parse(a: &Args) -> Result<Settings, ArgError> {
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
        Ok(Settings {
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
        })
    }
}

/// Registration variables before connecting (for checking templates).
pub fn placeholder_vars() -> serde_json::Map<String, Json> {
    let v = json!({
        "runner_token": "glrt-placeholder-token",
        "runner_id": 1,
        "runner_token_obtained_at": "2000-01-01T00:00:00Z",
        "runner_token_expires_at": "0001-01-01T00:00:00Z",
        "runner_registration_change": null,
    });
    match v {
        Json::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// The token fields of one `[[runners]]` entry of a config.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    pub id: Option<u64>,
    pub token: Option<String>,
    pub token_obtained_at: Option<String>,
    pub token_expires_at: Option<String>,
}

/// Read the runner entry for `url` (or the only one) from a config.toml.
pub fn read_existing(text: &str, url: &str) -> Existing {
    let Ok(doc) = toml::from_str::<toml::Table>(text) else { return Existing::default() };
    let Some(runners) = doc.get("runners").and_then(|r| r.as_array()) else { return Existing::default() };
    let pick = runners
        .iter()
        .find(|r| r.get("url").and_then(|u| u.as_str()).map(|u| u.trim_end_matches('/')) == Some(url))
        .or(if runners.len() == 1 { runners.first() } else { None });
    let Some(r) = pick else { return Existing::default() };
    let s = |k: &str| -> Option<String> {
        match r.get(k) {
            Some(toml::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(toml::Value::Datetime(d)) => Some(d.to_string()),
            _ => None,
        }
    };
    Existing {
        id: r.get("id").and_then(|v| v.as_integer()).and_then(|i| u64::try_from(i).ok()),
        token: s("token"),
        token_obtained_at: s("token_obtained_at"),
        token_expires_at: s("token_expires_at"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitlabRunner {
    pub settings: Settings,
    pub content: Vec<u8>,
    /// What the controller did or would do in GitLab, for the report.
    pub registration_change: Option<String>,
}

impl GitlabRunner {
    pub fn parse(a: &Args, ctx: &ParseCtx) -> Result<GitlabRunner, ArgError> {
        let settings = Settings::parse(a)?;
        let mut vars = match ctx.vars {
            Json::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        vars.insert("runner_url".into(), Json::String(settings.url.clone()));
        vars.insert("runner_description".into(), Json::String(settings.spec.description.clone()));
        let text = ctx
            .templates
            .render_file(&settings.template, &Json::Object(vars.clone()))
            .map_err(|e| ArgError::field("template", format!("template `{}`: {e}", settings.template)))?;
        if let Err(e) = toml::from_str::<toml::Table>(&text) {
            return Err(ArgError::field(
                "template",
                format!("`{}` does not render to valid TOML: {}", settings.template, e.message()),
            ));
        }
        let registration_change = vars.get("runner_registration_change").and_then(|v| v.as_str()).map(str::to_string);
        Ok(GitlabRunner { settings, content: text.into_bytes(), registration_change })
    }

    pub fn probes(&self, out: &mut BTreeSet<FactRequest>) {
        out.insert(FactRequest::Path { path: self.settings.config.clone(), content: true });
        out.insert(FactRequest::Path { path: SYSTEM_ID_PATH.into(), content: true });
    }

    pub fn plan(&self, facts: &Facts) -> Result<Vec<Change>, String> {
        let mut changes = Vec::new();
        if let Some(what) = &self.registration_change {
            changes.push(Change::Controller { what: what.clone() });
        }
        let attrs = Attrs { mode: Some(0o600), owner: Some("root".into()), group: Some("root".into()) };
        if let Some(c) = super::apt_repository::write_if_different(&self.settings.config, self.content.clone(), &attrs, facts) {
            changes.push(c);
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_token_fields_of_the_matching_runner() {
        let text = "concurrent = 2\n[[runners]]\n  name = \"a\"\n  url = \"https://g.example/\"\n  id = 42\n  token = \"glrt-abc\"\n  token_obtained_at = 2024-05-01T10:00:00Z\n  token_expires_at = 0001-01-01T00:00:00Z\n  executor = \"docker\"\n";
        let e = read_existing(text, "https://g.example");
        assert_eq!(e.id, Some(42));
        assert_eq!(e.token.as_deref(), Some("glrt-abc"));
        assert_eq!(e.token_obtained_at.as_deref(), Some("2024-05-01T10:00:00Z"));
        assert_eq!(read_existing("not toml [", "x"), Existing::default());
    }

    #[test]
    fn settings_check_runner_type() {
        let a = serde_json::json!({"url": "https://g.example", "name": "r1", "runner_type": "group_type"});
        let e = Settings::parse(&Args(a.as_object().unwrap())).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("group_id"));
        let a = serde_json::json!({"url": "https://g.example", "name": "r1", "group_id": 7, "tags": ["dockerd"]});
        let s = Settings::parse(&Args(a.as_object().unwrap())).unwrap();
        assert_eq!(s.spec.runner_type, "group_type");
        assert!(s.spec.locked && !s.spec.run_untagged);
    }
}
