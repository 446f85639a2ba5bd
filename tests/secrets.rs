//! Secrets never leak, and inventory values are data, never shell syntax.

use crate::runner::{config_token, upload_distro};
use crate::support::{key, net_up, Fixture, GitLab, TestHost};

#[test]
fn no_secret_in_output_events_or_remote_command_lines() {
    net_up();
    let h = TestHost::up();
    let gitlab = GitLab::start(&["--registration-token", "glrtr-legacy-Registration-Secret"]);
    let f = Fixture::new();
    f.trust(&[&h]);
    let become_pw = "s3cret-Pa55";
    f.write(
        "hosts.yml",
        &format!(
            "all:\n  vars:\n    ansible_user: secure\n    ansible_become: true\n    ansible_become_password: \"{{{{ lookup('env', 'SUDO_PW') }}}}\"\n    ansible_ssh_private_key_file: {}\n    gitlab_url: {}\n    runner_registration: legacy\n{}  hosts:\n    sec: {{ansible_host: {}}}\n",
            key().display(),
            gitlab.url(),
            upload_distro(),
            h.address
        ),
    );
    // Sample every process's command line on the host during the run.
    h.read("systemd-run --unit=cmdlines --collect sh -c 'while :; do for p in /proc/[0-9]*; do tr \"\\0\" \" \" < $p/cmdline 2>/dev/null; echo; done; sleep 0.02; done > /root/cmdlines'");
    let env = [
        ("SUDO_PW", become_pw),
        (
            "GITLAB_REGISTRATION_TOKEN",
            "glrtr-legacy-Registration-Secret",
        ),
        ("GITLAB_TOKEN", gitlab.admin_token.as_str()),
    ];
    let human = f.run_env(&["apply", "hosts.yml", "-vvv", "--diff"], &env);
    assert_eq!(human.code, 0, "{}", human.all());
    h.read("sed -i 's/^concurrent = .*/concurrent = 7/' /etc/gitlab-runner/config.toml");
    let json = f.run_env(
        &["apply", "hosts.yml", "-vvv", "--diff", "--output", "json"],
        &env,
    );
    assert_eq!(json.code, 0, "{}", json.all());
    assert!(
        json.stdout.contains("\"diff\""),
        "a diff was shown: {}",
        json.stdout
    );
    let check = f.run_env(&["check", "hosts.yml", "--diff", "-vvv"], &env);
    h.read("systemctl stop cmdlines");
    let token = config_token(&h);
    assert!(token.len() > 10);
    let cmdlines = h.read("cat /root/cmdlines");
    assert!(cmdlines.lines().count() > 100, "the sampler ran");
    for (what, secret) in [
        ("become password", become_pw),
        ("registration token", "glrtr-legacy-Registration-Secret"),
        ("GITLAB_TOKEN", gitlab.admin_token.as_str()),
        ("runner token", token.as_str()),
    ] {
        for (name, text) in [
            ("human output", human.all()),
            ("JSON events", json.all()),
            ("check output", check.all()),
            ("host command lines", cmdlines.clone()),
        ] {
            assert!(!text.contains(secret), "the {what} appears in the {name}");
        }
    }
    // Files holding the token: config.toml only, 0600 root:root; no temporary copies.
    let holders = h.read(&format!(
        "grep -rlF -- '{token}' /etc /tmp /var/tmp /root /home 2>/dev/null || true"
    ));
    assert_eq!(
        holders.trim(),
        "/etc/gitlab-runner/config.toml",
        "files holding the token: {holders}"
    );
    assert_eq!(
        h.read("stat -c '%a %U %G' /etc/gitlab-runner/config.toml")
            .trim(),
        "600 root root"
    );
    // The controller keeps no pending token once the host holds it.
    let pending = f.dir.join(".local/state/bootstrap/pending-runners");
    let left = std::fs::read_dir(&pending).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "a pending token file stayed on the controller");
}

#[test]
fn inventory_values_reach_the_host_as_data() {
    let h = TestHost::up();
    let f = Fixture::new();
    f.trust(&[&h]);
    let nasty =
        "$(touch /tmp/pwned) `touch /tmp/pwned2`; 'single' \"double\" \\back \u{e9}\nsecond line";
    let yaml_value = serde_json::to_string(nasty).expect("json");
    f.write(
        "hosts.yml",
        &format!(
            "all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: {}\n    motd: {yaml_value}\n    dirname: \"/tmp/d $(touch /tmp/pwned3)\"\n  hosts:\n    h: {{ansible_host: {}}}\n",
            key().display(),
            h.address
        ),
    );
    f.write(
        "site.yml",
        "- hosts: all\n  tasks:\n    - directory: {path: \"{{ dirname }}\", mode: \"0755\"}\n    - copy: {dest: \"{{ dirname }}/motd\", content: \"{{ motd }}\"}\n    - user: {name: datauser, shell: /bin/sh}\n",
    );
    let r = f.run(&["apply", "hosts.yml", "-p", "site.yml"]);
    assert_eq!(r.code, 0, "{}", r.all());
    for p in ["/tmp/pwned", "/tmp/pwned2", "/tmp/pwned3"] {
        assert!(
            !h.sh(&format!("test -e {p}")).status.success(),
            "{p} was created: a value ran as shell"
        );
    }
    let written = h.read("cat '/tmp/d $(touch /tmp/pwned3)/motd'");
    assert_eq!(written, nasty, "the value arrived byte for byte");
    let again = f.run(&["apply", "hosts.yml", "-p", "site.yml"]);
    assert_eq!(again.recap("h").1, 0, "{}", again.all());
}
