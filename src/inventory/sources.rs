//! Inventory sources, found and read as Ansible's inventory manager does.
//!
//! A source is a file, a folder, or a host list (`-i 'h1,h2,'`). A folder
//! is every inventory file in it, in name order, skipping hidden files,
//! `group_vars/`, `host_vars/` and the extensions Ansible ignores there. A
//! file is read as YAML (`.yml`, `.yaml`, `.json`) or INI (`.ini`); one
//! without an extension as YAML if it is a YAML inventory, else as INI.
//! Variable files (`group_vars/NAME`, `host_vars/NAME`, beside a source or
//! the playbook) are found by Ansible's rules: `NAME`, `NAME.yml`,
//! `NAME.yaml` or `NAME.json`, the first that exists, a folder read
//! recursively in name order. Whole-file Vault encryption and inline
//! `!vault` values are decrypted wherever they appear.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::data::{Data, Loc, Located};
use super::{hostpattern, ini, yaml, Unvault};
use crate::error::{read_text, InputError};
use crate::yaml11;

/// Extensions Ansible skips when a folder is the inventory.
const IGNORED_EXTS: &[&str] = &[".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry"];

/// Read every source into `data`; returns the folders their variable
/// files live beside (in source order).
pub fn read(sources: &[String], data: &mut Data, unvault: &mut Unvault) -> Result<Vec<PathBuf>, InputError> {
    let mut bases = Vec::new();
    for s in sources {
        let p = Path::new(s);
        if s.contains(',') && !p.exists() {
            host_list(s, data);
            continue;
        }
        if !p.exists() {
            return Err(InputError::new(format!("inventory source {s} does not exist")).field("--inventory"));
        }
        read_path(p, data, unvault, true)?;
        bases.push(if p.is_dir() { p.to_path_buf() } else { p.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")) });
    }
    data.reconcile();
    Ok(bases)
}

/// `-i 'h1,h2:2222,'`: hosts, ungrouped.
fn host_list(s: &str, data: &mut Data) {
    let file = Arc::new(PathBuf::from("(--inventory host list)"));
    for h in s.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let (names, port) = hostpattern::expand(h).unwrap_or_else(|_| (vec![h.to_string()], None));
        for n in names {
            data.add_host(&n, Some("ungrouped"), port, Loc::new(&file, None, n.clone()));
        }
    }
}

fn read_path(p: &Path, data: &mut Data, unvault: &mut Unvault, explicit: bool) -> Result<(), InputError> {
    if p.is_dir() {
        let mut names: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| InputError::new(format!("cannot read the inventory folder: {e}")).in_file(p))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        names.sort();
        for n in names {
            let name = n.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with('.')
                || matches!(name.as_str(), "group_vars" | "host_vars" | "vars_plugins")
                || IGNORED_EXTS.iter().any(|x| name.ends_with(x))
            {
                continue;
            }
            read_path(&n, data, unvault, false)?;
        }
        return Ok(());
    }
    let ext = p.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    let file = Arc::new(p.to_path_buf());
    data.current_source = Some(p.to_path_buf());
    let text = load_text(p, "inventory", unvault)?;
    match ext.as_deref() {
        Some("yml" | "yaml" | "json") => {
            let doc = yaml_doc(&file, &text)?
                .ok_or_else(|| InputError::new("the inventory is empty").in_file(p).hint("start it with `all:` and a `hosts:` mapping"))?;
            yaml::parse(&file, &doc, data, unvault)
        }
        Some("ini") => ini::parse(&file, &text, data),
        None => match yaml11::load(&text) {
            Ok(Some(doc)) if doc.as_map().is_some() => yaml::parse(&file, &doc, data, unvault),
            _ => ini::parse(&file, &text, data),
        },
        Some(other) if explicit => Err(InputError::new(format!(
            "`.{other}` is not an inventory format Ansible reads (YAML .yml/.yaml/.json, INI .ini or no extension)"
        ))
        .in_file(p)),
        // In a folder, Ansible's plugins decline other extensions: skipped.
        Some(_) => Ok(()),
    }
}

/// A file's text, decrypted if it is vault-encrypted whole (its values
/// are then secrets).
fn load_text(p: &Path, what: &str, unvault: &mut Unvault) -> Result<String, InputError> {
    let text = read_text(p, what)?;
    if text.trim_start().starts_with("$ANSIBLE_VAULT;") {
        let plain = unvault.decrypt_file(&text, p)?;
        return Ok(plain);
    }
    Ok(text)
}

fn yaml_doc(file: &Arc<PathBuf>, text: &str) -> Result<Option<yaml11::Node>, InputError> {
    yaml11::load(text).map_err(|e| InputError::new(e.message).in_file(file).at(Some(e.pos)))
}

/// The names a variables file of `name` may have: `name`, `name.yml`, ...
const VARS_EXTS: [&str; 4] = ["", ".yml", ".yaml", ".json"];

/// Variable files for `name` in `dir` (`group_vars` or `host_vars`), as
/// Ansible's `find_vars_files` finds them.
fn vars_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    for ext in VARS_EXTS {
        let p = dir.join(format!("{name}{ext}"));
        if p.is_dir() {
            let mut out = Vec::new();
            dir_files(&p, &mut out);
            return out;
        }
        if p.exists() {
            return vec![p];
        }
    }
    Vec::new()
}

fn dir_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    for p in names {
        let name = p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let ext = p.extension().map(|e| format!(".{}", e.to_string_lossy()));
        if p.is_dir() && ext.is_none() {
            dir_files(&p, out);
        } else if p.is_file() && ext.as_deref().map(|e| [".yml", ".yaml", ".json"].contains(&e)).unwrap_or(true) {
            out.push(p);
        }
    }
}

/// Variables from `group_vars/` and `host_vars/` beside each base folder,
/// read once per name and folder.
#[derive(Default)]
pub struct VarFiles {
    cache: HashMap<(PathBuf, String), Located>,
    /// What each `group_vars`/`host_vars` folder holds, read once: a name
    /// with no entry there is not looked up, which for a thousand hosts
    /// was thousands of `stat`s.
    listings: HashMap<PathBuf, Listing>,
}

/// A variables folder's entries.
enum Listing {
    /// No such folder.
    Absent,
    /// A folder whose entries cannot be listed: each name is looked up.
    Unlisted,
    /// Its entry names, ASCII letters in lower case, so that the check is
    /// never stricter than a case-insensitive file system's lookup; the
    /// lookup itself decides.
    Names(HashSet<String>),
}

impl Listing {
    fn read(dir: &Path) -> Listing {
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                Listing::Names(entries.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_ascii_lowercase())).collect())
            }
            Err(_) if dir.is_dir() => Listing::Unlisted,
            Err(_) => Listing::Absent,
        }
    }

    /// Whether `name`'s variables may be here (as `name`, `name.yml`, ...).
    fn may_hold(&self, name: &str) -> bool {
        match self {
            Listing::Absent => false,
            Listing::Unlisted => true,
            // A name that is not plain ASCII, or could reach into another folder, is looked up as it is.
            Listing::Names(_) if !name.is_ascii() || name.contains('/') || name == "." || name == ".." => true,
            Listing::Names(names) => {
                let lower = name.to_ascii_lowercase();
                VARS_EXTS.iter().any(|ext| names.contains(&format!("{lower}{ext}")))
            }
        }
    }
}

impl VarFiles {
    /// The variables of entity `name` (`sub` is `group_vars` or
    /// `host_vars`) in each of `bases`, merged in order.
    pub fn get(&mut self, bases: &[PathBuf], sub: &str, name: &str, unvault: &mut Unvault) -> Result<Located, InputError> {
        let mut out = Located::default();
        for b in bases {
            let dir = b.join(sub);
            let key = (dir.clone(), name.to_string());
            if !self.cache.contains_key(&key) {
                let mut l = Located::default();
                if self.listings.entry(dir.clone()).or_insert_with(|| Listing::read(&dir)).may_hold(name) {
                    for f in vars_files(&dir, name) {
                        l.merge(&load_vars_file(&f, unvault)?);
                    }
                }
                self.cache.insert(key.clone(), l);
            }
            if let Some(l) = self.cache.get(&key) {
                out.merge(l);
            }
        }
        Ok(out)
    }
}

/// A variables file: a YAML (or JSON) mapping, maybe vault-encrypted.
pub fn load_vars_file(p: &Path, unvault: &mut Unvault) -> Result<Located, InputError> {
    let file = Arc::new(p.to_path_buf());
    let encrypted = std::fs::read(p).map(|b| b.trim_ascii_start().starts_with(b"$ANSIBLE_VAULT;")).unwrap_or(false);
    let text = load_text(p, "variables file", unvault)?;
    let mut out = Located::default();
    let Some(doc) = yaml_doc(&file, &text)? else { return Ok(out) };
    let Some(entries) = doc.as_map() else {
        if matches!(doc.value, yaml11::Value::Null) {
            return Ok(out);
        }
        return Err(InputError::new(format!("a variables file is a mapping of names to values, this is {}", doc.kind()))
            .in_file(p)
            .at(Some(doc.pos)));
    };
    for (k, v) in entries {
        let j = v.to_json(&mut |c, pos| unvault.decrypt(c, p, pos))?;
        if encrypted {
            unvault.secret_values(&j);
        }
        out.set(k, j, Loc::new(&file, Some(v.at()), k.clone()));
    }
    Ok(out)
}

/// `-e` values, merged in order (later wins), as ansible-playbook reads
/// them: `@file` (YAML or JSON, maybe vault-encrypted), inline JSON/YAML
/// (`{...}` or `[...]`), or `key=value` pairs split like a shell line
/// (values stay strings).
pub fn extra_vars(specs: &[String], unvault: &mut Unvault) -> Result<Located, InputError> {
    let mut out = Located::default();
    let cli = Arc::new(PathBuf::from("(-e)"));
    for spec in specs {
        let spec_t = spec.trim();
        if let Some(f) = spec_t.strip_prefix('@') {
            let p = crate::inventory::expand_tilde(f);
            if !p.is_file() {
                return Err(InputError::new(format!("-e @{f}: no such file"))
                    .field("--extra-vars")
                    .hint("give the path of a YAML or JSON file after @"));
            }
            out.merge(&load_vars_file(&p, unvault)?);
        } else if spec_t.starts_with(['/', '.']) && !spec_t.contains('=') {
            return Err(InputError::new(format!("-e {spec_t}: a file of variables is given as @{spec_t}")).field("--extra-vars"));
        } else if spec_t.starts_with(['{', '[']) {
            let doc = yaml_doc(&cli, spec_t)?;
            let Some(entries) = doc.as_ref().and_then(|d| d.as_map()) else {
                return Err(InputError::new(format!("-e {spec_t}: expected a mapping of names to values")).field("--extra-vars"));
            };
            for (k, v) in entries {
                let j = v.to_json(&mut |c, pos| unvault.decrypt(c, &cli, pos))?;
                out.set(k, j, Loc::new(&cli, None, format!("-e {k}")));
            }
        } else {
            let words =
                shlex::split(spec_t).ok_or_else(|| InputError::new(format!("-e {spec_t}: unbalanced quotes")).field("--extra-vars"))?;
            for w in words {
                let Some((k, v)) = w.split_once('=') else {
                    return Err(InputError::new(format!("-e: expected key=value, found `{w}`")).field("--extra-vars"));
                };
                out.set(k, serde_json::Value::String(v.to_string()), Loc::new(&cli, None, format!("-e {k}")));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_files_found_through_the_listing_as_by_lookup() {
        let base = std::env::temp_dir().join(format!("bootstrap-varfiles-{}", std::process::id()));
        let hv = base.join("host_vars");
        std::fs::create_dir_all(hv.join("db1")).unwrap();
        std::fs::write(hv.join("web1.yml"), "x: web1\n").unwrap();
        std::fs::write(hv.join("db1").join("a.yml"), "x: db1\n").unwrap();
        std::fs::write(hv.join("api.json"), "{\"x\": \"api\"}").unwrap();
        std::fs::write(hv.join("Web2.yml"), "x: Web2\n").unwrap();
        let none = |_: &str| -> Result<String, String> { Err("no vault".into()) };
        let mut unvault = Unvault::new(&none);
        let mut files = VarFiles::default();
        let bases = [base.clone(), base.join("nowhere")];
        let mut x = |name: &str| files.get(&bases, "host_vars", name, &mut unvault).unwrap().vars.get("x").cloned();
        assert_eq!(x("web1"), Some("web1".into()));
        assert_eq!(x("db1"), Some("db1".into()), "a folder named after the host");
        assert_eq!(x("api"), Some("api".into()));
        assert_eq!(x("Web2"), Some("Web2".into()));
        assert_eq!(x("other"), None);
        // The listing lets through what a case-insensitive lookup could find;
        // the lookup decides (here a case-sensitive file system: nothing).
        assert_eq!(x("web2"), hv.join("web2.yml").exists().then(|| "Web2".into()));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
