//! Property tests: the parsers and the template engine never panic.
//!
//! Arbitrary text, and YAML made of the words the parsers know, go through
//! the inventory and playbook loaders, per-host compilation, templates,
//! the position index and the probe parser. Any outcome is fine but a
//! panic. The case counts bound the time this takes in CI (~seconds).

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
            FactRequest::Path { path: "/etc/x".into(), content: true },
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
