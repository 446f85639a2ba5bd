//! `gitlab_runner`: the runner's `config.toml`, registered in GitLab once.
//!
//! The file is rendered from a template (`config.toml.j2`) and owned by it,
//! except the token fields (`token`, `token_obtained_at`,
//! `token_expires_at`) and the runner `id`, which belong to the runner:
//! they are read from the host's file by the probe and rendered back as
//! they are, so a token the runner rotated itself is kept and the hashes
//! still match. Registration (checking the token in GitLab, creating a
//! runner when there is none) is I/O on the controller, done by the run
//! before planning (`crate::gitlab::registration`); its typed result
//! reaches this module as a [`Settled`](crate::gitlab::Settled) in
//! [`ParseCtx::runners`]. Without one (before connecting) the template is
//! only checked with a placeholder identity that is never planned for a
//! host. The rendered text must be valid TOML; it is written 0600 root:root.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value as Json;

use super::{check_path, ArgError, Args, ParseCtx, Spec};
use crate::gitlab::runner::{Identity, Registration, RunnerSettings, RunnerSpec, SYSTEM_ID_PATH};
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
    ],
    late: &[],
    free_form: None,
};

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
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitlabRunner {
    pub settings: RunnerSettings,
    pub content: Arc<Vec<u8>>,
    /// What the controller did or would do in GitLab, for the report.
    pub registration_change: Option<String>,
}

impl GitlabRunner {
    pub fn parse(a: &Args, ctx: &ParseCtx) -> Result<GitlabRunner, ArgError> {
        let settings = settings(a)?;
        let (identity, change) = match ctx.runners.get(&settings.config) {
            Some(s) => (s.identity.clone(), s.change.clone()),
            None if ctx.trial => (Identity::placeholder(), None),
            None => {
                return Err(ArgError::general(format!(
                    "runner `{}` is not registered: registration did not run for this host (a task of its plan cannot be planned), so {} is left as it is",
                    settings.spec.description, settings.config
                )))
            }
        };
        let mut own = identity.template_vars();
        own.insert("runner_url".into(), Json::String(settings.url.clone()));
        own.insert("runner_description".into(), Json::String(settings.spec.description.clone()));
        let text = ctx
            .templates
            .render_file(&settings.template, &ctx.vars.with(&own))
            .map_err(|e| ArgError::field("template", format!("template `{}`: {e}", settings.template)))?;
        if let Err(e) = toml::from_str::<toml::Table>(&text) {
            return Err(ArgError::field("template", format!("`{}` does not render to valid TOML: {}", settings.template, e.message())));
        }
        Ok(GitlabRunner { settings, content: Arc::new(text.into_bytes()), registration_change: change })
    }
}

impl Action for GitlabRunner {
    fn probes(&self, _diff: bool, out: &mut BTreeSet<FactRequest>) {
        out.insert(FactRequest::Path { path: self.settings.config.clone(), content: true });
        out.insert(FactRequest::Path { path: SYSTEM_ID_PATH.into(), content: true });
    }

    fn plan(&self, facts: &Facts) -> Result<Vec<Change>, String> {
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

    fn runner(&self) -> Option<&RunnerSettings> {
        Some(&self.settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
