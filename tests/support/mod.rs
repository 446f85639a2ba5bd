//! Test support: throw-away Debian hosts, fixtures, and the binary.
//!
//! [`TestHost`] boots a bare Debian 12 host (or 11 or 13:
//! [`TestHost::up_release`]; systemd-nspawn, its own systemd, sshd and
//! apt) through `tests/hosts/testhost`, and tears it down when dropped,
//! also when the test panics. [`Fixture`] is a temporary
//! folder with an SSH key pair, a known_hosts file and helpers to write
//! inventories and playbooks and run `bootstrap` in it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);
/// Test hosts booted by this process: their network indexes.
static HOSTS: AtomicUsize = AtomicUsize::new(0);

/// Every test gets at most this long (`BOOTSTRAP_TEST_TIMEOUT`, seconds;
/// default 15 minutes), so that a hang fails the run in minutes.
fn test_timeout() -> Duration {
    let secs = std::env::var("BOOTSTRAP_TEST_TIMEOUT").ok().and_then(|v| v.parse().ok()).unwrap_or(900);
    Duration::from_secs(secs)
}

/// The tests running now (libtest names each test's thread after the test),
/// with their start time.
static RUNNING: Mutex<BTreeMap<String, Instant>> = Mutex::new(BTreeMap::new());
/// Test hosts alive in this process (torn down by the watchdog).
static LIVE_HOSTS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Child processes alive in this process (killed by the watchdog).
static LIVE_CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes the running test from [`RUNNING`] when its thread ends (also on
/// a panic: thread-local destructors run when the thread exits).
struct Clock(Option<String>);

impl Drop for Clock {
    fn drop(&mut self) {
        if let Some(name) = &self.0 {
            lock(&RUNNING).remove(name);
        }
    }
}

thread_local! {
    static CLOCK: Clock = {
        let name = std::thread::current().name().map(str::to_string).filter(|n| n != "main");
        if let Some(n) = &name {
            lock(&RUNNING).entry(n.clone()).or_insert_with(Instant::now);
        }
        Clock(name)
    };
}

/// Start the per-test watchdog for the calling test (idempotent; every
/// support entry point calls it). A test that runs longer than
/// [`test_timeout`] makes the watchdog print its name, tear down this
/// process's test hosts, kill its child processes and exit the test
/// process with status 124.
pub fn watchdog() {
    CLOCK.with(|_| {});
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let limit = test_timeout();
        std::thread::Builder::new()
            .name("test-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(1));
                let late: Vec<(String, Duration)> =
                    lock(&RUNNING).iter().map(|(n, t)| (n.clone(), t.elapsed())).filter(|(_, e)| *e > limit).collect();
                if late.is_empty() {
                    continue;
                }
                // Straight to the file descriptor: libtest captures eprintln!
                // of the test thread that started this one.
                use std::io::Write;
                let mut err = std::io::stderr();
                for (name, elapsed) in &late {
                    let _ = writeln!(
                        err,
                        "\nTEST TIMEOUT: {name} has run for {:.1}s (limit {}s, BOOTSTRAP_TEST_TIMEOUT); aborting the test process",
                        elapsed.as_secs_f64(),
                        limit.as_secs()
                    );
                }
                for pid in lock(&LIVE_CHILDREN).iter() {
                    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                }
                for name in lock(&LIVE_HOSTS).iter() {
                    let _ = writeln!(err, "test watchdog: tearing down test host {name}");
                    let _ = Command::new(testhost()).args(["down", name]).output();
                }
                std::process::exit(124);
            })
            .expect("watchdog thread");
    });
}

/// Let the watchdog kill `pid` (a child the test spawned itself) if the
/// test runs out of time; [`unwatch_child`] when it has ended.
pub fn watch_child(pid: u32) {
    lock(&LIVE_CHILDREN).push(pid);
}

pub fn unwatch_child(pid: u32) {
    lock(&LIVE_CHILDREN).retain(|p| *p != pid);
}

/// Poll `cond` every 50 ms until it holds; false if `limit` passed first.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run `cmd` to its end, collecting its output, with its pid known to the
/// watchdog meanwhile.
pub fn output_watched(cmd: &mut Command) -> std::io::Result<Output> {
    let child = cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn()?;
    let pid = child.id();
    lock(&LIVE_CHILDREN).push(pid);
    let out = child.wait_with_output();
    lock(&LIVE_CHILDREN).retain(|p| *p != pid);
    out
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn testhost() -> PathBuf {
    repo().join("tests/hosts/testhost")
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bootstrap"))
}

/// A key pair for the whole test process.
pub fn key() -> &'static Path {
    static KEY: OnceLock<PathBuf> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("bootstrap-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("key dir");
        let key = dir.join("id_ed25519");
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "bootstrap-test", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen runs (package openssh-client)");
        assert!(st.success());
        key
    })
}

/// A booted test host; torn down on drop.
pub struct TestHost {
    pub name: String,
    pub address: String,
    pub hostkey: String,
}

impl TestHost {
    pub fn up() -> TestHost {
        TestHost::boot(&[])
    }

    /// A host of another Debian release (`bullseye`, `bookworm`, `trixie`).
    pub fn up_release(release: &str) -> TestHost {
        TestHost::boot(&["--release", release])
    }

    fn boot(extra: &[&str]) -> TestHost {
        watchdog();
        let n = HOSTS.fetch_add(1, Ordering::SeqCst);
        assert!(n < 100, "the suite boots at most 100 hosts (indexes 0-99)");
        let pid = std::process::id();
        let name = format!("bt{}x{n}", pid % 10000);
        // Indexes 0-99 are the tests'; bench/ uses 100-199, scripts/local-run 200.
        let index = (pid as usize % 20 + n) % 100;
        // Known to the watchdog before it exists: `down` waits for `up`.
        lock(&LIVE_HOSTS).push(name.clone());
        let out = Command::new(testhost())
            .args(["up", &name, &index.to_string()])
            .arg(key().with_extension("pub"))
            .args(extra)
            .output()
            .expect("testhost runs");
        // Drop guard first, so a half-made host is torn down too.
        let mut host = TestHost { name, address: String::new(), hostkey: String::new() };
        assert!(out.status.success(), "testhost up failed:\n{}", String::from_utf8_lossy(&out.stderr));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(a) = line.strip_prefix("address=") {
                host.address = a.to_string();
            }
            if let Some(k) = line.strip_prefix("hostkey_ed25519=") {
                host.hostkey = k.to_string();
            }
        }
        assert!(!host.address.is_empty() && !host.hostkey.is_empty(), "testhost up printed no address");
        host
    }

    /// Run a shell command inside the host as root.
    pub fn sh(&self, cmd: &str) -> Output {
        output_watched(Command::new(testhost()).args(["exec", &self.name, "sh", "-c", cmd])).expect("testhost exec")
    }

    /// stdout of a shell command that must succeed.
    pub fn read(&self, cmd: &str) -> String {
        let o = self.sh(cmd);
        assert!(o.status.success(), "`{cmd}` failed on {}: {}", self.name, String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn known_hosts_line(&self) -> String {
        format!("{} {}\n", self.address, self.hostkey)
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = Command::new(testhost()).args(["down", &self.name]).output();
        lock(&LIVE_HOSTS).retain(|n| *n != self.name);
    }
}

/// Let guests reach the package mirror (and nothing else).
pub fn net_up() {
    watchdog();
    let o = Command::new(testhost()).arg("net-up").output().expect("testhost net-up");
    assert!(o.status.success(), "net-up: {}", String::from_utf8_lossy(&o.stderr));
}

/// A temporary folder to run `bootstrap` in.
pub struct Fixture {
    pub dir: PathBuf,
}

/// What one run of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
    /// `(ok, changed, failed, unreachable)` of `host` from the human recap.
    pub fn recap(&self, host: &str) -> (u32, u32, u32, u32) {
        let line = self
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(host) && l.contains("ok="))
            .unwrap_or_else(|| panic!("no recap line for {host} in:\n{}", self.all()));
        let get = |k: &str| -> u32 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {k}= in `{line}`"))
        };
        (get("ok"), get("changed"), get("failed"), get("unreachable"))
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        watchdog();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("bootstrap-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("fixture dir");
        std::fs::write(dir.join("known_hosts"), "").expect("known_hosts");
        Fixture { dir }
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, content).expect("write");
        p
    }

    /// Trust these hosts' keys.
    pub fn trust(&self, hosts: &[&TestHost]) {
        let text: String = hosts.iter().map(|h| h.known_hosts_line()).collect();
        self.write("known_hosts", &text);
    }

    /// An inventory with `hosts` (name, address) as user `user` with the
    /// test key, plus extra YAML lines under each host.
    pub fn inventory(&self, hosts: &[(&str, &str)], user: &str, extra: &str) -> PathBuf {
        let mut s = format!("all:\n  vars:\n    ansible_user: {user}\n    ansible_ssh_private_key_file: {}\n  hosts:\n", key().display());
        for (name, addr) in hosts {
            s.push_str(&format!("    {name}:\n      ansible_host: {addr}\n"));
            for l in extra.lines() {
                s.push_str(&format!("      {l}\n"));
            }
        }
        self.write("hosts.yml", &s)
    }

    /// Run `bootstrap ARGS` in the fixture with its known_hosts file.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(bin());
        cmd.current_dir(&self.dir).args(args);
        if matches!(args.first(), Some(&"apply" | &"ping" | &"facts" | &"check" | &"verify" | &"unregister")) {
            cmd.arg("--known-hosts").arg(self.dir.join("known_hosts")).arg("--no-progress");
        }
        cmd.env("HOME", &self.dir).env_remove("SSH_AUTH_SOCK");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let o = output_watched(&mut cmd).expect("bootstrap runs");
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The address of the controller that every test host reaches (a /32 on
/// `lo`, set up by `testhost controller-addr`).
pub const CONTROLLER: &str = "10.251.255.254";

/// A background process that the test owns; killed on drop.
pub struct Service {
    child: std::process::Child,
    pub url: String,
}

impl Service {
    /// Start `cmd` and wait for it to print `url=...` on stdout.
    pub fn start(mut cmd: Command) -> Service {
        use std::io::{BufRead, BufReader};
        watchdog();
        let o = Command::new(testhost()).arg("controller-addr").output().expect("testhost controller-addr");
        assert!(o.status.success(), "controller-addr: {}", String::from_utf8_lossy(&o.stderr));
        let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::inherit()).spawn().expect("service starts");
        lock(&LIVE_CHILDREN).push(child.id());
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut url = String::new();
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if let Some(u) = line.trim().strip_prefix("url=") {
                url = u.to_string();
                break;
            }
            line.clear();
        }
        // Keep draining stdout so the service never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        let svc = Service { child, url };
        assert!(!svc.url.is_empty(), "the service printed no url=");
        svc
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pid = self.child.id();
        lock(&LIVE_CHILDREN).retain(|p| *p != pid);
    }
}

/// The GitLab stand-in (tests/gitlab/standin.py) on the controller address.
pub struct GitLab {
    pub svc: Service,
    pub admin_token: String,
}

impl GitLab {
    pub fn start(extra: &[&str]) -> GitLab {
        let admin_token = format!("glpat-test{}x{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let mut cmd = Command::new("python3");
        cmd.arg(repo().join("tests/gitlab/standin.py"))
            .arg("--listen")
            .arg(format!("{CONTROLLER}:0"))
            .arg("--token")
            .arg(format!("admin={admin_token}:api,create_runner,admin"))
            .args(["--group", "7", "--project", "9"])
            .args(extra);
        GitLab { svc: Service::start(cmd), admin_token }
    }

    pub fn url(&self) -> &str {
        &self.svc.url
    }

    /// `GET /_standin/state`.
    pub fn state(&self) -> serde_json::Value {
        let body = http("GET", &format!("{}/_standin/state", self.url()), &[], None);
        serde_json::from_str(&body).expect("stand-in state is JSON")
    }

    pub fn runners(&self) -> Vec<serde_json::Value> {
        self.state()["runners"].as_array().cloned().unwrap_or_default()
    }

    /// An API call with the admin token; returns the body.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> String {
        http(method, &format!("{}/api/v4/{path}", self.url()), &[("PRIVATE-TOKEN", &self.admin_token)], body)
    }
}

/// Connect, read and write timeout of [`http`].
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// A small HTTP/1.1 client for the stand-ins (std only).
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http url");
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    // Bounded everywhere: a stand-in that hangs fails the test in seconds.
    let addr = std::net::ToSocketAddrs::to_socket_addrs(hostport).expect("stand-in address").next().expect("an address");
    let mut s = std::net::TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).expect("connect to stand-in");
    s.set_read_timeout(Some(HTTP_TIMEOUT)).expect("read timeout");
    s.set_write_timeout(Some(HTTP_TIMEOUT)).expect("write timeout");
    let body = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap_or_else(|e| panic!("{method} {url}: send: {e}"));
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap_or_else(|e| panic!("{method} {url}: no whole answer within {HTTP_TIMEOUT:?}: {e}"));
    match resp.find("\r\n\r\n") {
        Some(i) => resp[i + 4..].to_string(),
        None => String::new(),
    }
}

/// The local signed apt repositories (tests/aptrepo), served on the
/// controller address: `URL/docker` and `URL/gitlab-runner`, keys at
/// `URL/docker/gpg` and `URL/gitlab-runner/gpg`.
pub fn apt_repos() -> Service {
    apt_repos_for(&[])
}

/// [`apt_repos`] with these suites (`--suites`) instead of bookworm alone.
pub fn apt_repos_for(suites: &[&str]) -> Service {
    let mut build = Command::new(repo().join("tests/aptrepo/build"));
    if !suites.is_empty() {
        build.arg("--suites").arg(suites.join(" "));
    }
    let out = build.output().expect("tests/aptrepo/build runs");
    assert!(out.status.success(), "aptrepo build: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let dir = text.split_whitespace().find_map(|w| w.strip_prefix("repo_dir=")).expect("build prints repo_dir=").to_string();
    let mut cmd = Command::new(repo().join("tests/aptrepo/serve"));
    cmd.args([dir.as_str(), CONTROLLER, "0"]);
    Service::start(cmd)
}

/// The SHA-256 of `data`, in hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
