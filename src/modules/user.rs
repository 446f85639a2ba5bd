//! `user` and `group`: local accounts, created, adjusted or removed.
//! `groups` are added to the user's groups (Ansible's `append: true`);
//! other groups the user has are left alone. A `group`'s `members` (not
//! in Ansible's module: its users' `groups`, from the group's side) are
//! existing users added to it, the same way.

use std::collections::BTreeSet;

use super::{check_name, ArgError, Args, ParseCtx, Spec};
use crate::plan::changes::{Change, UserSpec};
use crate::plan::facts::{FactRequest, Facts};
use crate::plan::module::{Action, Module};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub spec: UserSpec,
    pub present: bool,
    pub remove_home: bool,
}

impl User {
    pub fn parse(a: &Args) -> Result<User, ArgError> {
        let name = a.str("name")?;
        check_name("name", &name)?;
        let groups = a.list("groups")?;
        for g in &groups {
            check_name("groups", g)?;
        }
        let group = a.opt_str("group")?;
        if let Some(g) = &group {
            check_name("group", g)?;
        }
        if a.opt_bool("append")? == Some(false) {
            return Err(ArgError::field("append", "only `append: true` is supported: groups are added, never taken away"));
        }
        let uid = a.opt_u64("uid")?.map(|u| u32::try_from(u).map_err(|_| ArgError::field("uid", "is too large"))).transpose()?;
        let system = a.opt_bool("system")?.unwrap_or(false);
        for k in ["shell", "home"] {
            if let Some(v) = a.opt_str(k)? {
                super::check_path(k, &v)?;
            }
        }
        Ok(User {
            spec: UserSpec {
                name,
                uid,
                group,
                groups,
                shell: a.opt_str("shell")?,
                home: a.opt_str("home")?,
                system,
                create_home: a.opt_bool("create_home")?.unwrap_or(!system),
            },
            present: a.choice("state", &["present", "absent"], "present")? == "present",
            remove_home: a.opt_bool("remove")?.unwrap_or(false),
        })
    }

    pub fn probes(&self, out: &mut BTreeSet<FactRequest>) {
        out.insert(FactRequest::User(self.spec.name.clone()));
    }

    pub fn plan(&self, facts: &Facts) -> Vec<Change> {
        let cur = facts.users.get(&self.spec.name).and_then(|u| u.as_ref());
        match (self.present, cur) {
            (true, None) => vec![Change::UserAdd(self.spec.clone())],
            (true, Some(u)) => {
                let add_groups: Vec<String> = self.spec.groups.iter().filter(|g| !u.groups.contains(g)).cloned().collect();
                let shell = self.spec.shell.clone().filter(|s| *s != u.shell);
                let home = self.spec.home.clone().filter(|h| *h != u.home);
                if add_groups.is_empty() && shell.is_none() && home.is_none() {
                    vec![]
                } else {
                    vec![Change::UserMod { name: self.spec.name.clone(), add_groups, shell, home }]
                }
            }
            (false, Some(_)) => vec![Change::UserDel { name: self.spec.name.clone(), remove_home: self.remove_home }],
            (false, None) => vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: Option<u32>,
    pub system: bool,
    pub present: bool,
    /// Existing users added to the group (others it has are left alone).
    pub members: Vec<String>,
}

impl Group {
    pub fn parse(a: &Args) -> Result<Group, ArgError> {
        let name = a.str("name")?;
        check_name("name", &name)?;
        let members = a.list("members")?;
        for m in &members {
            check_name("members", m)?;
        }
        let present = a.choice("state", &["present", "absent"], "present")? == "present";
        if !present && !members.is_empty() {
            return Err(ArgError::field("members", "a group to remove takes no members"));
        }
        Ok(Group {
            name,
            members,
            gid: a.opt_u64("gid")?.map(|g| u32::try_from(g).map_err(|_| ArgError::field("gid", "is too large"))).transpose()?,
            system: a.opt_bool("system")?.unwrap_or(false),
            present,
        })
    }

    pub fn probes(&self, out: &mut BTreeSet<FactRequest>) {
        out.insert(FactRequest::Group(self.name.clone()));
        for m in &self.members {
            out.insert(FactRequest::User(m.clone()));
        }
    }

    pub fn plan(&self, facts: &Facts) -> Result<Vec<Change>, String> {
        let exists = facts.groups.get(&self.name).map(|g| g.is_some()).unwrap_or(false);
        let mut changes = match (self.present, exists) {
            (true, false) => vec![Change::GroupAdd { name: self.name.clone(), gid: self.gid, system: self.system }],
            (false, true) => vec![Change::GroupDel { name: self.name.clone() }],
            _ => vec![],
        };
        for m in &self.members {
            let Some(u) = facts.users.get(m).and_then(|u| u.as_ref()) else {
                return Err(format!("members: user `{m}` does not exist on the host (create it first)"));
            };
            if !u.groups.contains(&self.name) {
                changes.push(Change::UserMod { name: m.clone(), add_groups: vec![self.name.clone()], shell: None, home: None });
            }
        }
        Ok(changes)
    }
}

/// The `user` module.
pub struct UserModule;
pub static USER: UserModule = UserModule;
static USER_SPEC: Spec = Spec {
    name: "user",
    args: &["name", "state", "uid", "group", "groups", "append", "shell", "home", "system", "create_home", "remove"],
    late: &[],
    free_form: None,
};

impl Module for UserModule {
    fn spec(&self) -> &'static Spec {
        &USER_SPEC
    }
    fn parse(&self, a: &Args, _: &ParseCtx) -> Result<Box<dyn Action>, ArgError> {
        Ok(Box::new(User::parse(a)?))
    }
}

impl Action for User {
    fn probes(&self, _diff: bool, out: &mut BTreeSet<FactRequest>) {
        User::probes(self, out)
    }
    fn plan(&self, facts: &Facts) -> Result<Vec<Change>, String> {
        Ok(User::plan(self, facts))
    }
}

/// The `group` module.
pub struct GroupModule;
pub static GROUP: GroupModule = GroupModule;
static GROUP_SPEC: Spec = Spec { name: "group", args: &["name", "state", "gid", "system", "members"], late: &[], free_form: None };

impl Module for GroupModule {
    fn spec(&self) -> &'static Spec {
        &GROUP_SPEC
    }
    fn parse(&self, a: &Args, _: &ParseCtx) -> Result<Box<dyn Action>, ArgError> {
        Ok(Box::new(Group::parse(a)?))
    }
}

impl Action for Group {
    fn probes(&self, _diff: bool, out: &mut BTreeSet<FactRequest>) {
        Group::probes(self, out)
    }
    fn plan(&self, facts: &Facts) -> Result<Vec<Change>, String> {
        Group::plan(self, facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_added_to_the_group_once() {
        use crate::plan::facts::User as U;
        let g = Group::parse(&Args(json!({"name": "docker", "members": ["deploy", "ops"]}).as_object().unwrap())).unwrap();
        let mut f = Facts::default();
        f.groups.insert("docker".into(), Some(crate::plan::facts::Group { gid: 999 }));
        let user = |groups: &[&str]| {
            Some(U {
                uid: 1000,
                gid: 1000,
                home: "/home/x".into(),
                shell: "/bin/sh".into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            })
        };
        f.users.insert("deploy".into(), user(&["deploy"]));
        f.users.insert("ops".into(), user(&["ops", "docker"]));
        assert_eq!(
            g.plan(&f).unwrap(),
            vec![Change::UserMod { name: "deploy".into(), add_groups: vec!["docker".into()], shell: None, home: None }]
        );
        f.users.insert("deploy".into(), user(&["deploy", "docker"]));
        assert_eq!(g.plan(&f).unwrap(), vec![]);
        f.users.insert("ops".into(), None);
        assert!(g.plan(&f).unwrap_err().contains("`ops` does not exist"));
        let bad = Group::parse(&Args(json!({"name": "docker", "members": "deploy;reboot"}).as_object().unwrap())).unwrap_err();
        assert_eq!(bad.field.as_deref(), Some("members"));
    }

    #[test]
    fn adds_missing_groups_only() {
        let u = User::parse(&Args(json!({"name": "app", "groups": ["docker", "adm"]}).as_object().unwrap())).unwrap();
        let mut f = Facts::default();
        assert!(matches!(u.plan(&f)[0], Change::UserAdd(_)));
        f.users.insert(
            "app".into(),
            Some(crate::plan::facts::User {
                uid: 1001,
                gid: 1001,
                home: "/home/app".into(),
                shell: "/bin/sh".into(),
                groups: vec!["app".into(), "docker".into()],
            }),
        );
        assert_eq!(u.plan(&f), vec![Change::UserMod { name: "app".into(), add_groups: vec!["adm".into()], shell: None, home: None }]);
        for c in u.plan(&f) {
            c.simulate(&mut f);
        }
        assert!(u.plan(&f).is_empty());
    }
}
