//! The runner playbook (built in) on Debian 11 (bullseye) and Debian 13
//! (trixie) test hosts, side by side in one run, against the GitLab
//! stand-in, the gitlab-runner stand-in and the local signed apt
//! repositories (tests/aptrepo). Debian 12 is `runner.rs`.
//!
//! bullseye: Docker from the release (docker.io 20.10, legacy builder),
//! gitlab-runner uploaded. trixie: Docker from the release first (docker.io
//! 26, split into docker-cli and docker-buildx, BuildKit), gitlab-runner from
//! the apt repository (deb822 sources beside the release's own
//! `debian.sources`); then switched to docker-ce from the apt repository
//! (its trixie suite carries the same Debian 12 binaries as its bookworm
//! one), which must take the split packages away first.

use crate::runner::{apply, wait_for_poll};
use crate::support::{apt_repos_for, key, net_up, repo, Fixture, GitLab, TestHost};

fn inventory(f: &Fixture, gitlab: &GitLab, bullseye: &TestHost, trixie: &TestHost, trixie_vars: &str) {
    f.write(
        "hosts.yml",
        &format!(
            "all:\n  vars:\n    ansible_user: deploy\n    ansible_become: true\n    ansible_ssh_private_key_file: {}\n    gitlab_url: {}\n    runner_concurrent: 2\n  hosts:\n    deb11:\n      ansible_host: {}\n      docker_install: distro\n      gitlab_runner_install: upload\n      gitlab_runner_binary: {}\n    deb13:\n      ansible_host: {}\n{trixie_vars}",
            key().display(),
            gitlab.url(),
            bullseye.address,
            repo().join("tests/gitlab/gitlab-runner").display(),
            trixie.address,
        ),
    );
}

/// The runner's token as written in the host's config.toml (read without
/// Python: bullseye's has no tomllib).
fn config_tokens(h: &TestHost) -> Vec<String> {
    h.read("cat /etc/gitlab-runner/config.toml")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("token = \"").and_then(|v| v.strip_suffix('"')).map(str::to_string))
        .collect()
}

/// Two builds of a 2-step Dockerfile through the socket (a base image
/// imported, no registry); the second build's output.
fn build_twice(h: &TestHost) -> (String, String) {
    h.read(
        "set -e; r=$(mktemp -d); mkdir -p $r/bin $r/lib/x86_64-linux-gnu $r/lib64; cp /usr/bin/dash $r/bin/sh; \
         cp /lib/x86_64-linux-gnu/libc.so.6 $r/lib/x86_64-linux-gnu/; cp /lib64/ld-linux-x86-64.so.2 $r/lib64/; \
         tar -C $r -c . | docker -H unix:///var/run/docker.sock import - bootstrap-test/base:1 >/dev/null; \
         mkdir -p /tmp/ctx; printf 'FROM bootstrap-test/base:1\\nRUN echo one > /one\\nRUN echo two > /two\\n' > /tmp/ctx/Dockerfile",
    );
    let build = "docker -H unix:///var/run/docker.sock build -t bootstrap-test/app /tmp/ctx 2>&1";
    (h.read(build), h.read(build))
}

#[test]
fn runner_playbook_converges_on_debian_11_and_13() {
    net_up();
    let bullseye = TestHost::up_release("bullseye");
    let trixie = TestHost::up_release("trixie");
    let gitlab = GitLab::start(&[]);
    let repos = apt_repos_for(&["bookworm", "trixie"]);
    let u = &repos.url;
    let f = Fixture::new();
    f.trust(&[&bullseye, &trixie]);
    assert_eq!(bullseye.read(". /etc/os-release; echo $VERSION_CODENAME").trim(), "bullseye");
    assert_eq!(trixie.read(". /etc/os-release; echo $VERSION_CODENAME").trim(), "trixie");
    let trixie_distro = format!(
        "      docker_install: distro\n      gitlab_runner_install: apt\n      gitlab_runner_apt_url: {u}/gitlab-runner\n      gitlab_runner_apt_key_url: {u}/gitlab-runner/gpg\n"
    );
    inventory(&f, &gitlab, &bullseye, &trixie, &trixie_distro);
    // The same repository already there as a one-line source with its key,
    // as a manual install leaves it: it must not end up configured twice
    // (deb822 beside .list).
    let key = crate::support::http("GET", &format!("{u}/gitlab-runner/gpg"), &[], None);
    assert!(key.contains("BEGIN PGP PUBLIC KEY BLOCK"), "{key}");
    trixie.read(&format!(
        "mkdir -p /etc/apt/keyrings && cat > /etc/apt/keyrings/gitlab-runner-old.asc <<'EOF'\n{key}EOF\n\
         echo 'deb [signed-by=/etc/apt/keyrings/gitlab-runner-old.asc] {u}/gitlab-runner trixie main' > /etc/apt/sources.list.d/gitlab-runner-old.list"
    ));

    let first = apply(&f, &gitlab, &[]);
    assert_eq!(first.code, 0, "first apply:\n{}", first.all());
    assert_eq!(first.recap("deb11").2, 0, "{}", first.all());
    assert_eq!(first.recap("deb13").2, 0, "{}", first.all());

    // Each release's own Docker Engine, running.
    for (h, version) in [(&bullseye, "20.10."), (&trixie, "26.")] {
        assert_eq!(h.read("systemctl is-active docker").trim(), "active", "{}", h.name);
        let v = h.read("docker version --format '{{.Server.Version}}'");
        assert!(v.starts_with(version), "{}: Docker {v}", h.name);
        assert_eq!(h.read("stat -c '%a %U %G' /etc/gitlab-runner/config.toml").trim(), "600 root root");
        assert_eq!(h.read("systemctl is-active gitlab-runner").trim(), "active", "{}", h.name);
        assert!(h.read("id -nG gitlab-runner").split_whitespace().any(|g| g == "docker"), "{}", h.name);
    }
    assert!(trixie.sh("dpkg-query -W docker-cli docker-buildx").status.success(), "trixie's docker.io comes split");
    // gitlab-runner from the repository for trixie, its source in deb822
    // beside the release's own debian.sources.
    let sources = trixie.read("cat /etc/apt/sources.list.d/gitlab-runner.sources");
    assert!(sources.contains(&format!("URIs: {u}/gitlab-runner\n")) && sources.contains("Suites: trixie\n"), "{sources}");
    assert!(trixie.read("cat /etc/apt/sources.list.d/debian.sources").contains("Suites: trixie trixie-updates"));
    assert!(!trixie.sh("test -e /etc/apt/sources.list.d/gitlab-runner-old.list").status.success(), "the one-line source is gone");
    let update = trixie.read("apt-get update 2>&1");
    assert!(!update.contains("configured multiple times"), "{update}");
    assert!(trixie.read("dpkg-query -W -f '${Version}' gitlab-runner").starts_with("17.99.0"));

    // One runner per host in GitLab, its token in the host's config.toml,
    // and the runner (the stand-in, Python 3.9 on bullseye) polling with it.
    let runners = gitlab.runners();
    assert_eq!(runners.len(), 2, "{runners:?}");
    for (name, h) in [("deb11", &bullseye), ("deb13", &trixie)] {
        let r = runners.iter().find(|r| r["description"] == name).unwrap_or_else(|| panic!("no runner {name}: {runners:?}"));
        assert_eq!(r["tag_list"], serde_json::json!(["dockerd"]));
        let token = r["token"].as_str().expect("token");
        assert_eq!(config_tokens(h), vec![token.to_string()], "{name}");
        let id = r["id"].as_u64().expect("id");
        assert!(wait_for_poll(&gitlab, id), "{name}'s runner never polled: {:?}", gitlab.runners());
    }

    // Builds through the socket, the second from the cache: the legacy
    // builder on bullseye, BuildKit (docker-buildx) on trixie.
    let (b1, b2) = build_twice(&bullseye);
    assert!(!b1.contains("Using cache"), "{b1}");
    assert_eq!(b2.matches("Using cache").count(), 2, "bullseye's second build fully cached:\n{b2}");
    let (t1, t2) = build_twice(&trixie);
    assert!(t1.contains("building with") && !t1.contains("CACHED"), "{t1}");
    assert_eq!(t2.matches("CACHED").count(), 2, "trixie's second build fully cached (BuildKit):\n{t2}");

    // Converged: nothing changes, one round trip each.
    let again = apply(&f, &gitlab, &["-v"]);
    assert_eq!(again.code, 0, "{}", again.all());
    for name in ["deb11", "deb13"] {
        assert_eq!(again.recap(name).1, 0, "{}", again.all());
        assert!(again.stdout.contains(&format!("done: [{name}] 1 round trip(s)")), "{}", again.stdout);
    }
    assert_eq!(gitlab.runners().len(), 2);

    // verify: the socket, the service, the token, and builds from a job
    // container with the runner's settings, second one from the cache
    // (the legacy builder's and BuildKit's output both read).
    let v = f.run_env(&["verify", "hosts.yml"], &[("GITLAB_TOKEN", &gitlab.admin_token)]);
    assert_eq!(v.code, 0, "{}", v.all());
    for name in ["deb11", "deb13"] {
        for line in [
            format!("ok: [{name}] Docker answers on /var/run/docker.sock"),
            format!("ok: [{name}] runner token valid in GitLab"),
            format!("ok: [{name}] a job container of runner `{name}` builds twice through the socket, the second time from cache"),
        ] {
            assert!(v.stdout.contains(&line), "`{line}` in:\n{}", v.stdout);
        }
    }
    assert!(!v.stdout.contains("warning:"), "{}", v.stdout);

    // trixie to docker-ce: the split packages go first (docker-buildx holds
    // the same plugin file as docker-buildx-plugin), then the five packages.
    let trixie_ce = format!(
        "      docker_install: docker-ce\n      docker_apt_url: {u}/docker\n      docker_apt_key_url: {u}/docker/gpg\n{}",
        trixie_distro.replace("      docker_install: distro\n", "")
    );
    inventory(&f, &gitlab, &bullseye, &trixie, &trixie_ce);
    let ce = apply(&f, &gitlab, &["-v"]);
    assert_eq!(ce.code, 0, "{}", ce.all());
    assert!(ce.stdout.contains("remove docker.io containerd runc docker-cli docker-buildx"), "{}", ce.stdout);
    assert_eq!(ce.recap("deb11").1, 0, "{}", ce.all());
    let installed = trixie.read("dpkg-query -W -f '${Package} ${Status}\\n' docker-ce containerd.io docker-buildx-plugin");
    assert_eq!(installed.matches("install ok installed").count(), 3, "{installed}");
    assert!(!trixie.sh("dpkg-query -W -f '${Status}' docker-buildx | grep -q 'ok installed'").status.success());
    assert!(trixie.read("cat /etc/apt/sources.list.d/docker.sources").contains("Suites: trixie\n"));
    assert_eq!(trixie.read("systemctl is-active docker").trim(), "active");
    assert_eq!(gitlab.runners().len(), 2);
    let last = apply(&f, &gitlab, &[]);
    assert_eq!(last.code, 0, "{}", last.all());
    assert_eq!(last.recap("deb13").1, 0, "{}", last.all());
    assert_eq!(last.recap("deb11").1, 0, "{}", last.all());
}
