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

use super::changes::prelude;
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
            s.push_str(") </dev/null >\"$__log\" 2>&1\n");
            let _ = writeln!(s, "__rc=$?; cat \"$__log\"; echo; echo \"@@{nonce} end {i} $__rc\"; [ \"$__rc\" -eq 0 ] || exit 0");
            // Ctrl-C on the controller: finish this step, start no other.
            let _ = writeln!(s, "[ -z \"$__stop\" ] || {{ echo '@@{nonce} interrupted'; exit 0; }}");
        }
        let _ = writeln!(s, "echo '@@{nonce} done'");
        s
    }
}

/// A line the apply script says to the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// The script's process id (to interrupt it on Ctrl-C).
    Pid(u32),
    /// Task I starts.
    Start(usize),
    /// The current task found it had nothing to do (an `unless` guard
    /// that holds by now).
    Unchanged,
    /// Task I ended with exit status RC.
    End(usize, i32),
    /// Every task ran.
    Done,
    /// Stopped after a step on Ctrl-C.
    Interrupted,
}

/// The marker on `line`, if it is one of this run's (`nonce`).
pub fn parse_marker(nonce: &str, line: &str) -> Option<Marker> {
    let rest = line.strip_prefix("@@")?.strip_prefix(nonce)?.strip_prefix(' ')?;
    let words: Vec<&str> = rest.split(' ').collect();
    Some(match words.as_slice() {
        ["pid", p] => Marker::Pid(p.parse().ok()?),
        ["start", i] => Marker::Start(i.parse().ok()?),
        ["unchanged"] => Marker::Unchanged,
        ["end", i, rc] => Marker::End(i.parse().ok()?, rc.parse().ok()?),
        ["done"] => Marker::Done,
        ["interrupted"] => Marker::Interrupted,
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
        assert_eq!(parse_marker("N1", "@@N2 start 3"), None);
        assert_eq!(parse_marker("N1", "@@N1 start x"), None);
        assert_eq!(parse_marker("N1", "x @@N1 done"), None);
    }
}
