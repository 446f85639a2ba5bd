//! Settling a host's runner with GitLab, on the controller, before planning.
//!
//! The probe has read the host's config.toml; here we decide which token
//! the template renders: the one on the host if GitLab still accepts it
//! (`runners/verify`), else a runner created now (or, in check mode, one
//! that would be). Never twice: a freshly created token is first saved on
//! the controller (a 0600 file under the user's state folder) and removed
//! only once the host's config.toml holds it, so a run that dies between
//! creating the runner and writing the file reuses that runner next time
//! instead of creating another.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};
use sha2::{Digest, Sha256};

use crate::gitlab::{Client, Created};
use crate::modules::gitlab_runner::{Existing, Registration, Settings};
use crate::report::Redactor;

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
}

/// What was decided for one host's runner.
pub struct Outcome {
    /// Variables for the config.toml template.
    pub vars: Map<String, Json>,
    /// A saved token to forget once the host holds it.
    pub pending: Option<PathBuf>,
    /// Warnings for the user (a same-named runner left in GitLab).
    pub warnings: Vec<String>,
}

/// The GitLab API path that lists the runners this registration can see.
pub fn list_scope(s: &Settings) -> String {
    match (s.spec.runner_type.as_str(), s.spec.group_id, s.spec.project_id) {
        ("group_type", Some(g), _) => format!("groups/{g}/runners"),
        ("project_type", _, Some(p)) => format!("projects/{p}/runners"),
        _ => "runners/all".to_string(),
    }
}

/// Runners in GitLab named like this host's, with its first tag, other
/// than `keep`: what `--replace` deletes.
pub async fn same_named(client: &Client, s: &Settings, token: &str, keep: Option<u64>) -> Result<Vec<crate::gitlab::Listed>, String> {
    let tag = s.spec.tag_list.first().cloned().unwrap_or_default();
    let listed = client
        .list_runners(Registration::Api.env_var(), token, &list_scope(s), &tag)
        .await
        .map_err(|e| e.to_string())?;
    Ok(listed.into_iter().filter(|r| r.description == s.spec.description && Some(r.id) != keep).collect())
}

#[derive(Serialize, Deserialize)]
struct Pending {
    id: u64,
    token: String,
    token_expires_at: Option<String>,
    token_obtained_at: String,
}

/// Folder for the controller's own state.
fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("bootstrap");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".local/state/bootstrap")
}

fn pending_path(url: &str, host: &str, description: &str) -> PathBuf {
    let key = hex::encode(Sha256::digest(format!("{url}\n{host}\n{description}").as_bytes()));
    state_dir().join("pending-runners").join(format!("{}.json", &key[..32]))
}

fn save_pending(path: &PathBuf, p: &Pending) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    let text = serde_json::to_vec(p).map_err(|e| e.to_string())?;
    f.write_all(&text).and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Forget a saved token (the host holds it now).
pub fn forget(path: &PathBuf) {
    let _ = std::fs::remove_file(path);
}

/// RFC 3339 UTC timestamp of now, as gitlab-runner writes it.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// What upstream writes for "never expires".
const NO_EXPIRY: &str = "0001-01-01T00:00:00Z";

fn vars(token: &str, id: Option<u64>, obtained: &str, expires: Option<&str>, change: Option<String>) -> Map<String, Json> {
    let v = json!({
        "runner_token": token,
        "runner_id": id,
        "runner_token_obtained_at": obtained,
        "runner_token_expires_at": expires.filter(|e| !e.is_empty()).unwrap_or(NO_EXPIRY),
        "runner_registration_change": change,
    });
    match v {
        Json::Object(m) => m,
        _ => Map::new(),
    }
}

/// Decide the token of `host`'s runner (see the module docs). With
/// `replace`, runners in GitLab with the same name and tag that are not
/// the host's are deleted before a new one is registered (a host rebuilt
/// under a dead host's name); without it they are only reported.
#[allow(clippy::too_many_arguments)]
pub async fn settle(
    s: &Settings,
    existing: &Existing,
    system_id: Option<&str>,
    host: &str,
    check: bool,
    replace: bool,
    secrets: &Secrets,
    redactor: &Redactor,
) -> Result<Outcome, String> {
    let mut out = settle_token(s, existing, system_id, host, check, secrets, redactor).await?;
    let current = out.vars.get("runner_id").and_then(|v| v.as_u64());
    let registering = out.vars.get("runner_registration_change").map(|v| !v.is_null()).unwrap_or(false);
    if !(registering || replace) {
        return Ok(out);
    }
    let Some(api) = secrets.get(Registration::Api) else {
        if replace {
            return Err("--replace needs GITLAB_TOKEN (read and delete runners) to find the runners to replace".into());
        }
        return Ok(out);
    };
    let client = Client::new(&s.url).map_err(|e| e.to_string())?;
    // In check mode a runner to be created has no id yet: any same-named one is stale.
    let others = match same_named(&client, s, api, current).await {
        Ok(o) => o,
        Err(e) if !replace => {
            out.warnings.push(format!("could not look for other runners named `{}`: {e}", s.spec.description));
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    let mut deleted = Vec::new();
    for r in &others {
        let status = if r.status.is_empty() { "unknown status".to_string() } else { r.status.clone() };
        if !replace {
            out.warnings.push(format!(
                "runner `{}` (id {}, {status}) already exists in GitLab and is not this host's: run with --replace to delete it",
                r.description, r.id
            ));
        } else if check {
            deleted.push(format!("delete runner `{}` (id {}, {status}) in GitLab (--replace)", r.description, r.id));
        } else {
            client.delete_by_id(Registration::Api.env_var(), api, r.id).await.map_err(|e| e.to_string())?;
            deleted.push(format!("deleted runner `{}` (id {}, {status}) in GitLab (--replace)", r.description, r.id));
        }
    }
    if !deleted.is_empty() {
        let prev = out.vars.get("runner_registration_change").and_then(|v| v.as_str()).map(str::to_string);
        let all: Vec<String> = deleted.into_iter().chain(prev).collect();
        out.vars.insert("runner_registration_change".into(), Json::String(all.join("; ")));
    }
    Ok(out)
}

async fn settle_token(
    s: &Settings,
    existing: &Existing,
    system_id: Option<&str>,
    host: &str,
    check: bool,
    secrets: &Secrets,
    redactor: &Redactor,
) -> Result<Outcome, String> {
    let client = Client::new(&s.url).map_err(|e| e.to_string())?;
    if let Some(t) = &existing.token {
        redactor.add(t);
    }
    let desc = &s.spec.description;
    if s.registration == Registration::Token {
        let given = secrets.get(Registration::Token).ok_or("GITLAB_RUNNER_TOKEN is not set")?;
        if existing.token.as_deref() == Some(given) {
            let obtained = existing.token_obtained_at.clone().unwrap_or_else(now_rfc3339);
            return Ok(Outcome { vars: vars(given, existing.id, &obtained, existing.token_expires_at.as_deref(), None), pending: None, warnings: vec![] });
        }
        return match client.verify(given, system_id).await.map_err(|e| e.to_string())? {
            Some(exp) => Ok(Outcome {
                vars: vars(given, None, &now_rfc3339(), exp.as_deref(), Some(format!("use the runner token from GITLAB_RUNNER_TOKEN for `{desc}`"))),
                pending: None,
                warnings: vec![],
            }),
            None => Err(format!("GitLab at {} does not accept the runner token in GITLAB_RUNNER_TOKEN (403): is it a current glrt- token of this instance?", s.url)),
        };
    }
    // The host's own token, if GitLab still knows it.
    if let Some(t) = &existing.token {
        if let Some(exp) = client.verify(t, system_id).await.map_err(|e| e.to_string())? {
            let obtained = existing.token_obtained_at.clone().unwrap_or_else(now_rfc3339);
            let expires = existing.token_expires_at.clone().or(exp);
            return Ok(Outcome { vars: vars(t, existing.id, &obtained, expires.as_deref(), None), pending: None, warnings: vec![] });
        }
    }
    let why = if existing.token.is_some() { "GitLab no longer accepts the host's token" } else { "the host has no runner token" };
    // A runner created by an earlier run that did not reach the host.
    let pending = pending_path(&s.url, host, desc);
    if let Ok(text) = std::fs::read(&pending) {
        if let Ok(p) = serde_json::from_slice::<Pending>(&text) {
            redactor.add(&p.token);
            if client.verify(&p.token, system_id).await.map_err(|e| e.to_string())?.is_some() {
                let change = format!("use runner `{desc}` (id {}) created in GitLab by an earlier run that did not finish", p.id);
                return Ok(Outcome {
                    vars: vars(&p.token, Some(p.id), &p.token_obtained_at, p.token_expires_at.as_deref(), Some(change)),
                    pending: Some(pending),
                    warnings: vec![],
                });
            }
        }
        forget(&pending);
    }
    let tags = s.spec.tag_list.join(",");
    if check {
        let change = format!("register runner `{desc}` in GitLab (tags {tags}; {why})");
        return Ok(Outcome { vars: vars("glrt-(created-at-apply)", None, &now_rfc3339(), None, Some(change)), pending: None, warnings: vec![] });
    }
    let var = s.registration.env_var();
    let secret = secrets.get(s.registration).ok_or_else(|| format!("{var} is not set"))?;
    let created: Created = match s.registration {
        Registration::Legacy => client.register_legacy(var, secret, &s.spec).await,
        _ => client.create_runner(var, secret, &s.spec).await,
    }
    .map_err(|e| e.to_string())?;
    redactor.add(&created.token);
    let obtained = now_rfc3339();
    save_pending(
        &pending,
        &Pending { id: created.id, token: created.token.clone(), token_expires_at: created.token_expires_at.clone(), token_obtained_at: obtained.clone() },
    )
    .map_err(|e| format!("runner {} was created in GitLab but its token could not be saved on the controller: {e}", created.id))?;
    let change = format!("registered runner `{desc}` in GitLab: id {} (tags {tags}; {why})", created.id);
    Ok(Outcome {
        vars: vars(&created.token, Some(created.id), &obtained, created.token_expires_at.as_deref(), Some(change)),
        pending: Some(pending),
        warnings: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_look_like_upstreams() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T');
        assert!(t.as_str() > "2024-01-01");
    }

    #[test]
    fn pending_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("bootstrap-pending-{}", std::process::id()));
        let path = dir.join("sub/x.json");
        save_pending(&path, &Pending { id: 1, token: "glrt-x".into(), token_expires_at: None, token_obtained_at: now_rfc3339() }).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
