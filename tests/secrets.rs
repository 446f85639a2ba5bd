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
    // Catch short-lived processes: test-only wrappers early on the host's
    // PATH log the argv and environment of every `sudo`, `sh` and `bash`
    // started by name (sshd's PATH and sudo's secure_path both begin with
    // /usr/local/bin), then exec the real one.
    let _audit = ExecAudit::install(&h, &["sudo", "sh", "bash"]);
    // And sample every process's command line and environment during the
    // run (every 20 ms), for the longer-lived ones that are not wrapped.
    h.read("systemd-run --unit=cmdlines --collect sh -c 'while :; do for p in /proc/[0-9]*; do tr \"\\0\" \" \" < $p/cmdline 2>/dev/null; echo; tr \"\\0\" \"\\n\" < $p/environ 2>/dev/null; done; sleep 0.02; done > /root/cmdlines'");
    let env = [
        ("SUDO_PW", become_pw),
        ("GITLAB_REGISTRATION_TOKEN", "glrtr-legacy-Registration-Secret"),
        ("GITLAB_TOKEN", gitlab.admin_token.as_str()),
    ];
    let human = f.run_env(&["apply", "hosts.yml", "-vvv", "--diff"], &env);
    assert_eq!(human.code, 0, "{}", human.all());
    h.read("sed -i 's/^concurrent = .*/concurrent = 7/' /etc/gitlab-runner/config.toml");
    let json = f.run_env(&["apply", "hosts.yml", "-vvv", "--diff", "--output", "json"], &env);
    assert_eq!(json.code, 0, "{}", json.all());
    assert!(json.stdout.contains("\"diff\""), "a diff was shown: {}", json.stdout);
    let check = f.run_env(&["check", "hosts.yml", "--diff", "-vvv"], &env);
    assert_eq!(check.code, 0, "converged: check finds no drift:\n{}", check.all());
    h.read("systemctl stop cmdlines");
    let token = config_token(&h);
    assert!(token.len() > 10);
    let cmdlines = h.read("cat /root/cmdlines");
    assert!(cmdlines.lines().count() > 100, "the sampler ran");
    let audit = h.read(&format!("cat {AUDIT_LOG}"));
    for wrapped in ["sudo", "sh"] {
        assert!(
            audit.contains(&format!("exec /usr/local/bin/{wrapped} [")),
            "the exec audit saw no `{wrapped}` (the wrappers were bypassed):\n{}",
            audit.lines().take(20).collect::<Vec<_>>().join("\n")
        );
    }
    let journal = h.read("journalctl -o cat --no-pager 2>/dev/null || true");
    assert!(!journal.is_empty(), "the host's journal is readable");
    let environs = h.read("for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ 2>/dev/null; done; true");
    let secrets = [
        ("become password", become_pw),
        ("registration token", "glrtr-legacy-Registration-Secret"),
        ("GITLAB_TOKEN", gitlab.admin_token.as_str()),
        ("runner token", token.as_str()),
    ];
    let mut leaks = Vec::new();
    for (what, secret) in secrets {
        for (name, text) in [
            ("human output", &human.all()),
            ("JSON events", &json.all()),
            ("check output", &check.all()),
            ("host command lines and environments (sampled)", &cmdlines),
            ("exec audit of sudo/sh/bash", &audit),
            ("host journal", &journal),
            ("host /proc/*/environ", &environs),
        ] {
            if text.contains(secret) {
                leaks.push(format!("the {what} appears in the {name}"));
            }
        }
        // Files on the host: only config.toml may hold the runner token;
        // nothing holds the other secrets. (The audit log is checked above.)
        let allowed = if secret == token { "/etc/gitlab-runner/config.toml" } else { "" };
        let holders = h.read(&format!(
            "grep -rlF --exclude-dir=proc -- '{secret}' /etc /tmp /var/tmp /root /home /run /var/log /var/lib 2>/dev/null | grep -vxF -e /root/cmdlines -e {AUDIT_LOG} || true"
        ));
        if holders.trim() != allowed {
            leaks.push(format!("files holding the {what}: {:?} (allowed: {allowed:?})", holders.trim()));
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n  {}", leaks.join("\n  "));
    assert_eq!(h.read("stat -c '%a %U %G' /etc/gitlab-runner/config.toml").trim(), "600 root root");
    // The controller keeps no pending token once the host holds it.
    let pending = f.dir.join(".local/state/bootstrap/pending-runners");
    let left = std::fs::read_dir(&pending).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "a pending token file stayed on the controller");
}

/// Where [`ExecAudit`]'s wrappers log (one `exec PATH [arg]...` line per
/// start, then its environment as `  env K=V` lines).
const AUDIT_LOG: &str = "/var/tmp/bt-exec-audit/log";

/// Test-only wrappers in the host's /usr/local/bin that log the argv and
/// environment of each start of the wrapped commands, then exec the real
/// one. Removed on drop (also when the test fails).
struct ExecAudit<'a> {
    host: &'a TestHost,
    names: Vec<String>,
}

impl<'a> ExecAudit<'a> {
    fn install(host: &'a TestHost, names: &[&str]) -> ExecAudit<'a> {
        let audit = ExecAudit { host, names: names.iter().map(|n| n.to_string()).collect() };
        let dir = AUDIT_LOG.rsplit_once('/').expect("dir").0;
        host.read(&format!("install -d -m 1777 {dir} && install -m 0666 /dev/null {AUDIT_LOG}"));
        for name in names {
            let real = host.read(&format!("command -v {name}")).trim().to_string();
            assert!(real.starts_with('/') && !real.starts_with("/usr/local/"), "{name} is {real}");
            let wrapper = format!(
                "#!/bin/sh\n# test-only exec audit (tests/secrets.rs); removed after the test\n{{ printf 'exec %s' \"$0\"; for a in \"$@\"; do printf ' [%s]' \"$a\"; done; printf '\\n'; /usr/bin/env | /usr/bin/sed 's/^/  env /'; }} >> {AUDIT_LOG} 2>/dev/null\nexec {real} \"$@\"\n"
            );
            host.read(&format!("cat > /usr/local/bin/{name} <<'EOF'\n{wrapper}EOF\nchmod 0755 /usr/local/bin/{name}"));
        }
        // The wrappers are the ones found, for a login shell and for sudo.
        let found = host.read("su -s /bin/sh -l secure -c 'command -v sudo'");
        assert_eq!(found.trim(), "/usr/local/bin/sudo", "the wrapper is first on PATH");
        audit
    }
}

impl Drop for ExecAudit<'_> {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = self.host.sh(&format!("rm -f /usr/local/bin/{name}"));
        }
    }
}

#[test]
fn inventory_values_reach_the_host_as_data() {
    let h = TestHost::up();
    let f = Fixture::new();
    f.trust(&[&h]);
    let nasty = "$(touch /tmp/pwned) `touch /tmp/pwned2`; 'single' \"double\" \\back \u{e9}\nsecond line";
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
        assert!(!h.sh(&format!("test -e {p}")).status.success(), "{p} was created: a value ran as shell");
    }
    let written = h.read("cat '/tmp/d $(touch /tmp/pwned3)/motd'");
    assert_eq!(written, nasty, "the value arrived byte for byte");
    let again = f.run(&["apply", "hosts.yml", "-p", "site.yml"]);
    assert_eq!(again.recap("h").1, 0, "{}", again.all());
}
