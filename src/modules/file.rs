//! `file` and `directory`: paths with a state (file, directory, absent,
//! touch, link) and attributes; and [`FileContent`], the hash-checked whole
//! file that `copy` and `template` produce.

use std::collections::BTreeSet;
use std::sync::Arc;

use std::path::PathBuf;

use super::{check_path, ArgError, Args, ParseCtx, Spec, ATTRS};
use crate::plan::changes::{sha256_hex, Attrs, Change};
use crate::plan::facts::{FactRequest, Facts, PathKind};
use crate::plan::module::{Action, Module};

/// A whole file with known content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContent {
    pub dest: String,
    pub content: Arc<Vec<u8>>,
    /// Its SHA-256 (hex), computed when first asked for: a program
    /// compiled before connecting is only checked, never compared.
    sha256: std::sync::OnceLock<String>,
    pub attrs: Attrs,
    /// The template it was rendered from, for messages.
    pub template: Option<String>,
    /// The local file it was read from (`copy src`).
    pub local_src: Option<PathBuf>,
}

impl FileContent {
    pub fn new(dest: String, content: Arc<Vec<u8>>, attrs: Attrs) -> FileContent {
        FileContent { sha256: std::sync::OnceLock::new(), dest, content, attrs, template: None, local_src: None }
    }

    /// The content's SHA-256 (hex).
    pub fn sha256(&self) -> &str {
        self.sha256.get_or_init(|| sha256_hex(&self.content))
    }

    /// Content whose SHA-256 is known already (a local file, hashed once
    /// for every host).
    pub fn hashed(dest: String, content: Arc<Vec<u8>>, sha256: String, attrs: Attrs) -> FileContent {
        FileContent { sha256: sha256.into(), dest, content, attrs, template: None, local_src: None }
    }

    pub fn probes(&self, diff: bool, out: &mut BTreeSet<FactRequest>) {
        out.insert(FactRequest::Path { path: self.dest.clone(), content: diff, checksum: true });
    }

    pub fn plan(&self, facts: &Facts) -> Result<Vec<Change>, String> {
        match facts.path(&self.dest) {
            Some(st) if st.kind == PathKind::Directory => {
                Err(format!("{} is a directory on the host; give the file's full path", self.dest))
            }
            Some(st) if st.sha256.as_deref() == Some(self.sha256()) => {
                Ok(self.attrs.differing(st).map(|d| Change::SetAttrs { path: self.dest.clone(), attrs: d }).into_iter().collect())
            }
            old => Ok(vec![Change::WriteFile {
                path: self.dest.clone(),
                content: self.content.clone(),
                attrs: self.attrs.clone(),
                old: old.cloned(),
                swap: false,
            }]),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    File,
    Directory,
    Absent,
    Touch,
    Link,
}

/// A path's desired state, without content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathState {
    pub path: String,
    pub state: State,
    pub attrs: Attrs,
    pub src: Option<String>,
}

impl PathState {
    pub fn parse(a: &Args, directory_module: bool) -> Result<PathState, ArgError> {
        let field = if a.get("dest").is_some() { "dest" } else { "path" };
        let path = a.str(field)?;
        check_path(field, &path)?;
        // Times are kept as they are (a `touch` only creates a missing
        // file), which is Ansible's `preserve`; setting them is not done.
        for k in ["modification_time", "access_time"] {
            if let Some(v) = a.opt_str(k)? {
                if v != "preserve" {
                    return Err(ArgError::field(k, format!("only `preserve` is supported, found `{v}`")));
                }
            }
        }
        let state = if directory_module {
            match a.choice("state", &["present", "absent"], "present")?.as_str() {
                "absent" => State::Absent,
                _ => State::Directory,
            }
        } else {
            match a.choice("state", &["file", "directory", "absent", "touch", "link"], "file")?.as_str() {
                "directory" => State::Directory,
                "absent" => State::Absent,
                "touch" => State::Touch,
                "link" => State::Link,
                _ => State::File,
            }
        };
        let src = a.opt_str("src")?;
        if state == State::Link && src.is_none() {
            return Err(ArgError::field("src", "is required with state: link"));
        }
        if path == "/" && state == State::Absent {
            return Err(ArgError::field(field, "refusing to remove /"));
        }
        Ok(PathState { path, state, attrs: a.attrs()?, src })
    }

    pub fn probes(&self, out: &mut BTreeSet<FactRequest>) {
        out.insert(FactRequest::Path { path: self.path.clone(), content: false, checksum: false });
    }

    pub fn plan(&self, facts: &Facts) -> Result<Vec<Change>, String> {
        let cur = facts.path(&self.path);
        let path = self.path.clone();
        let attrs_change = |st| self.attrs.differing(st).map(|d| Change::SetAttrs { path: path.clone(), attrs: d });
        Ok(match self.state {
            State::Directory => match cur {
                None => vec![Change::MakeDir { path: path.clone(), attrs: self.attrs.clone() }],
                Some(st) if st.kind == PathKind::Directory => attrs_change(st).into_iter().collect(),
                Some(_) => return Err(format!("{path} exists and is not a directory")),
            },
            State::File => match cur {
                None => return Err(format!("{path} does not exist (use state: touch to create it)")),
                Some(st) => attrs_change(st).into_iter().collect(),
            },
            State::Touch => match cur {
                None => vec![Change::Touch { path: path.clone(), attrs: self.attrs.clone() }],
                Some(st) => attrs_change(st).into_iter().collect(),
            },
            State::Absent => match cur {
                None => vec![],
                Some(_) => vec![Change::Remove { path: path.clone() }],
            },
            State::Link => match cur {
                Some(st) if st.kind == PathKind::Link => vec![],
                _ => vec![Change::Symlink { path: path.clone(), target: self.src.clone().unwrap_or_default() }],
            },
        })
    }
}

impl Action for FileContent {
    fn probes(&self, diff: bool, out: &mut BTreeSet<FactRequest>) {
        FileContent::probes(self, diff, out)
    }
    fn plan(&self, facts: &Facts) -> Result<Vec<Change>, String> {
        FileContent::plan(self, facts)
    }
    fn local_files(&self) -> Vec<PathBuf> {
        self.local_src.iter().cloned().collect()
    }
}

/// `file` and `directory`: a path's state.
pub struct FileModule {
    spec: &'static Spec,
    directory: bool,
}
pub static FILE: FileModule = FileModule { spec: &FILE_SPEC, directory: false };
pub static DIRECTORY: FileModule = FileModule { spec: &DIRECTORY_SPEC, directory: true };
static FILE_SPEC: Spec = Spec {
    name: "file",
    args: &["path", "dest", "state", "src", ATTRS[0], ATTRS[1], ATTRS[2], "modification_time", "access_time"],
    late: &[],
    free_form: None,
};
static DIRECTORY_SPEC: Spec =
    Spec { name: "directory", args: &["path", "state", ATTRS[0], ATTRS[1], ATTRS[2]], late: &[], free_form: None };

impl Module for FileModule {
    fn spec(&self) -> &'static Spec {
        self.spec
    }
    fn parse(&self, a: &Args, _: &ParseCtx) -> Result<Box<dyn Action>, ArgError> {
        Ok(Box::new(PathState::parse(a, self.directory)?))
    }
}

impl Action for PathState {
    fn probes(&self, _diff: bool, out: &mut BTreeSet<FactRequest>) {
        PathState::probes(self, out)
    }
    fn plan(&self, facts: &Facts) -> Result<Vec<Change>, String> {
        PathState::plan(self, facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::facts::PathState as Fs;

    fn facts_with(path: &str, kind: PathKind, mode: u32, sha: Option<&str>) -> Facts {
        let mut f = Facts::default();
        f.paths.insert(
            path.into(),
            Some(Fs { kind, mode, owner: "root".into(), group: "root".into(), sha256: sha.map(str::to_string), content: None }),
        );
        f
    }

    #[test]
    fn content_by_hash() {
        let fc = FileContent::new("/etc/x".into(), Arc::new(b"hi\n".to_vec()), Attrs { mode: Some(0o600), ..Default::default() });
        assert!(matches!(fc.plan(&Facts::default()).unwrap()[0], Change::WriteFile { .. }));
        let same = facts_with("/etc/x", PathKind::File, 0o600, Some(fc.sha256()));
        assert!(fc.plan(&same).unwrap().is_empty());
        let mode = facts_with("/etc/x", PathKind::File, 0o644, Some(fc.sha256()));
        assert!(matches!(fc.plan(&mode).unwrap()[0], Change::SetAttrs { .. }));
        let other = facts_with("/etc/x", PathKind::File, 0o600, Some("00"));
        assert!(matches!(fc.plan(&other).unwrap()[0], Change::WriteFile { .. }));
        let dir = facts_with("/etc/x", PathKind::Directory, 0o755, None);
        assert!(fc.plan(&dir).is_err());
    }

    #[test]
    fn directories() {
        let d =
            PathState { path: "/d".into(), state: State::Directory, attrs: Attrs { mode: Some(0o750), ..Default::default() }, src: None };
        assert!(matches!(d.plan(&Facts::default()).unwrap()[0], Change::MakeDir { .. }));
        assert!(d.plan(&facts_with("/d", PathKind::Directory, 0o750, None)).unwrap().is_empty());
        assert!(d.plan(&facts_with("/d", PathKind::File, 0o750, None)).is_err());
    }
}
