//! What a user meets around the engine: installing with `cargo install`
//! from a clean clone, the release binary's glibc needs, `--version`,
//! `init`, completions and the man page, colours, the JSON event stream
//! against its README documentation, and SSH password login.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::support::{bin, output_watched, repo, Fixture, Run, TestHost};

/// A local port with nothing listening: connecting is refused at once.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The subcommands `bootstrap --help` lists (not from the code: from what
/// the user sees).
fn subcommands() -> Vec<String> {
    let o = Command::new(bin()).arg("--help").output().expect("bootstrap --help");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let list: Vec<String> = text
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // Entries are indented by two; wrapped descriptions by more.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(list.len() >= 9, "subcommands from --help: {list:?}\n{text}");
    list
}

fn sh(dir: &Path, cmd: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(cmd).current_dir(dir).output().expect("sh");
    assert!(o.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The glibc versions the binary's dynamic symbols need (`GLIBC_2.34`...),
/// read from `objdump -T`; and its NEEDED libraries.
fn glibc_needs(binary: &Path) -> (Vec<(u32, u32)>, Vec<String>) {
    let o = Command::new("objdump").arg("-T").arg(binary).output().expect("objdump runs (binutils)");
    assert!(o.status.success(), "objdump -T: {}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let mut versions: Vec<(u32, u32)> = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut p = v.split('.');
            Some((p.next()?.parse().ok()?, p.next()?.parse().ok()?))
        })
        .collect();
    versions.sort();
    versions.dedup();
    let d = Command::new("objdump").arg("-p").arg(binary).output().expect("objdump -p");
    let needed =
        String::from_utf8_lossy(&d.stdout).lines().filter_map(|l| l.trim().strip_prefix("NEEDED")).map(|l| l.trim().to_string()).collect();
    (versions, needed)
}

/// The minimum glibc the README's install section states (the first
/// `N.M` after "minimum glibc").
fn readme_glibc() -> (u32, u32) {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let at = readme.find("minimum glibc").expect("the README states the minimum glibc");
    let v = readme[at..]
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|w| w.trim_end_matches('.'))
        .find(|w| w.contains('.'))
        .expect("a version after `minimum glibc`");
    let (a, b) = v.split_once('.').expect("major.minor");
    (a.parse().expect("major"), b.parse().expect("minor"))
}

#[test]
fn cargo_install_from_a_clean_clone_then_version_init_and_glibc() {
    crate::support::watchdog();
    let tmp = std::env::temp_dir().join(format!("bootstrap-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("tmp");
    let _cleanup = Cleanup(tmp.clone());
    // What is committed, nothing else: a clone of this repository's HEAD.
    let src = tmp.join("src");
    let o = Command::new("git").arg("clone").arg("-q").arg(repo()).arg(&src).output().expect("git clone");
    assert!(o.status.success(), "git clone: {}", String::from_utf8_lossy(&o.stderr));
    let head = sh(&src, "git rev-parse --short HEAD");
    let root = tmp.join("root");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = Instant::now();
    let mut cmd = Command::new(&cargo);
    cmd.args(["install", "--locked", "--offline", "--path"])
        .arg(&src)
        .arg("--root")
        .arg(&root)
        .arg("--target-dir")
        .arg(tmp.join("target"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("BOOTSTRAP_GIT_COMMIT");
    let o = output_watched(&mut cmd).expect("cargo install runs");
    assert!(o.status.success(), "cargo install failed:\n{}", String::from_utf8_lossy(&o.stderr));
    eprintln!("cargo install: {:.0} s", started.elapsed().as_secs_f64());
    let installed = root.join("bin/bootstrap");
    assert!(installed.is_file(), "no {}", installed.display());

    let v = Command::new(&installed).arg("--version").output().expect("--version");
    let v = String::from_utf8_lossy(&v.stdout).into_owned();
    let version = sh(&src, "sed -n 's/^version = \"\\(.*\\)\"/\\1/p' Cargo.toml | head -n 1");
    assert_eq!(v.trim(), format!("bootstrap {version} (commit {head})"), "--version names the version and the commit");

    let dir = tmp.join("fleet");
    let o = Command::new(&installed).arg("init").arg(&dir).output().expect("init");
    assert!(o.status.success(), "init: {}", String::from_utf8_lossy(&o.stderr));
    for f in ["hosts.yml", "group_vars/all.yml", ".gitignore"] {
        assert!(dir.join(f).is_file(), "init wrote no {f}");
    }

    // The release binary links glibc (and gcc's unwinder) only; the README
    // states the newest glibc symbol version it needs.
    let (versions, needed) = glibc_needs(&installed);
    let newest = *versions.last().expect("the binary uses versioned glibc symbols");
    let allowed = ["libc.so.6", "libm.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2", "libpthread.so.0", "libdl.so.2", "librt.so.1"];
    for n in &needed {
        assert!(allowed.contains(&n.as_str()), "the binary needs {n}, not part of glibc: {needed:?}");
    }
    assert_eq!(newest, readme_glibc(), "the README's minimum glibc is the newest GLIBC_ symbol version the binary needs ({versions:?})");
    eprintln!("release binary: minimum glibc {}.{}, needs {needed:?}", newest.0, newest.1);

    // A build from a tarball (no .git) works, and says `unknown`.
    let tarball = tmp.join("tarball");
    std::fs::create_dir_all(&tarball).expect("mkdir");
    sh(&src, &format!("git archive HEAD | tar -x -C {}", tarball.display()));
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release", "--locked", "--offline", "--manifest-path"])
        .arg(tarball.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(tmp.join("target"))
        .env("GIT_CEILING_DIRECTORIES", &tmp)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("BOOTSTRAP_GIT_COMMIT");
    let o = output_watched(&mut cmd).expect("cargo build runs");
    assert!(o.status.success(), "a build from a tarball failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let v = Command::new(tmp.join("target/release/bootstrap")).arg("--version").output().expect("--version");
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), format!("bootstrap {version} (commit unknown)"));
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn version_names_the_commit_of_this_build() {
    let v = Command::new(bin()).arg("--version").output().expect("--version");
    let v = String::from_utf8_lossy(&v.stdout).into_owned();
    let head = sh(&repo(), "git rev-parse --short HEAD");
    assert!(v.starts_with(&format!("bootstrap {} ", env!("CARGO_PKG_VERSION"))), "{v}");
    assert!(v.trim().ends_with(&format!("(commit {head})")), "`{}` should name HEAD {head}", v.trim());
}

#[test]
fn init_writes_starter_files_that_pass_input_checks_and_never_overwrites() {
    let f = Fixture::new();
    let r = f.run(&["init", "fleet"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let dir = f.dir.join("fleet");
    let hosts = std::fs::read_to_string(dir.join("hosts.yml")).expect("hosts.yml");
    assert!(hosts.lines().filter(|l| l.trim_start().starts_with('#')).count() >= 10, "commented:\n{hosts}");
    let all = std::fs::read_to_string(dir.join("group_vars/all.yml")).expect("group_vars/all.yml");
    for v in ["runner_tags", "runner_default_image", "docker_log_max_size", "gitlab_runner_install", "runner_shutdown_timeout"] {
        assert!(all.contains(&format!("#{v}: ")), "group_vars/all.yml lacks {v}");
    }
    assert!(std::fs::read_to_string(dir.join(".gitignore")).expect(".gitignore").contains("*.key"));

    // Twice: refused, naming the file, nothing changed.
    std::fs::write(dir.join("hosts.yml"), "# mine\n").expect("write");
    let again = f.run(&["init", "fleet"]);
    assert_eq!(again.code, 5, "{}", again.all());
    assert!(again.stderr.contains("hosts.yml already exists"), "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(dir.join("hosts.yml")).expect("read"), "# mine\n", "not overwritten");
    std::fs::write(dir.join("hosts.yml"), &hosts).expect("restore");

    // The generated inventory compiles with the built-in playbook: the run
    // gets past every input check and fails only at connecting (the
    // example addresses are TEST-NET, nothing answers). The one thing the
    // user must supply for `upload` is the gitlab-runner binary.
    std::fs::write(dir.join("gitlab-runner"), "#!/bin/sh\n").expect("binary");
    let mut cmd = Command::new(bin());
    cmd.current_dir(&dir)
        .args(["apply", "hosts.yml", "--check", "--connect-timeout", "1", "--no-progress", "--known-hosts"])
        .arg(f.dir.join("known_hosts"))
        .env("HOME", &f.dir)
        .env_remove("SSH_AUTH_SOCK");
    let o = output_watched(&mut cmd).expect("apply");
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(4), "unreachable, not bad input:\n{out}\n{err}");
    assert!(out.contains("runner-1") && out.contains("runner-2") && out.contains("unreachable=1"), "{out}");
    assert!(!err.contains("error:"), "{err}");

    // INI: Ansible's format, the same settings.
    let r = f.run(&["init", "--ini", "ini"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let ini = std::fs::read_to_string(f.dir.join("ini/hosts.ini")).expect("hosts.ini");
    assert!(!f.dir.join("ini/hosts.yml").exists());
    assert!(ini.contains("[runners]\nrunner-1 ansible_host=192.0.2.11\n") && ini.contains("[all:vars]\n"), "{ini}");
    for (k, v) in [("ansible_user", "deploy"), ("gitlab_url", "https://gitlab.example.com"), ("docker_install", "distro")] {
        assert!(ini.lines().any(|l| l == format!("{k}={v}")), "hosts.ini lacks {k}={v}");
        assert!(hosts.contains(&format!("{k}: {v}")), "hosts.yml lacks {k}: {v}");
    }
}

#[test]
fn completions_and_man_page_name_every_subcommand() {
    let subs = subcommands();
    let f = Fixture::new();
    for shell in ["bash", "zsh", "fish"] {
        let r = f.run(&["completions", shell]);
        assert_eq!(r.code, 0, "{}", r.all());
        assert!(r.stdout.len() > 1000, "{shell}: {}", r.stdout);
        for s in &subs {
            assert!(r.stdout.contains(s.as_str()), "{shell} completions lack `{s}`");
        }
        assert!(r.stdout.contains("ask-pass") && r.stdout.contains("limit"), "{shell}: the options too");
    }
    let bad = f.run(&["completions", "cmd.exe"]);
    assert_eq!(bad.code, 5, "an unknown shell is bad input");
    let man = f.run(&["man"]);
    assert_eq!(man.code, 0, "{}", man.all());
    assert!(man.stdout.starts_with(".ie") && man.stdout.contains(".TH bootstrap 1"), "roff");
    for s in &subs {
        assert!(man.stdout.contains(&format!(".SH \"BOOTSTRAP {}\"", s.to_uppercase())), "the man page lacks a section for `{s}`");
    }
    // It renders, if man is installed here.
    if Command::new("man").arg("--version").output().map(|o| o.status.success()).unwrap_or(false) {
        let page = f.write("bootstrap.1", &man.stdout);
        let o = Command::new("man").arg("-l").arg(&page).env("MANPAGER", "cat").env("MANWIDTH", "100").output().expect("man");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("bootstrap apply") && text.contains("--ask-pass"), "{text}");
    }
}

/// `bootstrap ARGS` on a pseudo-terminal (util-linux `script`), stdout and
/// stderr both on it unless `redirect` sends stdout to a file.
fn on_terminal(f: &Fixture, args: &str, env: &[(&str, &str)]) -> String {
    let cmd = format!("{} {args} --known-hosts {}", bin().display(), f.dir.join("known_hosts").display());
    let mut c = Command::new("script");
    c.args(["-q", "-e", "-c", &cmd, "/dev/null"]).current_dir(&f.dir).env("HOME", &f.dir).env_remove("NO_COLOR").env("TERM", "xterm");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = output_watched(&mut c).expect("script runs (util-linux)");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// SGR sequences (colour, bold): ESC [ digits/semicolons m.
fn has_sgr(text: &str) -> bool {
    let b = text.as_bytes();
    (0..b.len()).any(|i| {
        b[i] == 0x1b && b.get(i + 1) == Some(&b'[') && {
            let rest = &b[i + 2..];
            let n = rest.iter().take_while(|c| c.is_ascii_digit() || **c == b';').count();
            rest.get(n) == Some(&b'm')
        }
    })
}

#[test]
fn colours_only_on_a_terminal_and_never_with_no_color() {
    let f = Fixture::new();
    f.write("hosts.yml", &format!("all:\n  hosts:\n    web1: {{ansible_host: 127.0.0.1, ansible_port: {}}}\n", closed_port()));
    let tty = on_terminal(&f, "ping hosts.yml", &[]);
    assert!(tty.contains("\x1b[31munreachable\x1b[0m"), "colour on a terminal:\n{tty:?}");
    for (what, env) in [("NO_COLOR=1", [("NO_COLOR", "1")]), ("NO_COLOR=yes", [("NO_COLOR", "yes")])] {
        let plain = on_terminal(&f, "ping hosts.yml", &env);
        assert!(plain.contains("unreachable") && plain.contains("RECAP"), "{plain}");
        assert!(!has_sgr(&plain), "{what}: no colour, no bold, even on a terminal:\n{plain:?}");
    }
    // stdout to a file, stderr on the terminal: the lines go to the file, plain.
    let log = f.dir.join("log.txt");
    let _ = on_terminal(&f, &format!("ping hosts.yml > {}", log.display()), &[]);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("unreachable: [web1]") && text.contains("RECAP"),
        "the task and host lines are in the redirected stdout:\n{text}"
    );
    assert!(!text.contains('\x1b'), "no escape codes in a file:\n{text:?}");
    // A pipe: nothing painted.
    let piped = f.run(&["ping", "hosts.yml"]);
    assert_eq!(piped.code, 4, "{}", piped.all());
    assert!(!piped.all().contains('\x1b'), "{:?}", piped.all());
    let help = f.run(&["ping", "--help"]);
    assert!(help.stdout.contains("implied when stderr is not a terminal"), "{}", help.stdout);
}

/// The README's "JSON events" table: event -> field -> (type, optional).
fn documented_events() -> BTreeMap<String, BTreeMap<String, (String, bool)>> {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let start = readme.find("#### JSON events").expect("README has a JSON events section");
    let mut out: BTreeMap<String, BTreeMap<String, (String, bool)>> = BTreeMap::new();
    for line in readme[start..].lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if let [_, ev, field, ty, presence, ..] = cells.as_slice() {
            if let (Some(ev), Some(field)) = (ev.strip_prefix('`'), field.strip_prefix('`')) {
                assert!(["always", "optional"].contains(presence), "presence `{presence}` in `{line}`");
                out.entry(ev.trim_end_matches('`').into())
                    .or_default()
                    .insert(field.trim_end_matches('`').into(), (ty.to_string(), *presence == "optional"));
            }
        }
    }
    assert!(out.len() >= 9, "{out:?}");
    out
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::String(_) => "string",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
        serde_json::Value::Null => "null",
    }
}

/// Check every line of a JSON run against the README; the events seen.
fn check_events(run: &Run, doc: &BTreeMap<String, BTreeMap<String, (String, bool)>>, seen: &mut BTreeSet<String>) {
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines.len() >= 3, "{}", run.all());
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {} is not JSON ({e}): {line}", i + 1));
        let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {line}"));
        let name = obj.get("event").and_then(|e| e.as_str()).unwrap_or_else(|| panic!("no `event`: {line}"));
        let fields = doc.get(name).unwrap_or_else(|| panic!("event `{name}` is not documented in the README: {line}"));
        for (k, val) in obj {
            let (ty, _) = fields.get(k).unwrap_or_else(|| panic!("`{name}.{k}` is not documented in the README: {line}"));
            assert_eq!(json_type(val), ty, "`{name}.{k}` in {line}");
        }
        for (k, (_, optional)) in fields {
            assert!(*optional || obj.contains_key(k), "`{name}.{k}` is documented as always there: {line}");
        }
        match name {
            "start" => {
                assert_eq!(i, 0, "start comes first");
                assert_eq!(obj["schema"], 1, "schema number");
            }
            "recap" => assert_eq!(i, lines.len() - 1, "recap comes last, once"),
            _ => {}
        }
        seen.insert(name.to_string());
    }
}

#[test]
fn json_events_match_their_readme_documentation() {
    let doc = documented_events();
    let h = TestHost::up();
    let f = Fixture::new();
    f.trust(&[&h]);
    let inv = f.inventory(&[("j1", &h.address)], "deploy", "ansible_become: true");
    // And a host that refuses connections: its events too.
    let mut text = std::fs::read_to_string(&inv).expect("inventory");
    text.push_str(&format!("    gone:\n      ansible_host: 127.0.0.1\n      ansible_port: {}\n", closed_port()));
    std::fs::write(&inv, text).expect("inventory");
    f.write(
        "site.yml",
        "- hosts: all\n  tasks:\n    - name: motd\n      copy: {dest: /etc/motd, content: \"hello\\n\"}\n      notify: touched\n    - name: large file\n      copy: {src: big.bin, dest: /tmp/big.bin}\n    - name: never\n      command: /bin/false\n      when: false\n    - name: uptime\n      command: cat /proc/uptime\n  handlers:\n    - name: touched\n      command: touch /tmp/touched\n",
    );
    // Over the size that travels before the script: `upload_progress`.
    f.write("big.bin", &"0123456789abcdef".repeat(20 * 1024));
    f.write("fail.yml", "- hosts: all\n  tasks:\n    - name: breaks\n      shell: echo broken >&2; exit 3\n");
    let mut seen = BTreeSet::new();
    for args in [
        &["apply", "hosts.yml", "-p", "site.yml", "--diff", "--output", "json", "-vv"][..],
        &["apply", "hosts.yml", "-p", "fail.yml", "--output", "json"],
        &["check", "hosts.yml", "-p", "site.yml", "--output", "json"],
        &["facts", "hosts.yml", "--output", "json"],
    ] {
        let r = f.run(args);
        assert!([2, 3, 4].contains(&r.code), "{args:?}: {}", r.all());
        check_events(&r, &doc, &mut seen);
    }
    let all: BTreeSet<String> = doc.keys().cloned().collect();
    // `warning` needs GitLab or an interrupt, `task_progress` a held dpkg
    // lock (tests/verify.rs checks its fields on a real run), `note` a runner
    // host (tests/runners.rs shows it); the unit test in src/report/mod.rs
    // checks them (and every optional field) against the table.
    let missing: Vec<&String> = all.difference(&seen).filter(|e| !["warning", "task_progress", "note"].contains(&e.as_str())).collect();
    assert!(missing.is_empty(), "no real run produced {missing:?}");
}

/// A test host whose sshd takes passwords; `deploy`'s password set.
fn password_host(pw: &str) -> TestHost {
    let h = TestHost::up();
    h.read(&format!(
        "echo 'deploy:{pw}' | chpasswd && printf 'PasswordAuthentication yes\\nKbdInteractiveAuthentication no\\n' > /etc/ssh/sshd_config.d/20-password.conf && systemctl restart ssh"
    ));
    h
}

/// `bootstrap ARGS` with `stdin` fed to it.
fn run_with_stdin(f: &Fixture, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    use std::io::Write;
    let mut cmd = Command::new(bin());
    cmd.current_dir(&f.dir).args(args).arg("--known-hosts").arg(f.dir.join("known_hosts")).arg("--no-progress");
    cmd.env("HOME", &f.dir).env_remove("SSH_AUTH_SOCK");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("bootstrap");
    crate::support::watch_child(child.id());
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let o = child.wait_with_output().expect("wait");
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn password_login_from_the_inventory_and_ask_pass_never_shown() {
    let pw = "Corr3ct-Horse-Battery";
    let h = password_host(pw);
    let f = Fixture::new();
    f.trust(&[&h]);
    // No key anywhere (HOME is the fixture, no agent): the password is all there is.
    f.write(
        "hosts.yml",
        &format!(
            "all:\n  hosts:\n    pw1:\n      ansible_host: {}\n      ansible_user: deploy\n      ansible_become: true\n      ansible_password: \"{{{{ lookup('env', 'RUNNER_SSH_PASSWORD') }}}}\"\n",
            h.address
        ),
    );
    f.write("site.yml", "- hosts: all\n  tasks:\n    - name: marker\n      copy: {dest: /root/pw-login, content: \"in\\n\"}\n");
    let env = [("RUNNER_SSH_PASSWORD", pw)];
    let human = f.run_env(&["apply", "hosts.yml", "-p", "site.yml", "-vvv"], &env);
    assert_eq!(human.code, 0, "{}", human.all());
    assert_eq!(h.read("cat /root/pw-login"), "in\n", "logged in with the password and became root");
    let json = f.run_env(&["ping", "hosts.yml", "-vvv", "--output", "json"], &env);
    assert_eq!(json.code, 0, "{}", json.all());

    // -k: one line of stdin when stdin is not a terminal; the inventory's
    // ansible_ssh_pass spelling too.
    f.write("k.yml", &format!("all:\n  hosts:\n    pw1:\n      ansible_host: {}\n      ansible_user: deploy\n", h.address));
    let asked = run_with_stdin(&f, &["ping", "k.yml", "-k", "-vvv"], &format!("{pw}\n"), &[]);
    assert_eq!(asked.code, 0, "{}", asked.all());
    let asked_json = run_with_stdin(&f, &["ping", "k.yml", "--ask-pass", "--output", "json", "-vvv"], &format!("{pw}\n"), &[]);
    assert_eq!(asked_json.code, 0, "{}", asked_json.all());
    let no_line = run_with_stdin(&f, &["ping", "k.yml", "-k"], "", &[]);
    assert_eq!(no_line.code, 5, "no password line is bad input:\n{}", no_line.all());
    assert!(no_line.stderr.contains("--ask-pass"), "{}", no_line.stderr);
    f.write("s.yml", &format!("all:\n  hosts:\n    pw1:\n      ansible_host: {}\n      ansible_user: deploy\n      ansible_ssh_pass: \"{{{{ lookup('env', 'RUNNER_SSH_PASSWORD') }}}}\"\n", h.address));
    let ssh_pass = f.run_env(&["ping", "s.yml"], &env);
    assert_eq!(ssh_pass.code, 0, "{}", ssh_pass.all());

    for (what, r) in
        [("human -vvv", &human), ("JSON -vvv", &json), ("-k", &asked), ("-k JSON", &asked_json), ("ansible_ssh_pass", &ssh_pass)]
    {
        assert!(!r.all().contains(pw), "the password appears in the {what} output:\n{}", r.all());
    }
    // Nothing on the host saw it on a command line or in its logs.
    let journal = h.read("journalctl -o cat --no-pager 2>/dev/null || true");
    assert!(!journal.is_empty() && !journal.contains(pw), "the host's journal");

    // A wrong password: unreachable, exit 4, saying that the password was refused.
    let wrong = f.run_env(&["ping", "hosts.yml", "-vvv"], &[("RUNNER_SSH_PASSWORD", "not-the-password")]);
    assert_eq!(wrong.code, 4, "{}", wrong.all());
    assert!(wrong.stdout.contains("unreachable") && wrong.stdout.contains("password authentication"), "{}", wrong.all());
    assert!(wrong.stdout.contains("password was refused"), "{}", wrong.all());
    assert!(!wrong.all().contains("not-the-password"), "a wrong password is masked too:\n{}", wrong.all());

    // A host whose sshd takes no passwords: said so.
    h.read("printf 'PasswordAuthentication no\\n' > /etc/ssh/sshd_config.d/20-password.conf && systemctl restart ssh");
    let refused = f.run_env(&["ping", "hosts.yml", "--output", "json"], &env);
    assert_eq!(refused.code, 4, "{}", refused.all());
    assert!(refused.stdout.contains("refuses password authentication"), "{}", refused.all());
    assert!(!refused.all().contains(pw), "{}", refused.all());
}
