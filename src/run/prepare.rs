//! Preparing a run: everything that needs no host.
//!
//! The inventory and playbook are loaded and checked, the hosts selected
//! (`--limit`, the plays' `hosts:`, `--shard`), each host's program
//! compiled, key files decrypted, the ssh config and known_hosts read,
//! secrets collected for the redactor, local files read and apt keys
//! downloaded, once each. Any mistake stops the run here, before the first
//! connection (exit 5), with every error found, not just the first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use super::download;
use super::options::{Mode, Options, Serial};
use crate::error::{InputError, InputErrors};
use crate::gitlab::Secrets;
use crate::inventory::Inventory;
use crate::plan::module::LocalFiles;
use crate::plan::HostProgram;
use crate::playbook::{CompileEnv, Playbook};
use crate::secrets::{is_secret_name, Redactor};
use crate::template::Templates;
use crate::transport::auth::Password;
use crate::transport::known_hosts::KnownHosts;
use crate::transport::ssh_config::{self, Wanted};
use crate::transport::{auth, Become, SshOptions, Target};

/// One host, ready to be contacted.
pub struct HostJob {
    pub name: String,
    pub target: Target,
    pub r#become: Become,
    pub program: Option<HostProgram>,
    /// `verify_base_image`: the image `verify` builds from (default: one
    /// made from the host's own shell, no registry needed).
    pub verify_base_image: Option<String>,
}

/// A run, prepared and checked, nothing contacted yet.
pub struct Prepared {
    pub hosts: Vec<HostJob>,
    pub templates: Arc<Templates>,
    pub base_dir: PathBuf,
    pub ssh: SshOptions,
    pub redactor: Redactor,
    pub mode: Mode,
    pub diff: bool,
    pub forks: usize,
    pub replace: bool,
    pub serial: Option<Serial>,
    /// Files downloaded by the controller (`key_url`), by URL.
    pub downloads: Arc<HashMap<String, Vec<u8>>>,
    /// Local files the tasks send (`copy src`), read once.
    pub files: Arc<LocalFiles>,
    pub secrets: Secrets,
    /// Notices of the plays that run, printed after the recap.
    pub notices: Vec<String>,
}

/// Load and check everything; contact no host.
pub async fn prepare(opts: &Options) -> Result<Prepared, InputErrors> {
    let inv = Inventory::load(&opts.inventory)?;
    let playbook = match &opts.playbook {
        Some(p) => Some(Playbook::load(p)?),
        None if !matches!(opts.mode, Mode::Ping | Mode::Facts) => Some(Playbook::builtin()?),
        None => None,
    };
    let base_dir = playbook.as_ref().map(|p| p.base_dir.clone()).unwrap_or_else(|| PathBuf::from("."));
    // Templates: beside the playbook, then the project's top-level folder
    // (playbooks/x.yml -> templates/).
    let templates = Arc::new(Templates::new(vec![base_dir.join("templates"), base_dir.join("../templates")]));
    let play_hosts = match &playbook {
        Some(pb) => Some(pb.play_hosts(&inv)?),
        None => None,
    };
    let selected = select(&inv, opts, play_hosts.as_deref())?;
    let ssh_config = ssh_config::load(opts.ssh_config.as_deref())?;
    let redactor = Redactor::default();
    let mut errors = Vec::new();
    let mut hosts = Vec::new();
    // Key files and the hosts that use them (for messages).
    let mut key_files: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for name in &selected {
        let Some(host) = inv.hosts.get(name) else { continue };
        let conn = match inv.connection(host) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let vars = inv.host_vars(host);
        for pw in conn.become_password.iter().chain(conn.password.iter()) {
            redactor.add(pw);
        }
        // Variables that look like secrets are masked wherever they appear.
        for (k, v) in vars.iter() {
            if is_secret_name(k) {
                if let Some(s) = v.as_str() {
                    redactor.add(s);
                }
            }
        }
        let wanted =
            Wanted { port: conn.port, user: conn.user.as_deref(), key_file: conn.key_file.as_deref(), password: conn.password.as_deref() };
        let target = ssh_config::resolve(&conn.address, wanted, ssh_config.as_deref());
        for k in &target.key_files {
            key_files.entry(k.clone()).or_default().push(name.clone());
        }
        let program = match (&playbook, &play_hosts) {
            (Some(pb), Some(ph)) => {
                let env = CompileEnv { inv: &inv, play_hosts: ph, templates: &templates, diff: opts.diff };
                match pb.compile(name, conn.r#become, &env) {
                    Ok(p) => Some(p),
                    Err(InputErrors(mut e)) => {
                        errors.append(&mut e);
                        continue;
                    }
                }
            }
            _ => None,
        };
        let wants_become = match &program {
            Some(p) => p.r#become,
            // ping and facts check become whenever it would be used.
            None => conn.r#become.unwrap_or(target.user != "root"),
        };
        let r#become = if wants_become && target.user != conn.become_user {
            Become::Sudo { user: conn.become_user.clone(), password: conn.become_password.clone() }
        } else {
            Become::No
        };
        let verify_base_image = vars.get("verify_base_image").and_then(|i| i.as_str()).filter(|s| !s.is_empty()).map(str::to_string);
        hosts.push(HostJob { name: name.clone(), target, r#become, program, verify_base_image });
    }
    let keys = load_keys(&key_files, &mut errors);
    let secrets = Secrets::from_env();
    check_secrets(opts, &hosts, &secrets, &mut errors);
    for s in secrets.values() {
        redactor.add(s);
    }
    if !errors.is_empty() {
        return Err(InputErrors(errors));
    }
    if opts.replace && secrets.api.is_none() {
        return Err(InputError::new("--replace needs GITLAB_TOKEN: it lists and deletes runners by name").into());
    }
    let known_hosts = KnownHosts::load(&opts.known_hosts)
        .map_err(|e| InputError::new(format!("cannot read known_hosts: {e}")).in_file(&opts.known_hosts).field("--known-hosts"))?;
    // Local files the plans send, read once for every host.
    let files = LocalFiles::default();
    let wanted: BTreeSet<&PathBuf> = hosts.iter().flat_map(|h| h.program.iter().flat_map(|p| p.local_files.iter())).collect();
    if let Err((path, e)) = files.preload(wanted) {
        return Err(InputError::new(format!("cannot read {}: {e}", path.display())).field("src").into());
    }
    // Files the plan needs from elsewhere (apt keys), fetched once.
    let urls: BTreeSet<String> = hosts.iter().flat_map(|h| h.program.iter().flat_map(|p| p.downloads.iter().cloned())).collect();
    let mut downloads = HashMap::new();
    for url in urls {
        match download::fetch(&url).await {
            Ok(bytes) => {
                downloads.insert(url, bytes);
            }
            Err(e) => errors.push(InputError::new(format!("cannot download {url}: {e}")).field("key_url")),
        }
    }
    if !errors.is_empty() {
        return Err(InputErrors(errors));
    }
    // `-k`: asked once, after the input is known good, for every host
    // without a password of its own (its ansible_password wins, as in Ansible).
    if opts.ask_pass && !hosts.is_empty() {
        let pw = crate::prompt::secret("SSH password: ").map_err(|e| InputError::new(e).field("--ask-pass"))?;
        redactor.add(&pw);
        for h in hosts.iter_mut().filter(|h| h.target.password.is_none()) {
            h.target.password = Some(Password::new(&pw));
        }
    }
    let mut notices: Vec<String> = Vec::new();
    for n in hosts.iter().flat_map(|h| h.program.iter().flat_map(|p| p.notices.iter())) {
        if !notices.contains(n) {
            notices.push(n.clone());
        }
    }
    Ok(Prepared {
        replace: opts.replace,
        serial: opts.serial,
        downloads: Arc::new(downloads),
        files: Arc::new(files),
        secrets,
        notices,
        hosts,
        templates,
        base_dir,
        ssh: SshOptions {
            known_hosts: Arc::new(known_hosts),
            accept_new_host_keys: opts.accept_new_host_keys,
            connect_timeout: opts.connect_timeout,
            ssh_config,
            keys: Arc::new(keys),
        },
        redactor,
        mode: opts.mode,
        diff: opts.diff,
        forks: opts.forks.max(1),
    })
}

/// The hosts to work on: the inventory's, narrowed by `--limit`, the plays'
/// `hosts:` and `--shard`.
fn select(inv: &Inventory, opts: &Options, play_hosts: Option<&[Vec<String>]>) -> Result<Vec<String>, InputError> {
    let mut selected: Vec<String> = inv.hosts.keys().cloned().collect();
    if let Some(limit) = &opts.limit {
        let chosen: BTreeSet<String> = inv.select(limit).map_err(|e| InputError::new(e).field("--limit"))?.into_iter().collect();
        selected.retain(|h| chosen.contains(h));
    }
    if let Some(ph) = play_hosts {
        let in_plays: BTreeSet<&String> = ph.iter().flatten().collect();
        selected.retain(|h| in_plays.contains(h));
    }
    if let Some(shard) = opts.shard {
        selected.retain(|h| shard.contains(h));
        // A small fleet split many ways: this slice may simply be empty.
        return Ok(selected);
    }
    if selected.is_empty() {
        return Err(InputError::new("no host matches the inventory, the plays' `hosts:` and --limit together"));
    }
    Ok(selected)
}

/// Decrypt every key file now: a wrong passphrase is bad input.
fn load_keys(key_files: &BTreeMap<PathBuf, Vec<String>>, errors: &mut Vec<InputError>) -> Vec<(PathBuf, Arc<russh::keys::PrivateKey>)> {
    let mut keys = Vec::new();
    for (k, users) in key_files {
        let who = match users.as_slice() {
            [one] => format!("host {one}"),
            many => format!("hosts {}", many.join(", ")),
        };
        if !k.exists() {
            errors.push(
                InputError::new(format!("key file {} (IdentityFile of {who}) does not exist", k.display()))
                    .field("IdentityFile")
                    .hint("fix the path in the inventory or the ssh config, or remove it to use ssh-agent"),
            );
            continue;
        }
        match auth::load_key(k) {
            Ok(key) => keys.push((k.clone(), Arc::new(key))),
            Err(e) => errors.push(InputError::new(format!("{e} (for {who})"))),
        }
    }
    keys
}

/// The secrets registration needs must be set before any host is touched.
fn check_secrets(opts: &Options, hosts: &[HostJob], secrets: &Secrets, errors: &mut Vec<InputError>) {
    if opts.mode != Mode::Apply {
        return;
    }
    for r in hosts.iter().flat_map(|h| h.program.iter().flat_map(|p| p.registrations.iter())) {
        let reg = r.registration;
        if secrets.get(reg).is_none() {
            let e =
                InputError::new(format!("environment variable {} is not set: it must hold {}", reg.env_var(), reg.secret_description()))
                    .hint(format!("export {}=... before running; secrets are read from the environment only", reg.env_var()));
            if !errors.iter().any(|x| x.message == e.message) {
                errors.push(e);
            }
        }
    }
}
