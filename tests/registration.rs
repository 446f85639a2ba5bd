//! Registration against GitLab and gitlab-runner as they really behave,
//! on one real test host, with the stand-ins as harsh as the services:
//! `--replace` among 130 runners of a group whose listing also holds the
//! parent group's and the instance's runners; a creation GitLab did but
//! whose answer was lost (502); expiring tokens written as TOML datetimes;
//! the runner rotating its token and re-encoding config.toml (converged),
//! also between the probe and the write (not overwritten); a config.toml
//! that is not TOML (no second runner); and a restart while a job runs
//! (the apply reports and does not wait for the job).

use serde_json::Value;

use crate::runner::{inventory, upload_distro};
use crate::support::{http, net_up, repo, wait_until, Fixture, GitLab, Run, TestHost};

const NAME: &str = "reg";

fn apply(f: &Fixture, gitlab: &GitLab, args: &[&str]) -> Run {
    let mut all = vec!["apply", "hosts.yml"];
    all.extend_from_slice(args);
    f.run_env(&all, &[("GITLAB_TOKEN", &gitlab.admin_token)])
}

fn create(gitlab: &GitLab, body: &str) -> Value {
    let made = gitlab.api("POST", "user/runners", Some(body));
    serde_json::from_str(&made).unwrap_or_else(|e| panic!("{e}: {made}"))
}

fn config(h: &TestHost) -> toml::Table {
    let text = h.read("cat /etc/gitlab-runner/config.toml");
    toml::from_str(&text).unwrap_or_else(|e| panic!("config.toml is not TOML: {e}\n{text}"))
}

fn entry(conf: &toml::Table) -> toml::Table {
    conf["runners"]
        .as_array()
        .and_then(|a| a.iter().filter_map(|r| r.as_table()).find(|r| r["name"].as_str() == Some(NAME)))
        .cloned()
        .expect("the runner's entry")
}

fn token_of(h: &TestHost) -> String {
    entry(&config(h))["token"].as_str().expect("token").to_string()
}

fn ours(gitlab: &GitLab) -> Vec<Value> {
    gitlab.runners().into_iter().filter(|r| r["description"] == NAME && r["runner_type"] == "group_type" && r["group_id"] == 7).collect()
}

fn deleted_ids(gitlab: &GitLab) -> Vec<u64> {
    gitlab.state()["deleted"].as_array().map(|a| a.iter().filter_map(|d| d["id"].as_u64()).collect()).unwrap_or_default()
}

#[test]
fn registration_holds_against_gitlab_and_gitlab_runner_as_they_behave() {
    net_up();
    let h = TestHost::up();
    // Group 7 in group 3; tokens expire in an hour (rotated by the runner at 45 min, or on SIGUSR1).
    let gitlab = GitLab::start(&["--group", "3", "--group", "7:3", "--token-expires-in", "3600"]);
    let f = Fixture::new();
    f.trust(&[&h]);
    // A runner binary of our own, so a later step can change it (and so restart the runner).
    let binary = f.write("gitlab-runner", &std::fs::read_to_string(repo().join("tests/gitlab/gitlab-runner")).expect("runner stand-in"));
    let distro = upload_distro().replace(&repo().join("tests/gitlab/gitlab-runner").display().to_string(), &binary.display().to_string());
    assert!(distro.contains(&binary.display().to_string()));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let vars = format!("{distro}    runner_type: group_type\n    runner_group_id: 7\n");
    inventory(&f, &[(NAME, &h)], &gitlab, &vars);

    // --replace among 130 runners of group 7, the stale same-named one on page 2;
    // the same name in the parent group and at the instance: not this host's scope.
    for i in 0..130 {
        create(&gitlab, &format!(r#"{{"runner_type": "group_type", "group_id": 7, "description": "other-{i}", "tag_list": ["dockerd"]}}"#));
    }
    let stale =
        create(&gitlab, &format!(r#"{{"runner_type": "group_type", "group_id": 7, "description": "{NAME}", "tag_list": ["dockerd"]}}"#));
    let parent =
        create(&gitlab, &format!(r#"{{"runner_type": "group_type", "group_id": 3, "description": "{NAME}", "tag_list": ["dockerd"]}}"#));
    let instance = create(&gitlab, &format!(r#"{{"runner_type": "instance_type", "description": "{NAME}", "tag_list": ["dockerd"]}}"#));
    let listed = gitlab.api("GET", "groups/7/runners?per_page=100&page=2&tag_list=dockerd", None);
    assert!(
        listed.contains(&format!("\"id\": {}", stale["id"])) || listed.contains(&format!("\"id\":{}", stale["id"])),
        "the stale runner is on page 2: {listed}"
    );
    let first = apply(&f, &gitlab, &["--replace"]);
    assert_eq!(first.code, 0, "first apply:\n{}", first.all());
    assert_eq!(deleted_ids(&gitlab), vec![stale["id"].as_u64().expect("id")], "only the stale runner of the host's own scope is deleted");
    let ids: Vec<u64> = gitlab.runners().iter().filter_map(|r| r["id"].as_u64()).collect();
    for kept in [&parent, &instance] {
        assert!(ids.contains(&kept["id"].as_u64().expect("id")), "{kept} is not this host's: kept");
    }
    let mine = ours(&gitlab);
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(token_of(&h), mine[0]["token"].as_str().expect("token"));

    // An expiring token: config.toml holds GitLab's expiry as a TOML datetime.
    let e = entry(&config(&h));
    let expires = e["token_expires_at"].as_datetime().unwrap_or_else(|| panic!("token_expires_at is a datetime: {e:?}")).to_string();
    let want = mine[0]["token_expires_at"].as_str().expect("an expiry in GitLab");
    assert_eq!(expires.get(..19), want.get(..19), "the expiry GitLab gave");
    assert!(e["token_obtained_at"].is_datetime());

    // A creation GitLab did whose answer was lost: the host's runner is gone
    // in GitLab, the next creation is done and answered 502. Reconciled:
    // exactly one runner in the end, the host holds its token, nothing else deleted.
    let id = mine[0]["id"].as_u64().expect("id");
    gitlab.api("DELETE", &format!("runners/{id}"), None);
    http(
        "POST",
        &format!("{}/_standin/faults", gitlab.url()),
        &[],
        Some(r#"{"method": "POST", "path": "/api/v4/user/runners", "status": 502, "after": true}"#),
    );
    let before = deleted_ids(&gitlab).len();
    let lost = apply(&f, &gitlab, &[]);
    assert_eq!(lost.code, 0, "{}", lost.all());
    assert!(lost.stdout.contains("answer was lost"), "the reconciliation is reported:\n{}", lost.stdout);
    let mine = ours(&gitlab);
    assert_eq!(mine.len(), 1, "exactly one runner: {mine:?}");
    assert_eq!(token_of(&h), mine[0]["token"].as_str().expect("token"), "the host holds the one runner left");
    assert_eq!(deleted_ids(&gitlab).len(), before + 1, "the lost one only");
    let ids: Vec<u64> = gitlab.runners().iter().filter_map(|r| r["id"].as_u64()).collect();
    for kept in [&parent, &instance] {
        assert!(ids.contains(&kept["id"].as_u64().expect("id")), "reconciling never reaches outside the scope: {kept}");
    }

    // The runner rotates its token and saves config.toml its own way:
    // converged (changed=0, check exit 0), the rotated token kept.
    let old = token_of(&h);
    h.read("kill -USR1 $(systemctl show -p MainPID --value gitlab-runner)");
    assert!(wait_until(std::time::Duration::from_secs(30), || token_of(&h) != old), "the runner rotated its token");
    let text = h.read("cat /etc/gitlab-runner/config.toml");
    assert!(
        text.contains("connection_max_age") && text.contains("[runners.custom_build_dir]") && !text.contains("# "),
        "re-encoded:\n{text}"
    );
    let rotated = token_of(&h);
    let again = apply(&f, &gitlab, &[]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(again.recap(NAME).1, 0, "a file gitlab-runner re-encoded is converged:\n{}", again.all());
    let check = f.run_env(&["check", "hosts.yml"], &[("GITLAB_TOKEN", &gitlab.admin_token)]);
    assert_eq!(check.code, 0, "{}", check.all());
    assert_eq!(token_of(&h), rotated);
    assert_eq!(ours(&gitlab).len(), 1);

    // A rotation between the probe and the write: never overwritten.
    let book = std::fs::read_to_string(repo().join("playbooks/gitlab-runner.yml")).expect("playbook");
    let marker = "    - name: runner registered in GitLab, config.toml\n";
    assert!(book.contains(marker), "the playbook's config.toml task");
    let inject = format!(
        "    - name: the runner saves a rotated token now\n      shell: \"kill -USR1 $(systemctl show -p MainPID --value gitlab-runner); for i in $(seq 300); do grep -q {rotated} /etc/gitlab-runner/config.toml || exit 0; sleep 0.1; done; exit 1\"\n{marker}"
    );
    f.write("rotating.yml", &book.replacen(marker, &inject, 1));
    let raced = apply(&f, &gitlab, &["--playbook", "rotating.yml", "-e", "runner_concurrent=3"]);
    assert_eq!(raced.code, 2, "{}", raced.all());
    assert!(raced.all().contains("not overwritten"), "{}", raced.all());
    let now = token_of(&h);
    assert_ne!(now, rotated, "the runner's save stands");
    assert_eq!(config(&h)["concurrent"].as_integer(), Some(2));
    assert!(!raced.all().contains(&now), "tokens stay masked");
    let converge = apply(&f, &gitlab, &["-e", "runner_concurrent=3"]);
    assert_eq!(converge.code, 0, "{}", converge.all());
    assert_eq!(config(&h)["concurrent"].as_integer(), Some(3));
    assert_eq!(token_of(&h), now, "the rotated token is kept");
    assert_eq!(ours(&gitlab).len(), 1);

    // A config.toml that is not TOML: the host fails, nothing is registered, the file stays.
    let count = gitlab.runners().len();
    h.read("cp /etc/gitlab-runner/config.toml /root/config.good; echo 'concurrent = [' >> /etc/gitlab-runner/config.toml");
    let broken = apply(&f, &gitlab, &["-e", "runner_concurrent=3"]);
    assert_eq!(broken.code, 2, "{}", broken.all());
    assert!(broken.stdout.contains("is not valid TOML") && broken.stdout.contains("--replace"), "{}", broken.stdout);
    assert_eq!(gitlab.runners().len(), count, "no second runner");
    assert!(h.read("tail -n1 /etc/gitlab-runner/config.toml").contains("concurrent = ["), "left as it was");
    h.read("cp /root/config.good /etc/gitlab-runner/config.toml");

    // Pending tokens. The host's runner is gone in GitLab and the controller
    // holds a stale pending token (its runner's token was reset since): that
    // runner is deleted in GitLab, a new one made; its pending token goes as
    // soon as config.toml holds it, although a later task fails.
    let id = ours(&gitlab)[0]["id"].as_u64().expect("id");
    gitlab.api("DELETE", &format!("runners/{id}"), None);
    let y =
        create(&gitlab, &format!(r#"{{"runner_type": "group_type", "group_id": 7, "description": "{NAME}", "tag_list": ["dockerd"]}}"#));
    let y_old = y["token"].as_str().expect("token").to_string();
    http("POST", &format!("{}/api/v4/runners/reset_authentication_token", gitlab.url()), &[], Some(&format!(r#"{{"token": "{y_old}"}}"#)));
    let pending = f.dir.join(".local/state/bootstrap/pending-runners");
    std::fs::create_dir_all(&pending).expect("pending dir");
    let key = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(format!("{}\n{NAME}\n{NAME}", gitlab.url().trim_end_matches('/')).as_bytes()))
    };
    std::fs::write(
        pending.join(format!("{}.json", &key[..32])),
        format!(r#"{{"id": {}, "token": "{y_old}", "token_expires_at": null, "token_obtained_at": "2026-01-01T00:00:00Z"}}"#, y["id"]),
    )
    .expect("pending file");
    let later = "    - name: gitlab-runner enabled and running\n";
    assert!(book.contains(later));
    f.write("failing.yml", &book.replacen(later, &format!("    - name: a later task fails\n      command: /bin/false\n{later}"), 1));
    let failing = apply(&f, &gitlab, &["--playbook", "failing.yml", "-e", "runner_concurrent=3"]);
    assert_eq!(failing.code, 2, "{}", failing.all());
    assert!(deleted_ids(&gitlab).contains(&y["id"].as_u64().expect("id")), "the stale pending runner is deleted in GitLab");
    let mine = ours(&gitlab);
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(token_of(&h), mine[0]["token"].as_str().expect("token"));
    let left: Vec<_> = std::fs::read_dir(&pending).expect("pending dir").collect();
    assert!(left.is_empty(), "the host holds its runner: no pending token left ({left:?})");

    // A restart while a job runs: queued, reported, the apply does not wait for the job.
    h.read("touch /run/gitlab-runner-standin-job");
    let pid = h.read("systemctl show -p MainPID --value gitlab-runner").trim().to_string();
    std::fs::write(&binary, format!("{}\n# changed\n", std::fs::read_to_string(&binary).expect("binary"))).expect("write binary");
    let restart = apply(&f, &gitlab, &["-v", "-e", "runner_concurrent=3"]);
    assert_eq!(restart.code, 0, "{}", restart.all());
    assert!(
        restart.stdout.contains("still stopping") && restart.stdout.contains("queued"),
        "the queued restart is reported:\n{}",
        restart.stdout
    );
    assert_eq!(h.read("systemctl show -p MainPID --value gitlab-runner").trim(), pid, "the runner still finishes its job");
    h.read("rm -f /run/gitlab-runner-standin-job");
    let restarted = wait_until(std::time::Duration::from_secs(60), || {
        let now = h.read("systemctl show -p MainPID,ActiveState --value gitlab-runner");
        let mut l = now.lines();
        let (p, st) = (l.next().unwrap_or(""), l.next().unwrap_or(""));
        p != pid && p != "0" && st == "active"
    });
    assert!(restarted, "once the job ended, the runner restarted");
    assert_eq!(ours(&gitlab).len(), 1);
}
