//! JSON Lines: every event as one line on stdout, secrets masked.

use std::io::Write;

use super::{Event, Reporter};
use crate::secrets::Redactor;

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
