//! What registration and unregistration share: the secrets from the
//! environment, the error they fail with, and finding a host's runners by
//! name in its scope.

use super::api::{Client, Details, GitlabError};
use super::runner::{Registration, RunnerSettings};

/// The secrets registration may use, read from the environment.
#[derive(Clone, Default)]
pub struct Secrets {
    pub api: Option<String>,
    pub runner: Option<String>,
    pub legacy: Option<String>,
}

impl Secrets {
    pub fn from_env() -> Secrets {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Secrets {
            api: get(Registration::Api.env_var()),
            runner: get(Registration::Token.env_var()),
            legacy: get(Registration::Legacy.env_var()),
        }
    }

    pub fn get(&self, r: Registration) -> Option<&str> {
        match r {
            Registration::Api => self.api.as_deref(),
            Registration::Token => self.runner.as_deref(),
            Registration::Legacy => self.legacy.as_deref(),
        }
    }

    /// Every secret that is set, for the redactor.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        [&self.api, &self.runner, &self.legacy].into_iter().flatten().map(String::as_str)
    }
}

/// Why a runner could not be settled.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistrationError {
    /// GitLab refused or failed; the message says what to check.
    #[error(transparent)]
    Gitlab(#[from] GitlabError),
    /// A secret this registration needs is not set.
    #[error("{0} is not set")]
    MissingSecret(&'static str),
    #[error("{0}")]
    Refused(String),
    /// A runner exists in GitLab but its token could not be kept.
    #[error("{0}")]
    Controller(String),
}

/// Runners in GitLab named like this host's, with its first tag, in
/// exactly its scope (never an ancestor group's or the instance's for a
/// group or project runner), other than `keep`: what `--replace` deletes.
pub async fn same_named(client: &Client, s: &RunnerSettings, token: &str, keep: Option<u64>) -> Result<Vec<Details>, GitlabError> {
    let tags: Vec<String> = s.spec.tag_list.first().cloned().into_iter().collect();
    let found = client.scope_runners(token, &s.spec, &tags).await?;
    Ok(found.into_iter().filter(|r| Some(r.id) != keep).collect())
}
