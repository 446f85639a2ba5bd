//! The security posture GitLab's advice for binding the Docker socket asks
//! for, per runner of a host's config.toml: pure, from the file's text and
//! attributes (and, for the settings GitLab keeps, what the playbook
//! registered when config.toml does not say them).

use crate::gitlab::runner::RunnerSpec;
use crate::plan::facts::PathState;

/// One point of the posture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// What holds, or what does not (`ok` false: a warning).
    pub text: String,
    pub ok: bool,
}

/// One runner's posture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posture {
    pub runner: String,
    pub points: Vec<Point>,
}

impl Posture {
    pub fn warnings(&self) -> impl Iterator<Item = &Point> {
        self.points.iter().filter(|p| !p.ok)
    }
}

fn point(ok: bool, good: impl Into<String>, bad: impl Into<String>) -> Point {
    Point { text: if ok { good.into() } else { bad.into() }, ok }
}

/// The posture of every `[[runners]]` entry of `text` (config.toml, at
/// `path` with attributes `attrs`). Settings GitLab keeps (tags,
/// `run_untagged`, `locked`, `access_level`) come from config.toml when it
/// holds them, else from `spec`, what the playbook registered.
pub fn assess(text: &str, path: &str, attrs: Option<&PathState>, spec: Option<&RunnerSpec>) -> Result<Vec<Posture>, String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| format!("{path} is not valid TOML: {}", e.message()))?;
    let runners = doc.get("runners").and_then(|r| r.as_array()).cloned().unwrap_or_default();
    let file = match attrs {
        Some(a) => {
            let ok = a.mode & 0o077 == 0 && a.owner == "root";
            point(
                ok,
                format!("{path} is mode {:04o}, owner {}", a.mode & 0o7777, a.owner),
                format!("{path} is mode {:04o}, owner {} (want 0600 root: it holds the runner token)", a.mode & 0o7777, a.owner),
            )
        }
        None => Point { text: format!("{path}: mode and owner unknown"), ok: false },
    };
    let mut out = Vec::new();
    for (i, r) in runners.iter().enumerate() {
        let Some(r) = r.as_table() else { continue };
        let name = r.get("name").and_then(|v| v.as_str()).map(str::to_string).unwrap_or_else(|| format!("#{}", i + 1));
        let docker = r.get("docker").and_then(|d| d.as_table());
        let mut points = Vec::new();
        let from = |key: &str| if r.contains_key(key) { "" } else { " (as registered by the playbook)" };
        let tags: Vec<String> = match r.get("tag_list").and_then(|t| t.as_array()) {
            Some(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            None => spec.map(|s| s.tag_list.clone()).unwrap_or_default(),
        };
        let tag = tags.iter().find(|t| t.contains("dockerd"));
        points.push(point(
            tag.is_some(),
            format!("tag `{}`{}", tag.map(String::as_str).unwrap_or_default(), from("tag_list")),
            format!("no `dockerd` tag (tags: [{}]){}: jobs cannot ask for the socket by name", tags.join(", "), from("tag_list")),
        ));
        let flag = |key: &str, default: Option<bool>| r.get(key).and_then(|v| v.as_bool()).or(default);
        let untagged = flag("run_untagged", spec.map(|s| s.run_untagged));
        points.push(match untagged {
            Some(u) => point(
                !u,
                format!("run_untagged = false{}", from("run_untagged")),
                format!("run_untagged = true{}: any untagged job gets the host's Docker socket", from("run_untagged")),
            ),
            None => Point { text: "run_untagged unknown".into(), ok: false },
        });
        let locked = flag("locked", spec.map(|s| s.locked));
        points.push(match locked {
            Some(l) => point(
                l,
                format!("locked = true{}", from("locked")),
                format!("locked = false{}: other projects can take this runner", from("locked")),
            ),
            None => Point { text: "locked unknown".into(), ok: false },
        });
        let access = r.get("access_level").and_then(|v| v.as_str()).map(str::to_string).or_else(|| spec.map(|s| s.access_level.clone()));
        // Reported, not a warning: not_protected is the playbook's default.
        points.push(Point {
            text: match access.as_deref() {
                Some("ref_protected") => format!("access_level = ref_protected{}: only protected branches and tags", from("access_level")),
                Some(a) => format!("access_level = {a}{}: jobs of unprotected branches run here too", from("access_level")),
                None => "access_level unknown".into(),
            },
            ok: true,
        });
        points.push(file.clone());
        let allowed = docker.and_then(|d| d.get("allowed_images")).and_then(|v| v.as_array()).map(|a| a.len()).unwrap_or(0);
        points.push(Point {
            text: if allowed > 0 {
                format!("allowed_images: {allowed} pattern(s)")
            } else {
                "allowed_images not set: jobs may run any image".into()
            },
            ok: true,
        });
        let privileged = docker.and_then(|d| d.get("privileged")).and_then(|v| v.as_bool()).unwrap_or(false);
        let socket = docker
            .and_then(|d| d.get("volumes"))
            .and_then(|v| v.as_array())
            .map(|a| a.iter().any(|v| v.as_str().map(|s| s.contains("docker.sock")).unwrap_or(false)))
            .unwrap_or(false);
        points.push(point(
            !(privileged && socket),
            format!("privileged = {privileged}{}", if socket { ", with the socket" } else { "" }),
            "privileged = true together with the Docker socket: a job is root on the host twice over",
        ));
        out.push(Posture { runner: name, points });
    }
    Ok(out)
}

/// What the docker executor would start a job container with, from the
/// first `[[runners]]` entry of config.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobContainer {
    pub runner: String,
    pub image: String,
    pub volumes: Vec<String>,
    pub privileged: bool,
}

impl JobContainer {
    pub fn from_config(text: &str) -> Option<JobContainer> {
        let doc: toml::Table = toml::from_str(text).ok()?;
        let r = doc.get("runners")?.as_array()?.first()?.as_table()?;
        let d = r.get("docker").and_then(|d| d.as_table());
        let str_of = |v: Option<&toml::Value>| v.and_then(|v| v.as_str()).unwrap_or_default().to_string();
        Some(JobContainer {
            runner: str_of(r.get("name")),
            image: str_of(d.and_then(|d| d.get("image"))),
            volumes: d
                .and_then(|d| d.get("volumes"))
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            privileged: d.and_then(|d| d.get("privileged")).and_then(|v| v.as_bool()).unwrap_or(false),
        })
    }

    /// The container mounts the host's Docker socket.
    pub fn has_socket(&self) -> bool {
        self.volumes.iter().any(|v| v.contains("docker.sock"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::facts::PathKind;

    const GOOD: &str = r#"concurrent = 2
[[runners]]
  name = "runner-1"
  executor = "docker"
  [runners.docker]
    privileged = false
    volumes = ["/var/run/docker.sock:/var/run/docker.sock"]
"#;

    fn attrs(mode: u32, owner: &str) -> PathState {
        PathState { kind: PathKind::File, mode, owner: owner.into(), group: "root".into(), sha256: None, content: None }
    }

    fn spec() -> RunnerSpec {
        RunnerSpec {
            runner_type: "instance_type".into(),
            group_id: None,
            project_id: None,
            description: "runner-1".into(),
            tag_list: vec!["dockerd".into()],
            run_untagged: false,
            locked: true,
            access_level: "not_protected".into(),
            paused: false,
            maximum_timeout: None,
        }
    }

    #[test]
    fn the_playbook_default_holds() {
        let p = assess(GOOD, "/etc/gitlab-runner/config.toml", Some(&attrs(0o600, "root")), Some(&spec())).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].runner, "runner-1");
        assert_eq!(p[0].warnings().count(), 0, "{:?}", p[0].points);
        let all: Vec<&str> = p[0].points.iter().map(|x| x.text.as_str()).collect();
        assert!(all.iter().any(|t| t.starts_with("tag `dockerd`")), "{all:?}");
        assert!(all.iter().any(|t| t.contains("allowed_images not set")), "{all:?}");
        assert!(all.iter().any(|t| t.contains("access_level = not_protected")), "{all:?}");
    }

    #[test]
    fn a_loosened_runner_warns_for_each_point() {
        let text = GOOD.replace("privileged = false", "privileged = true").replace(
            "  executor = \"docker\"\n",
            "  executor = \"docker\"\n  run_untagged = true\n  locked = false\n  tag_list = [\"linux\"]\n",
        );
        let p = assess(&text, "/etc/gitlab-runner/config.toml", Some(&attrs(0o644, "root")), Some(&spec())).unwrap();
        let w: Vec<&str> = p[0].warnings().map(|x| x.text.as_str()).collect();
        assert_eq!(w.len(), 5, "{w:?}");
        assert!(w[0].starts_with("no `dockerd` tag (tags: [linux])"), "{w:?}");
        assert!(w[1].starts_with("run_untagged = true:"), "{w:?}");
        assert!(w[2].starts_with("locked = false:"), "{w:?}");
        assert!(w[3].contains("mode 0644") && w[3].contains("want 0600 root"), "{w:?}");
        assert!(w[4].starts_with("privileged = true together with the Docker socket"), "{w:?}");
        // Settings from config.toml are not labelled as the playbook's.
        assert!(!w[1].contains("registered by the playbook"), "{w:?}");
    }

    #[test]
    fn the_job_container_is_read_from_the_first_runner() {
        let j = JobContainer::from_config(&GOOD.replace("privileged = false", "privileged = false\n    image = \"docker:27\"")).unwrap();
        assert_eq!(j.runner, "runner-1");
        assert_eq!(j.image, "docker:27");
        assert_eq!(j.volumes, ["/var/run/docker.sock:/var/run/docker.sock"]);
        assert!(j.has_socket() && !j.privileged);
        assert_eq!(JobContainer::from_config("concurrent = 1\n"), None);
    }

    #[test]
    fn owner_other_than_root_and_bad_toml() {
        let p = assess(GOOD, "/c.toml", Some(&attrs(0o600, "gitlab-runner")), Some(&spec())).unwrap();
        assert_eq!(p[0].warnings().count(), 1);
        assert!(assess("[[runners]\n", "/c.toml", None, None).unwrap_err().contains("/c.toml is not valid TOML"));
    }
}
