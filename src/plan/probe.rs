//! The probe: every fact a host's plan needs, read in one round trip.
//!
//! [`script`] turns a set of [`FactRequest`]s into one POSIX shell script;
//! the host runs it (as the become user) and answers with sections framed
//! by a marker that carries a random nonce, so no file content or command
//! output can forge one. [`parse`] turns the answer back into [`Facts`].
//! Nothing here touches the network: the transport is elsewhere.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;

use super::facts::*;
use crate::transport::shell::quote;

/// Files larger than this are not read for `--diff`.
pub const DIFF_MAX_BYTES: u64 = 256 * 1024;

/// The probe script for `requests`. Sections are printed as
/// `@@<nonce> <tag>` followed by the section's lines.
///
/// The answer is collected on the host and written once at the end: line
/// by line, sshd sent every few lines as a packet of its own (about 20 per
/// probe), each one read, decrypted, acknowledged and handed on by the
/// controller. The `.` after the body keeps trailing newlines, which a
/// command substitution would strip.
pub fn script(nonce: &str, requests: &BTreeSet<FactRequest>) -> String {
    let m = format!("@@{nonce}");
    let mut s = String::new();
    s.push_str("export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
    s.push_str("bootstrap_probe=$(\n");
    // Every program started is a fork and an exec on the host (about a
    // millisecond of its CPU each, as much as the rest of a converged
    // host's probe): what the shell can read itself, it reads itself.
    s.push_str(&format!(
        "echo '{m} os'; {{ while IFS= read -r l || [ -n \"$l\" ]; do printf '%s\\n' \"$l\"; done; }} 2>/dev/null </etc/os-release\n\
         echo \"machine=$(uname -m)\"; echo \"dpkg_arch=$(dpkg --print-architecture 2>/dev/null)\"; echo \"nproc=$(nproc 2>/dev/null)\"\n\
         h=; {{ read -r h; }} 2>/dev/null </proc/sys/kernel/hostname; [ -n \"$h\" ] || h=$(hostname 2>/dev/null || cat /etc/hostname); echo \"hostname=$h\"\n\
         {{ while read -r k v u; do [ \"$k\" = MemTotal: ] && {{ echo \"memtotal_kb=$v\"; break; }}; done; }} 2>/dev/null </proc/meminfo\n\
         [ -d /run/systemd/system ] && echo systemd=1\n"
    ));
    let mut packages = Vec::new();
    let mut services = Vec::new();
    let mut candidates = Vec::new();
    // Each path once, with what all its requests ask for; its sections
    // name the first of them.
    let mut paths: BTreeMap<&str, PathAsk> = BTreeMap::new();
    for (i, r) in requests.iter().enumerate() {
        match r {
            FactRequest::Package(p) => packages.push(quote(p)),
            FactRequest::Candidate(p) => candidates.push(quote(p)),
            FactRequest::Service(u) => services.push(quote(&unit_name(u))),
            FactRequest::Path { path, content, checksum } => {
                let e = paths.entry(path.as_str()).or_insert(PathAsk { section: i, content: false, checksum: false });
                e.content |= *content;
                e.checksum |= *checksum;
            }
            FactRequest::User(u) => {
                s.push_str(&format!("echo '{m} user {i}'; u={}; getent passwd \"$u\" && echo \"groups=$(id -Gn \"$u\")\"\n", quote(u)));
            }
            FactRequest::Group(g) => {
                s.push_str(&format!("echo '{m} group {i}'; getent group {}\n", quote(g)));
            }
            FactRequest::AptCache => {
                s.push_str(&format!(
                    // The lists counted by a glob, both times read by one
                    // `stat`: two programs, not six.
                    "echo '{m} aptcache'; n=0; for f in /var/lib/apt/lists/*_Packages*; do [ -e \"$f\" ] && n=$((n+1)); done; \
                     echo \"lists=$n\"; echo \"now=$(date +%s)\"; set --; for f in /var/lib/apt/periodic/update-success-stamp /var/lib/apt/lists; do \
                     [ -e \"$f\" ] && set -- \"$@\" \"$f\"; done; [ $# -eq 0 ] || stat -c 'mtime=%Y' -- \"$@\" 2>/dev/null\n"
                ));
            }
            FactRequest::AptSourcesFor(url) => {
                s.push_str(&format!(
                    "echo '{m} aptsrc {i}'; grep -l -F -- {} /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null\n",
                    quote(url.trim_end_matches('/'))
                ));
            }
            FactRequest::Guard(cmd) => {
                s.push_str(&format!("echo '{m} guard {i}'; ( {cmd}\n) </dev/null >/dev/null 2>&1; echo \"rc=$?\"\n"));
            }
        }
    }
    paths_script(&mut s, &m, &paths);
    if !packages.is_empty() {
        s.push_str(&format!(
            "echo '{m} packages'; dpkg-query -W -f='${{Package}}\\t${{db:Status-Abbrev}}\\t${{Version}}\\n' {} 2>/dev/null\n",
            packages.join(" ")
        ));
    }
    if !services.is_empty() {
        s.push_str(&format!(
            "echo '{m} services'; systemctl show -p Id,LoadState,ActiveState,UnitFileState {} 2>/dev/null; echo\n",
            services.join(" ")
        ));
    }
    if !candidates.is_empty() {
        s.push_str(&format!(
            "echo '{m} candidates'; for p in {}; do printf '%s\\t%s\\n' \"$p\" \"$(apt-cache policy -- \"$p\" 2>/dev/null | sed -n 's/^ *Candidate: //p')\"; done\n",
            candidates.join(" ")
        ));
    }
    s.push_str(&format!("echo '{m} end'\n"));
    s.push_str("echo .)\nprintf '%s' \"${bootstrap_probe%.}\"\n");
    s
}

/// The `stat` format of a path's line in the `stats` section.
const STAT_FORMAT: &str = "%F|%a|%U|%G|%s";

/// What the requests for one path ask for; its sections are numbered
/// after the first of them.
struct PathAsk {
    section: usize,
    content: bool,
    checksum: bool,
}

/// `cmd` run once on every path in `"$@"`, printing one line per path; if
/// it fails, run on each path alone, `failed` standing for a path it fails
/// on, so that every path still has exactly one line.
fn batched(cmd: &str, failed: &str) -> String {
    format!(
        "if [ $# -gt 0 ]; then if l=$({cmd} -- \"$@\" 2>/dev/null); then printf '%s\\n' \"$l\"; \
         else for p; do {cmd} -- \"$p\" 2>/dev/null || echo {failed}; done; fi; fi\n"
    )
}

/// The paths' part of the probe: one `stat` for every path there is and
/// one `sha256sum` for every regular file whose checksum is asked for,
/// however many there are (a path used to cost up to four programs).
///
/// A `path i` section says `present` or `absent` (the shell's own test) and
/// carries the file's content when asked; the `stats` section has one line
/// per present path, in the order of the sections; each `sum i` section
/// marks a file whose line is next in the `sums` section. When one of the
/// batched commands fails (a path went away after the test, a file is not
/// readable), they run again one path at a time, so that every path still
/// has exactly one line (`gone`, `unreadable`).
fn paths_script(s: &mut String, m: &str, paths: &BTreeMap<&str, PathAsk>) {
    if paths.is_empty() {
        return;
    }
    s.push_str("set --\n");
    for (path, ask) in paths {
        s.push_str(&format!(
            "echo '{m} path {}'; p={}; if [ -e \"$p\" ] || [ -L \"$p\" ]; then echo present; set -- \"$@\" \"$p\"; else echo absent; fi\n",
            ask.section,
            quote(path)
        ));
        if ask.content {
            s.push_str(&format!(
                "if [ -f \"$p\" ] && [ \"$(stat -c %s -- \"$p\")\" -le {DIFF_MAX_BYTES} ]; then echo \"content=$(base64 -w0 -- \"$p\")\"; fi\n"
            ));
        }
    }
    s.push_str(&format!("echo '{m} stats'; {}", batched(&format!("stat -c '{STAT_FORMAT}'"), "gone")));
    if !paths.values().any(|ask| ask.checksum) {
        return;
    }
    s.push_str("set --\n");
    for (path, ask) in paths.iter().filter(|(_, ask)| ask.checksum) {
        s.push_str(&format!(
            "p={}; if [ -f \"$p\" ] && [ ! -L \"$p\" ]; then set -- \"$@\" \"$p\"; echo '{m} sum {}'; fi\n",
            quote(path),
            ask.section
        ));
    }
    s.push_str(&format!("echo '{m} sums'; {}", batched("sha256sum", "unreadable")));
}

/// `docker` -> `docker.service`; names with a unit suffix stay.
pub fn unit_name(u: &str) -> String {
    const SUFFIXES: &[&str] = &[".service", ".socket", ".timer", ".target", ".mount", ".path", ".slice"];
    if SUFFIXES.iter().any(|s| u.ends_with(s)) {
        u.to_string()
    } else {
        format!("{u}.service")
    }
}

/// Parse the probe's answer. `requests` must be the set the script was made
/// from (sections refer to requests by index).
pub fn parse(nonce: &str, requests: &BTreeSet<FactRequest>, out: &str) -> Result<Facts, String> {
    let m = format!("@@{nonce} ");
    let reqs: Vec<&FactRequest> = requests.iter().collect();
    let mut sections: Vec<(String, Vec<&str>)> = Vec::new();
    for line in out.lines() {
        if let Some(tag) = line.strip_prefix(&m) {
            sections.push((tag.to_string(), Vec::new()));
        } else if let Some(last) = sections.last_mut() {
            last.1.push(line);
        }
    }
    if sections.last().map(|s| s.0.as_str()) != Some("end") {
        let last = sections.last().map(|s| format!(" (the last section it reached: `{}`)", s.0)).unwrap_or_default();
        return Err(format!(
            "the host's answer to the probe stopped before its end{last}: the probe script was cut short on the host (its shell died or was killed); check that `sh` works for the login user there, then run again"
        ));
    }
    let mut f = Facts::default();
    // Paths the shell found, waiting for their `stats` line; files waiting
    // for their line in `sums`.
    let mut present: Vec<(&String, Option<Vec<u8>>)> = Vec::new();
    let mut summed: Vec<&String> = Vec::new();
    // Requests answered by default when absent from the output.
    for r in &reqs {
        match r {
            FactRequest::Package(p) => {
                f.packages.insert(p.clone(), Package { installed: false, version: None });
            }
            FactRequest::Service(u) => {
                f.services.insert(u.clone(), Service { load: "not-found".into(), active: "inactive".into(), enabled: String::new() });
            }
            _ => {}
        }
    }
    for (tag, lines) in &sections {
        let mut words = tag.split(' ');
        let kind = words.next().unwrap_or("");
        let idx: Option<usize> = words.next().and_then(|w| w.parse().ok());
        let req = idx.and_then(|i| reqs.get(i).copied());
        match (kind, req) {
            ("os", _) => f.os = parse_os(lines),
            ("path", Some(FactRequest::Path { path, .. })) => match lines.first() {
                Some(&"present") => {
                    let content = match lines.iter().find_map(|l| l.strip_prefix("content=")) {
                        Some(b) => Some(base64::engine::general_purpose::STANDARD.decode(b).map_err(|e| e.to_string())?),
                        None => None,
                    };
                    present.push((path, content));
                }
                Some(&"absent") => {
                    f.paths.insert(path.clone(), None);
                }
                _ => return Err(format!("cannot read the state of {path}: `{}`", lines.join(" "))),
            },
            ("stats", _) => {
                if lines.len() != present.len() {
                    return Err(format!("the probe's answer has {} stat lines for {} paths", lines.len(), present.len()));
                }
                for ((path, content), line) in present.drain(..).zip(lines) {
                    let state = parse_stat(line)?.map(|st| PathState { content, ..st });
                    f.paths.insert(path.clone(), state);
                }
            }
            ("sum", Some(FactRequest::Path { path, .. })) => summed.push(path),
            ("sums", _) => {
                if lines.len() != summed.len() {
                    return Err(format!("the probe's answer has {} checksums for {} files", lines.len(), summed.len()));
                }
                for (path, line) in summed.drain(..).zip(lines) {
                    let hex = line.strip_prefix('\\').unwrap_or(line).get(..64).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
                    if let (Some(hex), Some(Some(st))) = (hex, f.paths.get_mut(path)) {
                        st.sha256 = Some(hex.to_string());
                    }
                }
            }
            ("user", Some(FactRequest::User(u))) => {
                f.users.insert(u.clone(), parse_user(lines));
            }
            ("group", Some(FactRequest::Group(g))) => {
                let gid = lines.first().and_then(|l| l.split(':').nth(2)).and_then(|g| g.parse().ok());
                f.groups.insert(g.clone(), gid.map(|gid| Group { gid }));
            }
            ("aptcache", _) => {
                let kv = key_values(lines);
                let lists: u64 = kv.get("lists").and_then(|v| v.parse().ok()).unwrap_or(0);
                let now: u64 = kv.get("now").and_then(|v| v.parse().ok()).unwrap_or(0);
                let newest = lines.iter().filter_map(|l| l.strip_prefix("mtime=")).filter_map(|v| v.parse::<u64>().ok()).max();
                f.apt_cache_age = match (lists, newest) {
                    (0, _) | (_, None) => None,
                    (_, Some(t)) => Some(now.saturating_sub(t)),
                };
            }
            ("aptsrc", Some(FactRequest::AptSourcesFor(url))) => {
                f.apt_sources_for.insert(url.clone(), lines.iter().map(|l| l.to_string()).collect());
            }
            ("guard", Some(FactRequest::Guard(cmd))) => {
                let rc = lines
                    .iter()
                    .rev()
                    .find_map(|l| l.strip_prefix("rc="))
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("guard `{cmd}` gave no exit status"))?;
                f.guards.insert(cmd.clone(), rc);
            }
            ("packages", _) => {
                for l in lines {
                    let mut parts = l.split('\t');
                    let (Some(name), Some(status), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
                        continue;
                    };
                    // Multi-arch names come as name:arch in some setups.
                    let name = name.split(':').next().unwrap_or(name);
                    let installed = status.starts_with("ii") || status.starts_with("hi");
                    f.packages.insert(name.to_string(), Package { installed, version: installed.then(|| version.to_string()) });
                }
            }
            ("candidates", _) => {
                for l in lines {
                    if let Some((name, version)) = l.split_once('\t') {
                        let version = version.trim();
                        if !version.is_empty() && version != "(none)" {
                            f.candidates.insert(name.to_string(), version.to_string());
                        }
                    }
                }
            }
            ("services", _) => {
                for block in lines.split(|l| l.is_empty()) {
                    let kv = key_values(block);
                    let Some(id) = kv.get("Id") else { continue };
                    let svc = Service {
                        load: kv.get("LoadState").cloned().unwrap_or_default(),
                        active: kv.get("ActiveState").cloned().unwrap_or_default(),
                        enabled: kv.get("UnitFileState").cloned().unwrap_or_default(),
                    };
                    for r in &reqs {
                        if let FactRequest::Service(u) = r {
                            if &unit_name(u) == id {
                                f.services.insert(u.clone(), svc.clone());
                            }
                        }
                    }
                }
            }
            ("end", _) => {}
            (other, _) => return Err(format!("unexpected probe section `{other}`")),
        }
    }
    if let Some((path, _)) = present.first() {
        return Err(format!("the probe's answer has no stat line for {path}"));
    }
    Ok(f)
}

fn key_values(lines: &[&str]) -> BTreeMap<String, String> {
    lines.iter().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string())).collect()
}

fn parse_os(lines: &[&str]) -> Os {
    let kv = key_values(lines);
    let g = |k: &str| kv.get(k).cloned().unwrap_or_default();
    Os {
        id: g("ID"),
        version_id: g("VERSION_ID"),
        codename: kv.get("VERSION_CODENAME").cloned().unwrap_or_else(|| g("UBUNTU_CODENAME")),
        pretty_name: g("PRETTY_NAME"),
        machine: g("machine"),
        dpkg_arch: g("dpkg_arch"),
        nproc: g("nproc").parse().unwrap_or(1),
        memtotal_mb: g("memtotal_kb").parse::<u64>().unwrap_or(0) / 1024,
        hostname: g("hostname"),
        systemd: kv.contains_key("systemd"),
    }
}

/// A line of the `stats` section: `gone` (the path went away after the
/// shell saw it) or `type|mode|owner|group|size`. The checksum and content
/// come from elsewhere.
fn parse_stat(line: &str) -> Result<Option<PathState>, String> {
    if line == "gone" {
        return Ok(None);
    }
    let parts: Vec<&str> = line.split('|').collect();
    if parts.len() < 4 {
        return Err(format!("cannot parse stat output `{line}`"));
    }
    let kind = match parts[0] {
        "regular file" | "regular empty file" => PathKind::File,
        "directory" => PathKind::Directory,
        "symbolic link" => PathKind::Link,
        _ => PathKind::Other,
    };
    let mode = u32::from_str_radix(parts[1], 8).map_err(|_| format!("bad mode `{}`", parts[1]))?;
    Ok(Some(PathState { kind, mode, owner: parts[2].to_string(), group: parts[3].to_string(), sha256: None, content: None }))
}

fn parse_user(lines: &[&str]) -> Option<User> {
    let pw = lines.iter().find(|l| l.matches(':').count() >= 6)?;
    let f: Vec<&str> = pw.split(':').collect();
    let groups = lines
        .iter()
        .find_map(|l| l.strip_prefix("groups="))
        .map(|g| g.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    Some(User { uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: f[5].to_string(), shell: f[6].to_string(), groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reqs() -> BTreeSet<FactRequest> {
        [
            FactRequest::Package("curl".into()),
            FactRequest::Package("docker.io".into()),
            FactRequest::Service("ssh".into()),
            FactRequest::Path { path: "/etc/motd".into(), content: false, checksum: true },
            FactRequest::Path { path: "/nope".into(), content: false, checksum: false },
            FactRequest::User("deploy".into()),
            FactRequest::AptCache,
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn parses_a_captured_answer() {
        let r = reqs();
        let h = "ab".repeat(32);
        let out = &format!("@@N os\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nmachine=x86_64\ndpkg_arch=amd64\nnproc=2\nhostname=h1\nmemtotal_kb=2048000\nsystemd=1\n\
@@N path 3\npresent\n@@N path 4\nabsent\n@@N stats\nregular file|644|root|root|286\n@@N sum 3\n@@N sums\n\\{h}  /etc/mo\\\\td\n\
@@N user 5\ndeploy:x:1000:1000::/home/deploy:/bin/bash\ngroups=deploy sudo\n\
@@N aptcache\nlists=4\nnow=1000\nmtime=900\nmtime=400\n\
@@N packages\ncurl\tii \t7.88.1-10\n\
@@N candidates\ncurl\t7.88.1-10+deb12u8\ndocker.io\t(none)\njq\t\n\
@@N services\nId=ssh.service\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled\n\n@@N end\n");
        let f = parse("N", &r, out).unwrap();
        assert_eq!(f.candidates.get("curl").map(String::as_str), Some("7.88.1-10+deb12u8"));
        assert!(!f.candidates.contains_key("docker.io") && !f.candidates.contains_key("jq"), "no candidate: none known");
        assert_eq!(f.os.codename, "bookworm");
        assert_eq!(f.os.version_id, "12");
        assert!(f.os.systemd);
        assert_eq!(f.packages["curl"].version.as_deref(), Some("7.88.1-10"));
        assert!(!f.packages["docker.io"].installed);
        assert!(f.services["ssh"].is_active() && f.services["ssh"].is_enabled());
        assert_eq!(f.paths["/etc/motd"].as_ref().unwrap().mode, 0o644);
        assert_eq!(f.paths["/etc/motd"].as_ref().unwrap().sha256.as_deref(), Some(h.as_str()), "an escaped name's line starts with \\");
        assert!(f.paths["/nope"].is_none());
        assert_eq!(f.users["deploy"].as_ref().unwrap().groups, vec!["deploy", "sudo"]);
        assert_eq!(f.apt_cache_age, Some(100));
    }

    #[test]
    fn incomplete_answer_is_an_error() {
        assert!(parse("N", &reqs(), "@@N os\nID=debian\n").is_err());
    }

    #[test]
    fn the_script_runs_and_parses_here() {
        // The probe is plain POSIX sh: run it on this machine for real.
        let mut r = reqs();
        r.insert(FactRequest::Guard("true".into()));
        r.insert(FactRequest::Path { path: "/etc/hostname".into(), content: true, checksum: true });
        r.insert(FactRequest::Candidate("bash".into()));
        r.insert(FactRequest::Candidate("no-such-package-here".into()));
        let s = script("T3st", &r);
        let out = std::process::Command::new("sh").arg("-c").arg(&s).output().unwrap();
        let f = parse("T3st", &r, &String::from_utf8_lossy(&out.stdout)).unwrap();
        assert_eq!(f.guards["true"], 0);
        assert!(f.path("/etc/hostname").unwrap().sha256.as_ref().unwrap().len() == 64);
        assert!(f.path("/etc/hostname").unwrap().content.is_some());
        assert!(!f.candidates.contains_key("no-such-package-here"));
        // The same count of package lists as `ls | grep -c _Packages`.
        let lists = std::fs::read_dir("/var/lib/apt/lists")
            .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().contains("_Packages")).count())
            .unwrap_or(0);
        let stamp = std::fs::metadata("/var/lib/apt/lists").and_then(|m| m.modified()).ok();
        if lists > 0 && stamp.is_some() {
            let age = f.apt_cache_age.expect("package lists here: an age");
            let newest = ["/var/lib/apt/periodic/update-success-stamp", "/var/lib/apt/lists"]
                .iter()
                .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
                .max()
                .and_then(|t| t.elapsed().ok())
                .map(|d| d.as_secs())
                .unwrap_or(0);
            assert!(age.abs_diff(newest) <= 5, "age {age} s, the files say {newest} s");
        } else {
            assert_eq!(f.apt_cache_age, None);
        }
        if std::path::Path::new("/var/lib/dpkg/status").exists() {
            assert!(f.candidates.get("bash").is_some_and(|v| !v.is_empty()), "apt knows bash here: {:?}", f.candidates);
        }
    }

    /// Runs the probe for `paths` with real `sh` and parses its answer.
    fn probe_paths(paths: &[(&str, bool, bool)]) -> Facts {
        let r: BTreeSet<FactRequest> = paths
            .iter()
            .map(|(p, content, checksum)| FactRequest::Path { path: p.to_string(), content: *content, checksum: *checksum })
            .collect();
        let out = std::process::Command::new("sh").arg("-c").arg(script("P4th", &r)).output().unwrap();
        parse("P4th", &r, &String::from_utf8_lossy(&out.stdout)).unwrap()
    }

    #[test]
    fn paths_are_stated_and_hashed_in_one_go_whatever_their_names() {
        let dir = std::env::temp_dir().join(format!("bootstrap-probe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let odd = dir.join("a\\b\nc 'd'");
        let plain = dir.join("plain");
        let unhashed = dir.join("unhashed");
        std::fs::write(&odd, b"odd\n").unwrap();
        std::fs::write(&plain, b"plain").unwrap();
        std::fs::write(&unhashed, b"x").unwrap();
        let (odd_s, plain_s, unhashed_s) = (odd.to_str().unwrap(), plain.to_str().unwrap(), unhashed.to_str().unwrap());
        let missing = dir.join("missing");
        let dir_s = dir.to_str().unwrap();
        let f = probe_paths(&[
            (odd_s, false, true),
            (plain_s, false, false),
            // The same path asked twice: what either asks for.
            (plain_s, true, true),
            (unhashed_s, false, false),
            (missing.to_str().unwrap(), false, true),
            (dir_s, false, true),
        ]);
        let sha = |p: &str| f.path(p).and_then(|s| s.sha256.clone());
        assert_eq!(sha(odd_s), Some(crate::plan::changes::sha256_hex(b"odd\n")), "a name with a newline and a backslash");
        assert_eq!(sha(plain_s), Some(crate::plan::changes::sha256_hex(b"plain")));
        assert_eq!(f.path(plain_s).and_then(|s| s.content.clone()), Some(b"plain".to_vec()));
        assert_eq!(f.path(unhashed_s).map(|s| (s.kind.clone(), s.sha256.is_none())), Some((PathKind::File, true)));
        assert!(f.path(missing.to_str().unwrap()).is_none());
        assert_eq!(f.path(dir_s).map(|s| (s.kind.clone(), s.sha256.is_none())), Some((PathKind::Directory, true)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_sha256sum_or_stat_fails_on_still_has_its_own_line() {
        // As root every file is readable and stays put: shell functions,
        // which come before PATH, stand in for a `sha256sum` that cannot
        // read `locked` and a `stat` that finds `vanished` gone.
        let dir = std::env::temp_dir().join(format!("bootstrap-probe-fail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let names = ["a", "locked", "vanished", "z"];
        for n in names {
            std::fs::write(dir.join(n), n).unwrap();
        }
        let path = |n: &str| dir.join(n).to_str().unwrap().to_string();
        let r: BTreeSet<FactRequest> = names.iter().map(|n| FactRequest::Path { path: path(n), content: false, checksum: true }).collect();
        let fail = "sha256sum() { for a; do case $a in *locked) return 1;; esac; done; command sha256sum \"$@\"; }\n\
                    stat() { for a; do case $a in *vanished) return 1;; esac; done; command stat \"$@\"; }\n";
        let out = std::process::Command::new("sh").arg("-c").arg(format!("{fail}{}", script("F4il", &r))).output().unwrap();
        let f = parse("F4il", &r, &String::from_utf8_lossy(&out.stdout)).unwrap();
        assert_eq!(f.path(&path("a")).and_then(|s| s.sha256.clone()), Some(crate::plan::changes::sha256_hex(b"a")));
        assert_eq!(f.path(&path("z")).and_then(|s| s.sha256.clone()), Some(crate::plan::changes::sha256_hex(b"z")));
        assert!(f.path(&path("locked")).is_some_and(|s| s.kind == PathKind::File && s.sha256.is_none()));
        assert!(f.path(&path("vanished")).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_paths_answer_that_does_not_add_up_is_an_error() {
        let r: BTreeSet<FactRequest> = [FactRequest::Path { path: "/a".into(), content: false, checksum: true }].into_iter().collect();
        for out in [
            "@@N path 0\npresent\n@@N end\n",
            "@@N path 0\npresent\n@@N stats\n@@N end\n",
            "@@N path 0\npresent\n@@N stats\nregular file|644|root|root|1\nregular file|644|root|root|1\n@@N end\n",
            "@@N path 0\npresent\n@@N stats\nregular file|644|root|root|1\n@@N sum 0\n@@N sums\n@@N end\n",
            "@@N path 0\nstat=regular file|644|root|root|1\n@@N end\n",
        ] {
            assert!(parse("N", &r, out).is_err(), "{out:?}");
        }
    }
}
