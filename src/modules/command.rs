//! `command` and `shell`: run what the user wrote. Guards make them
//! idempotent: `creates` (skip if the path exists), `removes` (skip if it
//! does not), `unless` (skip if this command, run during the probe,
//! succeeds). Without a guard the task is reported changed on every run,
//! as in Ansible. `command` splits words like a shell but runs no shell;
//! `shell` runs `sh -c`.

use std::collections::BTreeSet;

use super::{check_path, ArgError, Args};
use crate::changes::Change;
use crate::facts::{FactRequest, Facts};

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
            out.insert(FactRequest::Path { path: p.clone(), content: false });
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
        vec![Change::Run { cmd: self.cmd.clone(), shell: self.shell, chdir: self.chdir.clone() }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn guards() {
        let c = Command::parse(&Args(json!({"cmd": "touch /x", "creates": "/x", "unless": "test -e /y"}).as_object().unwrap()), false).unwrap();
        let mut f = Facts::default();
        f.guards.insert("test -e /y".into(), 1);
        assert_eq!(c.plan(&f).len(), 1);
        f.guards.insert("test -e /y".into(), 0);
        assert!(c.plan(&f).is_empty());
        let unguarded = Command::parse(&Args(json!({"cmd": "date"}).as_object().unwrap()), true).unwrap();
        assert_eq!(unguarded.plan(&Facts::default()).len(), 1);
    }
}
