//! Runner types: what a runner should be, what a host holds, and the
//! identity registration settles on.
//!
//! [`RunnerSettings`] come from a `gitlab_runner` task's arguments.
//! [`Existing`] is read from the host's config.toml by the probe.
//! [`Settled`] is what registration hands to planning: the token, id and
//! dates the config.toml template renders, and what was done in GitLab to
//! get them. It is a typed value end to end; the template variables
//! (`runner_token`, ...) exist only inside the rendering of config.toml.

use serde::Serialize;
use serde_json::{json, Map, Value as Json};

/// Where gitlab-runner keeps its system id: beside the config.toml it
/// runs with (`/etc/gitlab-runner/.runner_system_id` for the default one).
pub fn system_id_path(config: &str) -> String {
    match config.rsplit_once('/') {
        Some(("", _)) => "/.runner_system_id".to_string(),
        Some((dir, _)) => format!("{dir}/.runner_system_id"),
        None => ".runner_system_id".to_string(),
    }
}

/// What upstream writes for "never expires".
pub const NO_EXPIRY: &str = "0001-01-01T00:00:00Z";

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

    /// What the secret of this mode is, for messages.
    pub fn secret_description(self) -> &'static str {
        match self {
            Registration::Api => "a GitLab token with the create_runner scope (runner_registration: api)",
            Registration::Token => "an existing runner token, glrt-... (runner_registration: token)",
            Registration::Legacy => "a runner registration token (runner_registration: legacy)",
        }
    }
}

/// A runner to create, as GitLab's API takes it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RunnerSpec {
    pub runner_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<u64>,
    pub description: String,
    pub tag_list: Vec<String>,
    pub run_untagged: bool,
    pub locked: bool,
    pub access_level: String,
    pub paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_timeout: Option<u64>,
}

/// Everything registration needs, from a `gitlab_runner` task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerSettings {
    /// The GitLab instance, without a trailing `/`.
    pub url: String,
    /// config.toml on the host.
    pub config: String,
    /// The template config.toml is rendered from.
    pub template: String,
    pub registration: Registration,
    pub spec: RunnerSpec,
    /// An existing `glrt-` token from the inventory (`token` of a
    /// `runners` entry): a secret; no runner is created for it.
    pub token: Option<String>,
    /// `state: absent`: delete the runner in GitLab and drop it from
    /// config.toml.
    pub absent: bool,
    /// `gitlab_ca_file`: the CA GitLab's certificate is checked against.
    pub ca: Option<CaFile>,
}

/// A CA certificate file (PEM) on the controller that GitLab's TLS
/// certificate is checked against, besides the system's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    pub path: std::path::PathBuf,
    pub pem: std::sync::Arc<Vec<u8>>,
}

/// Where the runner finds the CA for `url` on the host, as gitlab-runner
/// looks for it by default: `/etc/gitlab-runner/certs/<hostname>.crt`.
pub fn ca_path_on_host(url: &str) -> Option<String> {
    let host = reqwest::Url::parse(url).ok()?.host_str()?.trim_matches(|c| c == '[' || c == ']').to_string();
    (!host.is_empty() && !host.contains('/')).then(|| format!("/etc/gitlab-runner/certs/{host}.crt"))
}

impl RunnerSettings {
    /// What identifies this runner among a host's: its config.toml and its
    /// name there.
    pub fn key(&self) -> String {
        runner_key(&self.config, &self.spec.description)
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

/// The key of runner `name` of `config` (see [`RunnerSettings::key`]).
pub fn runner_key(config: &str, name: &str) -> String {
    format!("{config}#{name}")
}

/// Every token a config.toml holds (managed or not): secrets.
pub fn runner_tokens(text: &str) -> Vec<String> {
    super::config_toml::entries(text)
        .iter()
        .filter_map(|r| r.get("token").and_then(|t| t.as_str()).filter(|t| !t.is_empty()).map(str::to_string))
        .collect()
}

/// Read the token fields of the entry named `name` from a config.toml.
pub fn read_named(text: &str, name: &str) -> Existing {
    let runners = super::config_toml::entries(text);
    runners.iter().find(|r| r.get("name").and_then(|n| n.as_str()) == Some(name)).map(existing_of).unwrap_or_default()
}

fn existing_of(r: &toml::Table) -> Existing {
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

/// Read the runner entry for `url` (or the only one) from a config.toml.
pub fn read_existing(text: &str, url: &str) -> Existing {
    let Ok(doc) = toml::from_str::<toml::Table>(text) else { return Existing::default() };
    let Some(runners) = doc.get("runners").and_then(|r| r.as_array()) else { return Existing::default() };
    let pick = runners
        .iter()
        .find(|r| r.get("url").and_then(|u| u.as_str()).map(|u| u.trim_end_matches('/')) == Some(url))
        .or(if runners.len() == 1 { runners.first() } else { None });
    pick.and_then(|r| r.as_table()).map(existing_of).unwrap_or_default()
}

/// The runner's identity, as config.toml must hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub token: String,
    pub id: Option<u64>,
    pub token_obtained_at: String,
    /// [`NO_EXPIRY`] when the token does not expire.
    pub token_expires_at: String,
}

impl Identity {
    pub fn new(token: &str, id: Option<u64>, obtained: &str, expires: Option<&str>) -> Identity {
        Identity {
            token: token.to_string(),
            id,
            token_obtained_at: obtained.to_string(),
            token_expires_at: expires.filter(|e| !e.is_empty()).unwrap_or(NO_EXPIRY).to_string(),
        }
    }

    /// A stand-in used only to check templates before connecting; never
    /// planned for a host.
    pub fn placeholder() -> Identity {
        Identity::new("glrt-placeholder-token", Some(1), "2000-01-01T00:00:00Z", None)
    }

    /// The variables the config.toml template reads.
    pub fn template_vars(&self) -> Map<String, Json> {
        match json!({
            "runner_token": self.token,
            "runner_id": self.id,
            "runner_token_obtained_at": self.token_obtained_at,
            "runner_token_expires_at": self.token_expires_at,
        }) {
            Json::Object(m) => m,
            _ => Map::new(),
        }
    }
}

/// What registration settled for one runner, handed to planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub identity: Identity,
    /// What the controller did (or, in check mode, would do) in GitLab.
    pub change: Option<String>,
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
        let two = format!("{text}[[runners]]\n  name = \"b\"\n  token = \"glrt-b\"\n");
        assert_eq!(read_named(&two, "b").token.as_deref(), Some("glrt-b"));
        assert_eq!(read_named(&two, "a").id, Some(42));
        assert_eq!(read_named(&two, "c"), Existing::default());
        assert_eq!(runner_tokens(&two), vec!["glrt-abc", "glrt-b"]);
    }

    #[test]
    fn the_system_id_lives_beside_the_config_in_use() {
        assert_eq!(system_id_path("/etc/gitlab-runner/config.toml"), "/etc/gitlab-runner/.runner_system_id");
        assert_eq!(system_id_path("/srv/runner-b/config.toml"), "/srv/runner-b/.runner_system_id");
    }

    #[test]
    fn the_ca_goes_where_gitlab_runner_looks_for_it() {
        assert_eq!(
            ca_path_on_host("https://gitlab.example.com:8443/x").as_deref(),
            Some("/etc/gitlab-runner/certs/gitlab.example.com.crt")
        );
        assert_eq!(ca_path_on_host("https://10.0.0.1").as_deref(), Some("/etc/gitlab-runner/certs/10.0.0.1.crt"));
        assert_eq!(ca_path_on_host("not a url"), None);
    }
}
