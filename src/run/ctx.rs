//! What the steps of one host's run share: the connected host
//! ([`HostCtx`]), task lines for steps that are not plan tasks
//! ([`TaskLines`]), and reading a file the probe brought back.

use tokio::sync::mpsc;

use crate::plan::facts::Facts;
use crate::report::{Counts, Event, TaskStatus};
use crate::secrets::Redactor;
use crate::transport::{Become, Session};

/// One connected host, for the steps that talk to it.
pub struct HostCtx<'a> {
    pub name: &'a str,
    pub session: &'a Session,
    pub become_: &'a Become,
    pub tx: &'a mpsc::UnboundedSender<Event>,
    pub redactor: &'a Redactor,
}

impl HostCtx<'_> {
    pub fn send(&self, e: Event) {
        let _ = self.tx.send(e);
    }
}

/// One line of a verification or an unregistration, as a task event.
pub struct TaskLines<'a> {
    pub host: &'a str,
    pub tx: &'a mpsc::UnboundedSender<Event>,
    pub next: usize,
    pub counts: Counts,
    pub failed: bool,
}

impl TaskLines<'_> {
    pub fn task(&mut self, name: &str, status: TaskStatus, msg: Option<String>, duration_ms: u64) {
        let i = self.next;
        self.next += 1;
        let _ = self.tx.send(Event::TaskStart { host: self.host.to_string(), task: i, name: name.to_string() });
        self.failed |= self.counts.record(status);
        let _ = self.tx.send(Event::TaskEnd {
            host: self.host.to_string(),
            task: i,
            name: name.to_string(),
            handler: false,
            status,
            duration_ms,
            changes: vec![],
            msg,
            output: None,
            diff: None,
        });
    }
}

pub fn config_text(facts: &Facts, path: &str) -> Option<String> {
    facts.path(path).and_then(|s| s.content.clone()).map(|c| String::from_utf8_lossy(&c).into_owned())
}
