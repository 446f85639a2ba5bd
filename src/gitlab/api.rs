//! The GitLab REST API (v4), as far as runner hosts need it: the one
//! place that speaks HTTP to GitLab.
//!
//! Runners are created from the controller (`POST /user/runners` with a
//! token that has the `create_runner` scope, or the legacy
//! `POST /runners` with a registration token); hosts only ever see their
//! own runner token. Every answer GitLab can give is mapped to a message
//! that says what to check: 401 (token), 403 (scope or role), 404 (URL,
//! group or project), 410 (legacy registration disabled). 5xx answers and
//! failed connections are retried with backoff.
//!
//! A creation is never simply retried: a 5xx, a dropped connection or a
//! timeout after the request was sent may come from a proxy after GitLab
//! created the runner, whose token is then lost for good. Such an answer is
//! ambiguous, and [`Client::create_runner`] reconciles it: it finds the
//! runners that request may have made (same description and tags, in the
//! target scope, created since the request), deletes them, and creates once
//! more, so exactly one runner is left.
//!
//! Listings are exact: `groups/:id/runners` also returns the ancestor
//! groups' and the instance's runners, `projects/:id/runners` the groups'
//! and the instance's, so only runners whose type and group or project are
//! the runner's own are candidates ([`Client::scope_runners`]). Every page
//! is read (`X-Next-Page`, else `Link: rel="next"`), 100 at a time.
//! Tokens are never part of a message.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use super::clock::{epoch_of, now_epoch};
use super::runner::{Registration, RunnerSettings, RunnerSpec};

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
    /// Runners an ambiguous earlier attempt made, deleted before this one.
    #[serde(skip)]
    pub reconciled: Vec<u64>,
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
    #[serde(default)]
    pub runner_type: String,
}

/// The id of a group or project a runner belongs to.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Owner {
    pub id: u64,
}

/// A runner's details (`GET /runners/:id`): which group or project it
/// belongs to, and when it was created.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Details {
    pub id: u64,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub runner_type: String,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub groups: Vec<Owner>,
    #[serde(default)]
    pub projects: Vec<Owner>,
}

/// What GitLab said about a runner token (`runners/verify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid; when it expires, if it does.
    Valid(Option<String>),
    /// GitLab does not know the token (403).
    Invalid,
    /// The token is valid but GitLab refused to record this host's runner
    /// manager (422, an orphaned manager): the token is kept, and the
    /// message says so.
    ManagerRefused(String),
}

impl Verdict {
    pub fn is_valid(&self) -> bool {
        !matches!(self, Verdict::Invalid)
    }

    /// The expiry of a valid token.
    pub fn expires_at(&self) -> Option<String> {
        match self {
            Verdict::Valid(e) => e.clone(),
            _ => None,
        }
    }
}

/// One answer of GitLab's.
struct Answer {
    status: u16,
    body: Json,
    /// The next page of a listing (`X-Next-Page`, else `Link: rel="next"`).
    next_page: Option<u32>,
}

/// A request that got no answer; `sent`: it may have reached GitLab;
/// `fatal`: trying again cannot help (an untrusted certificate).
struct NoAnswer {
    sent: bool,
    fatal: bool,
    why: String,
}

/// The next page of a listing, from its headers.
fn next_page(h: &reqwest::header::HeaderMap) -> Option<u32> {
    let text = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(n) = text("x-next-page") {
        return n.parse().ok();
    }
    // Link: <https://g/api/v4/...&page=3&per_page=100>; rel="next", <...>; rel="last"
    let link = text("link")?;
    let next = link.split(',').find(|part| part.contains("rel=\"next\""))?;
    let url = next.split(';').next()?.trim().trim_start_matches('<').trim_end_matches('>');
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|kv| kv.strip_prefix("page=")).and_then(|p| p.parse().ok())
}

/// How far GitLab's clock may be behind the controller's when deciding
/// which runners an ambiguous creation may have made.
const CLOCK_SLACK_SECS: i64 = 300;

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

    /// Send a request once.
    async fn send_once(&self, build: &impl Fn(&reqwest::Client) -> reqwest::RequestBuilder) -> Result<Answer, NoAnswer> {
        let explain = |e: &reqwest::Error| {
            if e.is_timeout() {
                format!("no answer within {}s (BOOTSTRAP_GITLAB_TIMEOUT)", timeout().as_secs())
            } else if e.is_connect() {
                format!("cannot connect: {}", root_cause(e))
            } else {
                root_cause(e)
            }
        };
        let resp = build(&self.http).send().await.map_err(|e| match untrusted_certificate(&e) {
            Some(why) => NoAnswer {
                sent: false,
                fatal: true,
                why: format!(
                    "GitLab's TLS certificate is not trusted ({why})\n  help: set gitlab_ca_file to the PEM file of the CA that signed it (a private CA)"
                ),
            },
            None => NoAnswer { sent: !e.is_connect(), fatal: false, why: explain(&e) },
        })?;
        let status = resp.status().as_u16();
        let next_page = next_page(resp.headers());
        // A body cut off is no answer: the request was sent.
        let text = resp.text().await.map_err(|e| NoAnswer { sent: true, fatal: false, why: explain(&e) })?;
        let body: Json = serde_json::from_str(&text).unwrap_or(Json::String(text.chars().take(300).collect()));
        Ok(Answer { status, body, next_page })
    }

    /// Send a request that is safe to repeat; retry 5xx answers and
    /// failed connections with backoff.
    async fn send(&self, what: &str, build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder) -> Result<Answer, GitlabError> {
        let mut delay = Duration::from_millis(500);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match self.send_once(&build).await {
                Ok(a) if a.status >= 500 && attempt < ATTEMPTS => last = format!("HTTP {}", a.status),
                Ok(a) => return Ok(a),
                Err(e) if e.fatal => return Err(GitlabError(format!("{what} at {}: {}", self.base, e.why))),
                Err(e) => last = e.why,
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        Err(GitlabError(format!("{what} at {}: {last}", self.base)))
    }

    /// What GitLab says about runner token `token` (see [`Verdict`]).
    pub async fn verify(&self, token: &str, system_id: Option<&str>) -> Result<Verdict, GitlabError> {
        let url = format!("{}/api/v4/runners/verify", self.base);
        let mut body = json!({ "token": token });
        if let Some(s) = system_id {
            body["system_id"] = Json::String(s.to_string());
        }
        let a = self.send("checking the runner token", |h| h.post(&url).json(&body)).await?;
        match a.status {
            200 => Ok(Verdict::Valid(a.body.get("token_expires_at").and_then(|v| v.as_str()).map(str::to_string))),
            403 | 401 => Ok(Verdict::Invalid),
            422 => Ok(Verdict::ManagerRefused(format!(
                "GitLab at {} accepts the runner token but refused to record this host's runner manager (system_id {}; HTTP 422{}): the token is kept; if the runner shows as orphaned in GitLab, delete its stale managers there",
                self.base,
                system_id.unwrap_or("none"),
                detail(&a.body).map(|d| format!(": {d}")).unwrap_or_default()
            ))),
            s => Err(self.explain(s, &a.body, "checking the runner token", "")),
        }
    }

    /// Create a runner (`POST /api/v4/user/runners`, GitLab >= 15.11) with
    /// `token` in `token_var`. An ambiguous answer is reconciled with
    /// `lister` (a token that may list and delete runners of the scope; see
    /// the module docs).
    pub async fn create_runner(
        &self,
        token_var: &str,
        token: &str,
        spec: &RunnerSpec,
        lister: Option<&str>,
    ) -> Result<Created, GitlabError> {
        let url = format!("{}/api/v4/user/runners", self.base);
        self.create(spec, token_var, lister, "creating the runner", |h| h.post(&url).header("PRIVATE-TOKEN", token).json(spec)).await
    }

    /// Create once, reconciling ambiguous answers (see the module docs).
    async fn create(
        &self,
        spec: &RunnerSpec,
        token_var: &str,
        lister: Option<&str>,
        what: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Created, GitlabError> {
        let mut delay = Duration::from_millis(500);
        let mut removed: Vec<u64> = Vec::new();
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let since = now_epoch() - CLOCK_SLACK_SECS;
            let ambiguous = match self.send_once(&build).await {
                Ok(a) if a.status == 201 || a.status == 200 => {
                    let mut c: Created = serde_json::from_value(a.body)
                        .map_err(|e| GitlabError(format!("GitLab's answer to {what} is not understood: {e}")))?;
                    c.reconciled = removed;
                    return Ok(c);
                }
                Ok(a) if a.status >= 500 => format!("HTTP {}", a.status),
                Ok(a) => return Err(self.explain(a.status, &a.body, what, token_var)),
                Err(e) if e.fatal => return Err(GitlabError(format!("{what} at {}: {}", self.base, e.why))),
                // Never reached GitLab: safe to try again.
                Err(e) if !e.sent => {
                    last = e.why;
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    continue;
                }
                Err(e) => e.why,
            };
            last = ambiguous.clone();
            let desc = &spec.description;
            let Some(lister) = lister else {
                return Err(GitlabError(format!(
                    "{what} at {}: {ambiguous}: GitLab may have created runner `{desc}` anyway, and its token is lost\n  help: set GITLAB_TOKEN (scope api or manage_runner) so bootstrap can find and delete it, or delete the runners named `{desc}` created in the last minutes in GitLab, then run again",
                    self.base
                )));
            };
            let made = self.scope_runners(lister, spec, &spec.tag_list).await.map_err(|e| {
                GitlabError(format!(
                    "{what} at {}: {ambiguous}: GitLab may have created runner `{desc}`, and looking for it failed: {e}\n  help: delete the runners named `{desc}` created in the last minutes in GitLab, then run again",
                    self.base
                ))
            })?;
            for r in made.iter().filter(|r| r.created_at.as_deref().and_then(epoch_of).is_none_or(|t| t >= since)) {
                if self.delete_by_id(Registration::Api.env_var(), lister, r.id).await? {
                    removed.push(r.id);
                }
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        let gone =
            if removed.is_empty() { String::new() } else { format!(" (deleted the runners it made meanwhile: id {})", join_ids(&removed)) };
        Err(GitlabError(format!("{what} at {}: {last}{gone}\n  help: GitLab failed ({ATTEMPTS} attempts); try again later", self.base)))
    }

    /// Register with a registration token (`POST /api/v4/runners`), the
    /// legacy workflow; ambiguous answers are reconciled with `lister`.
    pub async fn register_legacy(
        &self,
        token_var: &str,
        token: &str,
        spec: &RunnerSpec,
        lister: Option<&str>,
    ) -> Result<Created, GitlabError> {
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
        self.create(spec, token_var, lister, "registering the runner", |h| h.post(&url).json(&body)).await.map_err(|e| {
            if e.0.contains("HTTP 410") {
                GitlabError(format!(
                    "{} has legacy runner registration (registration tokens) disabled (410 Gone)\n  help: use `runner_registration: api` with a token that has the create_runner scope in GITLAB_TOKEN",
                    self.base
                ))
            } else {
                e
            }
        })
    }

    /// Delete a runner by its own token. `false` if GitLab did not know it.
    pub async fn delete_by_token(&self, token: &str) -> Result<bool, GitlabError> {
        let url = format!("{}/api/v4/runners", self.base);
        let body = json!({ "token": token });
        let a = self.send("deleting the runner", |h| h.delete(&url).json(&body)).await?;
        match a.status {
            204 | 200 => Ok(true),
            403 | 404 => Ok(false),
            s => Err(self.explain(s, &a.body, "deleting the runner", "")),
        }
    }

    /// Delete a runner by id with an API token. `false` if it was gone.
    pub async fn delete_by_id(&self, token_var: &str, token: &str, id: u64) -> Result<bool, GitlabError> {
        let url = format!("{}/api/v4/runners/{id}", self.base);
        let a = self.send("deleting the runner", |h| h.delete(&url).header("PRIVATE-TOKEN", token)).await?;
        match a.status {
            204 | 200 => Ok(true),
            404 => Ok(false),
            403 => Err(GitlabError(format!(
                "deleting runner {id} at {}: HTTP 403{}\n  help: {token_var} may not manage runner {id}: it needs the api or manage_runner scope, an administrator for an instance runner, and for a project runner shared with other projects the Maintainer role on all of them (or unassign the other projects first)",
                self.base,
                detail(&a.body).map(|d| format!(" ({d})")).unwrap_or_default()
            ))),
            s => Err(self.explain(s, &a.body, &format!("deleting runner {id}"), token_var)),
        }
    }

    /// Runners listed at `scope` (`runners/all`, `groups/ID/runners`,
    /// `projects/ID/runners`) of type `runner_type` with all of `tags`,
    /// every page.
    pub async fn list_runners(&self, token: &str, scope: &str, runner_type: &str, tags: &[String]) -> Result<Vec<Listed>, GitlabError> {
        let url = format!("{}/api/v4/{scope}", self.base);
        let mut out = Vec::new();
        let mut page = 1u32;
        loop {
            let mut query = vec![("per_page", "100".to_string()), ("page", page.to_string())];
            if !runner_type.is_empty() {
                query.push(("type", runner_type.to_string()));
            }
            if !tags.is_empty() {
                query.push(("tag_list", tags.join(",")));
            }
            let a = self.send("listing runners", |h| h.get(&url).header("PRIVATE-TOKEN", token).query(&query)).await?;
            if a.status == 403 && scope == "runners/all" {
                return Err(GitlabError(format!(
                    "listing instance runners at {} (runners/all): HTTP 403\n  help: only an administrator's token may list instance runners: use an administrator's GITLAB_TOKEN, or give the runner a group or project (runner_type)",
                    self.base
                )));
            }
            if a.status != 200 {
                return Err(self.explain(a.status, &a.body, "listing runners", Registration::Api.env_var()));
            }
            let items: Vec<Listed> = serde_json::from_value(a.body)
                .map_err(|e| GitlabError(format!("GitLab's runner list (page {page}) is not understood: {e}")))?;
            out.extend(items);
            match a.next_page {
                Some(n) if n > page => page = n,
                Some(n) => {
                    return Err(GitlabError(format!("GitLab's runner list at {url} names page {n} after page {page}: not followed")))
                }
                None => return Ok(out),
            }
        }
    }

    /// A runner's details.
    pub async fn details(&self, token: &str, id: u64) -> Result<Option<Details>, GitlabError> {
        let url = format!("{}/api/v4/runners/{id}", self.base);
        let a = self.send("reading a runner", |h| h.get(&url).header("PRIVATE-TOKEN", token)).await?;
        match a.status {
            200 => serde_json::from_value(a.body)
                .map(Some)
                .map_err(|e| GitlabError(format!("GitLab's details of runner {id} are not understood: {e}"))),
            404 => Ok(None),
            s => Err(self.explain(s, &a.body, &format!("reading runner {id}"), Registration::Api.env_var())),
        }
    }

    /// The runners named like `spec` in exactly its scope: its type, and
    /// its own group or project (not an ancestor group's, not the
    /// instance's), with all of `tags`.
    pub async fn scope_runners(&self, token: &str, spec: &RunnerSpec, tags: &[String]) -> Result<Vec<Details>, GitlabError> {
        let listed = self.list_runners(token, &list_scope(spec), &spec.runner_type, tags).await?;
        let mut out = Vec::new();
        for r in listed.into_iter().filter(|r| r.description == spec.description) {
            // The listing filters by type already; a GitLab that ignores
            // the filter still cannot slip another scope's runner through.
            if !r.runner_type.is_empty() && r.runner_type != spec.runner_type {
                continue;
            }
            let Some(d) = self.details(token, r.id).await? else { continue };
            let own = match spec.runner_type.as_str() {
                "group_type" => d.runner_type == "group_type" && spec.group_id.is_some_and(|g| d.groups.iter().any(|o| o.id == g)),
                "project_type" => d.runner_type == "project_type" && spec.project_id.is_some_and(|p| d.projects.iter().any(|o| o.id == p)),
                _ => d.runner_type == "instance_type",
            };
            if own {
                out.push(d);
            }
        }
        Ok(out)
    }

    fn explain(&self, status: u16, body: &Json, what: &str, token_var: &str) -> GitlabError {
        let detail = detail(body).unwrap_or_default();
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

impl RunnerSettings {
    /// The GitLab client for this runner's instance (and CA).
    pub fn client(&self) -> Result<Client, GitlabError> {
        Client::with_ca(&self.url, self.ca.as_ref().map(|c| c.pem.as_slice()))
    }
}

/// The API path that lists the runners of `spec`'s scope.
pub fn list_scope(spec: &RunnerSpec) -> String {
    match (spec.runner_type.as_str(), spec.group_id, spec.project_id) {
        ("group_type", Some(g), _) => format!("groups/{g}/runners"),
        ("project_type", _, Some(p)) => format!("projects/{p}/runners"),
        _ => "runners/all".to_string(),
    }
}

fn join_ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

/// GitLab's own words in an error answer.
fn detail(body: &Json) -> Option<String> {
    match body.get("message").or_else(|| body.get("error")) {
        Some(Json::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
        None => None,
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
    fn follows_next_page_headers() {
        use reqwest::header::{HeaderMap, HeaderValue};
        let mut h = HeaderMap::new();
        assert_eq!(next_page(&h), None);
        h.insert(
            "link",
            HeaderValue::from_static(
                "<https://g/api/v4/groups/7/runners?page=3&per_page=100>; rel=\"next\", <https://g/x?page=9>; rel=\"last\"",
            ),
        );
        assert_eq!(next_page(&h), Some(3));
        h.insert("x-next-page", HeaderValue::from_static("2"));
        assert_eq!(next_page(&h), Some(2));
        h.insert("x-next-page", HeaderValue::from_static(""));
        assert_eq!(next_page(&h), None, "an empty X-Next-Page is the last page");
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
