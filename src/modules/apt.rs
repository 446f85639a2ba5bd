//! `apt`: Debian packages present, latest, absent, or at a version; the package
//! lists refreshed when older than `cache_valid_time` or when a task in this
//! run changed the apt sources. Every apt command waits (bounded by
//! `lock_timeout`, default 300 s) for the dpkg lock that cloud-init and
//! unattended-upgrades hold on fresh VMs, and says which process holds it.

use std::collections::BTreeSet;

use super::{ArgError, Args, ParseCtx, Spec};
use crate::plan::changes::{Change, DEFAULT_APT_LOCK_TIMEOUT};
use crate::plan::facts::{FactRequest, Facts};
use crate::plan::module::{Action, Module};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Apt {
    /// (name, pinned version)
    pub packages: Vec<(String, Option<String>)>,
    pub present: bool,
    /// `state: latest`: upgraded when the host's lists know a newer
    /// candidate (a pinned version still wins).
    pub latest: bool,
    pub update_cache: bool,
    pub cache_valid_time: u64,
    pub purge: bool,
    pub lock_timeout: u64,
}

fn valid_package(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() >= 2
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

fn valid_version(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || ".+-~:*".contains(c))
}

impl Apt {
    pub fn parse(a: &Args) -> Result<Apt, ArgError> {
        let field = if a.get("pkg").is_some() { "pkg" } else { "name" };
        let mut packages = Vec::new();
        for p in a.list(field)? {
            let (name, version) = match p.split_once('=') {
                Some((n, v)) => (n.trim().to_string(), Some(v.trim().to_string())),
                None => (p.trim().to_string(), None),
            };
            if !valid_package(&name) {
                return Err(ArgError::field(field, format!("`{}` is not a valid Debian package name", name.escape_debug())));
            }
            if let Some(v) = &version {
                if !valid_version(v) {
                    return Err(ArgError::field(field, format!("`{}` is not a valid package version", v.escape_debug())));
                }
            }
            packages.push((name, version));
        }
        let state = a.choice("state", &["present", "installed", "latest", "absent", "removed"], "present")?;
        let update_cache = a.opt_bool("update_cache")?.unwrap_or(false);
        if packages.is_empty() && !update_cache {
            return Err(ArgError::field("name", "is required (or set update_cache: true)"));
        }
        if a.get("install_recommends").is_some() {
            return Err(ArgError::field("install_recommends", "is not supported: apt's own default applies"));
        }
        Ok(Apt {
            packages,
            present: matches!(state.as_str(), "present" | "installed" | "latest"),
            latest: state == "latest",
            update_cache,
            cache_valid_time: a.opt_u64("cache_valid_time")?.unwrap_or(0),
            purge: a.opt_bool("purge")?.unwrap_or(false),
            lock_timeout: a.opt_u64("lock_timeout")?.unwrap_or(DEFAULT_APT_LOCK_TIMEOUT),
        })
    }

    pub fn probes(&self, out: &mut BTreeSet<FactRequest>) {
        for (p, _) in &self.packages {
            out.insert(FactRequest::Package(p.clone()));
        }
        if self.latest {
            for (p, v) in &self.packages {
                if v.is_none() {
                    out.insert(FactRequest::Candidate(p.clone()));
                }
            }
        }
        if self.update_cache {
            out.insert(FactRequest::AptCache);
        }
    }

    pub fn plan(&self, facts: &Facts) -> Vec<Change> {
        let mut changes = Vec::new();
        let lock_timeout = self.lock_timeout;
        let stale = match facts.apt_cache_age {
            None => true,
            Some(age) => self.cache_valid_time == 0 || age > self.cache_valid_time,
        };
        let mut todo = Vec::new();
        for (name, version) in &self.packages {
            let have = facts.packages.get(name);
            let installed = have.map(|p| p.installed).unwrap_or(false);
            if self.present {
                let ok = installed
                    && match version {
                        None if self.latest => match facts.candidates.get(name) {
                            Some(c) => have.and_then(|p| p.version.as_deref()) == Some(c.as_str()),
                            None => true,
                        },
                        None => true,
                        Some(v) => {
                            let hv = have.and_then(|p| p.version.as_deref()).unwrap_or("");
                            match v.strip_suffix('*') {
                                Some(prefix) => hv.starts_with(prefix),
                                None => hv == v,
                            }
                        }
                    };
                if !ok {
                    todo.push(match version {
                        Some(v) => format!("{name}={v}"),
                        None => name.clone(),
                    });
                }
            } else if installed {
                todo.push(name.clone());
            }
        }
        // Refresh the lists when asked and stale, when sources changed in
        // this run, or when there are none at all and we must install.
        let must_update = (self.update_cache && (stale || facts.apt_sources_changed))
            || (self.present && !todo.is_empty() && (facts.apt_sources_changed || facts.apt_cache_age.is_none()));
        if must_update {
            changes.push(Change::AptUpdate { lock_timeout });
        }
        if !todo.is_empty() {
            changes.push(if self.present {
                Change::AptInstall { packages: todo, lock_timeout }
            } else {
                Change::AptRemove { packages: todo, purge: self.purge, lock_timeout }
            });
        }
        changes
    }
}

/// The `apt` module.
pub struct AptModule;
pub static APT: AptModule = AptModule;
static SPEC: Spec = Spec {
    name: "apt",
    args: &["name", "pkg", "state", "update_cache", "cache_valid_time", "purge", "lock_timeout", "install_recommends"],
    late: &[],
    free_form: None,
};

impl Module for AptModule {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }
    fn parse(&self, a: &Args, _: &ParseCtx) -> Result<Box<dyn Action>, ArgError> {
        Ok(Box::new(Apt::parse(a)?))
    }
}

impl Action for Apt {
    fn probes(&self, _diff: bool, out: &mut BTreeSet<FactRequest>) {
        Apt::probes(self, out)
    }
    fn plan(&self, facts: &Facts) -> Result<Vec<Change>, String> {
        Ok(Apt::plan(self, facts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::facts::Package;
    use serde_json::json;

    fn apt(v: serde_json::Value) -> Apt {
        Apt::parse(&Args(v.as_object().unwrap())).unwrap()
    }

    fn facts(installed: &[(&str, &str)], cache_age: Option<u64>) -> Facts {
        let mut f = Facts::default();
        for (n, v) in installed {
            f.packages.insert(n.to_string(), Package { installed: true, version: Some(v.to_string()) });
        }
        f.apt_cache_age = cache_age;
        f
    }

    #[test]
    fn latest_upgrades_to_the_candidate_and_only_then() {
        let a = apt(json!({"name": ["curl", "jq"], "state": "latest"}));
        let mut probes = BTreeSet::new();
        a.probes(&mut probes);
        assert!(probes.contains(&FactRequest::Candidate("curl".into())));
        let mut f = facts(&[("curl", "7"), ("jq", "1")], Some(10));
        f.candidates.insert("curl".into(), "8".into());
        f.candidates.insert("jq".into(), "1".into());
        assert_eq!(a.plan(&f), vec![Change::AptInstall { packages: vec!["curl".into()], lock_timeout: 300 }]);
        f.candidates.insert("curl".into(), "7".into());
        assert!(a.plan(&f).is_empty(), "at the candidate: nothing to do");
        let present = apt(json!({"name": ["curl"]}));
        f.candidates.insert("curl".into(), "9".into());
        assert!(present.plan(&f).is_empty(), "present does not upgrade");
        assert!(Apt::parse(&Args(json!({"name": "curl", "state": "newest"}).as_object().unwrap())).is_err());
    }

    #[test]
    fn installs_only_what_is_missing() {
        let a = apt(json!({"name": ["curl", "jq"]}));
        let c = a.plan(&facts(&[("curl", "7")], Some(10)));
        assert_eq!(c, vec![Change::AptInstall { packages: vec!["jq".into()], lock_timeout: 300 }]);
        assert!(a.plan(&facts(&[("curl", "7"), ("jq", "1")], Some(10))).is_empty());
    }

    #[test]
    fn pinned_versions_and_removal() {
        let a = apt(json!({"name": "curl=7.88*"}));
        assert!(a.plan(&facts(&[("curl", "7.88.1-10")], Some(1))).is_empty());
        assert_eq!(a.plan(&facts(&[("curl", "7.74")], Some(1))).len(), 1);
        let r = apt(json!({"name": "curl", "state": "absent"}));
        assert!(matches!(&r.plan(&facts(&[("curl", "7")], Some(1)))[0], Change::AptRemove { .. }));
        assert!(r.plan(&facts(&[], Some(1))).is_empty());
    }

    #[test]
    fn cache_validity_window() {
        let a = apt(json!({"update_cache": "yes", "cache_valid_time": 3600}));
        assert!(a.plan(&facts(&[], Some(100))).is_empty());
        assert_eq!(a.plan(&facts(&[], Some(7200))).len(), 1);
        assert_eq!(a.plan(&facts(&[], None)).len(), 1);
        let mut f = facts(&[], Some(100));
        f.apt_sources_changed = true;
        assert_eq!(a.plan(&f).len(), 1, "a source added in this run forces an update");
    }

    #[test]
    fn rejects_bad_names() {
        let err = Apt::parse(&Args(json!({"name": "curl; rm -rf /"}).as_object().unwrap())).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("name"));
    }
}
