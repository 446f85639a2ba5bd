//! Settling a host's runner with GitLab, on the controller, before planning.
//!
//! The probe has read the host's config.toml; here we decide which
//! identity the template renders: the host's own token if GitLab still
//! accepts it (`runners/verify`), else a runner created now (or, in check
//! mode, one that would be). Never twice: a created token is saved as
//! [`pending`](super::pending) until the host holds it. With `--replace`,
//! same-named runners of the host's scope that are not its own are deleted
//! first (a host rebuilt under a dead host's name).
//!
//! The result is a typed [`Settled`] for planning, plus the secrets that
//! were learnt (for the run's redactor) and warnings: registration never
//! reaches into the reporter.

use std::path::PathBuf;

use super::api::{Client, Created, Verdict};
use super::clock::now_rfc3339;
use super::pending::{self, Pending};
use super::runner::{Existing, Identity, Registration, RunnerSettings, Settled};
pub use super::shared::{same_named, RegistrationError, Secrets};

/// One runner of one host to settle.
pub struct Request<'a> {
    pub settings: &'a RunnerSettings,
    /// What the host's config.toml holds now.
    pub existing: &'a Existing,
    /// The host's `.runner_system_id`, if it has one.
    pub system_id: Option<&'a str>,
    /// The inventory name of the host (the pending token's key).
    pub host: &'a str,
    /// Check mode: create and delete nothing.
    pub check: bool,
    /// `--replace`: delete same-named runners that are not the host's.
    pub replace: bool,
    pub secrets: &'a Secrets,
}

/// What was decided for one host's runner.
pub struct Outcome {
    pub settled: Settled,
    /// A saved token to forget once the host holds it.
    pub pending: Option<PathBuf>,
    /// Warnings for the user (a same-named runner left in GitLab).
    pub warnings: Vec<String>,
    /// Secrets learnt on the way (tokens read or created), to be masked.
    pub secrets: Vec<String>,
}

/// Decide the identity of a host's runner (see the module docs). A runner
/// asked `absent` that the host's config.toml still holds is deleted in
/// GitLab (by its token, else by id, else by name with GITLAB_TOKEN); one
/// the file no longer holds needs nothing.
pub async fn settle(req: &Request<'_>) -> Result<Outcome, RegistrationError> {
    if req.settings.absent {
        return settle_absent(req).await;
    }
    let mut out = settle_token(req).await?;
    let s = req.settings;
    let registering = out.settled.change.is_some();
    if !(registering || req.replace) {
        return Ok(out);
    }
    let Some(api) = req.secrets.get(Registration::Api) else {
        if req.replace {
            return Err(RegistrationError::Refused(
                "--replace needs GITLAB_TOKEN (read and delete runners) to find the runners to replace".into(),
            ));
        }
        return Ok(out);
    };
    let client = s.client()?;
    // In check mode a runner to be created has no id yet: any same-named one is stale.
    let others = match same_named(&client, s, api, out.settled.identity.id).await {
        Ok(o) => o,
        Err(e) if !req.replace => {
            out.warnings.push(format!("could not look for other runners named `{}`: {e}", s.spec.description));
            return Ok(out);
        }
        Err(e) => return Err(e.into()),
    };
    let mut deleted = Vec::new();
    for r in &others {
        let status = if r.status.is_empty() { "unknown status".to_string() } else { r.status.clone() };
        if !req.replace {
            out.warnings.push(format!(
                "runner `{}` (id {}, {status}) already exists in GitLab and is not this host's: run with --replace to delete it",
                r.description, r.id
            ));
        } else if req.check {
            deleted.push(format!("delete runner `{}` (id {}, {status}) in GitLab (--replace)", r.description, r.id));
        } else {
            client.delete_by_id(Registration::Api.env_var(), api, r.id).await?;
            deleted.push(format!("deleted runner `{}` (id {}, {status}) in GitLab (--replace)", r.description, r.id));
        }
    }
    if !deleted.is_empty() {
        let all: Vec<String> = deleted.into_iter().chain(out.settled.change.take()).collect();
        out.settled.change = Some(all.join("; "));
    }
    Ok(out)
}

async fn settle_absent(req: &Request<'_>) -> Result<Outcome, RegistrationError> {
    let (s, existing) = (req.settings, req.existing);
    let desc = &s.spec.description;
    let learnt: Vec<String> = existing.token.iter().cloned().collect();
    let none = Identity::new("", None, "", None);
    if existing.token.is_none() && existing.id.is_none() {
        return Ok(outcome(none, None, None, learnt));
    }
    if req.check {
        let change = format!("delete runner `{desc}` in GitLab (state: absent)");
        return Ok(outcome(none, Some(change), None, learnt));
    }
    let d = super::unregister::delete(s, existing.token.as_deref(), existing.id, req.secrets).await?;
    let change = if d.changed { d.what } else { format!("{} (state: absent)", d.what) };
    Ok(outcome(none, Some(change), None, learnt))
}

/// A valid token's verdict may carry a note for the user.
fn with_note(mut out: Outcome, v: &Verdict) -> Outcome {
    if let Verdict::ManagerRefused(msg) = v {
        out.warnings.push(msg.clone());
    }
    out
}

/// The host holds a valid token and a pending one is saved: the pending
/// file goes. If it is another runner's (created by a run whose host got
/// another token after all), that runner can never be used: deleted by its
/// token, so none is orphaned.
async fn drop_pending(client: &Client, path: &std::path::Path, p: &Pending, held: &str, req: &Request<'_>) -> Vec<String> {
    if req.check {
        return Vec::new();
    }
    if p.token != held {
        match client.delete_by_token(&p.token).await {
            Ok(_) => {}
            Err(e) => {
                return vec![format!(
                    "runner id {} was created by an earlier run and never used; deleting it failed ({e}): delete it in GitLab",
                    p.id
                )]
            }
        }
    }
    pending::forget(path);
    Vec::new()
}

fn outcome(identity: Identity, change: Option<String>, pending: Option<PathBuf>, secrets: Vec<String>) -> Outcome {
    Outcome { settled: Settled { identity, change }, pending, warnings: Vec::new(), secrets }
}

async fn settle_token(req: &Request<'_>) -> Result<Outcome, RegistrationError> {
    let (s, existing, system_id) = (req.settings, req.existing, req.system_id);
    let client = s.client()?;
    let mut learnt: Vec<String> = existing.token.iter().cloned().collect();
    let desc = &s.spec.description;
    if s.registration == Registration::Token {
        // A runner's own `token` from the inventory, else GITLAB_RUNNER_TOKEN.
        let source = if s.token.is_some() { format!("the inventory's `token` of runner `{desc}`") } else { "GITLAB_RUNNER_TOKEN".into() };
        let given = match &s.token {
            Some(t) => t.as_str(),
            None => req.secrets.get(Registration::Token).ok_or(RegistrationError::MissingSecret("GITLAB_RUNNER_TOKEN"))?,
        };
        if existing.token.as_deref() == Some(given) {
            let obtained = existing.token_obtained_at.clone().unwrap_or_else(now_rfc3339);
            let id = Identity::new(given, existing.id, &obtained, existing.token_expires_at.as_deref());
            return Ok(outcome(id, None, None, learnt));
        }
        let verdict = client.verify(given, system_id).await?;
        return match &verdict {
            v if v.is_valid() => Ok(with_note(
                outcome(
                    Identity::new(given, None, &now_rfc3339(), v.expires_at().as_deref()),
                    Some(format!("use the runner token from {source} for `{desc}`")),
                    None,
                    learnt,
                ),
                &verdict,
            )),
            _ => Err(RegistrationError::Refused(format!(
                "GitLab at {} does not accept the runner token in {source} (403): is it a current glrt- token of this instance?",
                s.url
            ))),
        };
    }
    let pending_path = pending::path(&s.url, req.host, desc);
    let saved = pending::load(&pending_path);
    learnt.extend(saved.iter().map(|p| p.token.clone()));
    // The host's own token, if GitLab still knows it.
    if let Some(t) = &existing.token {
        let verdict = client.verify(t, system_id).await?;
        if verdict.is_valid() {
            let obtained = existing.token_obtained_at.clone().unwrap_or_else(now_rfc3339);
            let expires = existing.token_expires_at.clone().or(verdict.expires_at());
            let mut out = with_note(outcome(Identity::new(t, existing.id, &obtained, expires.as_deref()), None, None, learnt), &verdict);
            if let Some(p) = saved {
                out.warnings.extend(drop_pending(&client, &pending_path, &p, t, req).await);
            }
            return Ok(out);
        }
    }
    let why = if existing.token.is_some() { "GitLab no longer accepts the host's token" } else { "the host has no runner token" };
    // A runner created by an earlier run that did not reach the host.
    if let Some(p) = &saved {
        if client.verify(&p.token, system_id).await?.is_valid() {
            let change = format!("use runner `{desc}` (id {}) created in GitLab by an earlier run that did not finish", p.id);
            let id = Identity::new(&p.token, Some(p.id), &p.token_obtained_at, p.token_expires_at.as_deref());
            return Ok(outcome(id, Some(change), Some(pending_path), learnt));
        }
        // Stale: its runner is gone or its token dead. Make sure it is gone.
        if !req.check {
            if let Some(api) = req.secrets.get(Registration::Api) {
                let _ = client.delete_by_id(Registration::Api.env_var(), api, p.id).await;
            }
        }
    }
    if !req.check {
        pending::forget(&pending_path);
    }
    let tags = s.spec.tag_list.join(",");
    if req.check {
        let change = format!("register runner `{desc}` in GitLab (tags {tags}; {why})");
        return Ok(outcome(Identity::new("glrt-(created-at-apply)", None, &now_rfc3339(), None), Some(change), None, learnt));
    }
    let var = s.registration.env_var();
    let secret = req.secrets.get(s.registration).ok_or(RegistrationError::MissingSecret(var))?;
    // A token that may list and delete runners, to reconcile an ambiguous creation.
    let lister = req.secrets.get(Registration::Api);
    let created: Created = match s.registration {
        Registration::Legacy => client.register_legacy(var, secret, &s.spec, lister).await?,
        _ => client.create_runner(var, secret, &s.spec, lister).await?,
    };
    learnt.push(created.token.clone());
    let obtained = now_rfc3339();
    let saved = Pending {
        id: created.id,
        token: created.token.clone(),
        token_expires_at: created.token_expires_at.clone(),
        token_obtained_at: obtained.clone(),
    };
    pending::save(&pending_path, &saved).map_err(|e| {
        RegistrationError::Controller(format!(
            "runner {} was created in GitLab but its token could not be saved on the controller: {e}",
            created.id
        ))
    })?;
    let mut change = format!("registered runner `{desc}` in GitLab: id {} (tags {tags}; {why})", created.id);
    if !created.reconciled.is_empty() {
        let ids: Vec<String> = created.reconciled.iter().map(u64::to_string).collect();
        change.push_str(&format!(
            "; an earlier attempt's answer was lost, so the runner(s) it made were deleted first (id {})",
            ids.join(", ")
        ));
    }
    let id = Identity::new(&created.token, Some(created.id), &obtained, created.token_expires_at.as_deref());
    Ok(outcome(id, Some(change), Some(pending_path), learnt))
}
