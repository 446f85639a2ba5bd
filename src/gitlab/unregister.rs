//! The GitLab side of `unregister` and `verify`: deleting a host's runner
//! (by its token, else by id, else by name) and checking its token.

use super::runner::{Registration, RunnerSettings};
use super::shared::{same_named, RegistrationError, Secrets};

/// What was done in GitLab, for the report.
pub struct Deleted {
    pub what: String,
    /// Whether a runner was deleted (false: there was none to delete).
    pub changed: bool,
}

/// Delete the runner of a host in GitLab: by its token if the host holds
/// one, else (with GITLAB_TOKEN) by id, else by name in its scope.
pub async fn delete(s: &RunnerSettings, token: Option<&str>, id: Option<u64>, secrets: &Secrets) -> Result<Deleted, RegistrationError> {
    let client = s.client()?;
    let desc = &s.spec.description;
    if let Some(t) = token {
        if client.delete_by_token(t).await? {
            let id = id.map(|i| format!(" (id {i})")).unwrap_or_default();
            return Ok(Deleted { what: format!("deleted runner `{desc}`{id} in GitLab (by its token)"), changed: true });
        }
    }
    let Some(api) = secrets.get(Registration::Api) else {
        return match token {
            Some(_) => Ok(Deleted {
                what: "GitLab no longer knows the host's token: nothing to delete (set GITLAB_TOKEN to also look by id and name)".into(),
                changed: false,
            }),
            None => Err(RegistrationError::Refused(
                "the host holds no runner token; set GITLAB_TOKEN to find and delete the runner by name".into(),
            )),
        };
    };
    if let Some(i) = id {
        if client.delete_by_id(Registration::Api.env_var(), api, i).await? {
            return Ok(Deleted { what: format!("deleted runner `{desc}` (id {i}) in GitLab (by id)"), changed: true });
        }
    }
    let mut ids = Vec::new();
    for r in same_named(&client, s, api, None).await? {
        if client.delete_by_id(Registration::Api.env_var(), api, r.id).await? {
            ids.push(r.id.to_string());
        }
    }
    if ids.is_empty() {
        Ok(Deleted { what: format!("no runner `{desc}` in GitLab: nothing to delete"), changed: false })
    } else {
        Ok(Deleted { what: format!("deleted runner `{desc}` in GitLab by name (id {})", ids.join(", ")), changed: true })
    }
}

/// Whether GitLab accepts `token` (`runners/verify`).
pub async fn token_valid(s: &RunnerSettings, token: &str) -> Result<bool, RegistrationError> {
    Ok(s.client()?.verify(token, None).await?.is_valid())
}
