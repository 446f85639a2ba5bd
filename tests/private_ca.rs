//! GitLab behind a private CA (`gitlab_ca_file`): the GitLab stand-in served
//! over HTTPS with a CA this test makes; bootstrap refuses it without the CA
//! (before any host changes) and trusts it with; the runner stand-in on the
//! host polls through HTTPS with the CA from its config.toml.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::runner::{apply, inventory, upload_distro};
use crate::support::{net_up, Fixture, GitLab, TestHost, CONTROLLER};

/// A CA and a server certificate for `ip` signed by it, in `dir`:
/// (ca.pem, server.pem, server.key).
fn make_ca(dir: &Path, ip: &str) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let o = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
        assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=bootstrap test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", &format!("/CN={ip}"), "-keyout", "server.key", "-out", "server.csr"]);
    std::fs::write(dir.join("san.ext"), format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n")).expect("san.ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"))
}

/// `GET /_standin/state` over HTTPS, trusting `ca`.
fn state(gitlab: &GitLab, ca: &Path) -> serde_json::Value {
    let o = Command::new("curl")
        .args(["-fsS", "--max-time", "20", "--cacert"])
        .arg(ca)
        .arg(format!("{}/_standin/state", gitlab.url()))
        .output()
        .expect("curl runs");
    assert!(o.status.success(), "state over HTTPS: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("stand-in state is JSON")
}

fn runners(gitlab: &GitLab, ca: &Path) -> Vec<serde_json::Value> {
    state(gitlab, ca)["runners"].as_array().cloned().unwrap_or_default()
}

#[test]
fn gitlab_behind_a_private_ca_needs_gitlab_ca_file_and_the_runner_uses_it() {
    net_up();
    let h = TestHost::up();
    let f = Fixture::new();
    let (ca, cert, key) = make_ca(&f.dir, CONTROLLER);
    let gitlab = GitLab::start(&["--tls-cert", &cert.to_string_lossy(), "--tls-key", &key.to_string_lossy()]);
    assert!(gitlab.url().starts_with("https://"), "{}", gitlab.url());
    f.trust(&[&h]);

    // Without the CA: refused before the host is changed, naming the variable.
    inventory(&f, &[("tls", &h)], &gitlab, &upload_distro());
    let refused = apply(&f, &gitlab, &[]);
    assert_ne!(refused.code, 0, "an untrusted GitLab must fail:\n{}", refused.all());
    assert!(refused.all().contains("gitlab_ca_file"), "the message names gitlab_ca_file:\n{}", refused.all());
    assert!(refused.all().contains("not trusted"), "{}", refused.all());
    assert!(!h.sh("test -e /etc/gitlab-runner/config.toml").status.success(), "no config.toml on the host");
    assert!(!h.sh("test -e /usr/local/bin/gitlab-runner").status.success(), "nothing was installed on the host");
    assert!(runners(&gitlab, &ca).is_empty(), "no runner created");

    // With it: registered, the CA on the host, named in the runner's tls-ca-file.
    let with_ca = format!("{}    gitlab_ca_file: {}\n", upload_distro(), ca.display());
    inventory(&f, &[("tls", &h)], &gitlab, &with_ca);
    let ok = apply(&f, &gitlab, &[]);
    assert_eq!(ok.code, 0, "{}", ok.all());
    let on_host = format!("/etc/gitlab-runner/certs/{CONTROLLER}.crt");
    assert_eq!(h.read(&format!("cat {on_host}")), std::fs::read_to_string(&ca).expect("ca.pem"));
    assert_eq!(h.read(&format!("stat -c '%a %U' {on_host}")).trim(), "644 root");
    let conf: toml::Table = toml::from_str(&h.read("cat /etc/gitlab-runner/config.toml")).expect("config.toml is TOML");
    let runner = conf["runners"].as_array().and_then(|r| r.first()).and_then(|r| r.as_table()).expect("one runner");
    assert_eq!(runner.get("tls-ca-file").and_then(|v| v.as_str()), Some(on_host.as_str()), "keys: {:?}", runner.keys().collect::<Vec<_>>());
    assert_eq!(runner["url"].as_str(), Some(gitlab.url()));
    let made = runners(&gitlab, &ca);
    assert_eq!(made.len(), 1, "{made:?}");
    let id = made[0]["id"].as_u64().expect("id");

    // The runner stand-in polls jobs/request through HTTPS with that CA
    // (it trusts nothing else: the host's store does not know the test CA).
    let polled = crate::support::wait_until(std::time::Duration::from_secs(30), || {
        runners(&gitlab, &ca).iter().any(|r| r["id"].as_u64() == Some(id) && r["contacts"].as_u64().unwrap_or(0) > 0)
    });
    assert!(polled, "the runner never polled over HTTPS: {:?}", runners(&gitlab, &ca));

    let again = apply(&f, &gitlab, &[]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(again.recap("tls").1, 0, "converged:\n{}", again.all());
    assert_eq!(runners(&gitlab, &ca).len(), 1);
}

#[test]
fn a_bad_gitlab_ca_file_exits_5_before_any_connection() {
    let f = Fixture::new();
    f.write("not-a-cert.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n");
    f.write("empty.pem", "no certificate here\n");
    for (file, words) in
        [("not-a-cert.pem", "not a PEM certificate"), ("empty.pem", "holds no certificate"), ("missing.pem", "no such file")]
    {
        let path = f.dir.join(file);
        f.write(
            "hosts.yml",
            &format!(
                "all:\n  vars:\n    gitlab_url: https://gitlab.example.invalid\n    docker_install: distro\n    gitlab_runner_install: upload\n    gitlab_runner_binary: /etc/hostname\n    gitlab_ca_file: {}\n  hosts:\n    h: {{ansible_host: 127.0.0.1, ansible_port: 9}}\n",
                path.display()
            ),
        );
        let r = f.run_env(&["apply", "hosts.yml"], &[("GITLAB_TOKEN", "glpat-x")]);
        assert_eq!(r.code, 5, "{file}: {}", r.all());
        assert!(r.stderr.contains("hosts.yml:7:5: `all.vars.gitlab_ca_file`"), "{file}: file, line, field:\n{}", r.stderr);
        assert!(r.stderr.contains(words) && r.stderr.contains(file), "{file}:\n{}", r.stderr);
        assert!(r.stderr.contains("nothing was contacted"), "{}", r.stderr);
    }
}
