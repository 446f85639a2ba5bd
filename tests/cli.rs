//! Bad input: every mistake exits 5 with a message naming the file, the
//! line and column or the field, and contacts nobody. A TCP listener stands
//! where the hosts would be; the tests check it was never connected to.

use std::net::TcpListener;
use std::time::Duration;

use crate::support::Fixture;

/// A listener that records whether anyone connected.
struct Sentinel {
    listener: TcpListener,
}

impl Sentinel {
    fn new() -> Sentinel {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        Sentinel { listener }
    }
    fn port(&self) -> u16 {
        self.listener.local_addr().expect("addr").port()
    }
    fn contacted(&self) -> bool {
        std::thread::sleep(Duration::from_millis(50));
        self.listener.accept().is_ok()
    }
}

fn inventory(f: &Fixture, s: &Sentinel, extra: &str) -> std::path::PathBuf {
    f.write("hosts.yml", &format!("all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n      ansible_port: {}\n{extra}", s.port()))
}

const OK_PLAYBOOK: &str = "- hosts: all\n  tasks:\n    - name: motd\n      copy: {dest: /etc/motd, content: hi}\n";

fn expect_bad_input(f: &Fixture, s: &Sentinel, args: &[&str], wanted: &[&str]) {
    let r = f.run(args);
    assert_eq!(r.code, 5, "exit status for bad input:\n{}", r.all());
    for w in wanted {
        assert!(r.stderr.contains(w), "stderr should contain `{w}`:\n{}", r.stderr);
    }
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(!s.contacted(), "a host was contacted despite bad input");
}

#[test]
fn malformed_inventory_yaml_names_line_and_column() {
    let f = Fixture::new();
    let s = Sentinel::new();
    f.write(
        "hosts.yml",
        &format!("all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n      ansible_port: {}\n     bad: [\n", s.port()),
    );
    f.write("site.yml", OK_PLAYBOOK);
    expect_bad_input(&f, &s, &["apply", "hosts.yml", "-p", "site.yml"], &["hosts.yml:6:"]);
}

#[test]
fn inventory_with_wrong_value_type_names_field() {
    let f = Fixture::new();
    let s = Sentinel::new();
    f.write("hosts.yml", "all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n      ansible_port: twenty-two\n");
    f.write("site.yml", OK_PLAYBOOK);
    expect_bad_input(&f, &s, &["apply", "hosts.yml", "-p", "site.yml"], &["hosts.yml:5:7", "ansible_port"]);
}

#[test]
fn inventory_unknown_section_is_refused() {
    let f = Fixture::new();
    let s = Sentinel::new();
    f.write("hosts.yml", "all:\n  host:\n    web1:\n");
    expect_bad_input(&f, &s, &["ping", "hosts.yml"], &["hosts.yml:2:", "unknown field `host`"]);
}

#[test]
fn unknown_module_and_argument() {
    let f = Fixture::new();
    let s = Sentinel::new();
    inventory(&f, &s, "");
    f.write("a.yml", "- hosts: all\n  tasks:\n    - name: x\n      aptt: {name: curl}\n");
    expect_bad_input(&f, &s, &["apply", "hosts.yml", "-p", "a.yml"], &["a.yml:4:", "unknown field `aptt`"]);
    f.write("b.yml", "- hosts: all\n  tasks:\n    - name: x\n      apt:\n        nmae: curl\n");
    expect_bad_input(&f, &s, &["apply", "hosts.yml", "-p", "b.yml"], &["b.yml:5:9", "apt.nmae", "did you mean `name`"]);
}

#[test]
fn undefined_template_variable() {
    let f = Fixture::new();
    let s = Sentinel::new();
    inventory(&f, &s, "");
    f.write("templates/t.j2", "port={{ app_prot }}\n");
    f.write("c.yml", "- hosts: all\n  vars: {app_port: 1}\n  tasks:\n    - name: x\n      template: {src: t.j2, dest: /etc/t}\n");
    expect_bad_input(&f, &s, &["apply", "hosts.yml", "-p", "c.yml"], &["c.yml:5:", "template `t.j2`", "undefined"]);
}

#[test]
fn when_that_does_not_parse() {
    let f = Fixture::new();
    let s = Sentinel::new();
    inventory(&f, &s, "");
    f.write("d.yml", "- hosts: all\n  tasks:\n    - name: x\n      command: ls\n      when: ansible_distribution ==\n");
    expect_bad_input(&f, &s, &["apply", "hosts.yml", "-p", "d.yml"], &["d.yml:5:", "`when`"]);
}

#[test]
fn missing_secret_environment_variable() {
    let f = Fixture::new();
    let s = Sentinel::new();
    inventory(&f, &s, "      ansible_become_password: \"{{ lookup('env', 'BOOTSTRAP_TEST_NO_SUCH_VAR') }}\"\n");
    f.write("site.yml", OK_PLAYBOOK);
    expect_bad_input(&f, &s, &["apply", "hosts.yml", "-p", "site.yml"], &["BOOTSTRAP_TEST_NO_SUCH_VAR", "hosts.yml:6:"]);
}

#[test]
fn key_file_missing_or_encrypted() {
    let f = Fixture::new();
    let s = Sentinel::new();
    inventory(&f, &s, "      ansible_ssh_private_key_file: /nonexistent/key\n");
    f.write("site.yml", OK_PLAYBOOK);
    expect_bad_input(&f, &s, &["apply", "hosts.yml", "-p", "site.yml"], &["/nonexistent/key", "does not exist"]);
    // An encrypted key without (or with a wrong) passphrase.
    let key = f.dir.join("enc");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "right-phrase", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    inventory(&f, &s, &format!("      ansible_ssh_private_key_file: {}\n", key.display()));
    expect_bad_input(&f, &s, &["ping", "hosts.yml"], &["is encrypted"]);
    let r = f.run_env(&["ping", "hosts.yml"], &[("BOOTSTRAP_SSH_KEY_PASSPHRASE", "wrong-phrase")]);
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(r.stderr.contains("wrong passphrase"), "{}", r.stderr);
    assert!(!s.contacted());
}

#[test]
fn limit_matching_nothing() {
    let f = Fixture::new();
    let s = Sentinel::new();
    inventory(&f, &s, "");
    expect_bad_input(&f, &s, &["ping", "hosts.yml", "--limit", "web2"], &["--limit", "did you mean `web1`"]);
}

#[test]
fn missing_playbook_file() {
    let f = Fixture::new();
    let s = Sentinel::new();
    inventory(&f, &s, "");
    expect_bad_input(&f, &s, &["apply", "hosts.yml", "-p", "nope.yml"], &["nope.yml", "cannot read playbook"]);
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    let f = Fixture::new();
    for sub in ["apply", "check", "verify", "unregister", "ping", "facts"] {
        let r = f.run(&[sub, "--help"]);
        assert_eq!(r.code, 0);
        assert!(r.stdout.contains("Example") && r.stdout.contains(&format!("bootstrap {sub}")), "{}", r.stdout);
    }
}

#[test]
fn unreachable_host_fails_fast_with_exit_4() {
    // A closed port: connection refused at once.
    let f = Fixture::new();
    let s = Sentinel::new();
    let port = s.port();
    drop(s);
    f.write("hosts.yml", &format!("all:\n  hosts:\n    gone:\n      ansible_host: 127.0.0.1\n      ansible_port: {port}\n"));
    let r = f.run(&["ping", "hosts.yml", "--connect-timeout", "3"]);
    assert_eq!(r.code, 4, "{}", r.all());
    assert_eq!(r.recap("gone"), (0, 0, 0, 1));
}

#[test]
fn non_utf8_inventory_names_the_place() {
    let f = Fixture::new();
    let s = Sentinel::new();
    let mut bytes =
        format!("all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n      ansible_port: {}\n      note: ", s.port()).into_bytes();
    bytes.extend_from_slice(b"caf\xe9\n");
    std::fs::write(f.dir.join("hosts.yml"), bytes).expect("write");
    expect_bad_input(&f, &s, &["ping", "hosts.yml"], &["hosts.yml:6:", "not valid UTF-8"]);
}

#[test]
fn conflicting_group_vars_follow_ansible_precedence() {
    // A host in two groups with conflicting vars: no error; the deeper
    // group wins, then the later name, as in Ansible.
    let f = Fixture::new();
    let s = Sentinel::new();
    f.write(
        "hosts.yml",
        &format!(
            "all:\n  children:\n    alpha:\n      vars: {{ansible_port: 1}}\n      hosts: {{web1: }}\n    beta:\n      vars: {{ansible_port: {}}}\n      hosts: {{web1: {{ansible_host: 127.0.0.1}}}}\n",
            s.port()
        ),
    );
    let r = f.run(&["ping", "hosts.yml", "--connect-timeout", "2"]);
    // The sentinel takes the TCP connection and never speaks SSH: the
    // host is unreachable (exit 4, as a refused port 1 would be too), and
    // the message names the port that was used.
    assert_eq!(r.code, 4, "unreachable, not failed:\n{}", r.all());
    assert_eq!(r.recap("web1"), (0, 0, 0, 1), "{}", r.all());
    assert!(r.stdout.contains(&format!("127.0.0.1:{}", s.port())), "the message names beta's port:\n{}", r.all());
    assert!(s.contacted(), "beta's port (later name at the same depth) was used");
}

#[test]
fn shards_partition_the_hosts() {
    let f = Fixture::new();
    let s = Sentinel::new();
    let port = s.port();
    drop(s);
    let mut inv = String::from("all:\n  hosts:\n");
    for i in 0..12 {
        inv.push_str(&format!("    r{i}: {{ansible_host: 127.0.0.1, ansible_port: {port}}}\n"));
    }
    f.write("hosts.yml", &inv);
    let mut all: Vec<String> = Vec::new();
    for i in 1..=3 {
        let r = f.run(&["ping", "hosts.yml", "--shard", &format!("{i}/3"), "--output", "json", "--connect-timeout", "2"]);
        let start: serde_json::Value = serde_json::from_str(r.stdout.lines().next().expect("start")).expect("json");
        let hosts: Vec<String> = start["hosts"].as_array().expect("hosts").iter().map(|h| h.as_str().unwrap_or("").to_string()).collect();
        assert!(!hosts.is_empty() && hosts.len() < 12, "shard {i}: {hosts:?}");
        all.extend(hosts);
    }
    all.sort();
    let mut want: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    want.sort();
    assert_eq!(all, want, "every host in exactly one shard");
    let r = f.run(&["ping", "hosts.yml", "--shard", "4/3"]);
    assert_eq!(r.code, 5);
}

#[test]
fn command_line_mistakes_are_bad_input() {
    // Exit 5 like every other bad input (exit 2 means a host failed).
    let f = Fixture::new();
    let s = Sentinel::new();
    inventory(&f, &s, "");
    for args in [
        &["ping", "hosts.yml", "--forks", "0"][..],
        &["ping", "hosts.yml", "--forks", "-3"],
        &["ping", "hosts.yml", "--no-such-flag"],
        &["apply"],
    ] {
        let r = f.run(args);
        assert_eq!(r.code, 5, "{args:?}:\n{}", r.all());
        assert!(!r.stderr.is_empty(), "{args:?} says what is wrong");
    }
    assert!(!s.contacted());
    assert_eq!(f.run(&["--help"]).code, 0);
    assert_eq!(f.run(&["--version"]).code, 0);
}
