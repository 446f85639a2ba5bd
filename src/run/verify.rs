//! `verify`: prove a runner host does its job.
//!
//! One script on the host: Docker answers on the socket, the runner
//! service runs, an image builds twice through the host's socket and the
//! second build is all cache; and GitLab is asked whether the host's token
//! is valid. Each check is one task line in the report.

use std::time::Instant;

use super::ctx::{config_text, HostCtx, TaskLines};
use super::posture::JobContainer;
use crate::gitlab::runner::{read_existing, RunnerSettings};
use crate::gitlab::unregister::token_valid;
use crate::plan::facts::Facts;
use crate::report::{Counts, Event, TaskStatus};
use crate::transport::shell::quote;
use crate::transport::SshError;

/// The verification script. The build context holds a file with `nonce`
/// (copied by the first step), so the first build is always a fresh one and
/// the second, identical, must take all three steps from the cache.
fn verify_script(nonce: &str, base_image: Option<&str>, job: Option<&JobContainer>) -> String {
    let base = base_image.map(quote).unwrap_or_default();
    let job = job.filter(|j| j.has_socket()).map(|j| job_section(nonce, j)).unwrap_or_default();
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
{job}echo "@@{nonce} end"
"#
    )
}

/// The cache proof as a job sees it: a container started as the docker
/// executor would start it for the runner (its volumes, `privileged`),
/// builds twice through the mounted socket with the docker CLI inside it.
/// No registry here: the job image is made locally, of the host's own
/// shell, a few tools and its docker CLI (`docker import`).
fn job_section(nonce: &str, j: &JobContainer) -> String {
    let mut flags = String::new();
    for v in &j.volumes {
        flags.push_str(&format!(" -v {}", quote(v)));
    }
    if j.privileged {
        flags.push_str(" --privileged");
    }
    let inner = r#"c=/tmp/ctx; mkdir -p $c
printf 'FROM %s\nCOPY nonce /nonce\nRUN echo job-two > /two\nRUN echo job-three > /three\n' "$1" > $c/Dockerfile
echo "$2" > $c/nonce
t0=$(date +%s%N); docker build -t "bootstrap-verify/app:$2" $c > $c/b1 2>&1; rc1=$?
t1=$(date +%s%N); docker build -t "bootstrap-verify/app:$2" $c > $c/b2 2>&1; rc2=$?
t2=$(date +%s%N)
echo "rc1=$rc1"; echo "rc2=$rc2"; echo "ms1=$(( (t1 - t0) / 1000000 ))"; echo "ms2=$(( (t2 - t1) / 1000000 ))"
echo "cached=$(grep -c -e 'Using cache' -e ' CACHED' $c/b2)"
[ "$rc1" = 0 ] && [ "$rc2" = 0 ] || tail -n 5 $c/b1 $c/b2
docker rmi "bootstrap-verify/app:$2" >/dev/null 2>&1
"#;
    format!(
        r#"echo "@@{nonce} job"
job=bootstrap-verify/job:1
if ! docker image inspect "$job" >/dev/null 2>&1; then
  r=$(mktemp -d); mkdir -p "$r/tmp"; chmod 1777 "$r/tmp"
  for b in sh date mkdir cat grep tail rm docker; do
    p=$(command -v "$b") || continue
    mkdir -p "$r$(dirname "$p")"; cp -L "$p" "$r$p"
    for f in $(ldd "$p" 2>/dev/null | grep -o '/[^ ]*'); do mkdir -p "$r$(dirname "$f")"; cp -L "$f" "$r$f"; done
  done
  tar -C "$r" -c . | docker -H unix:///var/run/docker.sock import - "$job" >/dev/null; rm -rf "$r"
fi
docker -H unix:///var/run/docker.sock run --rm{flags} -e HOME=/tmp "$job" sh -c {inner} job "$base" {nonce}j 2>&1; echo "run=$?"
"#,
        inner = quote(inner)
    )
}

/// What `verify` needs besides the host.
pub struct Verify<'a> {
    /// `verify_base_image`, or none to build from the host's own shell.
    pub base_image: Option<&'a str>,
    pub nonce: String,
}

/// Prove the host does its job. Returns counts and whether it failed.
pub async fn verify(ctx: &HostCtx<'_>, facts: &Facts, reg: Option<&RunnerSettings>, v: &Verify<'_>) -> Result<(Counts, bool), SshError> {
    let mut rep = TaskLines { host: ctx.name, tx: ctx.tx, next: 0, counts: Counts::default(), failed: false };
    let nonce = v.nonce.as_str();
    let start = Instant::now();
    let job = reg.and_then(|s| config_text(facts, &s.config)).and_then(|t| JobContainer::from_config(&t));
    let out = ctx.session.run_script(&verify_script(nonce, v.base_image, job.as_ref()), ctx.become_, |_| {}).await?;
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
        Some("0") => {
            rep.task("Docker answers on /var/run/docker.sock", TaskStatus::Ok, Some(format!("Docker Engine {}", docker[0].trim())), 0)
        }
        _ => rep.task("Docker answers on /var/run/docker.sock", TaskStatus::Failed, Some(docker.join("\n")), 0),
    }
    let runner = section("runner");
    match value(&runner, "rc").as_deref() {
        Some("0") => rep.task("gitlab-runner service active", TaskStatus::Ok, None, 0),
        _ => rep.task(
            "gitlab-runner service active",
            TaskStatus::Failed,
            Some(format!("systemctl says: {}", runner.first().cloned().unwrap_or_default())),
            0,
        ),
    }
    if let Some(s) = reg {
        let existing = config_text(facts, &s.config).map(|t| read_existing(&t, &s.url)).unwrap_or_default();
        match &existing.token {
            None => rep.task(
                "runner token valid in GitLab",
                TaskStatus::Failed,
                Some(format!("{} holds no runner token for {}", s.config, s.url)),
                0,
            ),
            Some(t) => {
                let t0 = Instant::now();
                let result = token_valid(s, t).await.map_err(|e| e.to_string());
                let ms = t0.elapsed().as_millis() as u64;
                match result {
                    Ok(true) => rep.task(
                        "runner token valid in GitLab",
                        TaskStatus::Ok,
                        Some(format!("runner id {}", existing.id.map(|i| i.to_string()).unwrap_or("?".into()))),
                        ms,
                    ),
                    Ok(false) => rep.task(
                        "runner token valid in GitLab",
                        TaskStatus::Failed,
                        Some("GitLab rejects the host's token (403): run `bootstrap apply` to register again".into()),
                        ms,
                    ),
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
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(":\n{}", detail.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"))
                }
            )),
            elapsed,
        );
    }
    if let Some(j) = &job {
        job_build(&mut rep, j, &section("job"));
    }
    if let Some(s) = reg {
        posture(&mut rep, facts, s);
    }
    Ok((rep.counts, rep.failed))
}

/// The job container's two builds, as one task line.
fn job_build(rep: &mut TaskLines<'_>, j: &JobContainer, lines: &[String]) {
    let name = format!("a job container of runner `{}` builds twice through the socket, the second time from cache", j.runner);
    if !j.has_socket() {
        let msg = format!(
            "runner `{}` mounts no Docker socket (volumes: [{}]): its jobs cannot use the host's Docker",
            j.runner,
            j.volumes.join(", ")
        );
        rep.task(&name, TaskStatus::Failed, Some(msg), 0);
        return;
    }
    let value = |k: &str| lines.iter().find_map(|l| l.strip_prefix(&format!("{k}="))).map(str::to_string);
    let num = |k: &str| value(k).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
    let (ms1, ms2, cached) = (num("ms1"), num("ms2"), num("cached"));
    let container = format!(
        "volumes [{}], privileged = {}, image `{}` stood in by a local one (the host's shell and docker CLI: no registry here)",
        j.volumes.join(", "),
        j.privileged,
        j.image
    );
    let ok = value("run").as_deref() == Some("0") && value("rc1").as_deref() == Some("0") && value("rc2").as_deref() == Some("0");
    if ok && cached >= 3 {
        rep.task(
            &name,
            TaskStatus::Ok,
            Some(format!("first build {ms1} ms, second {ms2} ms: {cached}/3 steps from cache\n{container}")),
            ms1 + ms2,
        );
    } else {
        let detail: Vec<&str> = lines.iter().filter(|l| !l.contains('=')).map(String::as_str).collect();
        let msg = format!(
            "the job container exited {}, its builds {} and {}, {cached}/3 steps of the second from cache ({container}){}",
            value("run").unwrap_or("?".into()),
            value("rc1").unwrap_or("?".into()),
            value("rc2").unwrap_or("?".into()),
            if detail.is_empty() { String::new() } else { format!(":\n{}", detail.join("\n")) }
        );
        rep.task(&name, TaskStatus::Failed, Some(msg), ms1 + ms2);
    }
}

/// GitLab's advice for jobs that use the host's Docker socket, per runner
/// of config.toml: one task line each, and a warning for every point that
/// does not hold (counted: `verify --strict` exits 3).
fn posture(rep: &mut TaskLines<'_>, facts: &Facts, s: &RunnerSettings) {
    let Some(text) = config_text(facts, &s.config) else {
        rep.task("security posture", TaskStatus::Failed, Some(format!("{} could not be read", s.config)), 0);
        return;
    };
    match super::posture::assess(&text, &s.config, facts.path(&s.config), Some(&s.spec)) {
        Err(e) => rep.task("security posture", TaskStatus::Failed, Some(e), 0),
        Ok(runners) => {
            for p in runners {
                let lines: Vec<String> = p.points.iter().map(|x| format!("{} {}", if x.ok { "ok:  " } else { "WARN:" }, x.text)).collect();
                rep.task(
                    &format!("security posture of runner `{}` (Docker socket advice)", p.runner),
                    TaskStatus::Ok,
                    Some(lines.join("\n")),
                    0,
                );
                for w in p.warnings() {
                    rep.counts.warned += 1;
                    let _ = rep.tx.send(Event::Warning { host: rep.host.to_string(), msg: format!("runner `{}`: {}", p.runner, w.text) });
                }
            }
        }
    }
}
