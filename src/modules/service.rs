//! `service` / `systemd`: a unit enabled or disabled, started, stopped,
//! restarted or reloaded. `restarted` and `reloaded` always act (they are
//! what handlers use); the other states act only when the unit differs.

use std::collections::BTreeSet;

use super::{ArgError, Args, ParseCtx, Spec};
use crate::plan::changes::{Change, UnitAction};
use crate::plan::facts::{FactRequest, Facts};
use crate::plan::module::{Action, Module};
use crate::plan::probe::unit_name;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub state: Option<String>,
    pub enabled: Option<bool>,
    pub daemon_reload: bool,
    /// Ansible's `no_block`: queue the job, do not wait for it (a restart
    /// of a service that takes long to stop).
    pub no_block: bool,
}

impl Service {
    pub fn parse(a: &Args) -> Result<Service, ArgError> {
        let name = a.str("name")?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || ":_.@-\\".contains(c)) {
            return Err(ArgError::field("name", format!("`{}` is not a valid systemd unit name", name.escape_debug())));
        }
        let state = match a.get("state") {
            None => None,
            Some(_) => Some(a.choice("state", &["started", "stopped", "restarted", "reloaded"], "started")?),
        };
        let enabled = a.opt_bool("enabled")?;
        let daemon_reload = a.opt_bool("daemon_reload")?.unwrap_or(false);
        let no_block = a.opt_bool("no_block")?.unwrap_or(false);
        if state.is_none() && enabled.is_none() && !daemon_reload {
            return Err(ArgError::general("give at least one of `state`, `enabled` or `daemon_reload`"));
        }
        Ok(Service { name, state, enabled, daemon_reload, no_block })
    }

    pub fn probes(&self, out: &mut BTreeSet<FactRequest>) {
        out.insert(FactRequest::Service(self.name.clone()));
    }

    pub fn plan(&self, facts: &Facts) -> Vec<Change> {
        let unit = unit_name(&self.name);
        let svc = facts.services.get(&self.name);
        let active = svc.map(|s| s.is_active()).unwrap_or(false);
        let enabled = svc.map(|s| s.is_enabled()).unwrap_or(false);
        let mut c = Vec::new();
        match self.enabled {
            Some(true) if !enabled => c.push(Change::Unit { unit: unit.clone(), action: UnitAction::Enable }),
            Some(false) if enabled => c.push(Change::Unit { unit: unit.clone(), action: UnitAction::Disable }),
            _ => {}
        }
        match self.state.as_deref() {
            Some("started") if !active => c.push(Change::Unit { unit: unit.clone(), action: UnitAction::Start }),
            Some("stopped") if active => c.push(Change::Unit { unit: unit.clone(), action: UnitAction::Stop }),
            Some("restarted") => {
                let action = if self.no_block { UnitAction::RestartQueued } else { UnitAction::Restart };
                c.push(Change::Unit { unit: unit.clone(), action })
            }
            Some("reloaded") => c.push(Change::Unit { unit: unit.clone(), action: UnitAction::Reload }),
            _ => {}
        }
        // Reload systemd when a unit file changed in this run, or before
        // acting on the unit anyway; never as a change of its own.
        if self.daemon_reload && (facts.units_changed || !c.is_empty()) {
            c.insert(0, Change::DaemonReload);
        }
        c
    }
}

/// `service` and `systemd` (the same module under two names).
pub struct ServiceModule(&'static Spec);
pub static SERVICE: ServiceModule = ServiceModule(&SERVICE_SPEC);
pub static SYSTEMD: ServiceModule = ServiceModule(&SYSTEMD_SPEC);
const ARGS: &[&str] = &["name", "state", "enabled", "daemon_reload", "no_block"];
static SERVICE_SPEC: Spec = Spec { name: "service", args: ARGS, late: &[], free_form: None };
static SYSTEMD_SPEC: Spec = Spec { name: "systemd", args: ARGS, late: &[], free_form: None };

impl Module for ServiceModule {
    fn spec(&self) -> &'static Spec {
        self.0
    }
    fn parse(&self, a: &Args, _: &ParseCtx) -> Result<Box<dyn Action>, ArgError> {
        Ok(Box::new(Service::parse(a)?))
    }
}

impl Action for Service {
    fn probes(&self, _diff: bool, out: &mut BTreeSet<FactRequest>) {
        Service::probes(self, out)
    }
    fn plan(&self, facts: &Facts) -> Result<Vec<Change>, String> {
        Ok(Service::plan(self, facts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::facts::Service as Svc;
    use serde_json::json;

    #[test]
    fn starts_and_enables_only_when_needed() {
        let s = Service::parse(&Args(json!({"name": "docker", "state": "started", "enabled": "yes"}).as_object().unwrap())).unwrap();
        let mut f = Facts::default();
        f.services.insert("docker".into(), Svc { load: "loaded".into(), active: "inactive".into(), enabled: "disabled".into() });
        assert_eq!(s.plan(&f).len(), 2);
        f.services.insert("docker".into(), Svc { load: "loaded".into(), active: "active".into(), enabled: "enabled".into() });
        assert!(s.plan(&f).is_empty());
        let r = Service::parse(&Args(json!({"name": "docker", "state": "started", "daemon_reload": true}).as_object().unwrap())).unwrap();
        assert!(r.plan(&f).is_empty(), "daemon_reload alone is not a change");
        f.units_changed = true;
        assert_eq!(r.plan(&f), vec![Change::DaemonReload]);
    }
}
