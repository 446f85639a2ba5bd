//! Reporting: one stream of [`Event`]s, two printers; the only room that
//! writes to the terminal.
//!
//! The run sends events; it never prints. [`human::Human`] shows a
//! progress line per active host (stderr, only on a terminal), one line per
//! task that changed or failed (more with `-v`), diffs with `--diff`, and
//! the recap. [`json::Json`] writes every event as one JSON line on stdout,
//! ending with exactly one `recap` line. Both pass all text through the
//! run's [`Redactor`](crate::secrets::Redactor), whole, so secrets never
//! appear.

pub mod diff;
pub mod human;
pub mod json;

use std::collections::BTreeMap;

use serde::Serialize;

pub use diff::unified_diff;

/// Print `text` on standard output (listings the user asked for).
pub fn print(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", text.trim_end_matches('\n'));
}

/// An error before any host was contacted, on standard error.
pub fn error(text: &str) {
    eprintln!("{text}");
}

/// A warning about the run as a whole (not about one host).
pub fn warning(text: &str) {
    eprintln!("warning: {text}");
}
pub use human::Human;
pub use json::Json;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Ok,
    Changed,
    Skipped,
    Failed,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    Ok,
    Changed,
    Failed,
    Unreachable,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub ok: u32,
    pub changed: u32,
    pub failed: u32,
    pub unreachable: u32,
    #[serde(skip)]
    pub skipped: u32,
    /// Warnings that `verify --strict` turns into exit 3.
    #[serde(skip)]
    pub warned: u32,
}

impl Counts {
    /// Count one task's outcome, as Ansible's recap does (`ok` includes
    /// changed tasks). Returns whether the task failed.
    pub fn record(&mut self, status: TaskStatus) -> bool {
        match status {
            TaskStatus::Ok => self.ok += 1,
            TaskStatus::Changed => {
                self.ok += 1;
                self.changed += 1;
            }
            TaskStatus::Skipped => self.skipped += 1,
            TaskStatus::Failed => return true,
        }
        false
    }

    /// The host's status at its end; marks `failed`/`unreachable` here.
    pub fn finish(&mut self, lost: bool, failed: bool) -> HostStatus {
        if lost {
            self.unreachable = 1;
            HostStatus::Unreachable
        } else if failed {
            self.failed = 1;
            HostStatus::Failed
        } else if self.changed > 0 {
            HostStatus::Changed
        } else {
            HostStatus::Ok
        }
    }
}

/// The version of the JSON event stream, in its `start` event: raised when
/// a field is removed or changes meaning (new fields and events keep it).
/// The README documents every event and field ("JSON events").
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Start {
        /// [`SCHEMA`].
        schema: u32,
        command: String,
        hosts: Vec<String>,
        check: bool,
    },
    HostStart {
        host: String,
    },
    Connected {
        host: String,
        ms: u64,
    },
    /// What the probe read (`bootstrap facts`).
    Facts {
        host: String,
        facts: serde_json::Value,
    },
    TaskStart {
        host: String,
        task: usize,
        name: String,
    },
    /// A task in progress says what it is doing (waiting for a lock),
    /// live, before it ends.
    TaskProgress {
        host: String,
        task: usize,
        msg: String,
        elapsed_ms: u64,
    },
    /// A large file on its way to the host, before the apply script runs
    /// (`task` is the task that installs it): bytes sent of the total.
    UploadProgress {
        host: String,
        task: usize,
        path: String,
        sent: u64,
        total: u64,
    },
    TaskEnd {
        host: String,
        task: usize,
        name: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        handler: bool,
        status: TaskStatus,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        changes: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        msg: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        output: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
    },
    HostEnd {
        host: String,
        status: HostStatus,
        round_trips: u32,
        elapsed_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        msg: Option<String>,
    },
    /// Something the user should know about a host (not a failure).
    Warning {
        host: String,
        msg: String,
    },
    /// Something worth knowing at `-v` (runners bootstrap leaves alone).
    Note {
        host: String,
        msg: String,
    },
    Recap {
        hosts: BTreeMap<String, Counts>,
    },
}

pub trait Reporter: Send {
    fn event(&mut self, e: &Event);
    /// Print a plain message (warnings, notes) outside the event stream.
    fn note(&mut self, msg: &str);
    fn finish(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's "JSON events" table: event -> field -> (type, optional).
    fn documented() -> BTreeMap<String, BTreeMap<String, (String, bool)>> {
        let readme = include_str!("../../README.md");
        let start = readme.find("#### JSON events").expect("README has a JSON events section");
        let mut out: BTreeMap<String, BTreeMap<String, (String, bool)>> = BTreeMap::new();
        for line in readme[start..].lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if let [_, ev, field, ty, presence, ..] = cells.as_slice() {
                if let (Some(ev), Some(field)) = (ev.strip_prefix('`'), field.strip_prefix('`')) {
                    let e = out.entry(ev.trim_end_matches('`').to_string()).or_default();
                    e.insert(field.trim_end_matches('`').to_string(), (ty.to_string(), *presence == "optional"));
                }
            }
        }
        out
    }

    fn type_of(v: &serde_json::Value) -> &'static str {
        match v {
            serde_json::Value::String(_) => "string",
            serde_json::Value::Number(_) => "number",
            serde_json::Value::Bool(_) => "boolean",
            serde_json::Value::Array(_) => "array",
            serde_json::Value::Object(_) => "object",
            serde_json::Value::Null => "null",
        }
    }

    /// Every variant, once with every optional field set and once without.
    fn every_event(full: bool) -> Vec<Event> {
        let some = |s: &str| full.then(|| s.to_string());
        vec![
            Event::Start { schema: SCHEMA, command: "apply".into(), hosts: vec!["h".into()], check: false },
            Event::HostStart { host: "h".into() },
            Event::Connected { host: "h".into(), ms: 1 },
            Event::Facts { host: "h".into(), facts: serde_json::json!({"ansible_distribution": "Debian"}) },
            Event::TaskStart { host: "h".into(), task: 0, name: "t".into() },
            Event::TaskProgress { host: "h".into(), task: 0, msg: "waiting".into(), elapsed_ms: 1 },
            Event::UploadProgress { host: "h".into(), task: 0, path: "/usr/local/bin/x".into(), sent: 1, total: 2 },
            Event::TaskEnd {
                host: "h".into(),
                task: 0,
                name: "t".into(),
                handler: full,
                status: TaskStatus::Changed,
                duration_ms: 1,
                changes: if full { vec!["c".into()] } else { vec![] },
                msg: some("m"),
                output: some("o"),
                diff: some("d"),
            },
            Event::HostEnd { host: "h".into(), status: HostStatus::Ok, round_trips: 1, elapsed_ms: 1, msg: some("m") },
            Event::Warning { host: "h".into(), msg: "w".into() },
            Event::Note { host: "h".into(), msg: "n".into() },
            Event::Recap { hosts: BTreeMap::new() },
        ]
    }

    #[test]
    fn every_event_and_field_is_documented_in_the_readme() {
        let doc = documented();
        let mut seen = std::collections::BTreeSet::new();
        for full in [true, false] {
            for e in every_event(full) {
                let v = serde_json::to_value(&e).expect("serializes");
                let obj = v.as_object().expect("an object");
                let name = obj["event"].as_str().expect("event name");
                seen.insert(name.to_string());
                let fields = doc.get(name).unwrap_or_else(|| panic!("event `{name}` is not in the README's table"));
                for (k, val) in obj {
                    let (ty, _) = fields.get(k).unwrap_or_else(|| panic!("`{name}.{k}` is not in the README's table"));
                    assert_eq!(type_of(val), ty, "`{name}.{k}`");
                }
                for (k, (_, optional)) in fields {
                    if full || !optional {
                        assert!(obj.contains_key(k), "README documents `{name}.{k}`, the event has no such field ({full})");
                    } else {
                        assert!(!obj.contains_key(k), "`{name}.{k}` is documented optional, yet present when unset");
                    }
                }
            }
        }
        let documented: std::collections::BTreeSet<String> = doc.keys().cloned().collect();
        assert_eq!(seen, documented, "events in the code and in the README");
    }

    #[test]
    fn recap_json_shape() {
        let mut hosts = BTreeMap::new();
        hosts.insert("h1".to_string(), Counts { ok: 3, changed: 1, failed: 0, unreachable: 0, skipped: 2, warned: 1 });
        let s = serde_json::to_string(&Event::Recap { hosts }).unwrap();
        assert_eq!(s, r#"{"event":"recap","hosts":{"h1":{"ok":3,"changed":1,"failed":0,"unreachable":0}}}"#);
    }
}
