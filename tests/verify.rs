//! What a person sees: `verify` shows each check and the runner's
//! security posture (with `--strict` exiting 3 on a warning), and a step
//! that waits for the dpkg/apt lock says so live, on real test hosts.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::runner::{apply, inventory, upload_distro};
use crate::support::{bin, net_up, unwatch_child, wait_until, watch_child, Fixture, GitLab, TestHost};

fn run(f: &Fixture, gitlab: &GitLab, args: &[&str]) -> crate::support::Run {
    f.run_env(args, &[("GITLAB_TOKEN", &gitlab.admin_token)])
}

#[test]
fn verify_shows_each_check_and_warns_about_a_loosened_runner() {
    net_up();
    let h = TestHost::up();
    let gitlab = GitLab::start(&[]);
    let f = Fixture::new();
    f.trust(&[&h]);
    inventory(&f, &[("runner-1", &h)], &gitlab, &upload_distro());
    let r = apply(&f, &gitlab, &[]);
    assert_eq!(r.code, 0, "{}", r.all());

    // Default verbosity: every check with its result, and the posture.
    let v = run(&f, &gitlab, &["verify", "hosts.yml"]);
    assert_eq!(v.code, 0, "{}", v.all());
    eprintln!("{}", v.stdout);
    for line in [
        "ok: [runner-1] Docker answers on /var/run/docker.sock\n    Docker Engine ",
        "ok: [runner-1] gitlab-runner service active",
        "ok: [runner-1] runner token valid in GitLab\n    runner id ",
        "ok: [runner-1] an image builds twice through the host's socket, the second time from cache\n    first build ",
        "3/3 steps from cache",
        "ok: [runner-1] a job container of runner `runner-1` builds twice through the socket, the second time from cache\n    first build ",
        "steps from cache\n    volumes [/var/run/docker.sock:/var/run/docker.sock, ",
        "ok: [runner-1] security posture of runner `runner-1` (Docker socket advice)",
        "ok:   tag `dockerd`",
        "ok:   run_untagged = false",
        "ok:   locked = true",
        "ok:   /etc/gitlab-runner/config.toml is mode 0600, owner root",
        "allowed_images not set",
    ] {
        assert!(v.stdout.contains(line), "`{line}` in:\n{}", v.stdout);
    }
    assert!(!v.stdout.contains("warning:"), "a converged runner host has no posture warning:\n{}", v.stdout);
    assert_eq!(run(&f, &gitlab, &["verify", "hosts.yml", "--strict"]).code, 0);

    // Loosened by hand: untagged jobs, unlocked, config.toml readable by all.
    h.read(
        // Whatever the file's indentation: the keys go into the runner's own table.
        "sed -i 's/^\\( *\\)executor = \"docker\"$/\\1executor = \"docker\"\\n\\1run_untagged = true\\n\\1locked = false/' /etc/gitlab-runner/config.toml \
         && chmod 0644 /etc/gitlab-runner/config.toml && grep -q '^ *locked = false' /etc/gitlab-runner/config.toml",
    );
    let v = run(&f, &gitlab, &["verify", "hosts.yml"]);
    assert_eq!(v.code, 0, "warnings alone do not fail verify:\n{}", v.all());
    for w in [
        "warning: [runner-1] runner `runner-1`: run_untagged = true: any untagged job gets the host's Docker socket",
        "warning: [runner-1] runner `runner-1`: locked = false: other projects can take this runner",
        "warning: [runner-1] runner `runner-1`: /etc/gitlab-runner/config.toml is mode 0644, owner root (want 0600 root",
    ] {
        assert!(v.stdout.contains(w), "`{w}` in:\n{}", v.stdout);
    }
    assert_eq!(v.stdout.matches("warning: [runner-1]").count(), 3, "one warning per point that does not hold:\n{}", v.stdout);
    let s = run(&f, &gitlab, &["verify", "hosts.yml", "--strict"]);
    assert_eq!(s.code, 3, "--strict: a posture warning is exit 3:\n{}", s.all());
    let j = run(&f, &gitlab, &["verify", "hosts.yml", "--strict", "--output", "json"]);
    assert_eq!(j.code, 3, "{}", j.all());
    let warnings = j.stdout.lines().filter(|l| l.contains(r#""event":"warning""#) && l.contains("run_untagged = true")).count();
    assert_eq!(warnings, 1, "{}", j.stdout);
}

/// Start `bootstrap ARGS` in the fixture; its stdout lines arrive on the
/// receiver as they are printed.
fn spawn(f: &Fixture, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(bin())
        .current_dir(&f.dir)
        .args(args)
        .arg("--known-hosts")
        .arg(f.dir.join("known_hosts"))
        .arg("--no-progress")
        .env("HOME", &f.dir)
        .env_remove("SSH_AUTH_SOCK")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bootstrap starts");
    watch_child(child.id());
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Lines from `rx` until one satisfies `want` (returned), or `limit` passes.
fn read_until(rx: &mpsc::Receiver<String>, limit: Duration, seen: &mut Vec<String>, want: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + limit;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => {
                seen.push(l.clone());
                if want(&l) {
                    return Some(l);
                }
            }
            Err(_) => return None,
        }
    }
    None
}

/// Another process takes the apt lists lock and the dpkg frontend lock (as
/// unattended-upgrades does on a fresh VM) and holds them until
/// /run/holdlock.hold is removed.
fn hold_the_lock(h: &TestHost) {
    h.read(
        "touch /run/holdlock.hold && rm -f /run/holdlock.held && systemd-run --unit=holdlock --collect python3 -c \"import fcntl,os,time; l=[open(p,'w') for p in ('/var/lib/apt/lists/lock','/var/lib/dpkg/lock-frontend')]; [fcntl.lockf(f, fcntl.LOCK_EX) for f in l]; open('/run/holdlock.held','w').close(); t=time.time(); [time.sleep(0.1) for _ in iter(lambda: os.path.exists('/run/holdlock.hold') and time.time()-t < 120, False)]\"",
    );
    assert!(
        wait_until(Duration::from_secs(30), || h.sh("test -e /run/holdlock.held").status.success()),
        "the lock holder never took the lock"
    );
}

#[test]
fn a_lock_wait_is_seen_live_at_v_and_in_json() {
    net_up();
    let h = TestHost::up();
    let f = Fixture::new();
    f.trust(&[&h]);
    f.inventory(&[("locked", &h.address)], "root", "");
    f.write("long.yml", "- hosts: all\n  tasks:\n    - name: tree\n      apt: {name: tree, update_cache: yes, lock_timeout: 120}\n");
    let holder_pid = || h.read("systemctl show -p MainPID --value holdlock").trim().to_string();

    // -v: the wait is a line while it happens, naming the holder and the bound.
    hold_the_lock(&h);
    let pid = holder_pid();
    let (mut child, rx) = spawn(&f, &["apply", "hosts.yml", "-p", "long.yml", "-v"]);
    let mut seen = Vec::new();
    let want = format!("waiting: [locked] tree: waiting for the apt lists lock held by python3 (pid {pid}): ");
    let line = read_until(&rx, Duration::from_secs(60), &mut seen, |l| l.starts_with(&want) && l.ends_with(" s of 120"));
    let still_running = child.try_wait().map(|s| s.is_none()).unwrap_or(false);
    let still_held = h.sh("test -e /run/holdlock.hold").status.success();
    h.read("rm -f /run/holdlock.hold");
    let status = child.wait().expect("bootstrap ends");
    unwatch_child(child.id());
    seen.extend(rx.iter());
    let all = seen.join("\n");
    assert!(line.is_some(), "no live wait line `{want}... s of 120`:\n{all}");
    assert!(still_running && still_held, "the line came while the step was still waiting:\n{all}");
    assert_eq!(status.code(), Some(0), "waits, then installs:\n{all}");
    let wait_at = seen.iter().position(|l| l.starts_with(&want)).unwrap_or(usize::MAX);
    let end_at = seen.iter().position(|l| l.starts_with("changed: [locked] tree")).unwrap_or(0);
    assert!(wait_at < end_at, "the wait line comes before the task's end:\n{all}");

    // JSON: task_progress events of the running task, before its task_end.
    hold_the_lock(&h);
    let pid = holder_pid();
    let (mut child, rx) = spawn(&f, &["apply", "hosts.yml", "-p", "long.yml", "--output", "json"]);
    let mut seen = Vec::new();
    let progress = read_until(&rx, Duration::from_secs(60), &mut seen, |l| l.contains(r#""event":"task_progress""#));
    let still_running = child.try_wait().map(|s| s.is_none()).unwrap_or(false);
    h.read("rm -f /run/holdlock.hold");
    let status = child.wait().expect("bootstrap ends");
    unwatch_child(child.id());
    seen.extend(rx.iter());
    let all = seen.join("\n");
    let progress = progress.unwrap_or_else(|| panic!("no task_progress event:\n{all}"));
    assert!(still_running, "task_progress came while the task ran:\n{all}");
    assert_eq!(status.code(), Some(0), "{all}");
    let v: serde_json::Value = serde_json::from_str(&progress).expect("JSON");
    assert_eq!(v["host"], "locked");
    assert_eq!(v["task"], 0);
    let msg = v["msg"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(&format!("waiting for the apt lists lock held by python3 (pid {pid}): ")) && msg.ends_with(" s of 120"),
        "{msg}"
    );
    assert!(v["elapsed_ms"].as_u64().is_some(), "{progress}");
    let mut keys: Vec<&str> = v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(keys, ["elapsed_ms", "event", "host", "msg", "task"], "the fields the README documents: {progress}");
    let end_at = seen.iter().position(|l| l.contains(r#""event":"task_end""#)).unwrap_or(0);
    let progress_at = seen.iter().position(|l| l.contains(r#""event":"task_progress""#)).unwrap_or(usize::MAX);
    assert!(progress_at < end_at, "task_progress before the task's end:\n{all}");
}
