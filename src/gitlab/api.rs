//! The GitLab REST API (v4), as far as runner hosts need it: the one
//! place that speaks HTTP to GitLab.
//!
//! Runners are created from the controller (`POST /user/runners` with a
//! token that has the `create_runner` scope, or the legacy
//! `POST /runners` with a registration token); hosts only ever see their
//! own runner token. Every answer GitLab can give is mapped to a message
//! that says what to check: 401 (token), 403 (scope or role), 404 (URL,
//! group or project), 410 (legacy registration disabled). 5xx answers and
//! failed connections are retried with backoff; a request that may have
//! reached GitLab is never retried when retrying could create a second
//! runner. Tokens are never part of a message.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use super::runner::RunnerSpec;

/// How many times a request is tried when GitLab answers 5xx.
const ATTEMPTS: u32 = 3;

/// How long one request may take: `BOOTSTRAP_GITLAB_TIMEOUT` seconds,
/// default 20.
fn timeout() -> Duration {
    let secs = std::env::var("BOOTSTRAP_GITLAB_TIMEOUT").ok().and_then(|v| v.parse::<u64>().ok()).filter(|s| *s > 0);
    Duration::from_secs(secs.unwrap_or(20))
}

/// What was asked and why it failed, for people.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct GitlabError(pub String);

/// A runner GitLab created, with its token (shown once).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Created {
    pub id: u64,
    pub token: String,
    #[serde(default)]
    pub token_expires_at: Option<String>,
}

/// A runner as GitLab lists it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Listed {
    pub id: u64,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub paused: bool,
}

/// A client for one GitLab instance.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// `url` is the GitLab instance, e.g. `https://gitlab.example.com`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn new(url: &str) -> Result<Client, GitlabError> {
        Client::with_ca(url, None)
    }

    /// As [`Client::new`], trusting also the CA certificates of `ca`
    /// (`gitlab_ca_file`, PEM) besides the system's.
    pub fn with_ca(url: &str, ca: Option<&[u8]>) -> Result<Client, GitlabError> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(GitlabError(format!("gitlab_url `{url}` must start with https:// (or http://)")));
        }
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = ca {
            builder = builder.tls_certs_merge(ca_certificates(pem).map_err(|e| GitlabError(format!("gitlab_ca_file: {e}")))?);
        }
        let http = builder
            .timeout(timeout())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("bootstrap/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GitlabError(format!("cannot set up an HTTP client: {e}")))?;
        Ok(Client { http, base })
    }

    /// Send a request; retry 5xx answers and connection failures. With
    /// `idempotent` false, a request that may have reached GitLab (timed out
    /// after sending) is not retried.
    async fn send(
        &self,
        what: &str,
        idempotent: bool,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<(u16, Json), GitlabError> {
        let mut delay = Duration::from_millis(500);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match build(&self.http).send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let text = resp.text().await.unwrap_or_default();
                    let body: Json = serde_json::from_str(&text).unwrap_or(Json::String(text.chars().take(300).collect()));
                    if status >= 500 && attempt < ATTEMPTS {
                        last = format!("HTTP {status}");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                        continue;
                    }
                    return Ok((status, body));
                }
                Err(e) => {
                    if let Some(why) = untrusted_certificate(&e) {
                        return Err(GitlabError(format!(
                            "{what} at {}: GitLab's TLS certificate is not trusted ({why})\n  help: set gitlab_ca_file to the PEM file of the CA that signed it (a private CA)",
                            self.base
                        )));
                    }
                    let sent = !e.is_connect();
                    last = if e.is_timeout() {
                        format!("no answer within {}s (BOOTSTRAP_GITLAB_TIMEOUT)", timeout().as_secs())
                    } else if e.is_connect() {
                        format!("cannot connect: {}", root_cause(&e))
                    } else {
                        root_cause(&e)
                    };
                    if (sent && !idempotent) || attempt == ATTEMPTS {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        Err(GitlabError(format!("{what} at {}: {last}", self.base)))
    }

    /// Whether `token` is a valid runner token: `Some(expires_at)` if so.
    pub async fn verify(&self, token: &str, system_id: Option<&str>) -> Result<Option<Option<String>>, GitlabError> {
        let url = format!("{}/api/v4/runners/verify", self.base);
        let mut body = json!({ "token": token });
        if let Some(s) = system_id {
            body["system_id"] = Json::String(s.to_string());
        }
        let (status, resp) = self.send("checking the runner token", true, |h| h.post(&url).json(&body)).await?;
        match status {
            200 => Ok(Some(resp.get("token_expires_at").and_then(|v| v.as_str()).map(str::to_string))),
            403 | 401 => Ok(None),
            s => Err(self.explain(s, &resp, "checking the runner token", "")),
        }
    }

    /// Create a runner (`POST /api/v4/user/runners`), GitLab >= 15.11.
    pub async fn create_runner(&self, token_var: &str, token: &str, spec: &RunnerSpec) -> Result<Created, GitlabError> {
        let url = format!("{}/api/v4/user/runners", self.base);
        let (status, resp) = self.send("creating the runner", false, |h| h.post(&url).header("PRIVATE-TOKEN", token).json(spec)).await?;
        match status {
            201 | 200 => serde_json::from_value(resp)
                .map_err(|e| GitlabError(format!("GitLab's answer to creating a runner is not understood: {e}"))),
            s => Err(self.explain(s, &resp, "creating the runner", token_var)),
        }
    }

    /// Register with a registration token (`POST /api/v4/runners`), the
    /// legacy workflow.
    pub async fn register_legacy(&self, token_var: &str, token: &str, spec: &RunnerSpec) -> Result<Created, GitlabError> {
        let url = format!("{}/api/v4/runners", self.base);
        let body = json!({
            "token": token,
            "description": spec.description,
            "tag_list": spec.tag_list.join(","),
            "run_untagged": spec.run_untagged,
            "locked": spec.locked,
            "access_level": spec.access_level,
            "paused": spec.paused,
            "maximum_timeout": spec.maximum_timeout,
        });
        let (status, resp) = self.send("registering the runner", false, |h| h.post(&url).json(&body)).await?;
        match status {
            201 | 200 => serde_json::from_value(resp).map_err(|e| GitlabError(format!("GitLab's answer to registering a runner is not understood: {e}"))),
            410 => Err(GitlabError(format!(
                "{} has legacy runner registration (registration tokens) disabled (410 Gone)\n  help: use `runner_registration: api` with a token that has the create_runner scope in GITLAB_TOKEN",
                self.base
            ))),
            s => Err(self.explain(s, &resp, "registering the runner", token_var)),
        }
    }

    /// Delete a runner by its own token. `false` if GitLab did not know it.
    pub async fn delete_by_token(&self, token: &str) -> Result<bool, GitlabError> {
        let url = format!("{}/api/v4/runners", self.base);
        let body = json!({ "token": token });
        let (status, resp) = self.send("deleting the runner", true, |h| h.delete(&url).json(&body)).await?;
        match status {
            204 | 200 => Ok(true),
            403 | 404 => Ok(false),
            s => Err(self.explain(s, &resp, "deleting the runner", "")),
        }
    }

    /// Delete a runner by id with an API token. `false` if it was gone.
    pub async fn delete_by_id(&self, token_var: &str, token: &str, id: u64) -> Result<bool, GitlabError> {
        let url = format!("{}/api/v4/runners/{id}", self.base);
        let (status, resp) = self.send("deleting the runner", true, |h| h.delete(&url).header("PRIVATE-TOKEN", token)).await?;
        match status {
            204 | 200 => Ok(true),
            404 => Ok(false),
            s => Err(self.explain(s, &resp, "deleting the runner", token_var)),
        }
    }

    /// Runners visible at `scope` (`runners/all`, `groups/ID/runners`,
    /// `projects/ID/runners`) with a tag.
    pub async fn list_runners(&self, token_var: &str, token: &str, scope: &str, tag: &str) -> Result<Vec<Listed>, GitlabError> {
        let mut out = Vec::new();
        for page in 1..=50u32 {
            let url = format!("{}/api/v4/{scope}", self.base);
            let query = [("tag_list", tag.to_string()), ("per_page", "100".to_string()), ("page", page.to_string())];
            let (status, resp) = self.send("listing runners", true, |h| h.get(&url).header("PRIVATE-TOKEN", token).query(&query)).await?;
            if status != 200 {
                return Err(self.explain(status, &resp, "listing runners", token_var));
            }
            let items: Vec<Listed> = serde_json::from_value(resp).map_err(|e| GitlabError(format!("runner list not understood: {e}")))?;
            let n = items.len();
            out.extend(items);
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }

    fn explain(&self, status: u16, body: &Json, what: &str, token_var: &str) -> GitlabError {
        let detail = match body.get("message").or_else(|| body.get("error")) {
            Some(Json::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let var = if token_var.is_empty() { "the token".to_string() } else { token_var.to_string() };
        let hint = match status {
            401 => format!("GitLab did not accept {var}: check that it is set, valid and not expired"),
            403 => format!("{var} is not allowed to do this: it needs the create_runner scope and the Owner or Maintainer role on the group or project (or admin for instance runners)"),
            404 => "check gitlab_url and runner_group_id / runner_project_id, and that the token's user can see them".to_string(),
            400 => "GitLab refused the request's values".to_string(),
            s if s >= 500 => format!("GitLab failed ({ATTEMPTS} attempts); try again later"),
            _ => String::new(),
        };
        let mut msg = format!("{what} at {}: HTTP {status}", self.base);
        if !detail.is_empty() {
            msg.push_str(&format!(" ({detail})"));
        }
        if !hint.is_empty() {
            msg.push_str(&format!("\n  help: {hint}"));
        }
        GitlabError(msg)
    }
}

/// `explain` for the property tests.
#[cfg(test)]
pub fn explain_for_tests(status: u16, body: &Json) -> String {
    match Client::new("https://g.example") {
        Ok(c) => c.explain(status, body, "creating the runner", "GITLAB_TOKEN").0,
        Err(e) => e.0,
    }
}

/// The certificates of a PEM file (`gitlab_ca_file`), checked: at least
/// one, each one a certificate a TLS client can trust.
pub fn ca_certificates(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, String> {
    let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("not a PEM certificate file: {}", root_cause(&e)))?;
    if certs.is_empty() {
        return Err("holds no certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    // Building a client parses each certificate as the TLS layer will.
    reqwest::Client::builder()
        .tls_certs_merge(certs.clone())
        .build()
        .map_err(|e| format!("not a usable CA certificate: {}", root_cause(&e)))?;
    Ok(certs)
}

/// Why the server's certificate failed verification, if that is what
/// `e` is about (somewhere in its chain of causes).
fn untrusted_certificate(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(why) = untrusted_certificate(inner) {
                    return Some(why);
                }
            }
        }
        let text = err.to_string();
        if text.contains("invalid peer certificate") || text.contains("certificate verify failed") {
            return Some(text);
        }
        cur = err.source();
    }
    None
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_urls_without_scheme() {
        assert!(Client::new("gitlab.example.com").is_err());
        assert_eq!(Client::new("https://gitlab.example.com/").unwrap().base, "https://gitlab.example.com");
    }

    #[test]
    fn explains_by_status_without_tokens() {
        let c = Client::new("https://g.example").unwrap();
        let e = c.explain(401, &json!({"message": "401 Unauthorized"}), "creating the runner", "GITLAB_TOKEN");
        assert!(e.0.contains("GITLAB_TOKEN") && e.0.contains("401"));
        let e = c.explain(403, &json!({"message": "403 Forbidden"}), "creating the runner", "GITLAB_TOKEN");
        assert!(e.0.contains("create_runner"));
    }
}
