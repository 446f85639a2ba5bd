//! Changes: what a plan says must happen on a host, and the shell that does it.
//!
//! Modules return typed [`Change`]s, never strings of shell. This module is
//! the one place that turns them into commands ([`Change::script`]), into
//! words for people ([`Change::describe`]), and into their effect on the
//! facts ([`Change::simulate`]), so that the planner can plan a later task
//! against the state an earlier one leaves.

use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine;
use sha2::{Digest, Sha256};

use super::facts::{Facts, Package, PathKind, PathState, Service};
use crate::transport::shell::{join, quote};

/// How long a queued restart is waited for, in tenths of a second.
const RESTART_WAIT_TENTHS: u32 = 100;

/// Seconds an apt command waits for the dpkg/apt locks by default.
pub const DEFAULT_APT_LOCK_TIMEOUT: u64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitAction {
    Start,
    Stop,
    Restart,
    /// `systemctl --no-block restart`: queued; the step does not wait for
    /// the old process to stop (gitlab-runner finishing its jobs).
    RestartQueued,
    Reload,
    Enable,
    Disable,
}

impl UnitAction {
    fn verb(self) -> &'static str {
        match self {
            UnitAction::Start => "start",
            UnitAction::Stop => "stop",
            UnitAction::Restart | UnitAction::RestartQueued => "restart",
            UnitAction::Reload => "reload",
            UnitAction::Enable => "enable",
            UnitAction::Disable => "disable",
        }
    }
}

/// Ownership and permissions to set; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

impl Attrs {
    /// The attributes that differ from `state`, or `None` if all match.
    pub fn differing(&self, state: &PathState) -> Option<Attrs> {
        let d = Attrs {
            mode: self.mode.filter(|m| *m != state.mode),
            owner: self.owner.clone().filter(|o| *o != state.owner),
            group: self.group.clone().filter(|g| *g != state.group),
        };
        (d != Attrs::default()).then_some(d)
    }

    fn apply_to(&self, state: &mut PathState) {
        if let Some(m) = self.mode {
            state.mode = m;
        }
        if let Some(o) = &self.owner {
            state.owner = o.clone();
        }
        if let Some(g) = &self.group {
            state.group = g.clone();
        }
    }

    /// chmod/chown lines for `target` (a quoted shell word).
    fn commands(&self, target: &str) -> String {
        let mut s = String::new();
        if let Some(m) = self.mode {
            let _ = writeln!(s, "chmod {m:04o} -- {target}");
        }
        match (&self.owner, &self.group) {
            (Some(o), Some(g)) => {
                let _ = writeln!(s, "chown -h -- {} {target}", quote(&format!("{o}:{g}")));
            }
            (Some(o), None) => {
                let _ = writeln!(s, "chown -h -- {} {target}", quote(o));
            }
            (None, Some(g)) => {
                let _ = writeln!(s, "chgrp -h -- {} {target}", quote(g));
            }
            (None, None) => {}
        }
        s
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.mode {
            parts.push(format!("mode {m:04o}"));
        }
        if let Some(o) = &self.owner {
            parts.push(format!("owner {o}"));
        }
        if let Some(g) = &self.group {
            parts.push(format!("group {g}"));
        }
        parts.join(", ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub name: String,
    pub uid: Option<u32>,
    pub group: Option<String>,
    pub groups: Vec<String>,
    pub shell: Option<String>,
    pub home: Option<String>,
    pub system: bool,
    pub create_home: bool,
}

/// One change to a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    AptUpdate {
        lock_timeout: u64,
    },
    AptInstall {
        packages: Vec<String>,
        lock_timeout: u64,
    },
    AptRemove {
        packages: Vec<String>,
        purge: bool,
        lock_timeout: u64,
    },
    /// Write a whole file atomically (temporary file, fsync, rename).
    WriteFile {
        path: String,
        content: Arc<Vec<u8>>,
        attrs: Attrs,
        /// What was there, for `--diff` (content only if it was read).
        old: Option<PathState>,
        /// Compare-and-swap: replace the file only if it is still what
        /// `old` says the probe read (its SHA-256, or no file); otherwise
        /// the task fails and the file is left as it is. For files another
        /// program also writes (gitlab-runner rotating its token).
        swap: bool,
    },
    SetAttrs {
        path: String,
        attrs: Attrs,
    },
    MakeDir {
        path: String,
        attrs: Attrs,
    },
    Touch {
        path: String,
        attrs: Attrs,
    },
    Symlink {
        path: String,
        target: String,
    },
    Remove {
        path: String,
    },
    UserAdd(UserSpec),
    UserMod {
        name: String,
        add_groups: Vec<String>,
        shell: Option<String>,
        home: Option<String>,
    },
    UserDel {
        name: String,
        remove_home: bool,
    },
    GroupAdd {
        name: String,
        gid: Option<u32>,
        system: bool,
    },
    GroupDel {
        name: String,
    },
    DaemonReload,
    Unit {
        unit: String,
        action: UnitAction,
    },
    /// A command the user wrote: `shell` runs it through `sh -c`. An
    /// `unless` guard is checked again on the host right before the
    /// command: an earlier task of the same run may have satisfied it.
    Run {
        cmd: String,
        shell: bool,
        chdir: Option<String>,
        unless: Option<String>,
    },
    /// Done by the controller, not on the host (e.g. a runner created in
    /// GitLab); reported, nothing to run.
    Controller {
        what: String,
    },
}

/// Files larger than this are not sent inside the apply script but
/// uploaded beforehand on a channel of their own (see [`staged_path`]).
pub const STAGE_THRESHOLD: usize = 256 * 1024;

/// Where a large file's content is uploaded before the apply script moves
/// it into place: beside the target (so the rename is atomic), named by its
/// hash. `None` for contents small enough to travel in the script.
pub fn staged_path(path: &str, content: &[u8]) -> Option<String> {
    if content.len() <= STAGE_THRESHOLD {
        return None;
    }
    let dir = match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => ".",
    };
    Some(format!("{}/.bootstrap-staged-{}", dir.trim_end_matches('/'), &sha256_hex(content)[..16]))
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl Change {
    /// One line for people: what will be or was done.
    pub fn describe(&self) -> String {
        match self {
            Change::AptUpdate { .. } => "update the apt package lists".into(),
            Change::AptInstall { packages, .. } => format!("install {}", packages.join(" ")),
            Change::AptRemove { packages, purge, .. } => {
                format!("{} {}", if *purge { "purge" } else { "remove" }, packages.join(" "))
            }
            Change::WriteFile { path, content, attrs, old, .. } => {
                let new = sha256_hex(content);
                let what = match old.as_ref().and_then(|o| o.sha256.as_ref()) {
                    Some(h) => format!("write {path} (sha256 {} -> {})", &h[..12.min(h.len())], &new[..12]),
                    None => format!("create {path} (sha256 {})", &new[..12]),
                };
                let a = attrs.describe();
                if a.is_empty() {
                    what
                } else {
                    format!("{what}, {a}")
                }
            }
            Change::SetAttrs { path, attrs } => format!("set {} on {path}", attrs.describe()),
            Change::MakeDir { path, .. } => format!("create directory {path}"),
            Change::Touch { path, .. } => format!("touch {path}"),
            Change::Symlink { path, target } => format!("link {path} -> {target}"),
            Change::Remove { path } => format!("remove {path}"),
            Change::UserAdd(u) => format!("create user {}", u.name),
            Change::UserMod { name, add_groups, shell, home } => {
                let mut parts = Vec::new();
                if !add_groups.is_empty() {
                    parts.push(format!("add to groups {}", add_groups.join(",")));
                }
                if let Some(s) = shell {
                    parts.push(format!("shell {s}"));
                }
                if let Some(h) = home {
                    parts.push(format!("home {h}"));
                }
                format!("modify user {name}: {}", parts.join(", "))
            }
            Change::UserDel { name, .. } => format!("remove user {name}"),
            Change::GroupAdd { name, .. } => format!("create group {name}"),
            Change::GroupDel { name } => format!("remove group {name}"),
            Change::DaemonReload => "systemctl daemon-reload".into(),
            Change::Unit { unit, action: UnitAction::RestartQueued } => {
                let secs = RESTART_WAIT_TENTHS / 10;
                format!("restart {unit} (queued with --no-block, waited for up to {secs} s: a runner finishing its jobs restarts when they are done)")
            }
            Change::Unit { unit, action } => format!("{} {unit}", action.verb()),
            Change::Run { cmd, .. } => format!("run `{}`", first_line(cmd)),
            Change::Controller { what } => what.clone(),
        }
    }

    /// Shell lines that make the change; they run under `set -e`. `eof` is
    /// a here-document terminator that cannot occur in base64 text.
    pub fn script(&self, eof: &str) -> String {
        let mut s = String::new();
        match self {
            Change::AptUpdate { lock_timeout } => {
                let _ = writeln!(s, "__apt {lock_timeout} apt-get -q update");
                s.push_str("mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/update-success-stamp\n");
            }
            Change::AptInstall { packages, lock_timeout } => {
                let _ = writeln!(
                    s,
                    "__apt {lock_timeout} apt-get -q -y -o DPkg::Lock::Timeout=0 \
                     -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install {}",
                    join(packages)
                );
            }
            Change::AptRemove { packages, purge, lock_timeout } => {
                let _ = writeln!(
                    s,
                    "__apt {lock_timeout} apt-get -q -y -o DPkg::Lock::Timeout=0 {} {}",
                    if *purge { "purge" } else { "remove" },
                    join(packages)
                );
            }
            Change::WriteFile { path, content, attrs, old, swap } => {
                let p = quote(path);
                let _ = writeln!(s, "__p={p}; __d=$(dirname -- \"$__p\")");
                match staged_path(path, content) {
                    Some(staged) => {
                        // Uploaded before the script ran; check it arrived whole.
                        let _ = writeln!(s, "__t={}\ntrap 'rm -f -- \"$__t\"' EXIT", quote(&staged));
                        let _ = writeln!(
                            s,
                            "echo '{}  '\"$__t\" | sha256sum -c --status || {{ echo \"upload of $__p is incomplete\"; exit 1; }}",
                            sha256_hex(content)
                        );
                    }
                    None => {
                        // Temporary files of runs that died mid-write (long ago) go first.
                        s.push_str("find \"$__d\" -maxdepth 1 -name '.bootstrap.??????' -mmin +10 -delete 2>/dev/null || :\n");
                        s.push_str("__t=$(mktemp -- \"$__d/.bootstrap.XXXXXX\")\ntrap 'rm -f -- \"$__t\"' EXIT\n");
                        let _ = writeln!(s, "base64 -d > \"$__t\" <<'{eof}'");
                        let b64 = base64::engine::general_purpose::STANDARD.encode(content.as_slice());
                        for chunk in b64.as_bytes().chunks(76) {
                            s.push_str(std::str::from_utf8(chunk).unwrap_or(""));
                            s.push('\n');
                        }
                        let _ = writeln!(s, "{eof}");
                    }
                }
                // New attributes: the ones asked for, else the old file's,
                // else 0644 root-owned (mktemp makes 0600).
                let mut full = attrs.clone();
                if full.mode.is_none() {
                    full.mode = Some(old.as_ref().map(|o| o.mode).unwrap_or(0o644));
                }
                if let Some(o) = old {
                    full.owner.get_or_insert_with(|| o.owner.clone());
                    full.group.get_or_insert_with(|| o.group.clone());
                }
                s.push_str(&full.commands("\"$__t\""));
                s.push_str("sync -- \"$__t\"\n");
                if *swap {
                    // The last moment before the rename: the file must still be what the probe read.
                    let expected = old.as_ref().and_then(|o| o.sha256.clone()).unwrap_or_else(|| "absent".into());
                    let _ = writeln!(
                        s,
                        "if [ -e \"$__p\" ]; then __h=$(sha256sum < \"$__p\" | cut -d' ' -f1); else __h=absent; fi\n\
                         [ \"$__h\" = {expected} ] || {{ echo \"$__p changed on the host after bootstrap read it (gitlab-runner saving a rotated token?): not overwritten; apply again to converge\"; exit 3; }}"
                    );
                }
                s.push_str("mv -f -- \"$__t\" \"$__p\"\ntrap - EXIT\nsync -- \"$__d\" 2>/dev/null || true\n");
            }
            Change::SetAttrs { path, attrs } => s.push_str(&attrs.commands(&quote(path))),
            Change::MakeDir { path, attrs } => {
                let _ = writeln!(s, "mkdir -p -- {}", quote(path));
                s.push_str(&attrs.commands(&quote(path)));
            }
            Change::Touch { path, attrs } => {
                let _ = writeln!(s, "touch -- {}", quote(path));
                s.push_str(&attrs.commands(&quote(path)));
            }
            Change::Symlink { path, target } => {
                let _ = writeln!(s, "ln -sfn -- {} {}", quote(target), quote(path));
            }
            Change::Remove { path } => {
                let _ = writeln!(s, "rm -rf -- {}", quote(path));
            }
            Change::UserAdd(u) => {
                let mut args: Vec<String> = vec!["useradd".into()];
                if u.system {
                    args.push("--system".into());
                }
                if let Some(uid) = u.uid {
                    args.extend(["--uid".into(), uid.to_string()]);
                }
                if let Some(g) = &u.group {
                    args.extend(["--gid".into(), g.clone()]);
                }
                if !u.groups.is_empty() {
                    args.extend(["--groups".into(), u.groups.join(",")]);
                }
                if let Some(sh) = &u.shell {
                    args.extend(["--shell".into(), sh.clone()]);
                }
                if let Some(h) = &u.home {
                    args.extend(["--home-dir".into(), h.clone()]);
                }
                args.push(if u.create_home { "--create-home".into() } else { "--no-create-home".into() });
                args.push(u.name.clone());
                // The facts may predate an earlier task of this run that made
                // the user (a package's postinst): then adjust it instead.
                let mut m: Vec<String> = vec!["usermod".into()];
                if !u.groups.is_empty() {
                    m.extend(["--append".into(), "--groups".into(), u.groups.join(",")]);
                }
                if let Some(sh) = &u.shell {
                    m.extend(["--shell".into(), sh.clone()]);
                }
                let adjust = if m.len() > 1 {
                    m.push(u.name.clone());
                    join(&m)
                } else {
                    ":".into()
                };
                let _ = writeln!(s, "if getent passwd {} >/dev/null; then {adjust}; else {}; fi", quote(&u.name), join(&args));
            }
            Change::UserMod { name, add_groups, shell, home } => {
                let mut args: Vec<String> = vec!["usermod".into()];
                if !add_groups.is_empty() {
                    args.extend(["--append".into(), "--groups".into(), add_groups.join(",")]);
                }
                if let Some(sh) = shell {
                    args.extend(["--shell".into(), sh.clone()]);
                }
                if let Some(h) = home {
                    args.extend(["--home".into(), h.clone()]);
                }
                args.push(name.clone());
                let _ = writeln!(s, "{}", join(&args));
            }
            Change::UserDel { name, remove_home } => {
                let _ = writeln!(s, "userdel {}{}", if *remove_home { "--remove " } else { "" }, quote(name));
            }
            Change::GroupAdd { name, gid, system } => {
                let mut args: Vec<String> = vec!["groupadd".into()];
                if *system {
                    args.push("--system".into());
                }
                if let Some(g) = gid {
                    args.extend(["--gid".into(), g.to_string()]);
                }
                args.push(name.clone());
                let _ = writeln!(s, "getent group {} >/dev/null || {}", quote(name), join(&args));
            }
            Change::GroupDel { name } => {
                let _ = writeln!(s, "groupdel {}", quote(name));
            }
            Change::DaemonReload => s.push_str("systemctl daemon-reload\n"),
            Change::Unit { unit, action: UnitAction::RestartQueued } => {
                // Queued, then a bounded wait for the new process: a service
                // that stops at once is restarted when the step ends; one that
                // is finishing its jobs restarts later, and the step says so.
                let u = quote(unit);
                let _ = writeln!(
                    s,
                    "__old=$(systemctl show -p MainPID --value {u} 2>/dev/null || echo 0)\n\
                     systemctl --no-block restart {u}\n\
                     __i=0; __new=$__old; __st=\n\
                     while [ $__i -lt {RESTART_WAIT_TENTHS} ]; do\n\
                     \x20 __st=$(systemctl show -p ActiveState --value {u}); __new=$(systemctl show -p MainPID --value {u})\n\
                     \x20 if [ \"$__st\" = active ] && [ \"$__new\" != \"$__old\" -o \"$__old\" = 0 ]; then break; fi\n\
                     \x20 sleep 0.1; __i=$((__i+1))\n\
                     done\n\
                     if [ $__i -ge {RESTART_WAIT_TENTHS} ]; then echo \"@@$__nonce note {unit} is still stopping ($__st: it finishes its running jobs first, up to its stop timeout): its restart is queued and happens when they are done\"; \
                     else echo \"{unit} restarted\"; fi"
                );
            }
            Change::Unit { unit, action } => {
                let _ = writeln!(s, "systemctl {} {}", action.verb(), quote(unit));
            }
            Change::Run { cmd, shell, chdir, unless } => {
                if let Some(u) = unless {
                    // As the probe runs it; when it holds now, the step says
                    // so to the controller (a marker line) and runs nothing.
                    let _ = writeln!(s, "if ( {u}\n) </dev/null >/dev/null 2>&1; then echo \"@@$__nonce unchanged\"; exit 0; fi");
                }
                if let Some(d) = chdir {
                    let _ = writeln!(s, "cd -- {}", quote(d));
                }
                if *shell {
                    let _ = writeln!(s, "sh -c {}", quote(cmd));
                } else {
                    // `command`: no shell features; words split like a shell would.
                    let words = shlex::split(cmd).unwrap_or_else(|| vec![cmd.clone()]);
                    let _ = writeln!(s, "{}", join(&words));
                }
            }
            Change::Controller { .. } => s.push_str(":\n"),
        }
        s
    }

    /// Update `facts` as if the change had been made.
    pub fn simulate(&self, facts: &mut Facts) {
        match self {
            Change::AptUpdate { .. } => {
                facts.apt_cache_age = Some(0);
                facts.apt_sources_changed = false;
            }
            Change::AptInstall { packages, .. } => {
                for p in packages {
                    let (name, version) = match p.split_once('=') {
                        Some((n, v)) => (n.to_string(), Some(v.to_string())),
                        None => (p.clone(), None),
                    };
                    facts.packages.insert(name, Package { installed: true, version });
                }
            }
            Change::AptRemove { packages, .. } => {
                for p in packages {
                    facts.packages.insert(p.clone(), Package { installed: false, version: None });
                }
            }
            Change::WriteFile { path, content, attrs, old, .. } => {
                let mut st = old.clone().unwrap_or(PathState {
                    kind: PathKind::File,
                    mode: 0o644,
                    owner: "root".into(),
                    group: "root".into(),
                    sha256: None,
                    content: None,
                });
                st.kind = PathKind::File;
                st.sha256 = Some(sha256_hex(content));
                st.content = Some(content.to_vec());
                attrs.apply_to(&mut st);
                if path.starts_with("/etc/apt/") {
                    facts.apt_sources_changed = true;
                }
                if is_unit_path(path) {
                    facts.units_changed = true;
                }
                facts.paths.insert(path.clone(), Some(st));
            }
            Change::SetAttrs { path, attrs } => {
                if let Some(Some(st)) = facts.paths.get_mut(path) {
                    attrs.apply_to(st);
                }
            }
            Change::MakeDir { path, attrs } | Change::Touch { path, attrs } => {
                let is_dir = matches!(self, Change::MakeDir { .. });
                let mut st = facts.path(path).cloned().unwrap_or(PathState {
                    kind: if is_dir { PathKind::Directory } else { PathKind::File },
                    mode: if is_dir { 0o755 } else { 0o644 },
                    owner: "root".into(),
                    group: "root".into(),
                    sha256: None,
                    content: None,
                });
                attrs.apply_to(&mut st);
                facts.paths.insert(path.clone(), Some(st));
            }
            Change::Symlink { path, .. } => {
                facts.paths.insert(
                    path.clone(),
                    Some(PathState {
                        kind: PathKind::Link,
                        mode: 0o777,
                        owner: "root".into(),
                        group: "root".into(),
                        sha256: None,
                        content: None,
                    }),
                );
            }
            Change::Remove { path } => {
                if path.starts_with("/etc/apt/") {
                    facts.apt_sources_changed = true;
                }
                if is_unit_path(path) {
                    facts.units_changed = true;
                }
                facts.paths.insert(path.clone(), None);
            }
            Change::UserAdd(u) => {
                facts.users.insert(
                    u.name.clone(),
                    Some(crate::plan::facts::User {
                        uid: u.uid.unwrap_or(0),
                        gid: 0,
                        home: u.home.clone().unwrap_or_else(|| format!("/home/{}", u.name)),
                        shell: u.shell.clone().unwrap_or_else(|| "/bin/sh".into()),
                        groups: std::iter::once(u.group.clone().unwrap_or_else(|| u.name.clone()))
                            .chain(u.groups.iter().cloned())
                            .collect(),
                    }),
                );
            }
            Change::UserMod { name, add_groups, shell, home } => {
                if let Some(Some(u)) = facts.users.get_mut(name) {
                    for g in add_groups {
                        if !u.groups.contains(g) {
                            u.groups.push(g.clone());
                        }
                    }
                    if let Some(s) = shell {
                        u.shell = s.clone();
                    }
                    if let Some(h) = home {
                        u.home = h.clone();
                    }
                }
            }
            Change::UserDel { name, .. } => {
                facts.users.insert(name.clone(), None);
            }
            Change::GroupAdd { name, gid, .. } => {
                facts.groups.insert(name.clone(), Some(crate::plan::facts::Group { gid: gid.unwrap_or(0) }));
            }
            Change::GroupDel { name } => {
                facts.groups.insert(name.clone(), None);
            }
            Change::DaemonReload => facts.units_changed = false,
            Change::Run { .. } | Change::Controller { .. } => {}
            Change::Unit { unit, action } => {
                let svc = facts.services.entry(unit.clone()).or_insert(Service {
                    load: "loaded".into(),
                    active: "inactive".into(),
                    enabled: "disabled".into(),
                });
                match action {
                    UnitAction::Start | UnitAction::Restart | UnitAction::RestartQueued | UnitAction::Reload => {
                        svc.active = "active".into()
                    }
                    UnitAction::Stop => svc.active = "inactive".into(),
                    UnitAction::Enable => svc.enabled = "enabled".into(),
                    UnitAction::Disable => svc.enabled = "disabled".into(),
                }
            }
        }
    }
}

/// Whether a path is where systemd reads unit files from.
fn is_unit_path(p: &str) -> bool {
    ["/etc/systemd/", "/lib/systemd/", "/usr/lib/systemd/", "/run/systemd/system/"].iter().any(|d| p.starts_with(d))
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("");
    if l.len() < s.trim_end().len() {
        format!("{l} ...")
    } else {
        l.to_string()
    }
}

/// Shell functions every apply script starts with.
pub fn prelude() -> &'static str {
    r#"export LC_ALL=C DEBIAN_FRONTEND=noninteractive PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# __apt TIMEOUT CMD...: run an apt command, its output streamed. While
# another process holds the dpkg or apt lock, wait (up to TIMEOUT seconds)
# and say who holds it: once in the step's output, and live, every attempt,
# as a `wait` marker on fd 3 (the script's own stdout, open only in steps
# that run apt: the step's output still goes to a file first). apt-get
# itself does not wait (DPkg::Lock::Timeout=0): this loop does, so that the
# wait can be seen.
__live() {
  # A closed connection must not end the step: the marker is written by a
  # subshell that ignores SIGPIPE, and its failure is ignored.
  [ -n "${__nonce:-}" ] || return 0
  ( trap '' PIPE; echo "@@$__nonce $*" >&3 ) 2>/dev/null || :
}
__apt() {
  __limit=$1; shift
  __t0=$(date +%s); __deadline=$(( __t0 + __limit )); __said=
  __alog=$(mktemp)
  # A dpkg run that was cut short (power loss, a killed session) is
  # finished first, as apt itself asks.
  if [ -n "$(ls -A /var/lib/dpkg/updates 2>/dev/null)" ]; then
    echo "finishing an interrupted dpkg run: dpkg --configure -a"
    dpkg --force-confdef --force-confold --configure -a 3>&-
  fi
  while :; do
    # (an `if` keeps the caller's `set -e` from ending us on failure)
    if "$@" >"$__alog" 2>&1 3>&-; then __rc=0; else __rc=$?; fi
    cat "$__alog"
    if [ "$__rc" = 0 ] && [ "$1" = apt-get ] && grep -q -e '^W: Failed to fetch' -e '^E: Failed to fetch' "$__alog"; then
      echo "apt-get update could not download the package lists (is the package mirror reachable from this host?)"
      __rc=100
    fi
    if [ "$__rc" != 0 ] && grep -q -e 'Could not get lock' -e 'Unable to acquire the dpkg frontend lock' -e 'Unable to lock directory' "$__alog" \
       && [ "$(date +%s)" -lt "$__deadline" ]; then
      __held=$(grep -m1 -o 'held by process.*' "$__alog" || echo 'held by another process')
      if [ -z "$__said" ]; then
        echo "waiting up to ${__limit}s for the apt/dpkg lock: $__held"
        __said=1
      fi
      __lock=$(grep -m1 -o 'lock /[^ ]*' "$__alog" | sed 's/^lock //; s/\.$//')
      __live wait $(( $(date +%s) - __t0 )) "$__limit" "${__lock:--}" "$__held"
      sleep 2; continue
    fi
    rm -f "$__alog"
    return "$__rc"
  done
}
"#
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_file_script_is_atomic_and_sets_attrs() {
        let c = Change::WriteFile {
            path: "/tmp/x y".into(),
            content: Arc::new(b"hello\n".to_vec()),
            attrs: Attrs { mode: Some(0o600), owner: Some("root".into()), group: Some("root".into()) },
            old: None,
            swap: false,
        };
        let s = c.script("EOF_N");
        assert!(s.contains("mktemp -- \"$__d/.bootstrap.XXXXXX\""));
        assert!(s.contains("chmod 0600 -- \"$__t\""));
        assert!(s.contains("mv -f -- \"$__t\" \"$__p\""));
        assert!(s.contains("__p='/tmp/x y'"));
    }

    #[test]
    fn write_file_runs_for_real() {
        let dir = std::env::temp_dir().join(format!("bootstrap-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f'1");
        let c = Change::WriteFile {
            path: path.to_string_lossy().into(),
            content: Arc::new(b"a\nb $(x)\n".to_vec()),
            attrs: Attrs { mode: Some(0o640), owner: None, group: None },
            old: None,
            swap: false,
        };
        let script = format!("set -e\n{}", c.script("EOF_T"));
        let st = std::process::Command::new("sh").arg("-c").arg(&script).status().unwrap();
        assert!(st.success());
        assert_eq!(std::fs::read(&path).unwrap(), b"a\nb $(x)\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_swap_write_never_replaces_a_file_changed_since_the_probe() {
        let dir = std::env::temp_dir().join(format!("bootstrap-swap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, b"read by the probe\n").unwrap();
        let old = |content: &[u8]| PathState {
            kind: super::super::facts::PathKind::File,
            mode: 0o600,
            owner: "root".into(),
            group: "root".into(),
            sha256: Some(sha256_hex(content)),
            content: None,
        };
        let run = |old: Option<PathState>| {
            let c = Change::WriteFile {
                path: path.to_string_lossy().into(),
                content: Arc::new(b"new\n".to_vec()),
                attrs: Attrs { mode: Some(0o600), owner: None, group: None },
                old,
                swap: true,
            };
            let script = format!("set -e\n{}", c.script("EOF_S"));
            std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap()
        };
        // The runner saved its file in between: left as it is, exit 3, said why.
        std::fs::write(&path, b"saved by the runner\n").unwrap();
        let o = run(Some(old(b"read by the probe\n")));
        assert_eq!(o.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&o.stdout).contains("not overwritten"));
        assert_eq!(std::fs::read(&path).unwrap(), b"saved by the runner\n");
        // Probed absent, but there now: left too.
        assert_eq!(run(None).status.code(), Some(3));
        // Still what the probe read: replaced, no temporary file left.
        let o = run(Some(old(b"saved by the runner\n")));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(std::fs::read(&path).unwrap(), b"new\n");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
