//! `apt_repository`: an apt source as a deb822 `.sources` file in
//! `/etc/apt/sources.list.d/`, its key in `/etc/apt/keyrings/` named by
//! `Signed-By`. Legacy one-line `.list` files for the same URL are removed,
//! since two entries for one URL with different `Signed-By` values make apt
//! refuse to work. `suites` defaults to the host's codename.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{local_file, ArgError, Args, ParseCtx, Spec};
use crate::plan::changes::{sha256_hex, Attrs, Change};
use crate::plan::facts::{FactRequest, Facts};
use crate::plan::module::{Action, Module};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptRepository {
    pub name: String,
    pub uris: Vec<String>,
    /// Empty: the host's codename.
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub types: Vec<String>,
    pub architectures: Vec<String>,
    pub key: Option<Vec<u8>>,
    /// Where the key is downloaded from by the controller.
    pub key_url: Option<String>,
    pub present: bool,
}

impl AptRepository {
    pub fn parse(a: &Args, ctx: &ParseCtx) -> Result<AptRepository, ArgError> {
        let name = a.str("name")?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
            return Err(ArgError::field("name", format!("`{}` must be a plain file name (letters, digits, _ - .)", name.escape_debug())));
        }
        let present = a.choice("state", &["present", "absent"], "present")? == "present";
        let uris = a.list("uris")?;
        if present && uris.is_empty() {
            return Err(ArgError::field("uris", "is required"));
        }
        for u in &uris {
            if !(u.starts_with("http://") || u.starts_with("https://") || u.starts_with("file:/")) || u.contains(char::is_whitespace) {
                return Err(ArgError::field("uris", format!("`{u}` is not an http(s) or file URL")));
            }
        }
        let key_url = a.opt_str("key_url")?;
        if let Some(u) = &key_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(ArgError::field("key_url", format!("`{u}` is not an http(s) URL")));
            }
        }
        let given = [a.get("key").is_some(), a.get("key_src").is_some(), key_url.is_some()].iter().filter(|b| **b).count();
        if given > 1 {
            return Err(ArgError::general("give one of `key`, `key_src` or `key_url`"));
        }
        let key = match (a.opt_str("key")?, a.opt_str("key_src")?) {
            _ if key_url.is_some() => {
                let url = key_url.clone().unwrap_or_default();
                match ctx.downloads.get(&url) {
                    Some(bytes) => Some(bytes.clone()),
                    // Before connecting the key is not downloaded yet.
                    None if ctx.trial => Some(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n".to_vec()),
                    None => return Err(ArgError::field("key_url", format!("{url} was not downloaded"))),
                }
            }
            (Some(_), Some(_)) => return Err(ArgError::general("give either `key` or `key_src`, not both")),
            (Some(k), None) => Some(k.into_bytes()),
            (None, Some(src)) => {
                let path = local_file(ctx.base_dir, "files", &src)
                    .ok_or_else(|| ArgError::field("key_src", format!("local file `{src}` not found")))?;
                Some(ctx.files.get(&path).map_err(|e| ArgError::field("key_src", format!("{}: {e}", path.display())))?.to_vec())
            }
            (None, None) => None,
        };
        let words = |k: &str| -> Result<Vec<String>, ArgError> {
            let v: Vec<String> =
                a.list(k)?.into_iter().flat_map(|s| s.split_whitespace().map(str::to_string).collect::<Vec<_>>()).collect();
            if v.iter().any(|w| w.contains(['\n', ':'])) {
                return Err(ArgError::field(k, "contains a character not allowed in a deb822 field"));
            }
            Ok(v)
        };
        let types = words("types")?;
        Ok(AptRepository {
            name,
            uris,
            suites: words("suites")?,
            components: words("components")?,
            types: if types.is_empty() { vec!["deb".into()] } else { types },
            architectures: words("architectures")?,
            key,
            key_url,
            present,
        })
    }

    pub fn sources_path(&self) -> String {
        format!("/etc/apt/sources.list.d/{}.sources", self.name)
    }

    /// Armored keys are `.asc`, binary ones `.gpg`: apt tells them apart by
    /// the extension.
    pub fn key_path(&self) -> Option<String> {
        let key = self.key.as_ref()?;
        let ext = if key.starts_with(b"-----BEGIN PGP") { "asc" } else { "gpg" };
        Some(format!("/etc/apt/keyrings/{}.{ext}", self.name))
    }

    pub fn probes(&self, diff: bool, out: &mut BTreeSet<FactRequest>) {
        out.insert(FactRequest::Path { path: self.sources_path(), content: diff, checksum: true });
        out.insert(FactRequest::Path { path: "/etc/apt/keyrings".into(), content: false, checksum: false });
        for ext in ["asc", "gpg"] {
            out.insert(FactRequest::Path { path: format!("/etc/apt/keyrings/{}.{ext}", self.name), content: false, checksum: true });
        }
        for u in &self.uris {
            out.insert(FactRequest::AptSourcesFor(u.clone()));
        }
    }

    /// The deb822 text for a host with codename `codename`.
    pub fn render(&self, codename: &str) -> String {
        let suites = if self.suites.is_empty() { codename.to_string() } else { self.suites.join(" ") };
        let mut s = format!("Types: {}\nURIs: {}\nSuites: {suites}\n", self.types.join(" "), self.uris.join(" "));
        if !self.components.is_empty() {
            s.push_str(&format!("Components: {}\n", self.components.join(" ")));
        }
        if !self.architectures.is_empty() {
            s.push_str(&format!("Architectures: {}\n", self.architectures.join(" ")));
        }
        if let Some(k) = self.key_path() {
            s.push_str(&format!("Signed-By: {k}\n"));
        }
        s
    }

    pub fn plan(&self, facts: &Facts) -> Result<Vec<Change>, String> {
        let mut changes = Vec::new();
        let sources = self.sources_path();
        if !self.present {
            for p in std::iter::once(sources).chain(["asc", "gpg"].iter().map(|e| format!("/etc/apt/keyrings/{}.{e}", self.name))) {
                if facts.path(&p).is_some() {
                    changes.push(Change::Remove { path: p });
                }
            }
            return Ok(changes);
        }
        if self.suites.is_empty() && facts.os.codename.is_empty() {
            return Err("the host's os-release has no VERSION_CODENAME: set `suites`".into());
        }
        let attrs = Attrs { mode: Some(0o644), owner: Some("root".into()), group: Some("root".into()) };
        if let (Some(key), Some(kp)) = (&self.key, self.key_path()) {
            if facts.path("/etc/apt/keyrings").is_none() {
                changes.push(Change::MakeDir { path: "/etc/apt/keyrings".into(), attrs: Attrs { mode: Some(0o755), ..attrs.clone() } });
            }
            changes.extend(write_if_different(&kp, key.clone(), &attrs, facts));
        }
        changes.extend(write_if_different(&sources, self.render(&facts.os.codename).into_bytes(), &attrs, facts));
        for u in &self.uris {
            for legacy in facts.apt_sources_for.get(u).into_iter().flatten() {
                if legacy.ends_with(".list") && facts.paths.get(legacy) != Some(&None) {
                    changes.push(Change::Remove { path: legacy.clone() });
                }
            }
        }
        Ok(changes)
    }
}

/// A `WriteFile` if the content differs, else a `SetAttrs` if attributes do.
pub fn write_if_different(path: &str, content: impl Into<Arc<Vec<u8>>>, attrs: &Attrs, facts: &Facts) -> Option<Change> {
    let content: Arc<Vec<u8>> = content.into();
    match facts.path(path) {
        Some(st) if st.sha256.as_deref() == Some(sha256_hex(&content).as_str()) => {
            attrs.differing(st).map(|d| Change::SetAttrs { path: path.to_string(), attrs: d })
        }
        old => Some(Change::WriteFile { path: path.to_string(), content, attrs: attrs.clone(), old: old.cloned(), swap: false }),
    }
}

/// The `apt_repository` module.
pub struct AptRepositoryModule;
pub static APT_REPOSITORY: AptRepositoryModule = AptRepositoryModule;
static SPEC: Spec = Spec {
    name: "apt_repository",
    args: &["name", "uris", "suites", "components", "types", "architectures", "key", "key_src", "key_url", "state"],
    late: &["uris", "suites", "components", "architectures", "key"],
    free_form: None,
};

impl Module for AptRepositoryModule {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }
    fn parse(&self, a: &Args, ctx: &ParseCtx) -> Result<Box<dyn Action>, ArgError> {
        Ok(Box::new(AptRepository::parse(a, ctx)?))
    }
}

impl Action for AptRepository {
    fn probes(&self, diff: bool, out: &mut BTreeSet<FactRequest>) {
        AptRepository::probes(self, diff, out)
    }
    fn plan(&self, facts: &Facts) -> Result<Vec<Change>, String> {
        AptRepository::plan(self, facts)
    }
    fn downloads(&self) -> Vec<String> {
        self.key_url.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Templates;
    use serde_json::json;

    fn repo(v: serde_json::Value) -> AptRepository {
        let t = Templates::new(vec![]);
        let none = std::collections::HashMap::new();
        let files = crate::plan::module::LocalFiles::default();
        let runners = std::collections::HashMap::new();
        let scope = crate::template::Scope::default();
        let ctx = ParseCtx {
            trial: false,
            downloads: &none,
            files: &files,
            templates: &t,
            vars: &scope,
            base_dir: std::path::Path::new("."),
            runners: &runners,
        };
        AptRepository::parse(&Args(v.as_object().unwrap()), &ctx).unwrap()
    }

    #[test]
    fn deb822_with_signed_by_and_codename() {
        let r = repo(
            json!({"name": "docker", "uris": "https://example.invalid/linux/debian", "components": "stable", "key": "-----BEGIN PGP PUBLIC KEY BLOCK-----\nx\n"}),
        );
        let mut f = Facts::default();
        f.os.codename = "bookworm".into();
        let c = r.plan(&f).unwrap();
        assert_eq!(c.len(), 3, "{c:?}"); // keyrings dir, key, sources
        let Change::WriteFile { content, path, .. } = &c[2] else { panic!() };
        assert_eq!(path, "/etc/apt/sources.list.d/docker.sources");
        let text = String::from_utf8(content.to_vec()).unwrap();
        assert!(text.contains("Suites: bookworm\n"));
        assert!(text.contains("Signed-By: /etc/apt/keyrings/docker.asc\n"));
    }

    #[test]
    fn converged_and_legacy_removed() {
        let r = repo(json!({"name": "x", "uris": ["http://m.invalid/x"], "suites": "stable"}));
        let mut f = Facts::default();
        for c in r.plan(&f).unwrap() {
            c.simulate(&mut f);
        }
        assert!(r.plan(&f).unwrap().is_empty());
        f.apt_sources_for.insert("http://m.invalid/x".into(), vec!["/etc/apt/sources.list.d/old.list".into()]);
        assert_eq!(r.plan(&f).unwrap(), vec![Change::Remove { path: "/etc/apt/sources.list.d/old.list".into() }]);
    }
}
