//! Engine behaviour that needs a real host: guards checked again right
//! before their command, and commands that plan nothing running no guards.

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
