//! Runner hosts through their life: drift (`check`), `verify`,
//! `unregister`, a rebuild under a dead host's name (`--replace`), rolling
//! changes (`--serial`), and the prune timer, on real test hosts.

use crate::runner::{apply, config_token, inventory, upload_distro, wait_for_poll};
use crate::support::{key, net_up, Fixture, GitLab, TestHost};

fn run(f: &Fixture, gitlab: &GitLab, args: &[&str]) -> crate::support::Run {
    f.run_env(args, &[("GITLAB_TOKEN", &gitlab.admin_token)])
}

#[test]
fn drift_verify_prune_and_unregister_on_a_built_host() {
    net_up();
    let h = TestHost::up();
    let gitlab = GitLab::start(&[]);
    let f = Fixture::new();
    f.trust(&[&h]);
    inventory(&f, &[("runner-1", &h)], &gitlab, &upload_distro());
    let r = apply(&f, &gitlab, &[]);
    assert_eq!(r.code, 0, "{}", r.all());

    // Drift: 0 when converged, 3 after an edit (with what and how), 0 after apply.
    let c = run(&f, &gitlab, &["check", "hosts.yml"]);
    assert_eq!(c.code, 0, "{}", c.all());
    h.read("sed -i 's/^concurrent = 2/concurrent = 9/' /etc/gitlab-runner/config.toml && chmod 0600 /etc/docker/daemon.json");
    let c = run(&f, &gitlab, &["check", "hosts.yml", "--diff"]);
    assert_eq!(c.code, 3, "{}", c.all());
    assert!(c.stdout.contains("changed: [runner-1] runner registered in GitLab, config.toml"), "{}", c.stdout);
    assert!(c.stdout.contains("-concurrent = 9"), "{}", c.stdout);
    assert!(c.stdout.contains("set mode 0644 on /etc/docker/daemon.json"), "{}", c.stdout);
    assert!(!c.all().contains(&config_token(&h)), "a token leaked into check --diff");
    assert!(h.read("grep ^concurrent /etc/gitlab-runner/config.toml").contains("9"), "check changed the host");
    assert_eq!(apply(&f, &gitlab, &[]).code, 0);
    assert_eq!(run(&f, &gitlab, &["check", "hosts.yml"]).code, 0);

    // Verify: Docker, the runner, its token in GitLab, and the shared build cache.
    let v = run(&f, &gitlab, &["verify", "hosts.yml", "-v"]);
    assert_eq!(v.code, 0, "{}", v.all());
    for line in ["Docker answers", "gitlab-runner service active", "runner token valid in GitLab", "3/3 steps from cache"] {
        assert!(v.stdout.contains(line), "`{line}` in:\n{}", v.stdout);
    }

    // The prune timer is installed, enabled, and its unit works.
    assert_eq!(h.read("systemctl is-enabled docker-prune.timer").trim(), "enabled");
    h.read("systemctl start docker-prune.service");
    assert_eq!(h.read("systemctl show -p Result --value docker-prune.service").trim(), "success");
    // Restarts are graceful: SIGQUIT lets running jobs finish.
    assert_eq!(h.read("systemctl show -p KillSignal --value gitlab-runner").trim(), "3");

    // Unregister: gone from GitLab, service stopped, no token left; twice is a no-op.
    let u = run(&f, &gitlab, &["unregister", "hosts.yml"]);
    assert_eq!(u.code, 0, "{}", u.all());
    assert!(gitlab.runners().is_empty(), "{:?}", gitlab.runners());
    assert_eq!(h.sh("systemctl is-active gitlab-runner").status.code(), Some(3));
    assert_eq!(h.read("systemctl is-enabled gitlab-runner || true").trim(), "disabled");
    assert!(!h.read("cat /etc/gitlab-runner/config.toml").contains("token"));
    let again = run(&f, &gitlab, &["unregister", "hosts.yml"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(again.recap("runner-1").1, 0, "{}", again.all());
}

#[test]
fn rebuilt_host_replaces_the_dead_runner_only_when_asked() {
    net_up();
    let gitlab = GitLab::start(&[]);
    let f = Fixture::new();
    let dead_id = {
        let old = TestHost::up();
        f.trust(&[&old]);
        inventory(&f, &[("runner-3", &old)], &gitlab, &upload_distro());
        let r = apply(&f, &gitlab, &[]);
        assert_eq!(r.code, 0, "{}", r.all());
        gitlab.runners()[0]["id"].as_u64().expect("id")
        // The host dies here.
    };
    let new = TestHost::up();
    f.trust(&[&new]);
    inventory(&f, &[("runner-3", &new)], &gitlab, &upload_distro());

    // Without --replace: a warning naming the flag; the old runner stays.
    let r = apply(&f, &gitlab, &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains(&format!("runner `runner-3` (id {dead_id}")) && r.stdout.contains("--replace"), "{}", r.stdout);
    let runners = gitlab.runners();
    assert_eq!(runners.len(), 2);
    assert!(runners.iter().any(|x| x["id"].as_u64() == Some(dead_id)));

    // --check --replace lists what would go; --replace deletes it.
    let c = run(&f, &gitlab, &["apply", "hosts.yml", "--check", "--replace"]);
    assert_eq!(c.code, 0, "{}", c.all());
    assert!(c.stdout.contains(&format!("delete runner `runner-3` (id {dead_id}")), "{}", c.stdout);
    assert_eq!(gitlab.runners().len(), 2, "--check deleted something");
    let r = run(&f, &gitlab, &["apply", "hosts.yml", "--replace"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let runners = gitlab.runners();
    assert_eq!(runners.len(), 1, "{runners:?}");
    assert_ne!(runners[0]["id"].as_u64(), Some(dead_id));
    assert_eq!(runners[0]["token"].as_str().map(str::to_string), Some(config_token(&new)));
    assert!(wait_for_poll(&gitlab, runners[0]["id"].as_u64().expect("id")), "the new runner polls");

    // A host that is gone can still be unregistered, by name.
    drop(new);
    let u = run(&f, &gitlab, &["unregister", "hosts.yml", "--connect-timeout", "3"]);
    assert_eq!(u.code, 0, "{}", u.all());
    assert!(gitlab.runners().is_empty(), "{:?}", gitlab.runners());
}

#[test]
fn serial_rollout_stops_after_a_failed_batch() {
    let hosts: Vec<TestHost> = (0..3).map(|_| TestHost::up()).collect();
    let f = Fixture::new();
    f.trust(&hosts.iter().collect::<Vec<_>>());
    let mut inv = format!("all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: {}\n  hosts:\n", key().display());
    for (name, h) in ["a", "b", "c"].iter().zip(&hosts) {
        inv.push_str(&format!("    {name}: {{ansible_host: {}}}\n", h.address));
    }
    f.write("hosts.yml", &inv);
    f.write(
        "site.yml",
        "- hosts: all\n  tasks:\n    - name: marker\n      copy: {dest: /etc/marker, content: x}\n    - name: b is broken\n      shell: exit 1\n      when: inventory_hostname == 'b'\n",
    );
    let r = f.run(&["apply", "hosts.yml", "-p", "site.yml", "--serial", "1"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("rollout stopped") && r.stderr.contains("not started: c"), "{}", r.stderr);
    assert_eq!(r.recap("a").1, 1);
    assert_eq!(r.recap("b").2, 1);
    assert!(!r.stdout.lines().any(|l| l.starts_with("c ")), "c must not start:\n{}", r.stdout);
    assert!(hosts[0].sh("test -e /etc/marker").status.success());
    assert!(!hosts[2].sh("test -e /etc/marker").status.success(), "the rollout reached c");
    // Percentages: 50% of 3 is one host per batch.
    let r = f.run(&["apply", "hosts.yml", "-p", "site.yml", "--serial", "50%"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not started: c"), "{}", r.stderr);
}
