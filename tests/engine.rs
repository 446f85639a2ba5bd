//! Engine behaviour that needs a real host: guards checked again right
//! before their command, commands that plan nothing running no guards, and
//! a large upload's progress.

use crate::support::{Fixture, TestHost};

const GUARDED: &str = "- hosts: all
  become: true
  tasks:
    - name: flag
      copy: {dest: /etc/bootstrap-flag, content: \"x\\n\"}
    - name: guarded
      command:
        cmd: touch /root/guarded-ran
        unless: \"echo probe >> /root/guard-log; test -e /etc/bootstrap-flag\"
";

/// An `unless` guard that an earlier task of the same run satisfies stops
/// the command: the guard is checked again on the host right before it.
#[test]
fn a_guard_satisfied_earlier_in_the_run_stops_the_command() {
    let h = TestHost::up();
    let f = Fixture::new();
    f.trust(&[&h]);
    f.inventory(&[("web1", &h.address)], "deploy", "ansible_become: yes");
    f.write("site.yml", GUARDED);

    let first = f.run(&["apply", "hosts.yml", "-p", "site.yml", "--output", "json"]);
    assert_eq!(first.code, 0, "{}", first.all());
    assert_eq!(h.read("test -e /root/guarded-ran && echo ran || echo not-run").trim(), "not-run", "{}", first.all());
    let guarded: Vec<serde_json::Value> = first
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "task_end" && v["name"] == "guarded")
        .collect();
    assert_eq!(guarded.len(), 1, "{}", first.stdout);
    assert_eq!(guarded[0]["status"], "ok", "the guard held when the command was due: {}", guarded[0]);
    assert!(guarded[0]["msg"].as_str().unwrap_or("").contains("unless"), "{}", guarded[0]);

    let second = f.run(&["apply", "hosts.yml", "-p", "site.yml"]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(second.recap("web1"), (2, 0, 0, 0), "{}", second.all());
    assert_eq!(h.read("test -e /root/guarded-ran && echo ran || echo not-run").trim(), "not-run");
}

/// `verify` and `unregister` read facts but plan no playbook: the probe
/// runs no guard commands for them.
#[test]
fn verify_runs_no_guards() {
    let h = TestHost::up();
    let f = Fixture::new();
    f.trust(&[&h]);
    f.inventory(&[("web1", &h.address)], "deploy", "ansible_become: yes");
    f.write("site.yml", GUARDED);
    let v = f.run(&["verify", "hosts.yml", "-p", "site.yml"]);
    // A bare host has no Docker: verify fails, but after its probe.
    assert_eq!(v.code, 2, "{}", v.all());
    assert!(v.stdout.contains("Docker answers"), "{}", v.all());
    assert_eq!(h.read("cat /root/guard-log 2>/dev/null | wc -l").trim(), "0", "verify ran a guard");
    let c = f.run(&["check", "hosts.yml", "-p", "site.yml"]);
    assert_eq!(c.code, 3, "{}", c.all());
    assert_eq!(h.read("cat /root/guard-log | wc -l").trim(), "1", "check runs the guard once, in its probe");
}

/// A large file travels before the apply script, on a channel of its own,
/// and says how far it got: `upload_progress` events from 0 to the whole
/// size, never going back, and `-v` lines when it starts and ends.
#[test]
fn a_large_upload_reports_the_bytes_sent() {
    let h = TestHost::up();
    let f = Fixture::new();
    f.trust(&[&h]);
    f.inventory(&[("web1", &h.address)], "deploy", "ansible_become: yes");
    // 6 MiB that do not compress (the connection may compress).
    let mut big = Vec::with_capacity(6 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while big.len() < 6 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(f.dir.join("big.bin"), &big).expect("big file");
    f.write("site.yml", "- hosts: all\n  become: true\n  tasks:\n    - name: big file\n      copy: {src: big.bin, dest: /srv/big.bin}\n");

    let r = f.run(&["apply", "hosts.yml", "-p", "site.yml", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let ups: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "upload_progress")
        .collect();
    let total = big.len() as u64;
    assert!(ups.len() >= 2, "{}", r.stdout);
    assert!(ups.iter().all(|u| u["path"] == "/srv/big.bin" && u["total"] == total && u["host"] == "web1"), "{ups:?}");
    let sent: Vec<u64> = ups.iter().filter_map(|u| u["sent"].as_u64()).collect();
    assert_eq!(sent.first(), Some(&0));
    assert_eq!(sent.last(), Some(&total));
    assert!(sent.windows(2).all(|w| w[0] <= w[1]), "bytes sent never go back: {sent:?}");
    assert_eq!(h.read("sha256sum < /srv/big.bin | cut -c1-64").trim(), crate::support::sha256_hex(&big));

    h.read("rm /srv/big.bin");
    let v = f.run(&["apply", "hosts.yml", "-p", "site.yml", "-v"]);
    assert_eq!(v.code, 0, "{}", v.all());
    assert!(v.stdout.contains("upload: [web1] uploading /srv/big.bin: 0.0 of 6.0 MiB (0%)"), "{}", v.stdout);
    assert!(v.stdout.contains("upload: [web1] uploading /srv/big.bin: 6.0 of 6.0 MiB (100%)"), "{}", v.stdout);
}
