//! The runner playbook (built in) on real test hosts, against the GitLab
//! stand-in (tests/gitlab/standin.py) and the gitlab-runner stand-in
//! (tests/gitlab/gitlab-runner), with the real Docker Engine from the
//! package mirror.

use std::time::{Duration, Instant};

use crate::support::{net_up, repo, Fixture, GitLab, Run, TestHost};

/// An inventory for the runner playbook.
pub(crate) fn inventory(f: &Fixture, hosts: &[(&str, &TestHost)], gitlab: &GitLab, extra: &str) {
    let mut s = format!(
        "all:\n  vars:\n    ansible_user: deploy\n    ansible_become: true\n    ansible_ssh_private_key_file: {}\n    gitlab_url: {}\n    runner_concurrent: 2\n{extra}  hosts:\n",
        crate::support::key().display(),
        gitlab.url()
    );
    for (name, h) in hosts {
        s.push_str(&format!("    {name}:\n      ansible_host: {}\n", h.address));
    }
    f.write("hosts.yml", &s);
}

pub(crate) fn upload_distro() -> String {
    format!(
        "    docker_install: distro\n    gitlab_runner_install: upload\n    gitlab_runner_binary: {}\n",
        repo().join("tests/gitlab/gitlab-runner").display()
    )
}

/// Wait until the stand-in saw the runner `id` poll for jobs.
pub(crate) fn wait_for_poll(gitlab: &GitLab, id: u64) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let polled = gitlab.runners().iter().any(|r| r["id"].as_u64() == Some(id) && r["contacts"].as_u64().unwrap_or(0) > 0);
        if polled {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    false
}

pub(crate) fn apply(f: &Fixture, gitlab: &GitLab, args: &[&str]) -> Run {
    let mut all = vec!["apply", "hosts.yml"];
    all.extend_from_slice(args);
    f.run_env(&all, &[("GITLAB_TOKEN", &gitlab.admin_token)])
}

pub(crate) fn config_token(h: &TestHost) -> String {
    h.read("python3 -c \"import tomllib; print(tomllib.load(open('/etc/gitlab-runner/config.toml','rb'))['runners'][0]['token'])\"")
        .trim()
        .to_string()
}

#[test]
fn bare_debian_becomes_a_runner_host_registered_once() {
    net_up();
    let h = TestHost::up();
    let gitlab = GitLab::start(&[]);
    let f = Fixture::new();
    f.trust(&[&h]);
    inventory(&f, &[("runner-1", &h)], &gitlab, &upload_distro());

    let first = apply(&f, &gitlab, &[]);
    assert_eq!(first.code, 0, "first apply:\n{}", first.all());
    assert!(first.stderr.contains("root on its host"), "the security reminder is shown:\n{}", first.stderr);

    // Docker Engine, installed by the tool, running.
    assert_eq!(h.read("systemctl is-active docker").trim(), "active");
    assert!(h.read("cat /etc/docker/daemon.json").contains("\"max-size\": \"10m\""));
    // Exactly one runner, as asked.
    let runners = gitlab.runners();
    assert_eq!(runners.len(), 1, "{runners:?}");
    let r = &runners[0];
    assert_eq!(r["description"], "runner-1");
    assert_eq!(r["tag_list"], serde_json::json!(["dockerd"]));
    assert_eq!(r["run_untagged"], false);
    assert_eq!(r["locked"], true);
    let id = r["id"].as_u64().expect("id");
    let token = r["token"].as_str().expect("token").to_string();
    assert!(token.starts_with("glrt-"));
    // config.toml: valid TOML, private, the socket mounted, the runner's token.
    assert_eq!(h.read("stat -c '%a %U %G' /etc/gitlab-runner/config.toml").trim(), "600 root root");
    assert_eq!(config_token(&h), token);
    let conf = h.read(
        "python3 -c \"import tomllib,json; print(json.dumps(tomllib.load(open('/etc/gitlab-runner/config.toml','rb')), default=str))\"",
    );
    let conf: serde_json::Value = serde_json::from_str(&conf).expect("config.toml is TOML");
    assert_eq!(conf["concurrent"], 2);
    let runner = &conf["runners"][0];
    assert_eq!(runner["executor"], "docker");
    assert_eq!(runner["id"], id);
    assert_eq!(runner["docker"]["privileged"], false);
    let volumes: Vec<&str> = runner["docker"]["volumes"].as_array().expect("volumes").iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(volumes, vec!["/var/run/docker.sock:/var/run/docker.sock", "/cache:/cache", "/builds:/builds"]);
    // The runner (stand-in) polls GitLab with that token.
    assert_eq!(h.read("systemctl is-active gitlab-runner").trim(), "active");
    assert!(wait_for_poll(&gitlab, id), "the runner never polled /jobs/request: {:?}", gitlab.runners());
    assert!(h.read("id -nG gitlab-runner").split_whitespace().any(|g| g == "docker"));

    // Jobs share the host's Docker daemon: a build through the socket, twice;
    // the second is all cache. The base image is imported, no registry.
    h.read(
        "set -e; r=$(mktemp -d); mkdir -p $r/bin $r/lib/x86_64-linux-gnu $r/lib64; cp /usr/bin/dash $r/bin/sh; \
         cp /lib/x86_64-linux-gnu/libc.so.6 $r/lib/x86_64-linux-gnu/; cp /lib64/ld-linux-x86-64.so.2 $r/lib64/; \
         tar -C $r -c . | docker -H unix:///var/run/docker.sock import - bootstrap-test/base:1 >/dev/null; \
         mkdir -p /tmp/ctx; printf 'FROM bootstrap-test/base:1\\nRUN echo one > /one\\nRUN echo two > /two\\n' > /tmp/ctx/Dockerfile",
    );
    let build1 = h.read("docker -H unix:///var/run/docker.sock build -t bootstrap-test/app /tmp/ctx 2>&1");
    assert!(!build1.contains("Using cache"), "{build1}");
    let build2 = h.read("docker -H unix:///var/run/docker.sock build -t bootstrap-test/app /tmp/ctx 2>&1");
    assert_eq!(build2.matches("Using cache").count(), 2, "second build fully cached:\n{build2}");

    // Converged: nothing changes, still one runner.
    let second = apply(&f, &gitlab, &["-v"]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(second.recap("runner-1").1, 0, "{}", second.all());
    assert!(second.stdout.contains("done: [runner-1] 1 round trip(s)"), "{}", second.stdout);
    assert_eq!(gitlab.runners().len(), 1);

    // Edited by hand: put back, same token.
    h.read("sed -i 's/^concurrent = 2/concurrent = 9/' /etc/gitlab-runner/config.toml");
    let third = apply(&f, &gitlab, &["--diff"]);
    assert_eq!(third.code, 0, "{}", third.all());
    assert_eq!(third.recap("runner-1").1, 1, "{}", third.all());
    assert!(third.stdout.contains("-concurrent = 9") && third.stdout.contains("+concurrent = 2"), "{}", third.stdout);
    assert_eq!(config_token(&h), token);
    assert!(!third.all().contains(&token), "the token leaked in --diff:\n{}", third.all());
    assert_eq!(gitlab.runners().len(), 1);

    // The runner rotates its token itself: kept, not "restored".
    let rotated = crate::support::http(
        "POST",
        &format!("{}/api/v4/runners/reset_authentication_token", gitlab.url()),
        &[],
        Some(&format!("{{\"token\": \"{token}\"}}")),
    );
    let new_token = serde_json::from_str::<serde_json::Value>(&rotated).expect("json")["token"].as_str().expect("token").to_string();
    h.read(&format!("sed -i 's/{token}/{new_token}/' /etc/gitlab-runner/config.toml"));
    let fourth = apply(&f, &gitlab, &[]);
    assert_eq!(fourth.code, 0, "{}", fourth.all());
    assert_eq!(fourth.recap("runner-1").1, 0, "a rotated token is the runner's business:\n{}", fourth.all());
    assert_eq!(config_token(&h), new_token);
    assert_eq!(gitlab.runners().len(), 1);

    // Deleted in GitLab: re-created on the next apply, still one.
    gitlab.api("DELETE", &format!("runners/{id}"), None);
    assert_eq!(gitlab.runners().len(), 0);
    let fifth = apply(&f, &gitlab, &["-vvv", "--diff"]);
    assert_eq!(fifth.code, 0, "{}", fifth.all());
    let runners = gitlab.runners();
    assert_eq!(runners.len(), 1, "{runners:?}");
    let token3 = runners[0]["token"].as_str().expect("token").to_string();
    assert_eq!(config_token(&h), token3);
    for secret in [&token, &new_token, &token3, &gitlab.admin_token] {
        assert!(!fifth.all().contains(secret.as_str()), "a secret leaked at -vvv --diff:\n{}", fifth.all());
    }
    let json = apply(&f, &gitlab, &["--output", "json", "--diff", "-vvv"]);
    // A run that died early would have had nothing to leak: it must have
    // gone through (converged, the probe read the token from the host).
    assert_eq!(json.code, 0, "{}", json.all());
    assert_eq!(json.stdout.lines().last().map(|l| l.contains("\"event\":\"recap\"")), Some(true), "{}", json.all());
    for secret in [&token3, &gitlab.admin_token] {
        assert!(!json.all().contains(secret.as_str()), "a secret leaked in JSON at -vvv --diff:\n{}", json.all());
    }
}

#[test]
fn check_mode_on_a_fresh_host_registers_nobody_and_changes_nothing() {
    let h = TestHost::up();
    let gitlab = GitLab::start(&[]);
    let f = Fixture::new();
    f.trust(&[&h]);
    inventory(&f, &[("fresh", &h)], &gitlab, &upload_distro());
    let snapshot = "find /etc /usr /home -xdev -printf '%p %T@ %C@ %m\\n' 2>/dev/null | sort | sha256sum";
    let before = h.read(snapshot);
    let r = apply(&f, &gitlab, &["--check"]);
    assert_eq!(r.code, 0, "{}", r.all());
    for planned in [
        "install docker.io",
        "create user gitlab-runner",
        "create /usr/local/bin/gitlab-runner",
        "register runner `fresh` in GitLab",
        "create /etc/gitlab-runner/config.toml",
    ] {
        assert!(r.stdout.contains(planned), "`{planned}` planned:\n{}", r.stdout);
    }
    assert_eq!(h.read(snapshot), before, "--check changed the host");
    assert!(gitlab.runners().is_empty(), "--check registered a runner");
}

#[test]
fn gitlab_refusals_fail_the_host_before_any_change() {
    let h = TestHost::up();
    let gitlab = GitLab::start(&["--legacy-disabled", "--registration-token", "glrtr-legacy-secret"]);
    let f = Fixture::new();
    f.trust(&[&h]);
    inventory(&f, &[("r", &h)], &gitlab, &upload_distro());
    let snapshot = "find /etc /usr /home -xdev -printf '%p %T@ %C@ %m\\n' 2>/dev/null | sort | sha256sum";
    let before = h.read(snapshot);
    // A wrong token: 401, named, nothing changed.
    let r = f.run_env(&["apply", "hosts.yml"], &[("GITLAB_TOKEN", "glpat-wrong-token-value")]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stdout.contains("HTTP 401") && r.stdout.contains("GITLAB_TOKEN") && r.stdout.contains("nothing was changed"), "{}", r.stdout);
    assert!(!r.all().contains("glpat-wrong-token-value"));
    // Legacy registration disabled: 410, and what to use instead.
    inventory(&f, &[("r", &h)], &gitlab, &format!("{}    runner_registration: legacy\n", upload_distro()));
    let r = f.run_env(&["apply", "hosts.yml"], &[("GITLAB_REGISTRATION_TOKEN", "glrtr-legacy-secret")]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stdout.contains("410 Gone") && r.stdout.contains("runner_registration: api"), "{}", r.stdout);
    assert!(!r.all().contains("glrtr-legacy-secret"));
    // A missing secret: bad input, nobody contacted.
    let r = f.run(&["apply", "hosts.yml"]);
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(r.stderr.contains("GITLAB_REGISTRATION_TOKEN is not set"), "{}", r.stderr);
    assert_eq!(h.read(snapshot), before);
    assert!(gitlab.runners().is_empty());
}

#[test]
fn unsupported_system_is_refused_before_any_change() {
    let h = TestHost::up();
    let gitlab = GitLab::start(&[]);
    let f = Fixture::new();
    f.trust(&[&h]);
    inventory(&f, &[("old", &h)], &gitlab, &upload_distro());
    h.read("sed -i -e 's/^ID=.*/ID=ubuntu/' -e 's/^VERSION_ID=.*/VERSION_ID=\"20.04\"/' -e 's/^VERSION_CODENAME=.*/VERSION_CODENAME=focal/' /usr/lib/os-release");
    let snapshot = "find /etc /usr /home -xdev -printf '%p %T@ %C@ %m\\n' 2>/dev/null | sort | sha256sum";
    let before = h.read(snapshot);
    let r = apply(&f, &gitlab, &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stdout.contains("unsupported system Ubuntu 20.04"), "{}", r.stdout);
    assert_eq!(h.read(snapshot), before);
    assert!(gitlab.runners().is_empty(), "no runner for an unsupported host");
}

#[test]
fn custom_template_must_render_valid_toml() {
    // A config.toml.j2 in the current folder overrides the built-in one;
    // one that renders broken TOML is refused before any connection.
    let f = Fixture::new();
    f.write("templates/config.toml.j2", "check_interval = {{ runner_check_interval }}\n[[runners]\n");
    f.write(
        "hosts.yml",
        "all:\n  vars:\n    gitlab_url: https://gitlab.example.invalid\n    docker_install: distro\n    gitlab_runner_install: upload\n    gitlab_runner_binary: /etc/hostname\n  hosts:\n    h: {ansible_host: 127.0.0.1, ansible_port: 9}\n",
    );
    let r = f.run_env(&["apply", "hosts.yml"], &[("GITLAB_TOKEN", "glpat-x")]);
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(r.stderr.contains("does not render to valid TOML"), "{}", r.stderr);
}

#[test]
fn docker_ce_and_gitlab_runner_from_signed_apt_repositories() {
    net_up();
    let h = TestHost::up();
    let gitlab = GitLab::start(&[]);
    let repos = crate::support::apt_repos();
    let f = Fixture::new();
    f.trust(&[&h]);
    let u = &repos.url;
    let vars = format!(
        "    docker_apt_url: {u}/docker\n    docker_apt_key_url: {u}/docker/gpg\n    gitlab_runner_apt_url: {u}/gitlab-runner\n    gitlab_runner_apt_key_url: {u}/gitlab-runner/gpg\n    gitlab_runner_version: 17.98.0-1\n"
    );
    inventory(&f, &[("aptrunner", &h)], &gitlab, &vars);
    // A legacy one-line source for the same URL, as a mixed install leaves it.
    h.read(&format!("echo 'deb {u}/docker bookworm stable' > /etc/apt/sources.list.d/docker-old.list"));

    let r = apply(&f, &gitlab, &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let sources = h.read("cat /etc/apt/sources.list.d/docker.sources");
    assert!(sources.contains(&format!("URIs: {u}/docker\n")) && sources.contains("Suites: bookworm\n"), "{sources}");
    assert!(sources.contains("Signed-By: /etc/apt/keyrings/docker.asc\n"), "{sources}");
    assert!(h.read("head -1 /etc/apt/keyrings/docker.asc").contains("BEGIN PGP PUBLIC KEY BLOCK"));
    assert!(!h.sh("test -e /etc/apt/sources.list.d/docker-old.list").status.success(), "the legacy .list is removed");
    let installed =
        h.read("dpkg-query -W -f '${Package}=${Version} ${Status}\\n' docker-ce containerd.io gitlab-runner gitlab-runner-helper-images");
    for want in [
        "gitlab-runner=17.98.0-1 install ok installed",
        "gitlab-runner-helper-images=17.98.0-1 install ok installed",
        "docker-ce=",
        "containerd.io=",
    ] {
        assert!(installed.contains(want), "`{want}` in:\n{installed}");
    }
    assert_eq!(h.read("systemctl is-active docker").trim(), "active");
    assert_eq!(h.read("systemctl is-active gitlab-runner").trim(), "active");
    assert_eq!(gitlab.runners().len(), 1);

    let again = apply(&f, &gitlab, &[]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(again.recap("aptrunner").1, 0, "{}", again.all());

    // A new pin moves both packages in one apt transaction (their exact
    // Depends allows nothing else).
    inventory(&f, &[("aptrunner", &h)], &gitlab, &vars.replace("17.98.0-1", "17.99.0-1"));
    let up = apply(&f, &gitlab, &["-v"]);
    assert_eq!(up.code, 0, "{}", up.all());
    assert!(up.stdout.contains("install gitlab-runner=17.99.0-1 gitlab-runner-helper-images=17.99.0-1"), "{}", up.stdout);
    let installed = h.read("dpkg-query -W -f '${Package}=${Version}\\n' gitlab-runner gitlab-runner-helper-images");
    assert_eq!(installed, "gitlab-runner=17.99.0-1\ngitlab-runner-helper-images=17.99.0-1\n");
    assert_eq!(gitlab.runners().len(), 1);
}

#[test]
fn apt_state_latest_upgrades_to_the_repositorys_newest_and_then_holds() {
    net_up();
    let h = TestHost::up();
    let repos = crate::support::apt_repos();
    let f = Fixture::new();
    f.trust(&[&h]);
    f.inventory(&[("latest", &h.address)], "deploy", "ansible_become: yes");
    let u = &repos.url;
    let playbook = |packages: &str, state: &str| {
        format!(
            "- hosts: all\n  tasks:\n    - name: runner repository\n      apt_repository:\n        name: gitlab-runner\n        uris: {u}/gitlab-runner\n        components: main\n        key_url: {u}/gitlab-runner/gpg\n    - name: runner packages\n      apt:\n        name: {packages}\n        state: {state}\n        update_cache: yes\n        cache_valid_time: 3600\n"
        )
    };
    let installed = || h.read("dpkg-query -W -f '${Package}=${Version}\\n' gitlab-runner gitlab-runner-helper-images");
    // The older one first, pinned.
    f.write("site.yml", &playbook("[gitlab-runner=17.98.0-1, gitlab-runner-helper-images=17.98.0-1]", "present"));
    let old = f.run(&["apply", "hosts.yml", "-p", "site.yml"]);
    assert_eq!(old.code, 0, "{}", old.all());
    assert_eq!(installed(), "gitlab-runner=17.98.0-1\ngitlab-runner-helper-images=17.98.0-1\n");
    // present keeps it; latest upgrades both to the repository's newest, once.
    f.write("site.yml", &playbook("[gitlab-runner, gitlab-runner-helper-images]", "present"));
    let present = f.run(&["apply", "hosts.yml", "-p", "site.yml"]);
    assert_eq!(present.recap("latest").1, 0, "present does not upgrade:\n{}", present.all());
    f.write("site.yml", &playbook("[gitlab-runner, gitlab-runner-helper-images]", "latest"));
    let up = f.run(&["apply", "hosts.yml", "-p", "site.yml", "-v"]);
    assert_eq!(up.code, 0, "{}", up.all());
    assert_eq!(installed(), "gitlab-runner=17.99.0-1\ngitlab-runner-helper-images=17.99.0-1\n", "{}", up.all());
    let again = f.run(&["apply", "hosts.yml", "-p", "site.yml"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(again.recap("latest").1, 0, "at the newest: nothing to do:\n{}", again.all());
}
