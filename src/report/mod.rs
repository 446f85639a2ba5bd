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

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Start {
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

    #[test]
    fn recap_json_shape() {
        let mut hosts = BTreeMap::new();
        hosts.insert("h1".to_string(), Counts { ok: 3, changed: 1, failed: 0, unreachable: 0, skipped: 2 });
        let s = serde_json::to_string(&Event::Recap { hosts }).unwrap();
        assert_eq!(s, r#"{"event":"recap","hosts":{"h1":{"ok":3,"changed":1,"failed":0,"unreachable":0}}}"#);
    }
}
