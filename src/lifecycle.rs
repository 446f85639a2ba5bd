//! Runner hosts through their life: `verify` and `unregister`.
//!
//! Both start like `apply`: one connection, one probe (which reads the
//! host's config.toml). `verify` then runs one script that proves the host
//! does its job (Docker answers, the runner service runs, an image builds
//! twice through the host's socket and the second build is all cache) and
//! asks GitLab whether the host's token is valid. `unregister` deletes the
//! runner in GitLab (by its token, else by id, else by name), then stops
//! the service and removes the runner from config.toml through the normal
//! plan machinery, so it is safe to run twice. A host that is gone can
//! still be unregistered by name with GITLAB_TOKEN.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::changes::{Attrs, Change, UnitAction};
use crate::facts::Facts;
use crate::gitlab::Client;
use crate::modules::gitlab_runner::{read_existing, Registration, Settings};
use crate::plan::{HostPlan, PlannedTask, TaskPlan};
use crate::registration::{same_named, Secrets};
use crate::report::{Counts, Event, Redactor, TaskStatus};
use crate::ssh::{Become, Session};

/// One line of a verification or an unregistration, as a task event.
struct Reporter<'a> {
    host: &'a str,
    tx: &'a mpsc::UnboundedSender<Event>,
    next: usize,
    pub counts: Counts,
    pub failed: bool,
}

impl Reporter<'_> {
    fn task(&mut self, name: &str, status: TaskStatus, msg: Option<String>, duration_ms: u64) {
        let i = self.next;
        self.next += 1;
        let _ = self.tx.send(Event::TaskStart { host: self.host.to_string(), task: i, name: name.to_string() });
        self.failed |= self.counts.record(status);
        let _ = self.tx.send(Event::TaskEnd {
            host: self.host.to_string(),
            task: i,
            name: name.to_string(),
            handler: false,
            status,
            duration_ms,
            changes: vec![],
            msg,
            output: None,
            diff: None,
        });
    }
}

fn config_text(facts: &Facts, path: &str) -> Option<String> {
    facts.path(path).and_then(|s| s.content.clone()).map(|c| String::from_utf8_lossy(&c).into_owned())
}

/// The verification script. The build context holds a file with `nonce`
/// (copied by the first step), so the first build is always a fresh one and
/// the second, identical, must take all three steps from the cache.
fn verify_script(nonce: &str, base_image: Option<&str>) -> String {
    let base = base_image.map(crate::shell::quote).unwrap_or_default();
    format!(
        r#"export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
echo "@@{nonce} docker"; docker -H unix:///var/run/docker.sock version --format '{{{{.Server.Version}}}}' 2>&1; echo "rc=$?"
echo "@@{nonce} runner"; systemctl is-active gitlab-runner 2>&1; echo "rc=$?"
echo "@@{nonce} build"
base={base}
if [ -z "$base" ]; then
  # No registry needed: a base image made of this host's own shell.
  base=bootstrap-verify/base:1
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    r=$(mktemp -d); mkdir -p "$r/bin"; cp /bin/sh "$r/bin/sh"
    for f in $(ldd /bin/sh | grep -o '/[^ ]*'); do mkdir -p "$r$(dirname "$f")"; cp -L "$f" "$r$f"; done
    tar -C "$r" -c . | docker -H unix:///var/run/docker.sock import - "$base" >/dev/null; rm -rf "$r"
  fi
fi
ctx=$(mktemp -d)
printf 'FROM %s\nCOPY nonce /nonce\nRUN echo two > /two\nRUN echo three > /three\n' "$base" > "$ctx/Dockerfile"
echo {nonce} > "$ctx/nonce"
t0=$(date +%s%N)
docker -H unix:///var/run/docker.sock build -t bootstrap-verify/app:{nonce} "$ctx" > "$ctx/b1" 2>&1; rc1=$?
t1=$(date +%s%N)
docker -H unix:///var/run/docker.sock build -t bootstrap-verify/app:{nonce} "$ctx" > "$ctx/b2" 2>&1; rc2=$?
t2=$(date +%s%N)
echo "rc1=$rc1"; echo "rc2=$rc2"; echo "ms1=$(( (t1 - t0) / 1000000 ))"; echo "ms2=$(( (t2 - t1) / 1000000 ))"
echo "cached=$(grep -c -e 'Using cache' -e ' CACHED' "$ctx/b2")"
[ "$rc1" = 0 ] && [ "$rc2" = 0 ] || tail -n 5 "$ctx/b1" "$ctx/b2"
docker -H unix:///var/run/docker.sock rmi bootstrap-verify/app:{nonce} >/dev/null 2>&1
rm -rf "$ctx"
echo "@@{nonce} end"
"#
    )
}

/// Prove the host does its job. Returns counts and whether it failed.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn verify(
    session: &Session,
    become_: &Become,
    facts: &Facts,
    reg: Option<&Settings>,
    base_image: Option<&str>,
    nonce: &str,
    host: &str,
    redactor: &Redactor,
    tx: &mpsc::UnboundedSender<Event>,
) -> Result<(Counts, bool), crate::ssh::SshError> {
    let mut rep = Reporter { host, tx, next: 0, counts: Counts::default(), failed: false };
    let start = Instant::now();
    let out = session.run_script(&verify_script(nonce, base_image), become_, |_| {}).await?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let elapsed = start.elapsed().as_millis() as u64;
    let section = |tag: &str| -> Vec<String> {
        let marker = format!("@@{nonce} ");
        let mut inside = false;
        let mut lines = Vec::new();
        for l in text.lines() {
            if let Some(t) = l.strip_prefix(&marker) {
                inside = t == tag;
                continue;
            }
            if inside {
                lines.push(l.to_string());
            }
        }
        lines
    };
    let value = |lines: &[String], k: &str| lines.iter().find_map(|l| l.strip_prefix(&format!("{k}="))).map(str::to_string);
    let docker = section("docker");
    match value(&docker, "rc").as_deref() {
        Some("0") => rep.task("Docker answers on /var/run/docker.sock", TaskStatus::Ok, Some(format!("Docker Engine {}", docker[0].trim())), 0),
        _ => rep.task("Docker answers on /var/run/docker.sock", TaskStatus::Failed, Some(docker.join("\n")), 0),
    }
    let runner = section("runner");
    match value(&runner, "rc").as_deref() {
        Some("0") => rep.task("gitlab-runner service active", TaskStatus::Ok, None, 0),
        _ => rep.task("gitlab-runner service active", TaskStatus::Failed, Some(format!("systemctl says: {}", runner.first().cloned().unwrap_or_default())), 0),
    }
    if let Some(s) = reg {
        let existing = config_text(facts, &s.config).map(|t| read_existing(&t, &s.url)).unwrap_or_default();
        match &existing.token {
            None => rep.task("runner token valid in GitLab", TaskStatus::Failed, Some(format!("{} holds no runner token for {}", s.config, s.url)), 0),
            Some(t) => {
                redactor.add(t);
                let t0 = Instant::now();
                let result = match Client::new(&s.url) {
                    Ok(c) => c.verify(t, None).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let ms = t0.elapsed().as_millis() as u64;
                match result {
                    Ok(Some(_)) => rep.task("runner token valid in GitLab", TaskStatus::Ok, Some(format!("runner id {}", existing.id.map(|i| i.to_string()).unwrap_or("?".into()))), ms),
                    Ok(None) => rep.task("runner token valid in GitLab", TaskStatus::Failed, Some("GitLab rejects the host's token (403): run `bootstrap apply` to register again".into()), ms),
                    Err(e) => rep.task("runner token valid in GitLab", TaskStatus::Failed, Some(e), ms),
                }
            }
        }
    }
    let build = section("build");
    let (rc1, rc2) = (value(&build, "rc1"), value(&build, "rc2"));
    let ms1: u64 = value(&build, "ms1").and_then(|v| v.parse().ok()).unwrap_or(0);
    let ms2: u64 = value(&build, "ms2").and_then(|v| v.parse().ok()).unwrap_or(0);
    let cached: u32 = value(&build, "cached").and_then(|v| v.parse().ok()).unwrap_or(0);
    let name = "an image builds twice through the host's socket, the second time from cache";
    if rc1.as_deref() == Some("0") && rc2.as_deref() == Some("0") && cached >= 3 {
        rep.task(name, TaskStatus::Ok, Some(format!("first build {ms1} ms, second {ms2} ms: {cached}/3 steps from cache")), ms1 + ms2);
    } else {
        let detail: Vec<&String> = build.iter().filter(|l| !l.contains('=')).collect();
        rep.task(
            name,
            TaskStatus::Failed,
            Some(format!(
                "builds exited {} and {}, {cached}/3 steps of the second from cache{}",
                rc1.unwrap_or("?".into()),
                rc2.unwrap_or("?".into()),
                if detail.is_empty() { String::new() } else { format!(":\n{}", detail.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")) }
            )),
            elapsed,
        );
    }
    Ok((rep.counts, rep.failed))
}

/// What `unregister` does in GitLab for one host; a description for the
/// report, `true` if something was deleted.
async fn delete_in_gitlab(s: &Settings, token: Option<&str>, id: Option<u64>, secrets: &Secrets) -> Result<(String, bool), String> {
    let client = Client::new(&s.url).map_err(|e| e.to_string())?;
    if let Some(t) = token {
        if client.delete_by_token(t).await.map_err(|e| e.to_string())? {
            return Ok((format!("deleted runner `{}`{} in GitLab (by its token)", s.spec.description, id.map(|i| format!(" (id {i})")).unwrap_or_default()), true));
        }
    }
    let Some(api) = secrets.get(Registration::Api) else {
        return match token {
            Some(_) => Ok(("GitLab no longer knows the host's token: nothing to delete (set GITLAB_TOKEN to also look by id and name)".into(), false)),
            None => Err("the host holds no runner token; set GITLAB_TOKEN to find and delete the runner by name".into()),
        };
    };
    if let Some(i) = id {
        if client.delete_by_id(Registration::Api.env_var(), api, i).await.map_err(|e| e.to_string())? {
            return Ok((format!("deleted runner `{}` (id {i}) in GitLab (by id)", s.spec.description), true));
        }
    }
    let others = same_named(&client, s, api, None).await?;
    let mut ids = Vec::new();
    for r in &others {
        if client.delete_by_id(Registration::Api.env_var(), api, r.id).await.map_err(|e| e.to_string())? {
            ids.push(r.id.to_string());
        }
    }
    if ids.is_empty() {
        Ok((format!("no runner `{}` in GitLab: nothing to delete", s.spec.description), false))
    } else {
        Ok((format!("deleted runner `{}` in GitLab by name (id {})", s.spec.description, ids.join(", ")), true))
    }
}

/// Unregister a host that answers: GitLab first, then the host.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn unregister(
    session: &Session,
    become_: &Become,
    facts: &Facts,
    s: &Settings,
    secrets: &Secrets,
    redactor: &Redactor,
    host: &str,
    tx: &mpsc::UnboundedSender<Event>,
) -> crate::engine::Executed {
    let text = config_text(facts, &s.config);
    let existing = text.as_deref().map(|t| read_existing(t, &s.url)).unwrap_or_default();
    if let Some(t) = &existing.token {
        redactor.add(t);
    }
    let gitlab = delete_in_gitlab(s, existing.token.as_deref(), existing.id, secrets).await;
    let mut tasks = Vec::new();
    tasks.push(PlannedTask {
        name: "runner deleted in GitLab".into(),
        location: String::new(),
        handler: false,
        plan: match &gitlab {
            Ok((what, true)) => TaskPlan::Changes(vec![Change::Controller { what: what.clone() }]),
            Ok((_, false)) => TaskPlan::Ok,
            Err(e) => TaskPlan::Failed(e.clone()),
        },
    });
    if gitlab.is_ok() {
        let svc = facts.services.get("gitlab-runner");
        let mut stop = Vec::new();
        if svc.map(|s| s.is_active()).unwrap_or(false) {
            stop.push(Change::Unit { unit: "gitlab-runner.service".into(), action: UnitAction::Stop });
        }
        if svc.map(|s| s.enabled == "enabled").unwrap_or(false) {
            stop.push(Change::Unit { unit: "gitlab-runner.service".into(), action: UnitAction::Disable });
        }
        tasks.push(PlannedTask {
            name: "gitlab-runner stopped and disabled".into(),
            location: String::new(),
            handler: false,
            plan: if stop.is_empty() { TaskPlan::Ok } else { TaskPlan::Changes(stop) },
        });
        // config.toml without its runners: no token left on the host.
        let rewrite = text.as_deref().and_then(|t| {
            let mut doc = toml::from_str::<toml::Table>(t).ok()?;
            doc.remove("runners")?;
            let mut out = String::from("# Runner unregistered by `bootstrap unregister`.\n");
            out.push_str(&toml::to_string(&doc).ok()?);
            Some(out)
        });
        tasks.push(PlannedTask {
            name: "runner removed from config.toml".into(),
            location: String::new(),
            handler: false,
            plan: match rewrite {
                Some(content) => TaskPlan::Changes(vec![Change::WriteFile {
                    path: s.config.clone(),
                    content: Arc::new(content.into_bytes()),
                    attrs: Attrs { mode: Some(0o600), owner: Some("root".into()), group: Some("root".into()) },
                    old: facts.path(&s.config).cloned(),
                }]),
                None => TaskPlan::Ok,
            },
        });
    }
    // The GitLab part already happened; run the host part for real.
    crate::engine::execute(session, become_, &HostPlan { tasks }, false, false, host, tx, None).await
}

/// Unregister a host that cannot be reached: by name, in GitLab only.
pub(crate) async fn unregister_gone(s: &Settings, secrets: &Secrets, host: &str, tx: &mpsc::UnboundedSender<Event>) -> (Counts, bool, String) {
    let mut rep = Reporter { host, tx, next: 0, counts: Counts::default(), failed: false };
    match delete_in_gitlab(s, None, None, secrets).await {
        Ok((what, true)) => rep.task("runner deleted in GitLab (host unreachable)", TaskStatus::Changed, Some(what.clone()), 0),
        Ok((what, false)) => rep.task("runner deleted in GitLab (host unreachable)", TaskStatus::Ok, Some(what.clone()), 0),
        Err(e) => rep.task("runner deleted in GitLab (host unreachable)", TaskStatus::Failed, Some(e), 0),
    }
    let failed = rep.failed;
    (rep.counts, failed, String::new())
}
