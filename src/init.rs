//! `bootstrap init [DIR]`: the files to start from, written once.
//!
//! A commented inventory (`hosts.yml`, or `hosts.ini` in Ansible's INI
//! format), `group_vars/all.yml` with every variable of the built-in runner
//! playbook at its default (taken from the playbook's own `defaults:`, so
//! the two cannot drift), and a `.gitignore` for local secrets. An existing
//! file is never overwritten: that is bad input (exit 5), and nothing is
//! written at all.

use std::path::{Path, PathBuf};

use crate::error::{exit, InputError};
use crate::playbook::BUILTIN_PLAYBOOK;

/// The YAML inventory: ready for `bootstrap apply --check` once the hosts
/// are real; what must be changed says so.
const HOSTS_YML: &str = r#"# Inventory for bootstrap, in Ansible's YAML inventory format (ansible-inventory reads it too).
# Replace the example hosts and gitlab_url, then:
#   bootstrap ping hosts.yml          # connect, authenticate, become root
#   bootstrap apply hosts.yml --check # what would change
#   GITLAB_TOKEN=glpat-... bootstrap apply hosts.yml
# Every other variable, with its default, is in group_vars/all.yml.
all:
  vars:
    # How to log in: a user with sudo on every host, and a key (or ssh-agent, or ~/.ssh/config).
    ansible_user: deploy
    ansible_become: yes
    # ansible_ssh_private_key_file: ~/.ssh/runners
    # A sudo password, read from the environment (never write secrets here):
    # ansible_become_password: "{{ lookup('env', 'RUNNER_SUDO_PASSWORD') }}"
    # Password login instead of a key (or `bootstrap -k`, which asks):
    # ansible_password: "{{ lookup('env', 'RUNNER_SSH_PASSWORD') }}"

    # Your GitLab. A group runner (runner_group_id), a project runner (runner_project_id), or
    # neither: an instance runner. Registration uses GITLAB_TOKEN (create_runner scope).
    gitlab_url: https://gitlab.example.com
    # runner_group_id: 42

    # Docker Engine from the distribution's own packages (docker.io). For Docker's docker-ce,
    # set docker_install: docker-ce (Docker's apt repository for the host's distribution, or
    # your mirror in docker_apt_url / docker_apt_key_url).
    docker_install: distro

    # gitlab-runner: `upload` sends the binary below from this machine (download it from
    # GitLab Runner's releases for your hosts' architecture; the path is relative to the folder
    # you run bootstrap in). Or gitlab_runner_install: apt (GitLab Runner's apt repository, or
    # your mirror in gitlab_runner_apt_url / gitlab_runner_apt_key_url), or binary with
    # gitlab_runner_binary_url and gitlab_runner_binary_sha256.
    gitlab_runner_install: upload
    gitlab_runner_binary: gitlab-runner
  children:
    runners:
      hosts:
        runner-1:
          ansible_host: 192.0.2.11
        runner-2:
          ansible_host: 192.0.2.12
          # ansible_port: 2222
"#;

/// The same inventory in Ansible's INI format.
const HOSTS_INI: &str = r#"# Inventory for bootstrap, in Ansible's INI inventory format (ansible-inventory reads it too).
# Replace the example hosts and gitlab_url, then:
#   bootstrap ping hosts.ini          # connect, authenticate, become root
#   bootstrap apply hosts.ini --check # what would change
#   GITLAB_TOKEN=glpat-... bootstrap apply hosts.ini
# Every other variable, with its default, is in group_vars/all.yml.

[runners]
runner-1 ansible_host=192.0.2.11
runner-2 ansible_host=192.0.2.12
# runner-3 ansible_host=192.0.2.13 ansible_port=2222

[all:vars]
# How to log in: a user with sudo on every host, and a key (or ssh-agent, or ~/.ssh/config).
ansible_user=deploy
ansible_become=true
# ansible_ssh_private_key_file=~/.ssh/runners
# A sudo password, read from the environment (never write secrets here):
# ansible_become_password="{{ lookup('env', 'RUNNER_SUDO_PASSWORD') }}"
# Password login instead of a key (or `bootstrap -k`, which asks):
# ansible_password="{{ lookup('env', 'RUNNER_SSH_PASSWORD') }}"

# Your GitLab. A group runner (runner_group_id), a project runner (runner_project_id), or
# neither: an instance runner. Registration uses GITLAB_TOKEN (create_runner scope).
gitlab_url=https://gitlab.example.com
# runner_group_id=42

# Docker Engine from the distribution's own packages (docker.io). For Docker's docker-ce,
# set docker_install=docker-ce (Docker's apt repository for the host's distribution, or
# your mirror in docker_apt_url / docker_apt_key_url).
docker_install=distro

# gitlab-runner: `upload` sends the binary below from this machine (download it from
# GitLab Runner's releases for your hosts' architecture; the path is relative to the folder
# you run bootstrap in). Or gitlab_runner_install=apt (GitLab Runner's apt repository, or
# your mirror in gitlab_runner_apt_url / gitlab_runner_apt_key_url), or binary with
# gitlab_runner_binary_url and gitlab_runner_binary_sha256.
gitlab_runner_install=upload
gitlab_runner_binary=gitlab-runner
"#;

const GITIGNORE: &str = r#"# Local secrets: never commit them.
*.key
*.pem
id_*
!id_*.pub
.env
.env.*
*.secret
*.secrets
vault-password*
.vault_pass*
# The gitlab-runner binary that `gitlab_runner_install: upload` sends.
/gitlab-runner
"#;

/// Variables of the built-in playbook that have no value in its
/// `defaults:` (some must be set, depending on the install choices).
const WITHOUT_DEFAULT: &[(&str, &str)] = &[
    ("gitlab_url", "your GitLab instance, e.g. https://gitlab.example.com (required)"),
    ("gitlab_runner_binary_url", "binary: where each host downloads gitlab-runner from"),
    ("gitlab_runner_binary_sha256", "binary: the SHA-256 that download must have"),
    ("gitlab_runner_binary", "upload: the local gitlab-runner binary the controller sends"),
    ("runner_concurrent", "jobs at once (config.toml `concurrent`); default: the host's CPU count"),
    ("verify_base_image", "the image `bootstrap verify` builds from; default: one made from the host's own shell"),
];

/// The `defaults:` block of the built-in playbook, as written there
/// (comments kept), without its indentation.
fn playbook_defaults() -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in BUILTIN_PLAYBOOK.1.lines() {
        if line.trim_end() == "  defaults:" {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if !line.trim().is_empty() && indent <= 2 {
            break;
        }
        out.push(line.get(4..).unwrap_or("").to_string());
    }
    out
}

/// `group_vars/all.yml`: every variable, at its default, commented out.
fn group_vars_all() -> String {
    let mut s = String::from(
        "# Variables for every host (Ansible's group_vars/all, beside the inventory).\n\
         # Every variable of bootstrap's built-in runner playbook is here at its default, commented\n\
         # out: uncomment a line (delete its `#`) to change it. As in Ansible, a value here wins over `all: vars` in\n\
         # the inventory file, and a group's or host's own value wins over this one.\n\
         # Secrets (tokens, passwords) do not belong here: bootstrap reads them from the environment\n\
         # (GITLAB_TOKEN, GITLAB_RUNNER_TOKEN, GITLAB_REGISTRATION_TOKEN) or lookup('env', ...).\n\n\
         # Without a default (set those your install choices need):\n",
    );
    for (name, what) in WITHOUT_DEFAULT {
        s.push_str(&format!("#{name}:    # {what}\n"));
    }
    s.push_str("\n# With a default (the playbook's `defaults:`):\n");
    for line in playbook_defaults() {
        let t = line.trim_start();
        if t.is_empty() {
            s.push('\n');
        } else if t.starts_with('#') {
            // The playbook's own explanation: a comment line, kept.
            s.push_str(&format!("#{}\n", line.trim_start_matches(|c| c != '#').trim_start_matches('#')));
        } else {
            s.push_str(&format!("#{line}\n"));
        }
    }
    s
}

/// The files to write, relative to the folder.
fn files(ini: bool) -> Vec<(&'static str, String)> {
    let inventory = if ini { ("hosts.ini", HOSTS_INI.to_string()) } else { ("hosts.yml", HOSTS_YML.to_string()) };
    vec![inventory, ("group_vars/all.yml", group_vars_all()), (".gitignore", GITIGNORE.to_string())]
}

/// Write the starter files into `dir`; exit status.
pub fn run(dir: &Path, ini: bool) -> u8 {
    match write(dir, ini) {
        Ok(written) => {
            for p in &written {
                println!("wrote {}", p.display());
            }
            let inv = if ini { "hosts.ini" } else { "hosts.yml" };
            println!("next: edit {}, then `bootstrap ping {}`", dir.join(inv).display(), dir.join(inv).display());
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("nothing was written.");
            exit::BAD_INPUT
        }
    }
}

fn write(dir: &Path, ini: bool) -> Result<Vec<PathBuf>, InputError> {
    let files = files(ini);
    // Check every file first: either all are written or none.
    for (name, _) in &files {
        let p = dir.join(name);
        if p.symlink_metadata().is_ok() {
            return Err(InputError::new(format!("{} already exists; bootstrap init never overwrites a file", p.display()))
                .field("DIR")
                .hint("move it away, or run `bootstrap init` in another folder"));
        }
    }
    let mut written = Vec::new();
    for (name, content) in &files {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| InputError::new(format!("cannot create {}: {e}", parent.display())))?;
        }
        // create_new: a file that appeared since the check is not overwritten either.
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                InputError::new(format!("{} already exists; bootstrap init never overwrites a file", p.display()))
            } else {
                InputError::new(format!("cannot write {}: {e}", p.display()))
            }
        })?;
        std::io::Write::write_all(&mut f, content.as_bytes()).map_err(|e| InputError::new(format!("cannot write {}: {e}", p.display())))?;
        written.push(p);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::Playbook;

    /// group_vars/all.yml with its variable lines uncommented.
    fn uncommented() -> serde_yaml_ng::Mapping {
        let text: String = group_vars_all()
            .lines()
            // `#name: value`; prose is `# text`.
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()))
            .map(|l| format!("{}\n", l.split("    # ").next().unwrap_or(l)))
            .collect();
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("uncommented group_vars/all.yml is not YAML: {e}\n{text}"))
    }

    #[test]
    fn group_vars_has_every_default_with_its_value() {
        let pb = Playbook::builtin().expect("built-in playbook");
        let defaults: Vec<(&String, &serde_json::Value)> = pb.plays.iter().flat_map(|p| p.defaults.iter()).collect();
        assert!(defaults.len() > 30, "{}", defaults.len());
        let written = uncommented();
        for (k, v) in defaults {
            let got = written.get(k.as_str()).unwrap_or_else(|| panic!("group_vars/all.yml lacks `{k}`"));
            let got: serde_json::Value = serde_json::to_value(got).expect("json");
            assert_eq!(&got, v, "default of `{k}`");
        }
        for (k, _) in WITHOUT_DEFAULT {
            assert!(written.contains_key(*k), "`{k}`");
        }
    }

    #[test]
    fn group_vars_names_every_variable_the_readme_lists() {
        let readme = include_str!("../README.md");
        let start = readme.find("Variables (set in the inventory").expect("README variables paragraph");
        let para = &readme[start..readme[start..].find("\n\n").map(|e| start + e).unwrap_or(readme.len())];
        let written = uncommented();
        let names: Vec<&str> =
            para.split('`').skip(1).step_by(2).filter(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')).collect();
        assert!(names.len() > 30, "{names:?}");
        for n in names.iter().filter(|n| !["defaults"].contains(n)) {
            assert!(written.contains_key(*n), "README names `{n}`, group_vars/all.yml does not");
        }
    }

    #[test]
    fn never_overwrites_and_writes_nothing_then() {
        let dir = std::env::temp_dir().join(format!("bootstrap-init-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".gitignore"), "mine\n").unwrap();
        let e = write(&dir, false).unwrap_err();
        assert!(e.to_string().contains(".gitignore already exists"), "{e}");
        assert!(!dir.join("hosts.yml").exists(), "nothing written when one file exists");
        assert_eq!(std::fs::read_to_string(dir.join(".gitignore")).unwrap(), "mine\n");
        std::fs::remove_file(dir.join(".gitignore")).unwrap();
        assert_eq!(write(&dir, true).unwrap().len(), 3);
        assert!(dir.join("hosts.ini").is_file() && !dir.join("hosts.yml").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
