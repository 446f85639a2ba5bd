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
use super::options::{Mode, Options, Serial, Sources};
use crate::error::{InputError, InputErrors};
use crate::gitlab::Secrets;
use crate::inventory::{extra_vars, Connection, Inventory, LoadOptions, Unvault};
use crate::plan::module::LocalFiles;
use crate::plan::HostProgram;
use crate::playbook::{CompileEnv, Playbook};
use crate::secrets::{is_secret_name, Redactor};
use crate::template::Templates;
use crate::transport::known_hosts::KnownHosts;
use crate::transport::ssh_config::Password;
use crate::transport::ssh_config::{self, Wanted};
use crate::transport::{auth, Become, SshOptions, Target};
use crate::vault::VaultSecrets;

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

/// The vault passwords the sources name.
pub fn vault_secrets(src: &Sources) -> Result<VaultSecrets, InputError> {
    let mut v = VaultSecrets::default();
    let field = |e: crate::vault::VaultError, f: &str| InputError::new(e.to_string()).field(f.to_string());
    for id in &src.vault_ids {
        v.add_vault_id(id).map_err(|e| field(e, "--vault-id"))?;
    }
    for p in &src.vault_password_files {
        v.add_password_file(None, p).map_err(|e| field(e, "--vault-password-file"))?;
    }
    if src.ask_vault_pass {
        v.add_prompt(None).map_err(|e| field(e, "--ask-vault-pass"))?;
    }
    Ok(v)
}

/// Read the inventory sources, `-e` and the variable files, decrypting
/// vault values with the passwords given. Returns the inventory and the
/// vault passwords (secrets, like the values they decrypt).
pub fn load_inventory(src: &Sources, playbook_dir: Option<PathBuf>) -> Result<(Inventory, Vec<String>), InputError> {
    let secrets = vault_secrets(src)?;
    let decrypt = |text: &str| crate::vault::decrypt(text, &secrets).map_err(|e| e.to_string());
    let mut unvault = Unvault::new(&decrypt);
    let extra = extra_vars(&src.extra_vars, &mut unvault)?;
    let inv = Inventory::load(LoadOptions { sources: src.inventory.clone(), playbook_dir, extra_vars: extra, unvault })?;
    Ok((inv, secrets.passwords()))
}

/// Load and check everything; contact no host.
pub async fn prepare(opts: &Options) -> Result<Prepared, InputErrors> {
    let playbook = match &opts.playbook {
        Some(p) => Some(Playbook::load(p)?),
        None if !matches!(opts.mode, Mode::Ping | Mode::Facts) => Some(Playbook::builtin()?),
        None => None,
    };
    // Playbook-adjacent group_vars/ and host_vars/: a playbook of the user's.
    let playbook_dir = opts.playbook.as_ref().and(playbook.as_ref()).map(|p| p.base_dir.clone());
    let (inv, vault_passwords) = load_inventory(&opts.sources, playbook_dir)?;
    let become_password = match opts.conn.ask_become_pass {
        true => Some(crate::prompt::secret("BECOME password: ").map_err(|e| InputError::new(e).field("--ask-become-pass"))?),
        false => None,
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
    for s in inv.secrets.iter().chain(&vault_passwords).chain(&become_password) {
        redactor.add(s);
    }
    // Every selected host's connection, read once: compiling needs its
    // become (the command line's where the inventory says nothing), the
    // loop below the rest.
    let conns: Vec<Option<Result<Connection, InputError>>> = selected.iter().map(|n| inv.hosts.get(n).map(|h| inv.connection(h))).collect();
    let becomes: Vec<Option<bool>> =
        conns.iter().map(|c| c.as_ref().and_then(|r| r.as_ref().ok()).and_then(|c| c.r#become).or(opts.conn.r#become)).collect();
    // Every host's program, compiled on every core (the largest part of a
    // run's start at a thousand hosts); used in host order below.
    let mut programs = match (&playbook, &play_hosts) {
        (Some(pb), Some(ph)) => {
            let env = CompileEnv { inv: &inv, play_hosts: ph, templates: &templates, diff: opts.diff, tags: &opts.tags };
            compile_all(pb, &env, &selected, &becomes).into_iter()
        }
        _ => Vec::new().into_iter(),
    };
    let mut errors = Vec::new();
    let mut hosts = Vec::new();
    // Key files and the hosts that use them (for messages).
    let mut key_files: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for (name, conn) in selected.iter().zip(conns) {
        let compiled = programs.next();
        let Some(host) = inv.hosts.get(name) else { continue };
        let mut conn = match conn {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                errors.push(e);
                continue;
            }
            None => continue,
        };
        let vars = inv.host_vars(host);
        // The command line and ansible.cfg, where the inventory says nothing.
        let d = &opts.conn;
        conn.user = conn.user.or_else(|| d.user.clone());
        if conn.key_file.is_none() {
            if let Some(k) = &d.private_key {
                if !k.is_file() {
                    errors.push(InputError::new(format!("key file {} does not exist", k.display())).field("--private-key"));
                    continue;
                }
                conn.key_file = Some(k.clone());
            }
        }
        conn.r#become = conn.r#become.or(d.r#become);
        if !vars.contains_key("ansible_become_user") {
            if let Some(u) = &d.become_user {
                conn.become_user = u.clone();
            }
        }
        conn.become_password = conn.become_password.or_else(|| become_password.clone());
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
        let program = match compiled {
            Some(Ok(p)) => Some(p),
            Some(Err(InputErrors(mut e))) => {
                errors.append(&mut e);
                continue;
            }
            None => None,
        };
        // A runner's token from the inventory is a secret.
        for t in program.iter().flat_map(|p| p.registrations.iter().filter_map(|r| r.token.as_deref())) {
            redactor.add(t);
        }
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
            host_key_checking: opts.conn.host_key_checking,
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

/// `compile` for each of `names`, in their order, on as many threads as
/// there are cores (at most 8; one for a small run). `becomes[i]` is the
/// become of `names[i]`: the inventory's, else the command line's.
fn compile_all(pb: &Playbook, env: &CompileEnv, names: &[String], becomes: &[Option<bool>]) -> Vec<Result<HostProgram, InputErrors>> {
    let one = |i: usize| pb.compile(&names[i], becomes.get(i).copied().flatten(), env);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8).min(names.len() / 32).max(1);
    if threads == 1 {
        return (0..names.len()).map(one).collect();
    }
    // Hosts taken one at a time from a shared counter: a few hosts with
    // large programs do not leave the other threads idle.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<HostProgram, InputErrors>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= names.len() {
                            break out;
                        }
                        out.push((i, one(i)));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
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
        // A token of its own (from the inventory), or nothing to create.
        if r.absent || r.token.is_some() {
            continue;
        }
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
