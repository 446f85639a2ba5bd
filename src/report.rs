//! Reporting: one stream of [`Event`]s, two printers.
//!
//! The engine sends events; it never prints. [`Human`] shows a progress
//! line per active host (stderr, only on a terminal), one line per task
//! that changed or failed (more with `-v`), diffs with `--diff`, and the
//! recap. [`Json`] writes every event as one JSON line on stdout, ending
//! with exactly one `recap` line. Both pass all text through the
//! [`Redactor`], so secrets (become passwords, tokens) never appear.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

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
    Start { command: String, hosts: Vec<String>, check: bool },
    HostStart { host: String },
    Connected { host: String, ms: u64 },
    /// What the probe read (`bootstrap facts`).
    Facts { host: String, facts: serde_json::Value },
    TaskStart { host: String, task: usize, name: String },
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
    Warning { host: String, msg: String },
    Recap { hosts: BTreeMap<String, Counts> },
}

/// Replaces every secret value with `********`. Clones share one set, so
/// a secret found during the run (a token read from a host, a runner
/// token GitLab just created) is masked everywhere from then on.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: std::sync::Arc<std::sync::RwLock<Vec<String>>>,
}

impl Redactor {
    pub fn add(&self, secret: &str) {
        // Very short values would mask ordinary text; they are still never
        // printed by us on purpose.
        let Ok(mut secrets) = self.secrets.write() else { return };
        if secret.len() >= 4 && !secrets.iter().any(|s| s == secret) {
            secrets.push(secret.to_string());
            // Also its JSON-escaped form, for the JSON stream.
            let esc = serde_json::to_string(secret).unwrap_or_default();
            let esc = esc.trim_matches('"').to_string();
            if esc != secret {
                secrets.push(esc);
            }
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        let Ok(secrets) = self.secrets.read() else { return "(output withheld)".into() };
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "********");
            }
        }
        out
    }
}

pub trait Reporter: Send {
    fn event(&mut self, e: &Event);
    /// Print a plain message (warnings, notes) outside the event stream.
    fn note(&mut self, msg: &str);
    fn finish(&mut self) {}
}

/// JSON Lines on stdout.
pub struct Json {
    pub redactor: Redactor,
}

impl Reporter for Json {
    fn event(&mut self, e: &Event) {
        let line = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", self.redactor.mask(&line));
        let _ = out.flush();
    }
    fn note(&mut self, msg: &str) {
        eprintln!("{}", self.redactor.mask(msg));
    }
}

/// Progress and lines for people.
pub struct Human {
    redactor: Redactor,
    verbose: u8,
    quiet: bool,
    mp: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
    color: bool,
}

impl Human {
    pub fn new(redactor: Redactor, verbose: u8, quiet: bool, progress: bool) -> Human {
        let tty = std::io::stderr().is_terminal();
        let mp = (progress && tty && !quiet).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Human { redactor, verbose, quiet, mp, bars: HashMap::new(), color }
    }

    fn line(&self, s: &str) {
        let s = self.redactor.mask(s);
        match &self.mp {
            Some(mp) => {
                let _ = mp.println(&s);
            }
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{s}");
            }
        }
    }

    fn paint(&self, s: &str, code: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

impl Reporter for Human {
    fn event(&mut self, e: &Event) {
        match e {
            Event::Start { command, hosts, check } => {
                if !self.quiet {
                    let mode = if *check { " (check mode: nothing will be changed)" } else { "" };
                    self.line(&format!("{command}: {} host(s){mode}", hosts.len()));
                }
            }
            Event::HostStart { host } => {
                if let Some(mp) = &self.mp {
                    let pb = mp.add(ProgressBar::new_spinner());
                    pb.set_style(
                        ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    pb.set_prefix(host.clone());
                    pb.set_message("connecting");
                    pb.enable_steady_tick(Duration::from_millis(120));
                    self.bars.insert(host.clone(), pb);
                }
            }
            Event::Connected { host, ms } => {
                if let Some(pb) = self.bars.get(host) {
                    pb.set_message("reading facts");
                }
                if self.verbose >= 2 {
                    self.line(&format!("connected: [{host}] in {ms} ms"));
                }
            }
            Event::Facts { host, facts } => {
                let text = serde_json::to_string_pretty(facts).unwrap_or_default();
                self.line(&format!("{host}: {text}"));
            }
            Event::TaskStart { host, name, .. } => {
                if let Some(pb) = self.bars.get(host) {
                    pb.set_message(self.redactor.mask(name));
                }
            }
            Event::TaskEnd { host, name, handler, status, changes, msg, output, diff, duration_ms, .. } => {
                let name = if *handler { format!("{name} (handler)") } else { name.clone() };
                let show = match status {
                    TaskStatus::Changed | TaskStatus::Failed => true,
                    TaskStatus::Ok => self.verbose >= 1,
                    TaskStatus::Skipped => self.verbose >= 2,
                };
                if show && !(self.quiet && *status != TaskStatus::Failed) {
                    let (word, code) = match status {
                        TaskStatus::Ok => ("ok", "32"),
                        TaskStatus::Changed => ("changed", "33"),
                        TaskStatus::Skipped => ("skipping", "36"),
                        TaskStatus::Failed => ("failed", "31"),
                    };
                    let timing = if self.verbose >= 1 { format!(" ({duration_ms} ms)") } else { String::new() };
                    self.line(&format!("{}: [{host}] {name}{timing}", self.paint(word, code)));
                    if self.verbose >= 1 || *status == TaskStatus::Changed && self.verbose == 0 && changes.len() <= 3 {
                        for c in changes {
                            self.line(&format!("    - {c}"));
                        }
                    }
                    if let Some(m) = msg {
                        for l in m.lines() {
                            self.line(&format!("    {l}"));
                        }
                    }
                    if let Some(o) = output {
                        if *status == TaskStatus::Failed || self.verbose >= 2 {
                            let lines: Vec<&str> = o.lines().filter(|l| !l.trim().is_empty()).collect();
                            let skip = lines.len().saturating_sub(if self.verbose >= 2 { usize::MAX } else { 20 });
                            for l in &lines[skip..] {
                                self.line(&format!("    | {l}"));
                            }
                        }
                    }
                }
                if let Some(d) = diff {
                    for l in d.lines() {
                        let painted = if l.starts_with('+') && !l.starts_with("+++") {
                            self.paint(l, "32")
                        } else if l.starts_with('-') && !l.starts_with("---") {
                            self.paint(l, "31")
                        } else {
                            l.to_string()
                        };
                        self.line(&painted);
                    }
                }
            }
            Event::HostEnd { host, status, round_trips, elapsed_ms, msg } => {
                if let Some(pb) = self.bars.remove(host) {
                    pb.finish_and_clear();
                    if let Some(mp) = &self.mp {
                        mp.remove(&pb);
                    }
                }
                if *status == HostStatus::Unreachable {
                    self.line(&format!(
                        "{}: [{host}] {}",
                        self.paint("unreachable", "31"),
                        msg.clone().unwrap_or_default()
                    ));
                } else if let (HostStatus::Failed, Some(m)) = (status, msg) {
                    self.line(&format!("{}: [{host}] {m}", self.paint("failed", "31")));
                } else if let Some(m) = msg {
                    self.line(&format!("{}: [{host}] {m}", self.paint("ok", "32")));
                }
                if self.verbose >= 1 {
                    self.line(&format!("done: [{host}] {round_trips} round trip(s) after connecting, {elapsed_ms} ms"));
                }
            }
            Event::Warning { host, msg } => {
                self.line(&format!("{}: [{host}] {msg}", self.paint("warning", "35")));
            }
            Event::Recap { hosts } => {
                if let Some(mp) = &self.mp {
                    let _ = mp.clear();
                }
                self.mp = None;
                self.line("");
                self.line("RECAP");
                let width = hosts.keys().map(|h| h.len()).max().unwrap_or(0);
                for (h, c) in hosts {
                    let skipped = if c.skipped > 0 { format!(" skipped={}", c.skipped) } else { String::new() };
                    self.line(&format!(
                        "{h:<width$} ok={} changed={} failed={} unreachable={}{skipped}",
                        c.ok, c.changed, c.failed, c.unreachable
                    ));
                }
            }
        }
    }

    fn note(&mut self, msg: &str) {
        let m = self.redactor.mask(msg);
        match &self.mp {
            Some(mp) => {
                let _ = mp.println(&m);
            }
            None => eprintln!("{m}"),
        }
    }

    fn finish(&mut self) {
        for (_, pb) in self.bars.drain() {
            pb.finish_and_clear();
        }
    }
}

/// A unified diff of two texts, for `--diff`.
pub fn unified_diff(path: &str, old: Option<&[u8]>, new: &[u8]) -> String {
    let old_text = old.map(|o| String::from_utf8_lossy(o).into_owned()).unwrap_or_default();
    let new_text = String::from_utf8_lossy(new).into_owned();
    let diff = similar::TextDiff::from_lines(&old_text, &new_text);
    diff.unified_diff()
        .context_radius(3)
        .header(&format!("{path} (host)"), &format!("{path} (wanted)"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_plain_and_json_escaped() {
        let r = Redactor::default();
        r.add("pa\"ss-word");
        r.add("abc");
        assert_eq!(r.mask("x pa\"ss-word y"), "x ******** y");
        let json = serde_json::to_string(&serde_json::json!({"m": "pa\"ss-word"})).unwrap();
        assert!(!r.mask(&json).contains("ss-word"));
        assert_eq!(r.mask("abc"), "abc", "very short values are not masked");
    }

    #[test]
    fn recap_json_shape() {
        let mut hosts = BTreeMap::new();
        hosts.insert("h1".to_string(), Counts { ok: 3, changed: 1, failed: 0, unreachable: 0, skipped: 2 });
        let s = serde_json::to_string(&Event::Recap { hosts }).unwrap();
        assert_eq!(s, r#"{"event":"recap","hosts":{"h1":{"ok":3,"changed":1,"failed":0,"unreachable":0}}}"#);
    }
}
