//! Ansible is the oracle: the same inventory files read by the real
//! `ansible-inventory` (ansible-core from PyPI, in the venv `bench/venv`
//! builds) and by `bootstrap inventory` must print the same thing; and a
//! real apply driven the way Ansible users drive it (INI inventory, vaulted
//! group_vars, a vaulted become password, `-e`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{bin, key, repo, Fixture, TestHost};

/// The venv with ansible-core (built once per machine by bench/venv).
fn venv() -> &'static Path {
    static V: OnceLock<PathBuf> = OnceLock::new();
    V.get_or_init(|| {
        let out = Command::new(repo().join("bench/venv")).output().expect("bench/venv runs");
        assert!(out.status.success(), "bench/venv failed:\n{}", String::from_utf8_lossy(&out.stderr));
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

fn corpus() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/inventories"))
        .expect("tests/inventories")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("args").is_file())
        .collect();
    cases.sort();
    cases
}

fn args(case: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(case.join("args")).expect("args");
    text.split_whitespace().map(str::to_string).collect()
}

/// stdout of `ansible-inventory ARGS` and of `bootstrap inventory ARGS`,
/// both run in `case` with no ansible.cfg around.
fn both(case: &Path, extra: &[&str]) -> (String, String) {
    let run = |program: &Path, first: Option<&str>| {
        let mut c = Command::new(program);
        c.current_dir(case).env("ANSIBLE_CONFIG", "/nonexistent").env("HOME", case).env_remove("ANSIBLE_VAULT_PASSWORD_FILE");
        if let Some(f) = first {
            c.arg(f);
        }
        let out = c.args(args(case)).args(extra).output().expect("runs");
        assert!(
            out.status.success(),
            "{} {:?} failed in {}:\n{}",
            program.display(),
            extra,
            case.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    (run(&venv().join("bin/ansible-inventory"), None), run(&bin(), Some("inventory")))
}

#[test]
fn inventory_corpus_reads_as_ansible_inventory_reads_it() {
    let cases = corpus();
    assert!(cases.len() >= 8, "the corpus: {cases:?}");
    for case in &cases {
        let (a, b) = both(case, &["--list"]);
        let ja: serde_json::Value = serde_json::from_str(&a).expect("ansible's JSON");
        let jb: serde_json::Value = serde_json::from_str(&b).expect("bootstrap's JSON");
        assert_eq!(jb, ja, "--list differs for {}", case.display());
        assert_eq!(b.trim_end(), a.trim_end(), "--list text differs for {}", case.display());
        let hosts: Vec<String> = ja["_meta"]["hostvars"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        assert!(!hosts.is_empty(), "{}: no host has variables", case.display());
        for h in hosts.iter().take(3) {
            let (a, b) = both(case, &["--host", h]);
            assert_eq!(b.trim_end(), a.trim_end(), "--host {h} differs for {}", case.display());
        }
        let (a, b) = both(case, &["--graph"]);
        assert_eq!(b.trim_end(), a.trim_end(), "--graph differs for {}", case.display());
    }
}

/// Every bad input exits 5, names the file and line (or the option), and
/// contacts nobody (there is no host listening anywhere in these).
#[test]
fn bad_ansible_inputs_exit_5_with_file_and_line() {
    let f = Fixture::new();
    f.write("hosts.ini", "[web]\nw1\nw2 not-a-pair\n");
    let r = f.run(&["inventory", "-i", "hosts.ini", "--list"]);
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(r.stderr.contains("hosts.ini:3:1") && r.stderr.contains("key=value"), "{}", r.stderr);

    let vault_case = repo().join("tests/inventories/vault");
    let copy = |name: &str| {
        let text = std::fs::read_to_string(vault_case.join(name)).expect("vault case file");
        f.write(&format!("v/{name}"), &text);
    };
    for n in ["hosts.yml", "group_vars/all/vault.yml", "group_vars/all/vars.yml", "host_vars/r1.yml", "ops-pass.txt"] {
        copy(n);
    }
    f.write("v/wrong-pass.txt", "not-the-password\n");
    let r = f.run(&["inventory", "-i", "v/hosts.yml", "--vault-password-file", "v/wrong-pass.txt", "--list"]);
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(r.stderr.contains("v/hosts.yml:4:"), "names the vaulted value's place:\n{}", r.stderr);
    assert!(r.stderr.contains("decrypt"), "{}", r.stderr);
    // No password at all for a vaulted file.
    let r = f.run(&["inventory", "-i", "v/hosts.yml", "--list"]);
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(r.stderr.contains("--vault-password-file"), "says how to give one:\n{}", r.stderr);
    // A vault id whose password source does not exist.
    let r = f.run(&["inventory", "-i", "v/hosts.yml", "--vault-id", "ops@v/missing-pass.txt", "--list"]);
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(r.stderr.contains("missing-pass.txt"), "{}", r.stderr);
    // -e @file that is not there.
    f.write("ok.ini", "w1\n");
    let r = f.run(&["inventory", "-i", "ok.ini", "-e", "@missing.yml", "--list"]);
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(r.stderr.contains("missing.yml"), "{}", r.stderr);
    // A broken group_vars file: its own name and line.
    f.write("g/hosts.ini", "[web]\nw1\n");
    f.write("g/group_vars/web.yml", "a: 1\nb: [1,\n");
    let r = f.run(&["inventory", "-i", "g/hosts.ini", "--list"]);
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(r.stderr.contains("group_vars/web.yml:"), "{}", r.stderr);
    // The decrypted values never appear in errors.
    assert!(!r.all().contains("s3cret-become"));
}

/// A real apply the way an Ansible user runs it: an INI inventory, group
/// variables in a vault-encrypted file (the become password among them),
/// `-e` over the inventory, and the vault password from a file.
#[test]
fn an_ini_inventory_with_vaulted_group_vars_applies_for_real() {
    let h = TestHost::up();
    let f = Fixture::new();
    f.trust(&[&h]);
    f.write(
        "inventory/hosts",
        &format!(
            "[runners]\nr1 ansible_host={} motd=from-inventory\n\n[runners:vars]\nansible_user=secure\nansible_become=true\nansible_ssh_private_key_file={}\n",
            h.address,
            key().display()
        ),
    );
    f.write("vault-pass", "test-vault-pw\n");
    f.write("inventory/group_vars/runners/vault.yml", "ansible_become_password: s3cret-Pa55\nsecret_word: vaulted-word-42\n");
    let enc = Command::new(venv().join("bin/ansible-vault"))
        .current_dir(&f.dir)
        .args(["encrypt", "--vault-password-file", "vault-pass", "inventory/group_vars/runners/vault.yml"])
        .output()
        .expect("ansible-vault");
    assert!(enc.status.success(), "{}", String::from_utf8_lossy(&enc.stderr));
    f.write(
        "site.yml",
        "- hosts: runners\n  tasks:\n    - ansible.builtin.copy:\n        dest: /root/motd\n        content: \"{{ motd }} {{ secret_word }}\\n\"\n        mode: \"0600\"\n",
    );
    let r = f.run(&[
        "apply",
        "-i",
        "inventory/hosts",
        "-p",
        "site.yml",
        "--vault-password-file",
        "vault-pass",
        "-e",
        "motd=from-e",
        "-vv",
        "--diff",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.recap("r1"), (1, 1, 0, 0), "{}", r.all());
    assert_eq!(h.read("cat /root/motd"), "from-e vaulted-word-42\n", "-e wins over the inventory; the vaulted value arrived");
    assert_eq!(h.read("stat -c '%U %a' /root/motd").trim(), "root 600", "sudo with the vaulted become password");
    for secret in ["s3cret-Pa55", "vaulted-word-42", "test-vault-pw"] {
        assert!(!r.all().contains(secret), "`{secret}` leaked into the output:\n{}", r.all());
    }
    // Converged: the same command changes nothing.
    let again = f.run(&["apply", "-i", "inventory/hosts", "-p", "site.yml", "--vault-password-file", "vault-pass", "-e", "motd=from-e"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(again.recap("r1").1, 0, "{}", again.all());
}

/// `--tags` and `--skip-tags` select the tasks ansible-playbook selects
/// (its `--list-tasks` is the oracle), and `--list-tasks` contacts nobody.
#[test]
fn tags_select_the_tasks_ansible_playbook_selects() {
    let f = Fixture::new();
    f.write("hosts.ini", "[web]\nw1 ansible_host=127.0.0.1 ansible_port=1\n");
    f.write(
        "site.yml",
        "- hosts: web\n  gather_facts: false\n  tags: [base]\n  tasks:\n    - name: one\n      command: echo 1\n      tags: docker\n    - name: two\n      command: echo 2\n      tags: [runner]\n    - name: three\n      command: echo 3\n      tags: [always]\n    - name: four\n      command: echo 4\n      tags: [never, debug]\n    - name: five\n      command: echo 5\n",
    );
    let names = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.trim().split(['\t', ' ']).next().map(str::to_string))
            .filter(|n| ["one", "two", "three", "four", "five"].contains(&n.as_str()))
            .collect()
    };
    let combos: &[&[&str]] = &[
        &[],
        &["--tags", "docker"],
        &["--tags", "debug"],
        &["--tags", "never"],
        &["--tags", "tagged"],
        &["--tags", "untagged"],
        &["--skip-tags", "runner,always"],
        &["--skip-tags", "all"],
        &["-t", "base", "--skip-tags", "docker"],
        &["-t", "all,debug"],
    ];
    for extra in combos {
        let ours = f.run(&[&["apply", "-i", "hosts.ini", "-p", "site.yml", "--list-tasks"][..], extra].concat());
        assert_eq!(ours.code, 0, "{}", ours.all());
        let theirs = Command::new(venv().join("bin/ansible-playbook"))
            .current_dir(&f.dir)
            .env("ANSIBLE_CONFIG", "/nonexistent")
            .args(["-i", "hosts.ini", "site.yml", "--list-tasks"])
            .args(*extra)
            .output()
            .expect("ansible-playbook");
        assert!(theirs.status.success(), "{}", String::from_utf8_lossy(&theirs.stderr));
        let want = names(&String::from_utf8_lossy(&theirs.stdout));
        assert!(!want.is_empty() || extra.contains(&"all"), "ansible selected nothing for {extra:?}");
        assert_eq!(names(&ours.stdout), want, "tasks selected by {extra:?}");
    }
}
