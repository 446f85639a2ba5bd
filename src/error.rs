//! Errors the user can act on, and the exit codes of the command line.
//!
//! Bad input (inventory, playbook, template, variables, options) is an
//! [`InputError`]: it names the file, the line and column where known, the
//! field, says what is wrong and, where we can tell, what to do next. It is
//! raised before any host is contacted and maps to exit status 5.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::yamlpos::Pos;

/// Exit statuses, as documented in the README.
pub mod exit {
    /// Every host ok.
    pub const OK: u8 = 0;
    /// Internal error (a bug, or the machine we run on failed us).
    pub const INTERNAL: u8 = 1;
    /// At least one host failed.
    pub const FAILED: u8 = 2;
    /// `check`: a host drifted from the playbook (and none failed).
    pub const DRIFT: u8 = 3;
    /// At least one host was unreachable, and none failed.
    pub const UNREACHABLE: u8 = 4;
    /// Bad input: nothing was contacted.
    pub const BAD_INPUT: u8 = 5;
    /// Interrupted by Ctrl-C.
    pub const INTERRUPTED: u8 = 130;
}

/// A mistake in what the user gave us.
#[derive(Debug, Clone)]
pub struct InputError {
    pub file: Option<PathBuf>,
    pub pos: Option<Pos>,
    /// The field or key path concerned (`all.hosts.web1.ansible_port`).
    pub field: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl InputError {
    pub fn new(message: impl Into<String>) -> InputError {
        InputError { file: None, pos: None, field: None, message: message.into(), hint: None }
    }

    pub fn in_file(mut self, file: &Path) -> InputError {
        if self.file.is_none() {
            self.file = Some(file.to_path_buf());
        }
        self
    }

    pub fn at(mut self, pos: Option<Pos>) -> InputError {
        if self.pos.is_none() {
            self.pos = pos;
        }
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> InputError {
        if self.field.is_none() {
            self.field = Some(field.into());
        }
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> InputError {
        self.hint = Some(hint.into());
        self
    }

    /// From a serde YAML error, which carries its own location.
    pub fn from_yaml(file: &Path, err: &serde_yaml_ng::Error) -> InputError {
        let pos = err.location().map(|l| Pos { line: l.line(), column: l.column() });
        // serde_yaml_ng appends " at line L column C"; we print the position
        // in front instead, so drop the suffix.
        let mut message = err.to_string();
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        InputError::new(message).in_file(file).at(pos)
    }
}

/// Read a text file; invalid UTF-8 is an error that says where.
pub fn read_text(path: &Path, what: &str) -> Result<String, InputError> {
    let bytes = std::fs::read(path).map_err(|e| InputError::new(format!("cannot read {what}: {e}")).in_file(path))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        let col = good.iter().rev().take_while(|b| **b != b'\n').count() + 1;
        InputError::new(format!("{what} is not valid UTF-8 (YAML must be)"))
            .in_file(path)
            .at(Some(Pos { line, column: col }))
            .hint("save the file as UTF-8; values with other bytes cannot be written in YAML")
    })
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(pos) = self.pos {
                write!(f, ":{}:{}", pos.line, pos.column)?;
            }
            write!(f, ": ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "`{field}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  help: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InputError {}

/// Several input errors at once: we report all of them, not just the first.
#[derive(Debug)]
pub struct InputErrors(pub Vec<InputError>);

impl fmt::Display for InputErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InputErrors {}

impl From<InputError> for InputErrors {
    fn from(e: InputError) -> InputErrors {
        InputErrors(vec![e])
    }
}
