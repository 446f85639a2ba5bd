//! `command` and `shell`: run what the user wrote. Guards make them
//! idempotent: `creates` (skip if the path exists), `removes` (skip if it
//! does not), `unless` (skip if this command succeeds: run during the
//! probe, and again on the host right before the command, since an earlier
//! task of the same run may have made it succeed). Without a guard the task is reported changed on every run,
//! as in Ansible. `command` splits words like a shell but runs no shell;
//! `shell` runs `sh -c`.

use std::collections::BTreeSet;

use super::{check_path, ArgError, Args, ParseCtx, Spec};
use crate::plan::changes::Change;
use crate::plan::facts::{FactRequest, Facts};
use crate::plan::module::{Action, Module};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub cmd: String,
    pub shell: bool,
    pub creates: Option<String>,
    pub removes: Option<String>,
    pub unless: Option<String>,
    pub chdir: Option<String>,
}

impl Command {
    pub fn parse(a: &Args, shell: bool) -> Result<Command, ArgError> {
        let cmd = a.str("cmd")?;
        if cmd.trim().is_empty() {
            return Err(ArgError::field("cmd", "is empty"));
        }
        if !shell && shlex::split(&cmd).is_none() {
            return Err(ArgError::field("cmd", "has unbalanced quotes"));
        }
        for k in ["creates", "removes", "chdir"] {
            if let Some(p) = a.opt_str(k)? {
                check_path(k, &p)?;
            }
        }
        Ok(Command {
            cmd,
            shell,
            creates: a.opt_str("creates")?,
            removes: a.opt_str("removes")?,
            unless: a.opt_str("unless")?,
            chdir: a.opt_str("chdir")?,
        })
    }

    pub fn probes(&self, out: &mut BTreeSet<FactRequest>) {
        for p in [&self.creates, &self.removes].into_iter().flatten() {
            out.insert(FactRequest::Path { path: p.clone(), content: false, checksum: false });
        }
        if let Some(u) = &self.unless {
            out.insert(FactRequest::Guard(u.clone()));
        }
    }

    pub fn plan(&self, facts: &Facts) -> Vec<Change> {
        if let Some(p) = &self.creates {
            if facts.path(p).is_some() {
                return vec![];
            }
        }
        if let Some(p) = &self.removes {
            if facts.path(p).is_none() {
                return vec![];
            }
        }
        if let Some(u) = &self.unless {
            if facts.guards.get(u) == Some(&0) {
                return vec![];
            }
        }
        vec![Change::Run { cmd: self.cmd.clone(), shell: self.shell, chdir: self.chdir.clone(), unless: self.unless.clone() }]
    }
}

/// `command` and `shell`.
pub struct CommandModule {
    spec: &'static Spec,
    shell: bool,
}
pub static COMMAND: CommandModule = CommandModule { spec: &COMMAND_SPEC, shell: false };
pub static SHELL: CommandModule = CommandModule { spec: &SHELL_SPEC, shell: true };
const ARGS: &[&str] = &["cmd", "creates", "removes", "unless", "chdir"];
static COMMAND_SPEC: Spec = Spec { name: "command", args: ARGS, late: &["cmd"], free_form: Some("cmd") };
static SHELL_SPEC: Spec = Spec { name: "shell", args: ARGS, late: &["cmd"], free_form: Some("cmd") };

impl Module for CommandModule {
    fn spec(&self) -> &'static Spec {
        self.spec
    }
    fn parse(&self, a: &Args, _: &ParseCtx) -> Result<Box<dyn Action>, ArgError> {
        Ok(Box::new(Command::parse(a, self.shell)?))
    }
}

impl Action for Command {
    fn probes(&self, _diff: bool, out: &mut BTreeSet<FactRequest>) {
        Command::probes(self, out)
    }
    fn plan(&self, facts: &Facts) -> Result<Vec<Change>, String> {
        Ok(Command::plan(self, facts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn guards() {
        let c =
            Command::parse(&Args(json!({"cmd": "touch /x", "creates": "/x", "unless": "test -e /y"}).as_object().unwrap()), false).unwrap();
        let mut f = Facts::default();
        f.guards.insert("test -e /y".into(), 1);
        assert_eq!(c.plan(&f).len(), 1);
        f.guards.insert("test -e /y".into(), 0);
        assert!(c.plan(&f).is_empty());
        let unguarded = Command::parse(&Args(json!({"cmd": "date"}).as_object().unwrap()), true).unwrap();
        assert_eq!(unguarded.plan(&Facts::default()).len(), 1);
        // The guard travels with the command, to be checked again on the host.
        f.guards.insert("test -e /y".into(), 1);
        let Change::Run { unless, .. } = &c.plan(&f)[0] else { panic!("a Run") };
        assert_eq!(unless.as_deref(), Some("test -e /y"));
    }
}
