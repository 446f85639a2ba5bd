//! The apply script: the changes of a plan as one POSIX shell script, and
//! the markers it answers with.
//!
//! Every task with changes runs in a subshell under `set -e`, its output
//! captured to a file first and sent when the step is done (a dropped
//! connection never cuts a step in the middle), framed by
//! `@@<nonce> start I` and `@@<nonce> end I RC`. The script stops at the
//! first failed task, and after the current step on Ctrl-C. The nonce is
//! random per run, so no command output can forge a marker.

use std::fmt::Write as _;

use super::changes::{prelude, Change};
use super::HostPlan;

impl HostPlan {
    /// The apply script: every task with changes, in order, each in a
    /// subshell under `set -e` with its output captured, framed by
    /// `@@<nonce> start I` and `@@<nonce> end I RC`. The script stops at
    /// the first failed task.
    pub fn script(&self, nonce: &str) -> String {
        let mut s = String::from(prelude());
        s.push_str("umask 022\n__stop=\ntrap '__stop=1' INT\n");
        // Each step's output goes to a file first and is sent when the step
        // is done: if the connection drops, the step still finishes whole
        // (an apt install is never cut by a broken pipe), and the script
        // ends at its next word to the controller.
        s.push_str("__log=$(mktemp)\ntrap 'rm -f \"$__log\"; exit 141' PIPE HUP\ntrap 'rm -f \"$__log\"' EXIT\n");
        let _ = writeln!(s, "__nonce={nonce}");
        let _ = writeln!(s, "echo \"@@{nonce} pid $$\"");
        let eof = format!("BOOTSTRAP_EOF_{nonce}");
        for (i, _, changes) in self.changes() {
            let _ = writeln!(s, "echo '@@{nonce} start {i}'");
            s.push_str("(\nset -e\n");
            for c in changes {
                s.push_str(&c.script(&eof));
            }
            // fd 3 (the script's stdout) only where apt may say it waits
            // for a lock: a command that leaves a process behind must not
            // hold the connection open through it.
            let apt = changes.iter().any(|c| matches!(c, Change::AptUpdate { .. } | Change::AptInstall { .. } | Change::AptRemove { .. }));
            s.push_str(if apt { ") 3>&1 </dev/null >\"$__log\" 2>&1\n" } else { ") </dev/null >\"$__log\" 2>&1\n" });
            let _ = writeln!(s, "__rc=$?; cat \"$__log\"; echo; echo \"@@{nonce} end {i} $__rc\"; [ \"$__rc\" -eq 0 ] || exit 0");
            // Ctrl-C on the controller: finish this step, start no other.
            let _ = writeln!(s, "[ -z \"$__stop\" ] || {{ echo '@@{nonce} interrupted'; exit 0; }}");
        }
        let _ = writeln!(s, "echo '@@{nonce} done'");
        s
    }
}

/// A line the apply script says to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// The script's process id (to interrupt it on Ctrl-C).
    Pid(u32),
    /// Task I starts.
    Start(usize),
    /// The current task found it had nothing to do (an `unless` guard
    /// that holds by now).
    Unchanged,
    /// Something the current task wants people to know now (a restart
    /// left queued), shown as a warning.
    Note(String),
    /// Task I ended with exit status RC.
    End(usize, i32),
    /// Every task ran.
    Done,
    /// Stopped after a step on Ctrl-C.
    Interrupted,
    /// The current task waits for a lock: `elapsed` seconds of `limit`;
    /// `lock` its path (`-` unknown), `holder` as apt says it ("held by
    /// process 812 (unattended-upgr)").
    Wait { elapsed: u64, limit: u64, lock: String, holder: String },
}

impl Marker {
    /// What a person reads of a `Wait`: "waiting for the dpkg lock held by
    /// unattended-upgr (pid 812): 14 s of 300".
    pub fn wait_message(elapsed: u64, limit: u64, lock: &str, holder: &str) -> String {
        let what = if lock.contains("/dpkg/") {
            "the dpkg lock"
        } else if lock.contains("/lists/") {
            "the apt lists lock"
        } else if lock.contains("/archives/") {
            "the apt cache lock"
        } else {
            "the apt/dpkg lock"
        };
        // apt: "held by process 812 (unattended-upgr)"
        let who = holder
            .strip_prefix("held by process ")
            .and_then(|r| r.split_once(' '))
            .and_then(|(pid, name)| {
                let name = name.strip_prefix('(')?.strip_suffix(')')?;
                pid.parse::<u32>().ok().map(|p| format!("held by {name} (pid {p})"))
            })
            .unwrap_or_else(|| holder.to_string());
        format!("waiting for {what} {who}: {elapsed} s of {limit}")
    }
}

/// The marker on `line`, if it is one of this run's (`nonce`).
pub fn parse_marker(nonce: &str, line: &str) -> Option<Marker> {
    let rest = line.strip_prefix("@@")?.strip_prefix(nonce)?.strip_prefix(' ')?;
    let words: Vec<&str> = rest.split(' ').collect();
    Some(match words.as_slice() {
        ["pid", p] => Marker::Pid(p.parse().ok()?),
        ["start", i] => Marker::Start(i.parse().ok()?),
        ["unchanged"] => Marker::Unchanged,
        ["note", text @ ..] if !text.is_empty() => Marker::Note(text.join(" ")),
        ["end", i, rc] => Marker::End(i.parse().ok()?, rc.parse().ok()?),
        ["done"] => Marker::Done,
        ["interrupted"] => Marker::Interrupted,
        ["wait", e, l, lock, holder @ ..] if !holder.is_empty() => {
            Marker::Wait { elapsed: e.parse().ok()?, limit: l.parse().ok()?, lock: lock.to_string(), holder: holder.join(" ") }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_foreign_ones_are_ignored() {
        assert_eq!(parse_marker("N1", "@@N1 start 3"), Some(Marker::Start(3)));
        assert_eq!(parse_marker("N1", "@@N1 end 3 -1"), Some(Marker::End(3, -1)));
        assert_eq!(parse_marker("N1", "@@N1 unchanged"), Some(Marker::Unchanged));
        assert_eq!(parse_marker("N1", "@@N1 note a b"), Some(Marker::Note("a b".into())));
        assert_eq!(parse_marker("N2", "@@N1 note a b"), None);
        assert_eq!(parse_marker("N1", "@@N2 start 3"), None);
        assert_eq!(parse_marker("N1", "@@N1 start x"), None);
        assert_eq!(parse_marker("N1", "x @@N1 done"), None);
        let w = parse_marker("N1", "@@N1 wait 14 300 /var/lib/dpkg/lock-frontend held by process 812 (unattended-upgr)");
        let Some(Marker::Wait { elapsed, limit, lock, holder }) = w else { panic!("{w:?}") };
        assert_eq!(
            Marker::wait_message(elapsed, limit, &lock, &holder),
            "waiting for the dpkg lock held by unattended-upgr (pid 812): 14 s of 300"
        );
        assert_eq!(
            Marker::wait_message(2, 5, "-", "held by another process"),
            "waiting for the apt/dpkg lock held by another process: 2 s of 5"
        );
        assert_eq!(parse_marker("N1", "@@N1 wait 1 2 /x"), None, "a wait says who holds the lock");
    }

    /// The live `wait` marker reaches the script's stdout while the step's
    /// own output goes to its file, and only in steps that run apt.
    #[test]
    fn a_lock_wait_is_said_live_outside_the_step_log() {
        let script = format!(
            "{}__nonce=N1\n__log=$(mktemp)\n(\n__live wait 3 300 /var/lib/dpkg/lock-frontend \"held by process 9 (x)\"\necho step-output\n) 3>&1 >\"$__log\" 2>&1\necho log:; cat \"$__log\"; rm -f \"$__log\"\n(\n__live wait 4 300 - held\n) >/dev/null 2>&1\necho after\n",
            prelude()
        );
        let o = std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(out, "@@N1 wait 3 300 /var/lib/dpkg/lock-frontend held by process 9 (x)\nlog:\nstep-output\nafter\n");
    }
}
