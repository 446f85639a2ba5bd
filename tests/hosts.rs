//! The engine against real hosts: bare Debian 12 test hosts booted for each
//! test (their own systemd, sshd and apt), torn down when the test ends.

use std::time::Duration;

use crate::support::{key, net_up, repo, wait_until, Fixture, TestHost};

/// Paths the example playbook manages, for "nothing was written" checks:
/// modification and status-change times, nanoseconds.
const MANAGED: &str = "/etc/hello.conf /etc/systemd/system/hello.service /var/lib/hello /var/log/hello.log /var/lib/hello/initialised";

fn times(h: &TestHost) -> String {
    h.read(&format!("stat -c '%n %.Y %.Z %a %U %G' {MANAGED}"))
}

fn example(f: &Fixture) -> String {
    // The playbook and its template, as shipped.
    let pb = std::fs::read_to_string(repo().join("playbooks/example.yml")).expect("example playbook");
    f.write("playbooks/example.yml", &pb);
    let t = std::fs::read_to_string(repo().join("templates/example.conf.j2")).expect("example template");
    f.write("templates/example.conf.j2", &t);
    "playbooks/example.yml".to_string()
}

#[test]
fn example_playbook_converges_and_a_rerun_changes_nothing() {
    net_up();
    let h = TestHost::up();
    let f = Fixture::new();
    f.trust(&[&h]);
    f.inventory(&[("web1", &h.address)], "deploy", "ansible_become: yes");
    let pb = example(&f);

    let first = f.run(&["apply", "hosts.yml", "-p", &pb]);
    assert_eq!(first.code, 0, "first apply:\n{}", first.all());
    let tasks = example_tasks();
    let (ok, changed, failed, unreachable) = first.recap("web1");
    assert!(changed >= 8, "first apply changes things: {}", first.all());
    assert_eq!((failed, unreachable), (0, 0));
    // Every task, plus the handler (notified by the config and the unit) once.
    assert_eq!(ok, tasks + 1, "ok counts every task and the handler:\n{}", first.all());
    assert_eq!(h.read("systemctl is-active hello").trim(), "active");
    assert_eq!(h.read("systemctl is-enabled hello").trim(), "enabled");
    assert!(h.read("dpkg-query -W -f '${Status}' jq").contains("install ok installed"));
    let conf = h.read("cat /etc/hello.conf");
    assert!(conf.contains("os = \"Debian 12 (bookworm)\""), "{conf}");
    assert!(conf.contains("host = \"web1\""), "{conf}");
    assert_eq!(h.read("stat -c '%a %U %G' /etc/hello.conf").trim(), "640 root hello");
    assert_eq!(h.read("stat -c '%a %U %G' /var/lib/hello").trim(), "750 hello hello");
    assert!(h.read("id -nG hello").contains("adm"));
    // No temporary file is left beside a written file.
    assert_eq!(h.read("ls -a /etc | grep -c '^.bootstrap' || true").trim(), "0");

    // Converged: nothing changes, nothing is written, one round trip.
    let before = times(&h);
    let second = f.run(&["apply", "hosts.yml", "-p", &pb, "-v"]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(second.recap("web1"), (tasks, 0, 0, 0), "re-run must report ok={tasks} changed=0:\n{}", second.all());
    assert!(second.stdout.contains("done: [web1] 1 round trip(s)"), "one probe round trip:\n{}", second.stdout);
    assert_eq!(times(&h), before, "a converged re-run wrote to the host");

    // Drift is put back, the handler runs, and only that.
    h.read("echo 'port = 1' >> /etc/hello.conf && chmod 0666 /etc/hello.conf");
    let pid_before = h.read("systemctl show -p MainPID --value hello");
    let third = f.run(&["apply", "hosts.yml", "-p", &pb, "--diff"]);
    assert_eq!(third.code, 0, "{}", third.all());
    assert_eq!(third.recap("web1"), (tasks + 1, 2, 0, 0), "config restored + handler:\n{}", third.all());
    assert!(third.stdout.contains("changed: [web1] configuration"), "{}", third.stdout);
    assert!(third.stdout.contains("-port = 1"), "--diff shows the drift:\n{}", third.stdout);
    assert_eq!(h.read("cat /etc/hello.conf"), conf);
    assert_eq!(h.read("stat -c %a /etc/hello.conf").trim(), "640");
    assert_ne!(h.read("systemctl show -p MainPID --value hello"), pid_before, "the handler restarted the service");

    // JSON: events, then exactly one recap line, last.
    let json = f.run(&["apply", "hosts.yml", "-p", &pb, "--output", "json"]);
    assert_eq!(json.code, 0);
    let lines: Vec<&str> = json.stdout.lines().collect();
    assert_eq!(lines.iter().filter(|l| l.contains("\"event\":\"recap\"")).count(), 1);
    assert_eq!(
        *lines.last().expect("output"),
        format!("{{\"event\":\"recap\",\"hosts\":{{\"web1\":{{\"ok\":{tasks},\"changed\":0,\"failed\":0,\"unreachable\":0}}}}}}"),
        "converged: every task ok, nothing changed, no handler"
    );
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("each line is JSON");
        assert!(v["event"].is_string());
    }
}

/// The number of tasks (not handlers) in the shipped example playbook, read
/// from the playbook itself: what a run's `ok` must count, since `ok`
/// counts every task that ran, changed or not.
fn example_tasks() -> u32 {
    let text = std::fs::read_to_string(repo().join("playbooks/example.yml")).expect("example playbook");
    let plays: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("example playbook is YAML");
    let n: usize = plays.as_sequence().expect("a list of plays").iter().map(|p| p["tasks"].as_sequence().map_or(0, |t| t.len())).sum();
    assert!(n >= 8, "the example playbook has {n} tasks");
    n as u32
}

#[test]
fn check_mode_on_a_fresh_host_plans_and_changes_nothing() {
    let h = TestHost::up();
    let f = Fixture::new();
    f.trust(&[&h]);
    f.inventory(&[("fresh", &h.address)], "root", "");
    // A package from a repository the plan would add: planned, not an error.
    f.write(
        "site.yml",
        "- hosts: all\n  tasks:\n    - name: docker repo\n      apt_repository:\n        name: docker\n        uris: https://download.example.invalid/linux/debian\n        components: stable\n        key: \"-----BEGIN PGP PUBLIC KEY BLOCK-----\\nnot a real key\\n-----END PGP PUBLIC KEY BLOCK-----\\n\"\n    - name: docker\n      apt: {name: [docker-ce, docker-ce-cli]}\n    - name: user\n      user: {name: builder}\n    - name: conf\n      copy: {dest: /etc/builder.conf, content: \"x=1\\n\"}\n",
    );
    let snapshot = "find /etc /usr /home -xdev -printf '%p %T@ %C@ %m\\n' 2>/dev/null | sort | sha256sum";
    let before = h.read(snapshot);
    let r = f.run(&["apply", "hosts.yml", "-p", "site.yml", "--check", "--diff"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("install docker-ce docker-ce-cli"), "{}", r.stdout);
    assert!(r.stdout.contains("update the apt package lists"), "{}", r.stdout);
    assert!(r.stdout.contains("create /etc/apt/sources.list.d/docker.sources"), "{}", r.stdout);
    assert!(r.stdout.contains("+Signed-By: /etc/apt/keyrings/docker.asc"), "{}", r.stdout);
    assert!(r.stdout.contains("create user builder"), "{}", r.stdout);
    assert_eq!(r.recap("fresh").1, 4);
    assert_eq!(h.read(snapshot), before, "--check changed the host");
    assert!(!h.sh("getent passwd builder").status.success());
}

#[test]
fn host_keys_unknown_and_changed_are_refused() {
    let h = TestHost::up();
    let f = Fixture::new();
    f.inventory(&[("h", &h.address)], "root", "");
    // Unknown: refused unless asked to record it.
    let r = f.run(&["ping", "hosts.yml"]);
    assert_eq!(r.code, 4, "{}", r.all());
    assert!(r.stdout.contains("is not in") && r.stdout.contains("--accept-new-host-keys"), "{}", r.stdout);
    let r = f.run(&["ping", "hosts.yml", "--accept-new-host-keys"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let recorded = std::fs::read_to_string(f.dir.join("known_hosts")).expect("known_hosts");
    assert!(recorded.contains(h.hostkey.split_whitespace().nth(1).expect("key")), "{recorded}");
    // Changed: always refused, with the line to fix, even with the flag.
    let other = f.dir.join("other");
    std::process::Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&other).status().expect("ssh-keygen");
    let pubkey = std::fs::read_to_string(other.with_extension("pub")).expect("pub");
    let fake: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    f.write("known_hosts", &format!("# a comment\n{} {}\n", h.address, fake.join(" ")));
    f.write("site.yml", "- hosts: all\n  tasks:\n    - copy: {dest: /etc/should-not-exist, content: x}\n");
    let r = f.run(&["apply", "hosts.yml", "-p", "site.yml", "--accept-new-host-keys"]);
    assert_eq!(r.code, 4, "{}", r.all());
    assert!(r.stdout.contains("HOST KEY CHANGED") && r.stdout.contains("line 2"), "{}", r.stdout);
    assert!(!h.sh("test -e /etc/should-not-exist").status.success(), "nothing may run on a host with a changed key");
}

#[test]
fn one_host_down_does_not_stop_the_others() {
    let a = TestHost::up();
    let b = TestHost::up();
    let f = Fixture::new();
    f.trust(&[&a, &b]);
    // A closed port on loopback stands for a dead host.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    f.write(
        "hosts.yml",
        &format!(
            "all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: {}\n  children:\n    runners:\n      hosts:\n        a: {{ansible_host: {}}}\n        dead: {{ansible_host: 127.0.0.1, ansible_port: {port}}}\n        b: {{ansible_host: {}}}\n",
            key().display(),
            a.address,
            b.address
        ),
    );
    f.write(
        "site.yml",
        "- hosts: runners\n  tasks:\n    - name: marker\n      copy: {dest: /etc/marker, content: \"{{ inventory_hostname }}\\n\"}\n",
    );
    let r = f.run(&["apply", "hosts.yml", "-p", "site.yml", "--forks", "1"]);
    assert_eq!(r.code, 4, "{}", r.all());
    assert_eq!(r.recap("a"), (1, 1, 0, 0));
    assert_eq!(r.recap("b"), (1, 1, 0, 0));
    assert_eq!(r.recap("dead"), (0, 0, 0, 1));
    assert_eq!(a.read("cat /etc/marker"), "a\n");
    assert_eq!(b.read("cat /etc/marker"), "b\n");
    // --limit narrows the run to the named hosts.
    let r = f.run(&["apply", "hosts.yml", "-p", "site.yml", "--limit", "runners:!dead"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.stdout.contains("dead"), "{}", r.stdout);
}

#[test]
fn become_password_goes_to_sudo_and_nowhere_else() {
    let h = TestHost::up();
    let f = Fixture::new();
    f.trust(&[&h]);
    f.inventory(&[("s", &h.address)], "secure", "ansible_become: true\nansible_become_password: \"{{ lookup('env', 'TEST_BECOME_PW') }}\"");
    f.write("site.yml", "- hosts: all\n  tasks:\n    - copy: {dest: /root/owned-by-root, content: \"ok\\n\", mode: \"0600\"}\n");
    let r = f.run_env(&["apply", "hosts.yml", "-p", "site.yml", "-vv", "--diff"], &[("TEST_BECOME_PW", "s3cret-Pa55")]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.recap("s").1, 1);
    assert!(!r.all().contains("s3cret-Pa55"), "the become password leaked:\n{}", r.all());
    assert_eq!(h.read("stat -c '%U %a' /root/owned-by-root").trim(), "root 600");
    // A wrong password: the host fails with a clear message.
    h.read("sudo -K -u secure 2>/dev/null || true");
    let r = f.run_env(&["ping", "hosts.yml"], &[("TEST_BECOME_PW", "wrong-password")]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stdout.contains("refused the become password"), "{}", r.stdout);
    assert!(!r.all().contains("wrong-password"));
}

#[test]
fn facts_reads_the_host_in_one_round_trip() {
    let h = TestHost::up();
    let f = Fixture::new();
    f.trust(&[&h]);
    f.inventory(&[("h", &h.address)], "deploy", "");
    let r = f.run(&["facts", "hosts.yml", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let facts = r.stdout.lines().find(|l| l.contains("\"event\":\"facts\"")).expect("facts event");
    let v: serde_json::Value = serde_json::from_str(facts).expect("json");
    assert_eq!(v["facts"]["os"]["id"], "debian");
    assert_eq!(v["facts"]["os"]["codename"], "bookworm");
    assert_eq!(v["facts"]["os"]["systemd"], true);
    let end = r.stdout.lines().find(|l| l.contains("\"event\":\"host_end\"")).expect("host_end");
    let v: serde_json::Value = serde_json::from_str(end).expect("json");
    assert_eq!(v["round_trips"], 1);
}

#[test]
fn ssh_config_proxy_jump_agent_and_encrypted_keys() {
    let h = TestHost::up();
    let f = Fixture::new();
    // The jump host is the test host; the target is the same host's sshd
    // seen from inside (127.0.0.1), reached through the jump.
    f.write("known_hosts", &format!("{}127.0.0.1 {}\n", h.known_hosts_line(), h.hostkey));
    f.write(
        "ssh_config",
        &format!(
            "Host inner\n  HostName 127.0.0.1\n  User root\n  ProxyJump root@{}\n\nHost *\n  IdentityFile {}\n",
            h.address,
            key().display()
        ),
    );
    f.write("hosts.yml", "all:\n  hosts:\n    inner:\n");
    let r = f.run(&["ping", "hosts.yml", "-F", "ssh_config"]);
    assert_eq!(r.code, 0, "ProxyJump through the host to itself:\n{}", r.all());
    assert!(r.stdout.contains("pong: connected as root"), "{}", r.stdout);

    // ssh-agent only: no key file anywhere.
    let sock = f.dir.join("agent.sock");
    let agent = std::process::Command::new("ssh-agent").arg("-D").arg("-a").arg(&sock).spawn().expect("ssh-agent");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _agent = Kill(agent);
    for _ in 0..50 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let added = std::process::Command::new("ssh-add").arg(key()).env("SSH_AUTH_SOCK", &sock).output().expect("ssh-add");
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    f.trust(&[&h]);
    f.write("hosts.yml", &format!("all:\n  hosts:\n    viaagent: {{ansible_host: {}, ansible_user: deploy}}\n", h.address));
    let r = f.run_env(&["ping", "hosts.yml"], &[("SSH_AUTH_SOCK", sock.to_str().expect("utf8"))]);
    assert_eq!(r.code, 0, "agent authentication:\n{}", r.all());
    let r = f.run(&["ping", "hosts.yml"]);
    assert_eq!(r.code, 4, "without the agent there is no key:\n{}", r.all());
    assert!(r.stdout.contains("authentication as deploy@"), "{}", r.stdout);

    // An encrypted key file with its passphrase from the environment.
    let enc = f.dir.join("enc");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "pass phrase", "-f"])
        .arg(&enc)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    let pubkey = std::fs::read_to_string(enc.with_extension("pub")).expect("pub");
    h.read(&format!("echo '{}' >> /home/deploy/.ssh/authorized_keys", pubkey.trim()));
    f.write(
        "hosts.yml",
        &format!(
            "all:\n  hosts:\n    enc: {{ansible_host: {}, ansible_user: deploy, ansible_ssh_private_key_file: {}}}\n",
            h.address,
            enc.display()
        ),
    );
    let r = f.run_env(&["ping", "hosts.yml"], &[("BOOTSTRAP_SSH_KEY_PASSPHRASE", "pass phrase")]);
    assert_eq!(r.code, 0, "encrypted key:\n{}", r.all());
}

#[test]
fn apt_waits_for_the_dpkg_lock_and_names_its_holder() {
    net_up();
    let h = TestHost::up();
    let f = Fixture::new();
    f.trust(&[&h]);
    f.inventory(&[("locked", &h.address)], "root", "");
    // Another process holds the apt lists lock and the dpkg frontend lock,
    // as unattended-upgrades does on a fresh VM: until /run/holdlock.hold
    // is removed (at most 120 s). It says when it holds them
    // (/run/holdlock.held). The task updates the lists first, so
    // bootstrap's own wait loop (not only apt's DPkg::Lock::Timeout) meets
    // the lock.
    h.read(
        "touch /run/holdlock.hold && systemd-run --unit=holdlock --collect python3 -c \"import fcntl,os,time; l=[open(p,'w') for p in ('/var/lib/apt/lists/lock','/var/lib/dpkg/lock-frontend')]; [fcntl.lockf(f, fcntl.LOCK_EX) for f in l]; open('/run/holdlock.held','w').close(); t=time.time(); [time.sleep(0.1) for _ in iter(lambda: os.path.exists('/run/holdlock.hold') and time.time()-t < 120, False)]\"",
    );
    assert!(
        wait_until(Duration::from_secs(30), || h.sh("test -e /run/holdlock.held").status.success()),
        "the lock holder never took the lock"
    );
    f.write("short.yml", "- hosts: all\n  tasks:\n    - name: tree\n      apt: {name: tree, update_cache: yes, lock_timeout: 2}\n");
    let r = f.run(&["apply", "hosts.yml", "-p", "short.yml"]);
    assert_eq!(r.code, 2, "held past the bound: the host fails:\n{}", r.all());
    assert!(
        r.stdout.contains("waiting up to 2s for the apt/dpkg lock") && r.stdout.contains("python3"),
        "bootstrap says it waits, and the message names the holder:\n{}",
        r.stdout
    );
    f.write("long.yml", "- hosts: all\n  tasks:\n    - name: tree\n      apt: {name: tree, update_cache: yes, lock_timeout: 120}\n");
    // The holder lets go once bootstrap is in its wait loop (its `sleep 2`
    // between attempts is running on the host), not before.
    let r = std::thread::scope(|s| {
        let run = s.spawn(|| f.run(&["apply", "hosts.yml", "-p", "long.yml", "-vv"]));
        let waiting = wait_until(Duration::from_secs(60), || run.is_finished() || h.sh("pgrep -x sleep >/dev/null").status.success());
        h.read("rm -f /run/holdlock.hold");
        let r = run.join().expect("apply thread");
        assert!(waiting, "bootstrap never waited for the lock:\n{}", r.all());
        r
    });
    assert_eq!(r.code, 0, "waits, then installs:\n{}", r.all());
    assert!(
        r.stdout.contains("waiting up to 120s for the apt/dpkg lock") && r.stdout.contains("python3"),
        "bootstrap's own lock message, naming the holder:\n{}",
        r.stdout
    );
    assert!(h.read("dpkg-query -W -f '${Status}' tree").contains("install ok installed"));
}
