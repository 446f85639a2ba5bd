//! Several runners on one host (`runners`), against the GitLab stand-in and
//! the runner stand-in on a real test host: config.toml modelled by name,
//! a runner registered by hand left alone, `state: absent`, a token from the
//! inventory; and bad entries refused before any connection.

use crate::runner::{apply, inventory, upload_distro};
use crate::support::{net_up, Fixture, GitLab, TestHost};

/// The host's config.toml, parsed.
fn config(h: &TestHost) -> toml::Table {
    let text = h.read("cat /etc/gitlab-runner/config.toml");
    toml::from_str(&text).unwrap_or_else(|e| panic!("config.toml is not TOML: {e}\n{text}"))
}

fn entry<'a>(conf: &'a toml::Table, name: &str) -> Option<&'a toml::Table> {
    conf.get("runners")?.as_array()?.iter().filter_map(|r| r.as_table()).find(|r| r.get("name").and_then(|n| n.as_str()) == Some(name))
}

fn names(conf: &toml::Table) -> Vec<String> {
    conf.get("runners")
        .and_then(|r| r.as_array())
        .map(|a| a.iter().filter_map(|r| r.get("name").and_then(|n| n.as_str()).map(str::to_string)).collect())
        .unwrap_or_default()
}

fn strings(v: Option<&toml::Value>) -> Vec<String> {
    v.and_then(|v| v.as_array()).map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// The socket runner and a dind runner, dind present or absent; `more`
/// adds entries (8 spaces of indentation).
fn vars(dind_state: &str, more: &str) -> String {
    format!(
        "{}    runner_listen_address: ':9252'\n    runners:\n      - name: sock\n        tags: [dockerd]\n      - name: dind\n        tags: [dind, docker]\n        state: {dind_state}\n        socket: false\n        run_untagged: true\n        docker:\n          privileged: true\n          volumes: [/certs/client]\n          memory: 2g\n          dns: [192.0.2.53]\n        cache:\n          Type: s3\n          Shared: true\n          s3: {{ServerAddress: s3.example.com, BucketName: runner-cache}}\n{more}",
        upload_distro()
    )
}

fn gitlab_runner(gitlab: &GitLab, name: &str) -> Option<serde_json::Value> {
    gitlab.runners().into_iter().find(|r| r["description"] == name)
}

#[test]
fn several_runners_on_a_host_by_name_with_one_by_hand_and_one_dropped() {
    net_up();
    let h = TestHost::up();
    let gitlab = GitLab::start(&[]);
    let f = Fixture::new();
    f.trust(&[&h]);
    inventory(&f, &[("multi", &h)], &gitlab, &vars("present", ""));

    let first = apply(&f, &gitlab, &[]);
    assert_eq!(first.code, 0, "first apply:\n{}", first.all());
    // Both registered, with their own tags and settings.
    assert_eq!(gitlab.runners().len(), 2, "{:?}", gitlab.runners());
    let sock = gitlab_runner(&gitlab, "sock").expect("sock in GitLab");
    let dind = gitlab_runner(&gitlab, "dind").expect("dind in GitLab");
    assert_eq!(sock["tag_list"], serde_json::json!(["dockerd"]));
    assert_eq!(sock["run_untagged"], false);
    assert_eq!(dind["tag_list"], serde_json::json!(["dind", "docker"]));
    assert_eq!(dind["run_untagged"], true);
    let sock_token = sock["token"].as_str().expect("token").to_string();
    let dind_token = dind["token"].as_str().expect("token").to_string();

    // config.toml as asked, key by key.
    let conf = config(&h);
    assert_eq!(conf["concurrent"].as_integer(), Some(2));
    assert_eq!(conf["listen_address"].as_str(), Some(":9252"));
    assert_eq!(names(&conf), vec!["sock", "dind"]);
    let s = entry(&conf, "sock").expect("sock entry");
    assert_eq!(s["token"].as_str(), Some(sock_token.as_str()));
    assert_eq!(s["id"].as_integer(), sock["id"].as_i64());
    assert_eq!(s["url"].as_str(), Some(gitlab.url()));
    assert_eq!(s["executor"].as_str(), Some("docker"));
    assert_eq!(s["builds_dir"].as_str(), Some("/builds"));
    assert_eq!(s["docker"]["privileged"].as_bool(), Some(false));
    assert_eq!(strings(s["docker"].get("volumes")), vec!["/var/run/docker.sock:/var/run/docker.sock", "/cache:/cache", "/builds:/builds"]);
    let d = entry(&conf, "dind").expect("dind entry");
    assert_eq!(d["token"].as_str(), Some(dind_token.as_str()));
    assert!(d.get("builds_dir").is_none(), "a plain docker runner shares no host folders: {d:?}");
    let dd = d["docker"].as_table().expect("[runners.docker]");
    assert_eq!(dd["privileged"].as_bool(), Some(true));
    assert_eq!(dd["memory"].as_str(), Some("2g"));
    assert_eq!(strings(dd.get("dns")), vec!["192.0.2.53"]);
    assert_eq!(strings(dd.get("volumes")), vec!["/certs/client"], "no socket for dind");
    assert_eq!(d["cache"]["Type"].as_str(), Some("s3"));
    assert_eq!(d["cache"]["Shared"].as_bool(), Some(true));
    assert_eq!(d["cache"]["s3"]["BucketName"].as_str(), Some("runner-cache"));
    // The runner stand-in polls with both tokens.
    for r in [&sock, &dind] {
        let id = r["id"].as_u64().expect("id");
        assert!(crate::runner::wait_for_poll(&gitlab, id), "runner {id} never polled: {:?}", gitlab.runners());
    }

    // Converged.
    let again = apply(&f, &gitlab, &[]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(again.recap("multi").1, 0, "re-apply changes nothing:\n{}", again.all());
    assert_eq!(gitlab.runners().len(), 2);

    // A runner registered by hand in config.toml survives applies.
    let made = gitlab.api("POST", "user/runners", Some("{\"runner_type\": \"instance_type\", \"description\": \"by-hand\"}"));
    let hand_token = serde_json::from_str::<serde_json::Value>(&made).expect("json")["token"].as_str().expect("token").to_string();
    h.read(&format!(
        "printf '\\n[[runners]]\\n  name = \"by-hand\"\\n  url = \"{}\"\\n  token = \"{hand_token}\"\\n  executor = \"shell\"\\n' >> /etc/gitlab-runner/config.toml",
        gitlab.url()
    ));
    let with_hand = apply(&f, &gitlab, &["--diff", "-v"]);
    assert_eq!(with_hand.code, 0, "{}", with_hand.all());
    let conf = config(&h);
    assert_eq!(names(&conf), vec!["sock", "dind", "by-hand"]);
    assert_eq!(entry(&conf, "by-hand").and_then(|r| r["executor"].as_str()), Some("shell"));
    assert_eq!(entry(&conf, "by-hand").and_then(|r| r["token"].as_str()), Some(hand_token.as_str()));
    assert!(!with_hand.all().contains(&hand_token), "a token by hand is a secret too:\n{}", with_hand.all());
    assert!(
        with_hand
            .stdout
            .contains("note: [multi] /etc/gitlab-runner/config.toml: runners not managed by bootstrap, left as they are: by-hand"),
        "-v lists the unmanaged runner:\n{}",
        with_hand.stdout
    );
    let settled = apply(&f, &gitlab, &[]);
    assert_eq!(settled.recap("multi").1, 0, "{}", settled.all());
    let json = apply(&f, &gitlab, &["--output", "json"]);
    assert!(
        json.stdout.lines().any(|l| l.contains("\"event\":\"note\"") && l.contains("\"host\":\"multi\"") && l.contains("by-hand")),
        "a note event names the unmanaged runner:\n{}",
        json.stdout
    );

    // dind absent: gone in GitLab and config.toml; the others untouched.
    inventory(&f, &[("multi", &h)], &gitlab, &vars("absent", ""));
    let dropped = apply(&f, &gitlab, &[]);
    assert_eq!(dropped.code, 0, "{}", dropped.all());
    assert!(gitlab_runner(&gitlab, "dind").is_none(), "dind still in GitLab: {:?}", gitlab.runners());
    assert!(gitlab_runner(&gitlab, "sock").is_some() && gitlab_runner(&gitlab, "by-hand").is_some());
    let conf = config(&h);
    assert_eq!(names(&conf), vec!["sock", "by-hand"]);
    assert_eq!(entry(&conf, "sock").and_then(|r| r["token"].as_str()), Some(sock_token.as_str()), "sock keeps its token");
    let twice = apply(&f, &gitlab, &[]);
    assert_eq!(twice.recap("multi").1, 0, "absent twice is nothing to do:\n{}", twice.all());

    // A token of the host's own from the inventory: no runner is created.
    let made = gitlab.api("POST", "user/runners", Some("{\"runner_type\": \"instance_type\", \"description\": \"given\"}"));
    let given = serde_json::from_str::<serde_json::Value>(&made).expect("json")["token"].as_str().expect("token").to_string();
    let before = gitlab.runners().len();
    inventory(&f, &[("multi", &h)], &gitlab, &vars("absent", &format!("      - name: given\n        token: {given}\n")));
    let with_token = apply(&f, &gitlab, &["-vvv", "--diff"]);
    assert_eq!(with_token.code, 0, "{}", with_token.all());
    assert_eq!(gitlab.runners().len(), before, "no runner created for a given token");
    assert_eq!(entry(&config(&h), "given").and_then(|r| r["token"].as_str()), Some(given.as_str()));
    assert!(!with_token.all().contains(&given), "the inventory's token leaked:\n{}", with_token.all());

    // Decommission: every runner of the host goes, the one by hand stays.
    let gone = f.run_env(&["unregister", "hosts.yml"], &[("GITLAB_TOKEN", &gitlab.admin_token)]);
    assert_eq!(gone.code, 0, "{}", gone.all());
    assert!(gitlab_runner(&gitlab, "sock").is_none() && gitlab_runner(&gitlab, "given").is_none(), "{:?}", gitlab.runners());
    assert!(gitlab_runner(&gitlab, "by-hand").is_some(), "not bootstrap's to delete");
    assert_eq!(names(&config(&h)), vec!["by-hand"]);
}

#[test]
fn bad_runner_entries_exit_5_naming_file_line_and_field() {
    let f = Fixture::new();
    let cases = [
        ("      - name: b\n        docker: {memory: lots}\n", "runners[1].docker.memory", "not a size"),
        ("      - name: b\n        executor: shell\n", "runners[1].executor", "docker executor"),
        ("      - name: a\n", "runners[1].name", "also the name of runners[0]"),
    ];
    for (second, field, words) in cases {
        f.write(
            "hosts.yml",
            &format!(
                "all:\n  vars:\n    gitlab_url: https://gitlab.example.invalid\n    docker_install: distro\n    gitlab_runner_install: upload\n    gitlab_runner_binary: /etc/hostname\n    runners:\n      - name: a\n{second}  hosts:\n    h: {{ansible_host: 127.0.0.1, ansible_port: 9}}\n"
            ),
        );
        let r = f.run_env(&["apply", "hosts.yml"], &[("GITLAB_TOKEN", "glpat-x")]);
        assert_eq!(r.code, 5, "{second}: {}", r.all());
        assert!(r.stderr.contains(&format!("hosts.yml:7:5: `all.vars.{field}`")), "{second}: file, line, field:\n{}", r.stderr);
        assert!(r.stderr.contains(words), "{second}:\n{}", r.stderr);
        assert!(r.stderr.contains("nothing was contacted"), "{}", r.stderr);
    }
}

/// `plaintext` encrypted as `ansible-vault encrypt_string` does (AES256,
/// vault 1.1), for a `!vault |` value.
fn vault_encrypt(plaintext: &str, password: &str) -> String {
    use aes::cipher::{KeyIvInit, StreamCipher};
    use hmac::{KeyInit, Mac};
    use sha2::Digest;
    let salt = sha2::Sha256::digest(format!("{plaintext}\0{password}").as_bytes()).to_vec();
    let derived = pbkdf2::pbkdf2_hmac_array::<sha2::Sha256, 80>(password.as_bytes(), &salt, 10_000);
    let (aes_key, rest) = derived.split_at(32);
    let (hmac_key, iv) = rest.split_at(32);
    let mut data = plaintext.as_bytes().to_vec();
    let pad = 16 - data.len() % 16;
    data.extend(std::iter::repeat_n(pad as u8, pad));
    let key: [u8; 32] = aes_key.try_into().expect("32 bytes");
    let iv: [u8; 16] = iv.try_into().expect("16 bytes");
    ctr::Ctr128BE::<aes::Aes256>::new(&key.into(), &iv.into()).apply_keystream(&mut data);
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(hmac_key).expect("hmac key");
    mac.update(&data);
    let inner = format!("{}\n{}\n{}", hex::encode(&salt), hex::encode(mac.finalize().into_bytes()), hex::encode(&data));
    let body = hex::encode(inner);
    let mut out = "$ANSIBLE_VAULT;1.1;AES256".to_string();
    for chunk in body.as_bytes().chunks(80) {
        out.push('\n');
        out.push_str(&String::from_utf8_lossy(chunk));
    }
    out
}

#[test]
fn a_vaulted_per_host_token_creates_no_runner_and_docker_users_join_the_docker_group() {
    net_up();
    let h = TestHost::up();
    let gitlab = GitLab::start(&[]);
    let f = Fixture::new();
    f.trust(&[&h]);
    // A runner made in GitLab beforehand; its token lives only in the vault.
    let made = gitlab.api("POST", "user/runners", Some("{\"runner_type\": \"instance_type\", \"description\": \"vaulted\"}"));
    let made: serde_json::Value = serde_json::from_str(&made).expect("json");
    let (token, id) = (made["token"].as_str().expect("token").to_string(), made["id"].as_u64().expect("id"));
    f.write("vault-pass", "test-vault-pw\n");
    let sealed: String = vault_encrypt(&token, "test-vault-pw").lines().map(|l| format!("          {l}\n")).collect();
    f.write("host_vars/vaulted.yml", &format!("runners:\n  - name: vaulted\n    tags: [dockerd]\n    token: !vault |\n{sealed}"));
    assert!(!std::fs::read_to_string(f.dir.join("host_vars/vaulted.yml")).expect("host_vars").contains(&token));
    inventory(&f, &[("vaulted", &h)], &gitlab, &format!("{}    docker_users: [deploy]\n", upload_distro()));
    assert!(!h.read("id -nG deploy").split_whitespace().any(|g| g == "docker"), "deploy is not in docker before");

    let r = apply(&f, &gitlab, &["--vault-password-file", "vault-pass", "-vvv", "--diff"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(gitlab.runners().len(), 1, "no runner created for a vaulted token: {:?}", gitlab.runners());
    assert_eq!(entry(&config(&h), "vaulted").and_then(|e| e["token"].as_str()), Some(token.as_str()));
    assert!(!r.all().contains(&token), "the vaulted token leaked:\n{}", r.all());
    assert!(crate::runner::wait_for_poll(&gitlab, id), "the runner never polled with the vaulted token: {:?}", gitlab.runners());
    assert!(h.read("id -nG deploy").split_whitespace().any(|g| g == "docker"), "docker_users: deploy in the docker group");

    let again = apply(&f, &gitlab, &["--vault-password-file", "vault-pass"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(again.recap("vaulted").1, 0, "converged:\n{}", again.all());
    assert_eq!(gitlab.runners().len(), 1);
}

#[test]
fn bad_docker_values_exit_5_naming_the_field() {
    let f = Fixture::new();
    for (line, field, words) in [
        ("docker_packages_state: newest", "docker_packages_state", "latest"),
        ("docker_users: [deploy, '-rf']", "docker_users", "not a valid user or group name"),
    ] {
        f.write(
            "hosts.yml",
            &format!(
                "all:\n  vars:\n    gitlab_url: https://gitlab.example.invalid\n    docker_install: distro\n    gitlab_runner_install: upload\n    gitlab_runner_binary: /etc/hostname\n    {line}\n  hosts:\n    h: {{ansible_host: 127.0.0.1, ansible_port: 9}}\n"
            ),
        );
        let r = f.run_env(&["apply", "hosts.yml"], &[("GITLAB_TOKEN", "glpat-x")]);
        assert_eq!(r.code, 5, "{line}: {}", r.all());
        assert!(r.stderr.contains(&format!("hosts.yml:7:5: `all.vars.{field}`")), "{line}: file, line, field:\n{}", r.stderr);
        assert!(r.stderr.contains(words), "{line}:\n{}", r.stderr);
        assert!(r.stderr.contains("nothing was contacted"), "{}", r.stderr);
    }
}
