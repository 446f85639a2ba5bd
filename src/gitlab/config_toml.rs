//! config.toml modelled, not templated: the file a host should hold, from
//! the file it holds now and the runners bootstrap was told about.
//!
//! The global section (`concurrent`, `listen_address`, `[session_server]`,
//! ...) is bootstrap's: it is put back as asked on every apply. In the
//! `[[runners]]` array, bootstrap owns the entries it manages, by `name`:
//! a managed entry is replaced in place by what is asked (its token fields
//! come from the identity registration settled, so a token the runner
//! rotated is kept), an entry asked `absent` is removed, and every other
//! entry (a runner registered by hand) is kept as it is. Managed entries
//! the file does not hold yet are appended in the order given.
//!
//! The host's file is compared as parsed data, never as bytes: when
//! gitlab-runner rotates its token it re-encodes the whole file (comments
//! gone, its own key order, bare datetimes, zero-valued defaults written
//! out: `connection_max_age`, `[runners.custom_build_dir]`, an empty
//! `[runners.cache]` with `MaxUploadedArchiveSize = 0`, the docker
//! executor's `false`/`0` fields). [`same_config`] treats such a file as
//! converged, so bootstrap does not rewrite it on every apply.
//!
//! Pure functions over `toml::Table`s; nothing here reads a host.

use serde_json::Value as Json;
use toml::{Table, Value};

/// The first lines of every config.toml bootstrap writes.
pub const HEADER: &str = "# /etc/gitlab-runner/config.toml, written by bootstrap.\n\
# The global settings and the runners bootstrap manages (by name) are put back\n\
# on every apply, except each runner's own fields (id, token, token_obtained_at,\n\
# token_expires_at), kept as the runner left them. Other [[runners]] entries are\n\
# left as they are.\n";

/// One runner bootstrap manages.
#[derive(Debug, Clone, PartialEq)]
pub struct Managed {
    pub name: String,
    /// The whole `[[runners]]` table; `None`: the runner is to be absent.
    pub table: Option<Table>,
}

/// What config.toml should be.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Desired {
    /// Every key of the file but `runners`.
    pub global: Table,
    pub runners: Vec<Managed>,
}

/// The file to write, and the entries bootstrap left alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub text: String,
    /// The file as data.
    pub doc: Table,
    /// Names of the `[[runners]]` entries bootstrap does not manage.
    pub unmanaged: Vec<String>,
}

/// The name of a `[[runners]]` entry, as written.
fn entry_name(t: &Table) -> Option<&str> {
    t.get("name").and_then(Value::as_str)
}

/// The `[[runners]]` entries of a config.toml (none when it does not parse).
pub fn entries(existing: &str) -> Vec<Table> {
    let Ok(doc) = toml::from_str::<Table>(existing) else { return Vec::new() };
    match doc.get("runners") {
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_table().cloned()).collect(),
        _ => Vec::new(),
    }
}

/// Names of the entries of `existing` that are not in `managed`.
pub fn unmanaged(existing: &str, managed: &[&str]) -> Vec<String> {
    entries(existing).iter().map(|t| entry_name(t).unwrap_or("(unnamed)").to_string()).filter(|n| !managed.contains(&n.as_str())).collect()
}

/// Merge what is asked into what the host holds (see the module docs).
/// The text is checked to parse back as TOML.
pub fn merge(existing: Option<&str>, desired: &Desired) -> Result<Merged, String> {
    let mut runners: Vec<Value> = Vec::new();
    let mut unmanaged = Vec::new();
    let mut placed = vec![false; desired.runners.len()];
    for t in existing.map(entries).unwrap_or_default() {
        let name = entry_name(&t).map(str::to_string);
        match name.as_deref().and_then(|n| desired.runners.iter().position(|m| m.name == n)) {
            Some(i) => {
                if !placed[i] {
                    if let Some(table) = &desired.runners[i].table {
                        runners.push(Value::Table(table.clone()));
                    }
                    placed[i] = true;
                }
                // A second entry of a managed name is a duplicate: dropped.
            }
            None => {
                unmanaged.push(name.unwrap_or_else(|| "(unnamed)".into()));
                runners.push(Value::Table(t));
            }
        }
    }
    for (m, done) in desired.runners.iter().zip(&placed) {
        if let (false, Some(table)) = (done, &m.table) {
            runners.push(Value::Table(table.clone()));
        }
    }
    let mut doc = desired.global.clone();
    doc.remove("runners");
    if !runners.is_empty() {
        doc.insert("runners".into(), Value::Array(runners));
    }
    let body = toml::to_string(&doc).map_err(|e| format!("config.toml could not be written as TOML: {e}"))?;
    let text = format!("{HEADER}{body}");
    toml::from_str::<Table>(&text).map_err(|e| format!("config.toml would not be valid TOML: {}", e.message()))?;
    Ok(Merged { text, doc, unmanaged })
}

/// Whether `desired` can be written as TOML at all (checked before
/// connecting, for every host: only the encoding, none of the merge).
pub fn check(desired: &Desired) -> Result<(), String> {
    let mut doc = desired.global.clone();
    doc.remove("runners");
    let runners: Vec<Value> = desired.runners.iter().filter_map(|m| m.table.clone().map(Value::Table)).collect();
    if !runners.is_empty() {
        doc.insert("runners".into(), Value::Array(runners));
    }
    toml::to_string(&doc).map(|_| ()).map_err(|e| format!("config.toml could not be written as TOML: {e}"))
}

/// Parse a host's config.toml; the error names the line.
pub fn parse(text: &str) -> Result<Table, String> {
    toml::from_str::<Table>(text).map_err(|e| match e.span() {
        Some(span) => {
            let line = text.get(..span.start).map(|t| t.matches('\n').count() + 1).unwrap_or(1);
            format!("line {line}: {}", e.message())
        }
        None => e.message().to_string(),
    })
}

/// Values gitlab-runner writes out for settings nobody set, that are not
/// zero values.
const RUNNER_DEFAULTS: &[(&str, &str)] = &[("connection_max_age", "15m0s"), ("session_timeout", "1800")];

/// Whether a value is what gitlab-runner writes for a setting nobody set:
/// a zero value (`0`, `false`, `""`, `[]`), a table of such values (or an
/// empty one), or one of [`RUNNER_DEFAULTS`].
fn is_default(key: &str, v: &Value) -> bool {
    let known = RUNNER_DEFAULTS.iter().any(|(k, d)| *k == key && scalar_text(v).as_deref() == Some(*d));
    known
        || match v {
            Value::Integer(0) | Value::Boolean(false) => true,
            Value::Float(f) => *f == 0.0,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Table(t) => t.iter().all(|(k, x)| is_default(k, x)),
            _ => false,
        }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Datetime(d) => Some(d.to_string()),
        _ => None,
    }
}

/// Whether the host's file `have` is what bootstrap would write (`want`)
/// as gitlab-runner reads it: same settings, whatever the layout, key
/// order or comments; a key only one side has counts only when it is not
/// a default (see [`is_default`]); a datetime equals its text.
pub fn same_config(have: &Table, want: &Table) -> bool {
    let keys: std::collections::BTreeSet<&String> = have.keys().chain(want.keys()).collect();
    keys.into_iter().all(|k| match (have.get(k), want.get(k)) {
        (Some(h), Some(w)) => same_value(h, w),
        (Some(x), None) | (None, Some(x)) => is_default(k, x),
        (None, None) => true,
    })
}

fn same_value(h: &Value, w: &Value) -> bool {
    match (h, w) {
        (Value::Table(a), Value::Table(b)) => same_config(a, b),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_value(x, y)),
        (Value::Datetime(_), Value::String(_)) | (Value::String(_), Value::Datetime(_)) => scalar_text(h) == scalar_text(w),
        (Value::Integer(i), Value::Float(f)) | (Value::Float(f), Value::Integer(i)) => (*i as f64) == *f,
        _ => h == w,
    }
}

/// Merge `from` into `into`: tables key by key, anything else replaced.
pub fn deep_merge(into: &mut Table, from: &Table) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(Value::Table(a)), Value::Table(b)) => deep_merge(a, b),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// A JSON value (from YAML) as TOML. `null` has no TOML form: an error
/// naming the path below the value (`.a.b`, `[2]`).
pub fn from_json(v: &Json) -> Result<Value, String> {
    fn go(v: &Json, at: &str) -> Result<Value, String> {
        Ok(match v {
            Json::Null => return Err(format!("{at}: a value is empty (null); TOML has no null")),
            Json::Bool(b) => Value::Boolean(*b),
            Json::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Value::Integer(i),
                (None, Some(f)) => Value::Float(f),
                _ => return Err(format!("{at}: {n} is out of range")),
            },
            Json::String(s) => Value::String(s.clone()),
            Json::Array(a) => Value::Array(a.iter().enumerate().map(|(i, x)| go(x, &format!("{at}[{i}]"))).collect::<Result<_, _>>()?),
            Json::Object(o) => {
                let mut t = Table::new();
                for (k, x) in o {
                    t.insert(k.clone(), go(x, &format!("{at}.{k}"))?);
                }
                Value::Table(t)
            }
        })
    }
    go(v, "").map_err(|e| e.trim_start_matches(": ").to_string())
}

/// A timestamp as gitlab-runner writes it: a bare TOML datetime when it
/// parses as one, else the string.
pub fn datetime(s: &str) -> Value {
    match s.parse::<toml::value::Datetime>() {
        Ok(d) => Value::Datetime(d),
        Err(_) => Value::String(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(src: &str) -> Table {
        toml::from_str(src).unwrap()
    }

    fn managed(name: &str, extra: &str) -> Managed {
        Managed { name: name.into(), table: Some(table(&format!("name = \"{name}\"\ntoken = \"glrt-{name}\"\n{extra}"))) }
    }

    const HOST_FILE: &str = "concurrent = 9\nlisten_address = \"old\"\n\n[[runners]]\n  name = \"by-hand\"\n  url = \"https://g.example\"\n  token = \"glrt-hand\"\n  executor = \"shell\"\n  [runners.custom]\n    x = 1\n\n[[runners]]\n  name = \"socket\"\n  token = \"glrt-old\"\n  executor = \"docker\"\n\n[[runners]]\n  name = \"gone\"\n  token = \"glrt-gone\"\n";

    #[test]
    fn managed_entries_replace_theirs_others_stay_absent_ones_go() {
        let desired = Desired {
            global: table("concurrent = 2\ncheck_interval = 3\n[session_server]\nsession_timeout = 1800\n"),
            runners: vec![managed("socket", "executor = \"docker\"\n"), Managed { name: "gone".into(), table: None }, managed("dind", "")],
        };
        let m = merge(Some(HOST_FILE), &desired).unwrap();
        assert_eq!(m.unmanaged, vec!["by-hand"]);
        let doc = table(&m.text);
        assert_eq!(doc["concurrent"].as_integer(), Some(2));
        assert!(doc.get("listen_address").is_none(), "the global section is bootstrap's");
        assert_eq!(doc["session_server"]["session_timeout"].as_integer(), Some(1800));
        let names: Vec<&str> = doc["runners"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["by-hand", "socket", "dind"], "in place, absent removed, new appended");
        let hand = &doc["runners"][0];
        assert_eq!(hand["token"].as_str(), Some("glrt-hand"));
        assert_eq!(hand["executor"].as_str(), Some("shell"));
        assert_eq!(hand["custom"]["x"].as_integer(), Some(1), "an unmanaged entry is kept whole");
        assert_eq!(doc["runners"][1]["token"].as_str(), Some("glrt-socket"));
        assert!(!m.text.contains("glrt-gone") && !m.text.contains("glrt-old"));
        // Stable: merging again into the result changes nothing.
        assert_eq!(merge(Some(&m.text), &desired).unwrap().text, m.text);
    }

    #[test]
    fn no_file_or_a_broken_one_gives_the_managed_runners_only() {
        let desired = Desired { global: table("concurrent = 1\n"), runners: vec![managed("a", "")] };
        for existing in [None, Some("not [ toml")] {
            let m = merge(existing, &desired).unwrap();
            assert!(m.unmanaged.is_empty());
            assert_eq!(table(&m.text)["runners"].as_array().map(Vec::len), Some(1));
            assert!(m.text.starts_with("# /etc/gitlab-runner/config.toml, written by bootstrap."));
        }
        let none = Desired { global: table("concurrent = 1\n"), runners: vec![] };
        assert!(table(&merge(None, &none).unwrap().text).get("runners").is_none());
        assert!(check(&desired).is_ok() && check(&none).is_ok());
        // A value TOML cannot hold where it stands (an array of a table and
        // a number) fails the check as it would fail the write.
        let mut bad = Desired { global: table("concurrent = 1\n"), runners: vec![] };
        bad.global.insert("x".into(), Value::Array(vec![Value::Integer(1), Value::Table(table("a = 1\n"))]));
        assert_eq!(check(&bad).is_ok(), merge(None, &bad).is_ok());
    }

    /// The file bootstrap wrote, as gitlab-runner saves it after rotating
    /// its token: re-encoded, defaults written out.
    const REENCODED: &str = "concurrent = 2\ncheck_interval = 3\nconnection_max_age = \"15m0s\"\nshutdown_timeout = 0\n\n[session_server]\n  session_timeout = 1800\n\n[[runners]]\n  name = \"socket\"\n  token = \"glrt-socket\"\n  token_obtained_at = 2026-04-22T08:07:35Z\n  executor = \"docker\"\n  [runners.custom_build_dir]\n  [runners.cache]\n    MaxUploadedArchiveSize = 0\n    [runners.cache.s3]\n    [runners.cache.gcs]\n    [runners.cache.azure]\n  [runners.docker]\n    tls_verify = false\n    image = \"docker:cli\"\n    privileged = false\n    disable_cache = false\n    volumes = [\"/var/run/docker.sock:/var/run/docker.sock\", \"/cache\"]\n    shm_size = 0\n    network_mtu = 0\n";

    #[test]
    fn a_file_gitlab_runner_re_encoded_is_converged() {
        let desired = Desired {
            global: table("concurrent = 2\ncheck_interval = 3\n"),
            runners: vec![managed(
                "socket",
                "token_obtained_at = 2026-04-22T08:07:35Z\nexecutor = \"docker\"\n[docker]\nimage = \"docker:cli\"\nvolumes = [\"/var/run/docker.sock:/var/run/docker.sock\", \"/cache\"]\n",
            )],
        };
        let want = merge(Some(REENCODED), &desired).unwrap().doc;
        assert!(same_config(&table(REENCODED), &want));
        // A real difference still counts, on either side and at any depth.
        for (from, to) in [
            ("privileged = false", "privileged = true"),
            ("concurrent = 2", "concurrent = 3"),
            ("shm_size = 0", "shm_size = 1"),
            ("connection_max_age = \"15m0s\"", "connection_max_age = \"1m0s\""),
            ("\"/cache\"]", "\"/cache\", \"/x\"]"),
            ("token_obtained_at = 2026-04-22T08:07:35Z", "token_obtained_at = 2026-04-22T08:07:36Z"),
        ] {
            let changed = REENCODED.replace(from, to);
            assert_ne!(changed, REENCODED);
            assert!(!same_config(&table(&changed), &want), "{to} must count as drift");
        }
        let without = REENCODED.replace("    image = \"docker:cli\"\n", "");
        assert!(!same_config(&table(&without), &want), "a key bootstrap sets and the file lacks counts");
    }

    #[test]
    fn a_broken_file_names_its_line() {
        assert_eq!(parse("a = 1\nb = [\n").unwrap_err().split(':').next(), Some("line 2"));
        assert!(parse("a = 1\n").is_ok());
    }

    #[test]
    fn deep_merge_and_json_conversion() {
        let mut a = table("x = 1\n[t]\na = 1\nb = 2\n");
        deep_merge(&mut a, &table("y = 2\n[t]\nb = 3\n"));
        assert_eq!(a, table("x = 1\ny = 2\n[t]\na = 1\nb = 3\n"));
        let v = from_json(&serde_json::json!({"a": [1, "b", {"c": true}], "f": 1.5})).unwrap();
        assert_eq!(v["a"][2]["c"].as_bool(), Some(true));
        assert_eq!(v["f"].as_float(), Some(1.5));
        let e = from_json(&serde_json::json!({"a": [1, null]})).unwrap_err();
        assert!(e.starts_with(".a[1]"), "{e}");
        assert!(matches!(datetime("2024-05-01T10:00:00Z"), Value::Datetime(_)));
        assert!(matches!(datetime("soon"), Value::String(_)));
    }
}
