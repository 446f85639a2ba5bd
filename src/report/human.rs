//! Output for people: progress lines, task lines, diffs and the recap.
//!
//! Progress is drawn on stderr, only when it is a terminal. Task lines and
//! the recap go to stdout (above the progress display when both are the
//! same terminal). Colour only where the stream written to is a terminal,
//! and never when `NO_COLOR` is set to anything but the empty string
//! (no-color.org).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Event, HostStatus, Reporter, TaskStatus};
use crate::secrets::Redactor;

/// Progress and lines for people.
pub struct Human {
    redactor: Redactor,
    /// Where lines go when there is no progress display (stdout; a buffer
    /// in tests).
    out: Box<dyn Write + Send>,
    verbose: u8,
    quiet: bool,
    mp: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
    /// Lines are printed through the progress display (stdout and stderr
    /// are the same terminal), not straight to `out`.
    lines_above_bars: bool,
    color: bool,
    /// `verify` shows every check with its result, also without `-v`.
    every_task: bool,
    /// When each host's last `-v` wait line was printed (ms into the task).
    progress_said: HashMap<String, u64>,
    /// Each host's current task.
    task_names: HashMap<String, String>,
}

/// Whether to paint text written to a stream: only a terminal, and never
/// with a non-empty `NO_COLOR`.
pub fn use_color(stream_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stream_is_terminal && no_color.map(|v| v.is_empty()).unwrap_or(true)
}

impl Human {
    pub fn new(redactor: Redactor, verbose: u8, quiet: bool, progress: bool) -> Human {
        let (stdout_tty, stderr_tty) = (std::io::stdout().is_terminal(), std::io::stderr().is_terminal());
        let mp = (progress && stderr_tty && !quiet).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        // `bootstrap apply ... > log` on a terminal: progress on the
        // terminal, lines (plain) in the log.
        let lines_above_bars = mp.is_some() && stdout_tty;
        let lines_tty = if lines_above_bars { stderr_tty } else { stdout_tty };
        let color = use_color(lines_tty, std::env::var_os("NO_COLOR").as_deref());
        Human {
            redactor,
            out: Box::new(std::io::stdout()),
            verbose,
            quiet,
            mp,
            bars: HashMap::new(),
            lines_above_bars,
            color,
            every_task: false,
            progress_said: HashMap::new(),
            task_names: HashMap::new(),
        }
    }

    /// Lines to `out`, no progress and no colour (for tests).
    #[cfg(test)]
    pub fn to_writer(redactor: Redactor, verbose: u8, out: Box<dyn Write + Send>) -> Human {
        Human {
            redactor,
            out,
            verbose,
            quiet: false,
            mp: None,
            bars: HashMap::new(),
            lines_above_bars: false,
            color: false,
            every_task: false,
            progress_said: HashMap::new(),
            task_names: HashMap::new(),
        }
    }

    /// Each line of `text`, masked as a whole first: a secret that spans
    /// lines is masked before the lines are printed one by one.
    fn masked_lines(&self, text: &str) -> Vec<String> {
        self.redactor.mask(text).lines().map(str::to_string).collect()
    }

    fn line(&mut self, s: &str) {
        let s = self.redactor.mask(s);
        match self.mp.as_ref().filter(|_| self.lines_above_bars) {
            Some(mp) => {
                let _ = mp.println(&s);
            }
            None => {
                let _ = writeln!(self.out, "{s}");
                let _ = self.out.flush();
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
            Event::Start { command, hosts, check, .. } => {
                self.every_task = command == "verify";
                if !self.quiet {
                    let mode = if *check { " (check mode: nothing will be changed)" } else { "" };
                    self.line(&format!("{command}: {} host(s){mode}", hosts.len()));
                }
            }
            Event::HostStart { host } => {
                if let Some(mp) = &self.mp {
                    let pb = mp.add(ProgressBar::new_spinner());
                    // The progress display is on stderr: bold only if that may be painted.
                    let bold = use_color(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
                    let template =
                        if bold { "{spinner} {prefix:.bold} {wide_msg} {elapsed}" } else { "{spinner} {prefix} {wide_msg} {elapsed}" };
                    pb.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner()));
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
                    // The elapsed time on the line is the task's.
                    pb.reset_elapsed();
                    pb.set_message(self.redactor.mask(name));
                }
                self.progress_said.remove(host);
                self.task_names.insert(host.clone(), name.clone());
            }
            Event::TaskProgress { host, msg, elapsed_ms, .. } => {
                let name = self.task_names.get(host).cloned().unwrap_or_default();
                if let Some(pb) = self.bars.get(host) {
                    pb.set_message(self.redactor.mask(&format!("{name}: {msg}")));
                }
                // `-v`: the first word at once, then one line every 10 s.
                let due = self.progress_said.get(host).map(|last| *elapsed_ms >= last + 10_000).unwrap_or(true);
                if self.verbose >= 1 && !self.quiet && due {
                    self.progress_said.insert(host.clone(), *elapsed_ms);
                    self.line(&format!("{}: [{host}] {name}: {msg}", self.paint("waiting", "36")));
                }
            }
            Event::UploadProgress { host, path, sent, total, .. } => {
                let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
                let pct = if *total == 0 { 100 } else { sent * 100 / total };
                let text = format!("uploading {path}: {:.1} of {:.1} MiB ({pct}%)", mib(*sent), mib(*total));
                if let Some(pb) = self.bars.get(host) {
                    pb.set_message(self.redactor.mask(&text));
                }
                // `-v`: when it starts and when it is done.
                if self.verbose >= 1 && !self.quiet && (*sent == 0 || sent == total) {
                    self.line(&format!("{}: [{host}] {text}", self.paint("upload", "36")));
                }
            }
            Event::TaskEnd { host, name, handler, status, changes, msg, output, diff, duration_ms, .. } => {
                let name = if *handler { format!("{name} (handler)") } else { name.clone() };
                let show = match status {
                    TaskStatus::Changed | TaskStatus::Failed => true,
                    TaskStatus::Ok => self.verbose >= 1 || self.every_task,
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
                        for l in self.masked_lines(m) {
                            self.line(&format!("    {l}"));
                        }
                    }
                    if let Some(o) = output {
                        if *status == TaskStatus::Failed || self.verbose >= 2 {
                            let lines: Vec<String> = self.masked_lines(o).into_iter().filter(|l| !l.trim().is_empty()).collect();
                            let skip = lines.len().saturating_sub(if self.verbose >= 2 { usize::MAX } else { 20 });
                            for l in &lines[skip..] {
                                self.line(&format!("    | {l}"));
                            }
                        }
                    }
                }
                if let Some(d) = diff {
                    for l in self.masked_lines(d) {
                        let l = l.as_str();
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
                    self.line(&format!("{}: [{host}] {}", self.paint("unreachable", "31"), msg.clone().unwrap_or_default()));
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
            Event::Note { host, msg } => {
                if self.verbose >= 1 {
                    self.line(&format!("note: [{host}] {msg}"));
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn printed(verbose: u8, events: &[Event]) -> String {
        let sink = Sink::default();
        let mut h = Human::to_writer(Redactor::default(), verbose, Box::new(sink.clone()));
        for e in events {
            h.event(e);
        }
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        text
    }

    #[test]
    fn a_wait_is_a_line_at_v_at_once_then_every_ten_seconds() {
        let p = |ms: u64| Event::TaskProgress {
            host: "h1".into(),
            task: 0,
            msg: format!("waiting for the dpkg lock held by x (pid 9): {} s of 300", ms / 1000),
            elapsed_ms: ms,
        };
        let events = [Event::TaskStart { host: "h1".into(), task: 0, name: "docker".into() }, p(100), p(2100), p(10_200), p(12_000)];
        let v = printed(1, &events);
        let lines: Vec<&str> = v.lines().collect();
        assert_eq!(
            lines,
            [
                "waiting: [h1] docker: waiting for the dpkg lock held by x (pid 9): 0 s of 300",
                "waiting: [h1] docker: waiting for the dpkg lock held by x (pid 9): 10 s of 300"
            ],
            "{v}"
        );
        assert_eq!(printed(0, &events), "", "without -v the progress line alone says it");
    }

    #[test]
    fn verify_shows_every_check_without_v_apply_does_not() {
        let ok = Event::TaskEnd {
            host: "h1".into(),
            task: 0,
            name: "gitlab-runner service active".into(),
            handler: false,
            status: TaskStatus::Ok,
            duration_ms: 1,
            changes: vec![],
            msg: Some("fine".into()),
            output: None,
            diff: None,
        };
        let start = |c: &str| Event::Start { schema: 1, command: c.into(), hosts: vec!["h1".into()], check: false };
        let v = printed(0, &[start("verify"), ok.clone()]);
        assert!(v.contains("ok: [h1] gitlab-runner service active\n    fine"), "{v}");
        let a = printed(0, &[start("apply"), ok]);
        assert!(!a.contains("gitlab-runner service active"), "{a}");
    }

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        use std::ffi::OsStr;
        assert!(use_color(true, None));
        assert!(use_color(true, Some(OsStr::new(""))), "an empty NO_COLOR is unset (no-color.org)");
        assert!(!use_color(true, Some(OsStr::new("1"))));
        assert!(!use_color(true, Some(OsStr::new("0"))), "any non-empty value");
        assert!(!use_color(false, None));
    }

    #[test]
    fn a_multi_line_secret_never_reaches_the_screen() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1x2\nq9Zk8H3xL0secret\n-----END RSA PRIVATE KEY-----";
        let r = Redactor::default();
        r.add(pem);
        let sink = Sink::default();
        let mut h = Human::to_writer(r, 2, Box::new(sink.clone()));
        let diff = crate::report::unified_diff("/etc/ca.pem", None, pem.as_bytes());
        h.event(&Event::TaskEnd {
            host: "h1".into(),
            task: 0,
            name: "ca".into(),
            handler: false,
            status: TaskStatus::Failed,
            duration_ms: 1,
            changes: vec![],
            msg: Some(format!("bad key:\n{pem}\nend")),
            output: Some(format!("{pem}\n")),
            diff: Some(diff),
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        for secret_line in ["MIIEpAIBAAKCAQEA1x2", "q9Zk8H3xL0secret"] {
            assert!(!text.contains(secret_line), "leaked {secret_line}:\n{text}");
        }
        assert!(text.contains("bad key:") && text.contains("********"), "{text}");
    }
}
