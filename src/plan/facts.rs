//! What the planner knows about a host: the facts one probe reads.
//!
//! Modules ask for facts with [`FactRequest`]s; the probe turns the whole
//! set into one shell script and parses its one reply into [`Facts`]. The
//! planner then works on a copy that it updates as it plans (a file it
//! will write counts as written for the next task), which is how `--check`
//! on a fresh host can plan a package from a repository it would add.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value as Json};

/// One thing a module needs to know about a host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FactRequest {
    /// dpkg state and version of a package.
    Package(String),
    /// systemd load, active and enablement state of a unit.
    Service(String),
    /// Type, mode, owner and group of a path; `checksum` also hashes it
    /// when it is a regular file (SHA-256: what a module that writes its
    /// content compares), `content` also reads small files (for `--diff`).
    Path { path: String, content: bool, checksum: bool },
    /// passwd entry and groups of a user.
    User(String),
    /// group entry.
    Group(String),
    /// Age of the apt package lists.
    AptCache,
    /// apt source files (other than deb822 files) that mention a URL.
    AptSourcesFor(String),
    /// Exit status of a guard command (`unless`).
    Guard(String),
    /// The version apt would install of a package (`state: latest`).
    Candidate(String),
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Os {
    /// `ID` of os-release: debian, ubuntu.
    pub id: String,
    /// `VERSION_ID`: 12, 24.04.
    pub version_id: String,
    /// `VERSION_CODENAME`: bookworm, noble.
    pub codename: String,
    /// `PRETTY_NAME`.
    pub pretty_name: String,
    /// `uname -m`: x86_64, aarch64.
    pub machine: String,
    /// `dpkg --print-architecture`: amd64, arm64.
    pub dpkg_arch: String,
    pub nproc: u32,
    pub memtotal_mb: u64,
    pub hostname: String,
    /// Whether systemd runs as PID 1.
    pub systemd: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Package {
    pub installed: bool,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Service {
    /// loaded, not-found, masked.
    pub load: String,
    /// active, inactive, failed, activating.
    pub active: String,
    /// enabled, disabled, static, masked, "" when unknown.
    pub enabled: String,
}

impl Service {
    pub fn is_active(&self) -> bool {
        self.active == "active" || self.active == "activating" || self.active == "reloading"
    }
    pub fn is_enabled(&self) -> bool {
        matches!(self.enabled.as_str(), "enabled" | "enabled-runtime" | "static" | "alias" | "indirect")
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub enum PathKind {
    File,
    Directory,
    Link,
    Other,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PathState {
    pub kind: PathKind,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    /// SHA-256 of a regular file, hex.
    pub sha256: Option<String>,
    /// Content of a small regular file, when asked for (`--diff`).
    #[serde(skip)]
    pub content: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
    /// Supplementary and primary group names.
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Group {
    pub gid: u32,
}

/// Everything the probe read about one host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    pub os: Os,
    pub packages: BTreeMap<String, Package>,
    pub services: BTreeMap<String, Service>,
    /// `None`: the path does not exist.
    pub paths: BTreeMap<String, Option<PathState>>,
    pub users: BTreeMap<String, Option<User>>,
    pub groups: BTreeMap<String, Option<Group>>,
    /// Seconds since the package lists were updated; `None` if never.
    pub apt_cache_age: Option<u64>,
    /// Set by the planner when a task changed apt sources in this run.
    #[serde(skip)]
    pub apt_sources_changed: bool,
    pub apt_sources_for: BTreeMap<String, Vec<String>>,
    /// Set by the planner when a task changed systemd unit files in this
    /// run (a `daemon_reload` is then due).
    #[serde(skip)]
    pub units_changed: bool,
    pub guards: BTreeMap<String, i32>,
    /// apt's candidate version of a package, from the lists the host has
    /// (absent: none known).
    pub candidates: BTreeMap<String, String>,
}

impl Facts {
    /// Variables exposed to `when` and templates, named as Ansible names
    /// them (`ansible_distribution`, ...), and also under `ansible_facts`.
    pub fn template_vars(&self) -> serde_json::Map<String, Json> {
        let os = &self.os;
        let distribution = match os.id.as_str() {
            "debian" => "Debian".to_string(),
            "ubuntu" => "Ubuntu".to_string(),
            other => {
                let mut c = other.chars();
                c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
            }
        };
        let major = os.version_id.split('.').next().unwrap_or("").to_string();
        let facts = json!({
            "distribution": distribution,
            "distribution_release": os.codename,
            "distribution_version": os.version_id,
            "distribution_major_version": major,
            "os_family": if os.id == "debian" || os.id == "ubuntu" { "Debian" } else { "" },
            "architecture": os.machine,
            "dpkg_architecture": os.dpkg_arch,
            "processor_nproc": os.nproc,
            "processor_vcpus": os.nproc,
            "memtotal_mb": os.memtotal_mb,
            "hostname": os.hostname,
        });
        let mut facts = facts;
        // Installed packages among those the playbook names, in the shape
        // of Ansible's package_facts: name -> [{name, version}].
        let packages: serde_json::Map<String, Json> = self
            .packages
            .iter()
            .filter(|(_, p)| p.installed)
            .map(|(n, p)| (n.clone(), json!([{ "name": n, "version": p.version }])))
            .collect();
        facts["packages"] = Json::Object(packages);
        let mut out = serde_json::Map::new();
        if let Json::Object(m) = &facts {
            for (k, v) in m {
                out.insert(format!("ansible_{k}"), v.clone());
            }
        }
        out.insert("ansible_facts".into(), facts);
        out
    }

    /// Plausible facts for validating templates before any connection.
    pub fn placeholder(hostname: &str) -> Facts {
        Facts {
            os: Os {
                id: "debian".into(),
                version_id: "12".into(),
                codename: "bookworm".into(),
                pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
                machine: "x86_64".into(),
                dpkg_arch: "amd64".into(),
                nproc: 2,
                memtotal_mb: 2048,
                hostname: hostname.into(),
                systemd: true,
            },
            ..Default::default()
        }
    }

    pub fn path(&self, p: &str) -> Option<&PathState> {
        self.paths.get(p).and_then(|s| s.as_ref())
    }
}
