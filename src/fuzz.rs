//! Property tests: what users, hosts and services feed the controller
//! never makes it panic, and the safety properties hold for any input.
//!
//! Arbitrary text, and YAML or INI made of the words the parsers know, go
//! through the inventory and playbook loaders, per-host compilation,
//! templates, the position index; real probe answers (the probe script run
//! on this machine) are garbled and parsed; config.toml, pending-token
//! files, known_hosts lines and GitLab answers as a hostile host or a
//! broken service may hand them back are read. Semantic properties: the
//! redactor masks any secret anywhere (across lines and in JSON), and
//! `shell::quote` round-trips any value through a real `sh`. The case
//! counts bound the time this takes in CI (seconds).

use std::path::Path;

use proptest::prelude::*;
use serde_json::json;

use crate::inventory::Inventory;
use crate::plan::facts::FactRequest;
use crate::playbook::Playbook;
use crate::template::Templates;

/// YAML-ish text built from the words the loaders know, so that the cases
/// get past the YAML parser into the checks behind it.
fn yamlish() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("all"),
        Just("hosts"),
        Just("children"),
        Just("vars"),
        Just("web1"),
        Just("db"),
        Just("ansible_host"),
        Just("ansible_port"),
        Just("ansible_become"),
        Just("ansible_user"),
        Just("ansible_become_password"),
        Just("tasks"),
        Just("handlers"),
        Just("name"),
        Just("apt"),
        Just("copy"),
        Just("template"),
        Just("file"),
        Just("user"),
        Just("service"),
        Just("command"),
        Just("when"),
        Just("notify"),
        Just("dest"),
        Just("content"),
        Just("mode"),
        Just("state"),
        Just("gitlab_runner"),
        Just("assert"),
        Just("that"),
        Just("defaults"),
        Just("become"),
    ];
    let value = prop_oneof![
        Just(""),
        Just("yes"),
        Just("no"),
        Just("22"),
        Just("0644"),
        Just("'0999'"),
        Just("[a, b]"),
        Just("{a: 1}"),
        Just("\"{{ x }}\""),
        Just("\"{{ inventory_hostname }}\""),
        Just("\"{% if %}\""),
        Just("/etc/x"),
        Just("$(touch /tmp/pwned)"),
        Just("present"),
        Just("~"),
        Just("\"a\\nb\""),
        Just("[{name: x, copy: {dest: /a, content: b}}]"),
        Just("{{"),
        Just("- x"),
        Just(": :"),
    ];
    let line = (0usize..4, key, value, any::<bool>())
        .prop_map(|(indent, k, v, dash)| format!("{}{}{k}: {v}", "  ".repeat(indent), if dash { "- " } else { "" }));
    proptest::collection::vec(line, 0..24).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, .. ProptestConfig::default() })]

    #[test]
    fn inventory_parser_never_panics(src in "\\PC{0,200}") {
        let _ = Inventory::parse(Path::new("h.yml"), &src);
    }

    #[test]
    fn inventory_structured_never_panics(src in yamlish()) {
        if let Ok(inv) = Inventory::parse(Path::new("h.yml"), &src) {
            for h in inv.hosts.values() {
                let _ = inv.connection(h);
            }
            let _ = inv.select("web*:!db:&all");
        }
    }

    #[test]
    fn playbook_parser_never_panics(src in "\\PC{0,200}") {
        let _ = Playbook::parse(Path::new("p.yml"), &src);
    }

    #[test]
    fn playbook_structured_compiles_or_errs(src in yamlish()) {
        if let Ok(pb) = Playbook::parse(Path::new("p.yml"), &src) {
            let inv = Inventory::parse(Path::new("h.yml"), "all:\n  hosts:\n    web1:\n").expect("inventory");
            let t = Templates::new(vec![]);
            if let Ok(ph) = pb.play_hosts(&inv) {
                let tags = crate::playbook::TagFilter::default();
                let env = crate::playbook::CompileEnv { inv: &inv, play_hosts: &ph, templates: &t, diff: true, tags: &tags };
                let _ = pb.compile("web1", None, &env);
            }
        }
    }

    #[test]
    fn templates_never_panic(src in "\\PC{0,80}", x in "\\PC{0,20}") {
        let t = Templates::new(vec![]);
        let ctx = json!({"x": x, "n": 3, "l": [1, 2], "m": {"a": "b"}});
        let _ = t.render_str(&src, &ctx);
        let _ = t.render_value(&json!(src.clone()), &ctx);
        let _ = t.eval_bool(&src, &ctx);
    }

    #[test]
    fn position_index_never_panics(src in "\\PC{0,300}") {
        let idx = crate::yamlpos::PosIndex::new(&src);
        let _ = idx.find("all.hosts.x");
    }

    #[test]
    fn probe_parser_never_panics(out in "(@@N [a-z]{2,8}( [0-9])?\\n|[a-zA-Z_=|0-9:\\t ]{0,30}\\n){0,30}") {
        let reqs: std::collections::BTreeSet<FactRequest> = [
            FactRequest::Package("curl".into()),
            FactRequest::Service("ssh".into()),
            FactRequest::Path { path: "/etc/x".into(), content: true, checksum: true },
            FactRequest::User("u".into()),
            FactRequest::Guard("true".into()),
        ].into_iter().collect();
        let _ = crate::plan::probe::parse("N", &reqs, &out);
    }
}

/// INI-ish lines made of what the INI parser knows.
fn iniish() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("[web]".to_string()),
        Just("[web:vars]".to_string()),
        Just("[web:children]".to_string()),
        Just("[all:vars]".to_string()),
        Just("[bad section]".to_string()),
        Just("; comment".to_string()),
        "[a-z]{1,4}(\\[[0-9a-c]{0,2}:[0-9a-c]{0,2}(:[0-9]{0,2})?\\])?(:[0-9]{1,6})?".prop_map(|s| s),
        "[a-z]{1,3}=[\\PC]{0,12}".prop_map(|s| s),
        "[a-z]{1,3} [a-z]{1,3}=['\"\\[{(]?[a-z0-9 ,:'\"]{0,10}[\\]})'\"]?".prop_map(|s| s),
    ];
    proptest::collection::vec(line, 0..16).prop_map(|l| l.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, .. ProptestConfig::default() })]

    #[test]
    fn ini_inventory_never_panics(src in iniish()) {
        let dir = std::env::temp_dir().join(format!("bootstrap-fuzz-ini-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join("hosts.ini");
        if std::fs::write(&file, &src).is_ok() {
            let none = |_: &str| -> Result<String, String> { Err("no vault".into()) };
            let opts = crate::inventory::LoadOptions {
                sources: vec![file.display().to_string()],
                playbook_dir: None,
                extra_vars: crate::inventory::Located::default(),
                unvault: crate::inventory::Unvault::new(&none),
            };
            if let Ok(inv) = Inventory::load(opts) {
                let _ = crate::inventory::listing::to_text(&crate::inventory::listing::list(&inv));
                let _ = crate::inventory::listing::graph(&inv, "all");
            }
        }
    }

    #[test]
    fn python_literals_never_panic(src in "[\\PC]{0,40}") {
        let _ = crate::inventory::pyliteral_for_fuzz(&src);
    }

    #[test]
    fn yaml11_never_panics(src in "\\PC{0,200}") {
        if let Ok(Some(n)) = crate::yaml11::load(&src) {
            let _ = n.to_json::<()>(&mut |_, _| Ok(String::new()));
        }
    }

    #[test]
    fn yaml11_structured_never_panics(src in yamlish()) {
        let _ = crate::yaml11::load(&src);
    }
}

/// A real probe answer: the probe script for every kind of request, run
/// on this machine (once per test process).
fn real_probe_answer() -> &'static (std::collections::BTreeSet<FactRequest>, String) {
    static ANSWER: std::sync::OnceLock<(std::collections::BTreeSet<FactRequest>, String)> = std::sync::OnceLock::new();
    ANSWER.get_or_init(|| {
        let reqs: std::collections::BTreeSet<FactRequest> = [
            FactRequest::Package("dpkg".into()),
            FactRequest::Package("no-such-package-here".into()),
            FactRequest::Service("ssh".into()),
            FactRequest::Path { path: "/etc/hostname".into(), content: true, checksum: true },
            FactRequest::Path { path: "/etc".into(), content: false, checksum: false },
            FactRequest::Path { path: "/nonexistent/x".into(), content: false, checksum: true },
            FactRequest::User("root".into()),
            FactRequest::User("no-such-user".into()),
            FactRequest::Group("root".into()),
            FactRequest::AptCache,
            FactRequest::AptSourcesFor("http://deb.example.invalid/debian".into()),
            FactRequest::Guard("true".into()),
            FactRequest::Guard("false".into()),
        ]
        .into_iter()
        .collect();
        let script = crate::plan::probe::script("F5", &reqs);
        let out = std::process::Command::new("sh").arg("-c").arg(&script).output().expect("sh runs the probe");
        (reqs, String::from_utf8_lossy(&out.stdout).into_owned())
    })
}

/// One way a broken or hostile host can garble an answer.
fn garble() -> impl Strategy<Value = (u8, usize, String)> {
    (0u8..6, any::<usize>(), "[\\PC\\n]{0,24}")
}

fn apply_garble(text: &str, (kind, at, junk): &(u8, usize, String)) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return junk.clone();
    }
    let i = at % lines.len();
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    match kind {
        0 => {
            out.remove(i);
        }
        1 => out.insert(i, junk.clone()),
        2 => out[i] = junk.clone(),
        3 => out.truncate(i),
        4 => {
            // A value cut or changed after its `=`.
            if let Some(eq) = out[i].find('=') {
                out[i] = format!("{}{junk}", &out[i][..=eq]);
            }
        }
        _ => {
            let dup = out[i].clone();
            out.insert(i, dup);
        }
    }
    out.join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    /// Well-formed answers with one or two garbles: every section kind
    /// (os, path with base64 content, user, group, packages, services,
    /// apt lists and sources, guards) reaches the parser, which may refuse
    /// but never panics; the ungarbled answer parses.
    #[test]
    fn garbled_probe_answers_never_panic(g1 in garble(), g2 in garble()) {
        let (reqs, answer) = real_probe_answer();
        prop_assert!(crate::plan::probe::parse("F5", reqs, answer).is_ok(), "the real answer parses");
        let text = apply_garble(&apply_garble(answer, &g1), &g2);
        let _ = crate::plan::probe::parse("F5", reqs, &text);
    }

    /// config.toml as a host may hand it back: never a panic reading the
    /// runner's token fields.
    #[test]
    fn config_toml_from_a_host_never_panics(g in garble(), junk in "\\PC{0,120}") {
        let good = "concurrent = 2\n[[runners]]\n  name = \"r\"\n  url = \"https://g.example\"\n  id = 7\n  token = \"glrt-x\"\n  token_obtained_at = 2024-05-01T10:00:00Z\n  token_expires_at = 0001-01-01T00:00:00Z\n  executor = \"docker\"\n  [runners.docker]\n    image = \"debian\"\n";
        let _ = crate::gitlab::runner::read_existing(&apply_garble(good, &g), "https://g.example");
        let _ = crate::gitlab::runner::read_existing(&junk, "https://g.example");
    }

    /// A pending-token file with anything in it reads as nothing or as a
    /// token, never a panic.
    #[test]
    fn pending_token_files_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let dir = std::env::temp_dir().join(format!("bootstrap-fuzz-pending-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join("p.json");
        if std::fs::write(&p, &bytes).is_ok() {
            let _ = crate::gitlab::pending::load(&p);
        }
    }

    /// known_hosts with any lines: a verdict, never a panic; a line we
    /// append is then a match.
    #[test]
    fn known_hosts_lines_never_panic(text in "[\\PC\\n]{0,300}", port in 1u16..) {
        use crate::transport::known_hosts::{check, host_name, Verdict};
        let key = "AAAAC3NzaC1lZDI1NTE5AAAAIEX2LZSjRayD1rMswa896fgUvtXwPqFFW30EWfYDEtcz";
        let _ = check(&text, "h.example", port, "ssh-ed25519", key);
        let with = format!("{text}\n{} ssh-ed25519 {key}\n", host_name("h.example", port));
        let v = check(&with, "h.example", port, "ssh-ed25519", key);
        prop_assert!(matches!(v, Verdict::Match | Verdict::Revoked { .. } | Verdict::Changed { .. }), "{v:?}");
    }

    /// GitLab answers of any shape (bounded): explained, never a panic, and
    /// no token from the request in the message.
    #[test]
    fn gitlab_answers_never_panic(body in "[\\PC]{0,200}", status in 100u16..600) {
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body.clone()));
        let _ = crate::gitlab::api::explain_for_tests(status, &json);
        let _ = serde_json::from_value::<crate::gitlab::api::Created>(json.clone());
        let _ = serde_json::from_value::<Vec<crate::gitlab::api::Listed>>(json);
    }

    /// The redactor never lets a secret through: any secret, anywhere in
    /// the text, also when it spans lines, and also in JSON.
    #[test]
    fn the_redactor_never_lets_a_secret_through(secret in "[\\PC\\n]{4,40}", pre in "[\\PC\\n]{0,30}", post in "[\\PC\\n]{0,30}") {
        prop_assume!(!crate::secrets::MASK.contains(secret.as_str()) && !secret.contains('*'));
        let r = crate::secrets::Redactor::default();
        r.add(&secret);
        let text = format!("{pre}{secret}{post}");
        prop_assert!(!r.mask(&text).contains(&secret), "masked: {:?}", r.mask(&text));
        let json = serde_json::to_string(&serde_json::json!({ "msg": text })).unwrap_or_default();
        let esc = serde_json::to_string(&secret).unwrap_or_default();
        prop_assert!(!r.mask(&json).contains(esc.trim_matches('"')), "in JSON: {:?}", r.mask(&json));
        for line in secret.lines().map(str::trim).filter(|l| l.len() >= 8) {
            prop_assert!(!r.mask(&format!("{pre}{line}{post}")).contains(line), "a line of it: {line:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, .. ProptestConfig::default() })]

    /// `shell::quote` round-trips through a real `sh`: any value reaches
    /// the command as the same bytes, never as shell syntax.
    #[test]
    fn quoted_values_round_trip_through_sh(s in "[^\\x00]{0,40}") {
        let out = std::process::Command::new("sh").arg("-c").arg(format!("printf %s {}", crate::transport::shell::quote(&s))).output();
        let out = out.map_err(|e| TestCaseError::fail(format!("sh: {e}")))?;
        prop_assert_eq!(String::from_utf8_lossy(&out.stdout).into_owned(), s);
    }
}
