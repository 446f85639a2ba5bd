//! Modules: pure functions from (desired state, facts) to changes.
//!
//! Each file holds one module (or two close kin, like `command`/`shell`):
//! its arguments, checked; the facts it needs; its planner. No module does
//! I/O on a host or sees a connection: they are tested with facts made by
//! hand. The contract they implement is [`crate::plan::module`].
//!
//! Adding a module is one new file here and one line in [`REGISTRY`].

pub mod apt;
pub mod apt_repository;
pub mod assert;
pub mod command;
pub mod copy;
pub mod file;
pub mod gitlab_runner;
pub mod service;
pub mod template;
pub mod user;

use std::path::{Path, PathBuf};

use crate::plan::module::Module;
pub use crate::plan::module::{check_name, ArgError, Args, ParseCtx, Spec};

/// Every module a playbook may use, by the name it is written with.
pub static REGISTRY: &[&dyn Module] = &[
    &apt::APT,
    &apt_repository::APT_REPOSITORY,
    &copy::COPY,
    &template::TEMPLATE,
    &file::FILE,
    &file::DIRECTORY,
    &user::USER,
    &user::GROUP,
    &service::SERVICE,
    &service::SYSTEMD,
    &command::COMMAND,
    &command::SHELL,
    &assert::ASSERT,
    &gitlab_runner::GITLAB_RUNNER,
];

/// Collections whose modules Ansible users name in full
/// (`ansible.builtin.copy`): the same modules.
const COLLECTIONS: &[&str] = &["ansible.builtin.", "ansible.legacy."];

/// The module called `name` (short or fully qualified).
pub fn find(name: &str) -> Option<&'static dyn Module> {
    let short = COLLECTIONS.iter().find_map(|c| name.strip_prefix(c)).unwrap_or(name);
    REGISTRY.iter().copied().find(|m| m.spec().name == short)
}

/// The names of every module, for messages.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|m| m.spec().name).collect()
}

/// Mode, owner and group: the attribute arguments of file modules.
pub const ATTRS: [&str; 3] = ["mode", "owner", "group"];

/// An absolute path without NUL or newline.
pub fn check_path(field: &str, v: &str) -> Result<(), ArgError> {
    if !v.starts_with('/') {
        return Err(ArgError::field(field, format!("`{v}` must be an absolute path")));
    }
    if v.contains('\n') {
        return Err(ArgError::field(field, "must not contain a newline"));
    }
    Ok(())
}

/// Find a local file given by a task: absolute, or relative to the
/// playbook's `sub` folder, or to the playbook's folder.
pub fn local_file(base: &Path, sub: &str, name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    [base.join(sub).join(name), base.join(name)].into_iter().find(|c| c.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_unique_and_found_in_full() {
        let mut names = names();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "a module name is registered twice");
        assert_eq!(find("ansible.builtin.copy").map(|m| m.spec().name), Some("copy"));
        assert_eq!(find("ansible.legacy.apt").map(|m| m.spec().name), Some("apt"));
        assert!(find("ansible.posix.copy").is_none() && find("nope").is_none());
    }
}
