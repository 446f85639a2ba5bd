//! Ansible Vault, read the way ansible-core 2.19 reads it: the vault passwords of a run and
//! the decryption of `$ANSIBLE_VAULT` data (files encrypted whole, inline `!vault` values).
//!
//! The format (`ansible/parsing/vault/__init__.py`): a header line
//! `$ANSIBLE_VAULT;1.1;AES256` (1.2 adds `;LABEL`, the vault id), then lines of hex that
//! together are the hex of `hex(salt) \n hex(hmac) \n hex(ciphertext)`. PBKDF2-HMAC-SHA256
//! with 10,000 iterations turns the password and the salt into 80 bytes: the AES-256 key, the
//! HMAC-SHA256 key and the initial 128-bit big-endian CTR counter. The HMAC covers the
//! ciphertext and is checked (in constant time) before anything is decrypted; the plaintext is
//! PKCS#7-padded to 16 bytes.
//!
//! Passwords come from files (stripped as Ansible strips them), executable scripts (their
//! stdout; a `*-client` script is asked for a vault id with `--vault-id LABEL`) and prompts.
//! No password and no decrypted value ever appears in a [`VaultError`] or in `Debug` output.
// The inventory loader uses this module; the allow goes when it is wired in.
#![allow(dead_code)]

use std::fmt;
use std::io::{BufRead, IsTerminal};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header every vault text starts with.
const HEADER: &str = "$ANSIBLE_VAULT";
/// The label of a password given without one (`C.DEFAULT_VAULT_IDENTITY`).
const DEFAULT_LABEL: &str = "default";
/// The only cipher ansible-core knows.
const CIPHER: &str = "AES256";
/// PBKDF2 iterations, fixed by the format.
const PBKDF2_ROUNDS: u32 = 10_000;
/// A vault password client script exits with this when it has no secret for the vault id.
const CLIENT_UNKNOWN_ID: i32 = 2;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// One vault password, with its vault id label ("default" when none).
#[derive(Clone)]
pub struct VaultSecret {
    pub label: String,
    password: Vec<u8>,
}

impl fmt::Debug for VaultSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultSecret").field("label", &self.label).field("password", &"<redacted>").finish()
    }
}

/// Every password given for a run, in the order they were given.
#[derive(Default, Clone, Debug)]
pub struct VaultSecrets {
    secrets: Vec<VaultSecret>,
}

/// What went wrong with vault data or with a vault password source. One line, no secrets.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VaultError {
    /// Vault data, and no password at all.
    #[error(
        "vault-encrypted data, but no vault password was given (give one with --vault-password-file, --vault-id, --ask-vault-pass or ANSIBLE_VAULT_PASSWORD_FILE)"
    )]
    NoSecrets,
    /// The HMAC did not match for any password given.
    #[error("no vault password given decrypts it ({})", wrong_password_detail(.vault_id.as_deref(), .tried))]
    WrongPassword {
        /// The vault id of a 1.2 header.
        vault_id: Option<String>,
        /// The labels of the passwords tried, in order.
        tried: Vec<String>,
    },
    /// Not a vault envelope ansible-core could read.
    #[error("malformed vault data: {0}")]
    Malformed(String),
    /// A header naming a cipher other than AES256.
    #[error("vault data encrypted with the unknown cipher {0:?} (ansible-core knows only AES256)")]
    UnknownCipher(String),
    /// The plaintext is not text.
    #[error("the decrypted vault data is not UTF-8 text")]
    NotUtf8,
    /// A password file, script or prompt that gave no password.
    #[error("{what}: {reason}")]
    Source {
        /// Which source: `vault password file /path`, `vault password prompt (label)`.
        what: String,
        reason: String,
    },
}

fn wrong_password_detail(vault_id: Option<&str>, tried: &[String]) -> String {
    let tried: Vec<String> = tried.iter().map(|l| format!("{l:?}")).collect();
    match vault_id {
        Some(id) => format!("vault id {id:?}; tried {}: a wrong password, or altered data", tried.join(", ")),
        None => format!("tried {}: a wrong password, or altered data", tried.join(", ")),
    }
}

fn source_error(what: &str, reason: impl Into<String>) -> VaultError {
    VaultError::Source { what: what.to_string(), reason: reason.into() }
}

/// How a prompt asks: `--ask-vault-pass` asks `Vault password: `, `--vault-id L@prompt` asks
/// `Vault password (L): ` (ansible-core keeps the first form for Tower's sake).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PromptStyle {
    AskVaultPass,
    VaultId,
}

impl VaultSecrets {
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The labels of the passwords, in order.
    pub fn labels(&self) -> Vec<String> {
        self.secrets.iter().map(|s| s.label.clone()).collect()
    }

    /// Add one from a source as Ansible takes them: `--vault-password-file PATH` (a file: its
    /// content, stripped of surrounding whitespace as Ansible does, and decrypted with the
    /// passwords added before it when it is itself vault-encrypted; an executable file: run it,
    /// its stdout stripped of CR/LF is the password; a `*-client` script gets
    /// `--vault-id LABEL`, `--vault-id default` without a label as `--vault-password-file`
    /// gives). The path `prompt` prompts, as in Ansible.
    ///
    /// Ansible warns about a source that fails and goes on with the others; it fails only when
    /// none gave a password. The caller decides: the error says which source failed and why.
    pub fn add_password_file(&mut self, label: Option<&str>, path: &Path) -> Result<(), VaultError> {
        let label = non_empty(label).unwrap_or(DEFAULT_LABEL);
        if let Some(style) = path.to_str().and_then(prompt_source) {
            return self.prompt(label, style);
        }
        self.add_file(label, Some(label), path)
    }

    /// `--vault-id [LABEL@]SOURCE`: SOURCE is a path (as [`Self::add_password_file`], but a
    /// `*-client` script gets `--vault-id` only when a label was given), `prompt` or
    /// `prompt_ask_vault_pass`. The label is what comes before the first `@`.
    pub fn add_vault_id(&mut self, spec: &str) -> Result<(), VaultError> {
        let (label, source) = match spec.split_once('@') {
            Some((label, source)) => (non_empty(Some(label)), source),
            None => (None, spec),
        };
        if let Some(style) = prompt_source(source) {
            return self.prompt(label.unwrap_or(DEFAULT_LABEL), style);
        }
        self.add_file(label.unwrap_or(DEFAULT_LABEL), label, Path::new(source))
    }

    /// `--ask-vault-pass` (no label: `Vault password: `), or `--vault-id LABEL@prompt`
    /// (`Vault password (LABEL): `). Reads from the terminal without echo, or a line from
    /// stdin when stdin is not a terminal.
    pub fn add_prompt(&mut self, label: Option<&str>) -> Result<(), VaultError> {
        match non_empty(label) {
            None => self.prompt(DEFAULT_LABEL, PromptStyle::AskVaultPass),
            Some(label) => self.prompt(label, PromptStyle::VaultId),
        }
    }

    /// Every password's text (lossy for a password that is not UTF-8), for masking in output.
    pub fn passwords(&self) -> Vec<String> {
        self.secrets.iter().map(|s| String::from_utf8_lossy(&s.password).into_owned()).collect()
    }

    fn push(&mut self, label: &str, password: Vec<u8>) {
        self.secrets.push(VaultSecret { label: label.to_string(), password });
    }

    fn prompt(&mut self, label: &str, style: PromptStyle) -> Result<(), VaultError> {
        let text = prompt_text(label, style);
        let what = format!("vault password prompt ({label})");
        let answer = if std::io::stdin().is_terminal() {
            match rpassword::prompt_password(&text) {
                Ok(answer) => Some(answer),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
                Err(e) => return Err(source_error(&what, format!("cannot read the terminal: {e}"))),
            }
        } else {
            eprint!("{text}");
            read_answer(&mut std::io::stdin().lock()).map_err(|e| source_error(&what, format!("cannot read stdin: {e}")))?
        };
        self.add_answer(label, answer, &what)
    }

    /// What a prompt read: `None` at end of input. Ansible refuses an empty answer, then strips
    /// the whitespace around it.
    fn add_answer(&mut self, label: &str, answer: Option<String>, what: &str) -> Result<(), VaultError> {
        let Some(answer) = answer else { return Err(source_error(what, "end of input (ctrl-d) at the prompt")) };
        if answer.is_empty() {
            return Err(source_error(what, "empty password"));
        }
        self.push(label, py_strip(answer.as_bytes()).to_vec());
        Ok(())
    }

    /// `get_file_vault_secret`: `label` names the secret, `client_id` is what a `*-client`
    /// script is given with `--vault-id`.
    fn add_file(&mut self, label: &str, client_id: Option<&str>, given: &Path) -> Result<(), VaultError> {
        let path = unfrack(given);
        let what = format!("vault password file {}", path.display());
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(source_error(&what, "not found")),
            Err(e) => return Err(source_error(&what, format!("cannot read it: {e}"))),
        };
        if meta.is_dir() {
            return Err(source_error(&what, "is a directory"));
        }
        let password = if is_executable(&meta) {
            let client_id = if is_client_script(given) { Some(client_id) } else { None };
            run_script(&path, client_id)?
        } else {
            self.read_password_file(&path, &what)?
        };
        self.push(label, password);
        Ok(())
    }

    /// `FileVaultSecret._read_file`: strip whitespace, decrypt when it is vault data (with the
    /// passwords given before it), strip CR/LF, refuse an empty password.
    fn read_password_file(&self, path: &Path, what: &str) -> Result<Vec<u8>, VaultError> {
        let content = std::fs::read(path).map_err(|e| source_error(what, format!("cannot read it: {e}")))?;
        let content = py_strip(&content);
        let content = match std::str::from_utf8(content) {
            Ok(text) if is_encrypted(text) => {
                decrypt_bytes(text, self).map_err(|e| source_error(what, format!("it is vault-encrypted, and cannot be decrypted: {e}")))?
            }
            _ => content.to_vec(),
        };
        let password = strip_crlf(&content);
        if password.is_empty() {
            return Err(source_error(what, "it gives an empty password"));
        }
        Ok(password.to_vec())
    }
}

/// `prompt` and `prompt_ask_vault_pass` are prompts, not paths.
fn prompt_source(source: &str) -> Option<PromptStyle> {
    match source {
        "prompt" => Some(PromptStyle::VaultId),
        "prompt_ask_vault_pass" => Some(PromptStyle::AskVaultPass),
        _ => None,
    }
}

fn prompt_text(label: &str, style: PromptStyle) -> String {
    match style {
        PromptStyle::AskVaultPass => "Vault password: ".to_string(),
        PromptStyle::VaultId => format!("Vault password ({label}): "),
    }
}

/// One line, without its line ending (as `getpass` gives it); `None` at end of input.
fn read_answer(input: &mut dyn BufRead) -> std::io::Result<Option<String>> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(Some(line))
}

fn non_empty(label: Option<&str>) -> Option<&str> {
    label.filter(|l| !l.is_empty())
}

/// Any execute bit, as ansible's `is_executable`.
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

/// `script_is_client`: the name without its extension (as `os.path.splitext` cuts it) ends in
/// `-client`: `vault-client`, `vault-client.py`.
fn is_client_script(given: &Path) -> bool {
    let text = given.to_string_lossy();
    let base_start = text.rfind('/').map_or(0, |i| i + 1);
    let base = &text[base_start..];
    let dots = base.len() - base.trim_start_matches('.').len();
    let root = match base[dots..].rfind('.') {
        Some(i) => &text[..base_start + dots + i],
        None => &text[..],
    };
    root.ends_with("-client")
}

/// `ScriptVaultSecret` and `ClientScriptVaultSecret`: run it (stdin inherited), its stdout
/// stripped of CR/LF is the password. `client` is `Some` for a client script, with the vault
/// id it is asked for, if any; its stderr is captured for the error message, as Ansible does.
fn run_script(path: &Path, client: Option<Option<&str>>) -> Result<Vec<u8>, VaultError> {
    let kind = if client.is_some() { "vault password client script" } else { "vault password script" };
    let what = format!("{kind} {}", path.display());
    let mut command = Command::new(path);
    command.stdin(Stdio::inherit()).stdout(Stdio::piped());
    match client {
        Some(id) => {
            if let Some(id) = id {
                command.arg("--vault-id").arg(id);
            }
            command.stderr(Stdio::piped());
        }
        None => {
            command.stderr(Stdio::inherit());
        }
    }
    let output = command
        .output()
        .map_err(|e| source_error(&what, format!("cannot run it ({e}); if it is not a script, remove the executable bit from the file")))?;
    let stderr = one_line(&output.stderr);
    let stderr = if stderr.is_empty() { String::new() } else { format!(": {stderr}") };
    match (output.status.code(), client) {
        (Some(0), _) => {}
        (Some(CLIENT_UNKNOWN_ID), Some(id)) => {
            return Err(source_error(&what, format!("has no secret for vault id {:?}{stderr}", id.unwrap_or(""))));
        }
        (Some(code), _) => return Err(source_error(&what, format!("exited with status {code}{stderr}"))),
        (None, _) => return Err(source_error(&what, format!("was killed by a signal{stderr}"))),
    }
    let password = strip_crlf(&output.stdout);
    if password.is_empty() {
        return Err(source_error(&what, "it printed an empty password"));
    }
    Ok(password.to_vec())
}

/// A script's stderr on one line, bounded, for an error message.
fn one_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut line = words.join(" ");
    if line.chars().count() > 300 {
        line = line.chars().take(300).collect::<String>() + "...";
    }
    line
}

/// `unfrackpath(path, follow=False)`: `$VAR` and `~` expanded, absolute, `.` and `..` resolved
/// by name (symlinks are not followed).
fn unfrack(given: &Path) -> PathBuf {
    let expanded = match given.to_str() {
        Some(text) => PathBuf::from(expand_user(&expand_vars(text))),
        None => given.to_path_buf(),
    };
    let absolute =
        if expanded.is_absolute() { expanded } else { std::env::current_dir().map(|cwd| cwd.join(&expanded)).unwrap_or(expanded) };
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `os.path.expandvars`: `$NAME` and `${NAME}` of set variables; the others stay as written.
fn expand_vars(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..end], end)
        };
        match (len, std::env::var(name)) {
            (1.., Ok(value)) if !name.is_empty() => {
                out.push_str(&value);
                rest = &after[len..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `os.path.expanduser` for `~` and `~/...` (from `$HOME`).
fn expand_user(text: &str) -> String {
    match (text.strip_prefix('~'), std::env::var("HOME")) {
        (Some(rest), Ok(home)) if rest.is_empty() || rest.starts_with('/') => {
            let joined = format!("{}{rest}", home.trim_end_matches('/'));
            if joined.is_empty() {
                "/".to_string()
            } else {
                joined
            }
        }
        _ => text.to_string(),
    }
}

/// Python's `bytes.strip()`: ASCII whitespace, vertical tab included.
fn py_strip(bytes: &[u8]) -> &[u8] {
    trim_by(bytes, |b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c'))
}

/// [`py_strip`] of text.
fn py_strip_str(text: &str) -> &str {
    text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'))
}

/// `bytes.strip(b'\r\n')`.
fn strip_crlf(bytes: &[u8]) -> &[u8] {
    trim_by(bytes, |b| matches!(b, b'\r' | b'\n'))
}

fn trim_by(bytes: &[u8], strip: impl Fn(u8) -> bool) -> &[u8] {
    let start = bytes.iter().position(|&b| !strip(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|&b| !strip(b)).map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Whether `text` (a file's content, or an inline `!vault` scalar) is vault-encrypted: ASCII
/// throughout and starting with `$ANSIBLE_VAULT`, as ansible's `is_encrypted`.
pub fn is_encrypted(text: &str) -> bool {
    text.is_ascii() && text.starts_with(HEADER)
}

/// Decrypt: the secrets whose label is the header's vault id first (`default` for a 1.1
/// header), then all others, in the order given. ansible-core 2.19 tries every secret by
/// default (`DEFAULT_VAULT_ID_MATCH` off); only the right password passes the HMAC, so the
/// order changes nothing but the time taken.
pub fn decrypt(text: &str, secrets: &VaultSecrets) -> Result<String, VaultError> {
    String::from_utf8(decrypt_bytes(text, secrets)?).map_err(|_| VaultError::NotUtf8)
}

/// What the header says and the hex body.
struct Envelope<'a> {
    cipher: &'a str,
    vault_id: Option<&'a str>,
    body: Vec<u8>,
}

/// `parse_vaulttext_envelope`: the first line (stripped) split at `;` into header, version
/// (not checked), cipher and, when there is a fourth field, the vault id; the other lines
/// joined without their line ends.
fn parse_envelope(text: &str) -> Result<Envelope<'_>, VaultError> {
    let (first, rest) = match text.find(['\r', '\n']) {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, ""),
    };
    let header = py_strip_str(first);
    let fields: Vec<&str> = header.split(';').collect();
    if fields.len() < 3 {
        return Err(VaultError::Malformed("the header line has no version and cipher".into()));
    }
    let cipher = py_strip_str(fields[2]);
    let vault_id = fields.get(3).map(|id| py_strip_str(id));
    let body = rest.bytes().filter(|b| !matches!(b, b'\r' | b'\n')).collect();
    Ok(Envelope { cipher, vault_id, body })
}

/// The salt, the HMAC and the ciphertext of the body.
struct Payload {
    salt: Vec<u8>,
    hmac: Vec<u8>,
    ciphertext: Vec<u8>,
}

/// `parse_vaulttext`: unhex the body, split it at the first two newlines, unhex the parts.
fn parse_payload(body: &[u8]) -> Result<Payload, VaultError> {
    let inner = hex::decode(body).map_err(|e| VaultError::Malformed(format!("the body is not hex ({e})")))?;
    let mut parts = inner.splitn(3, |&b| b == b'\n');
    let (Some(salt), Some(hmac), Some(ciphertext)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(VaultError::Malformed("the body has no salt, HMAC and ciphertext (truncated?)".into()));
    };
    let unhex = |part: &[u8], name: &str| hex::decode(part).map_err(|e| VaultError::Malformed(format!("the {name} is not hex ({e})")));
    Ok(Payload { salt: unhex(salt, "salt")?, hmac: unhex(hmac, "HMAC")?, ciphertext: unhex(ciphertext, "ciphertext")? })
}

fn decrypt_bytes(text: &str, secrets: &VaultSecrets) -> Result<Vec<u8>, VaultError> {
    if !is_encrypted(text) {
        return Err(VaultError::Malformed(format!("it does not start with {HEADER} (or is not ASCII)")));
    }
    let envelope = parse_envelope(text)?;
    if envelope.cipher != CIPHER {
        return Err(VaultError::UnknownCipher(envelope.cipher.chars().take(40).collect()));
    }
    if secrets.is_empty() {
        return Err(VaultError::NoSecrets);
    }
    let payload = parse_payload(&envelope.body)?;
    let wanted = envelope.vault_id.unwrap_or(DEFAULT_LABEL);
    let ordered = secrets.secrets.iter().filter(|s| s.label == wanted).chain(secrets.secrets.iter().filter(|s| s.label != wanted));
    let mut tried = Vec::new();
    for secret in ordered {
        tried.push(secret.label.clone());
        let keys = derive_keys(&secret.password, &payload.salt);
        if !hmac_matches(&keys.hmac, &payload.ciphertext, &payload.hmac) {
            continue;
        }
        let mut plain = payload.ciphertext.clone();
        Aes256Ctr::new(&keys.aes.into(), &keys.iv.into()).apply_keystream(&mut plain);
        return unpad(plain);
    }
    let vault_id = envelope.vault_id.map(|id| id.chars().take(80).collect());
    Err(VaultError::WrongPassword { vault_id, tried })
}

struct Keys {
    aes: [u8; 32],
    hmac: [u8; 32],
    iv: [u8; 16],
}

/// 80 bytes of PBKDF2-HMAC-SHA256: AES key, HMAC key, CTR counter.
fn derive_keys(password: &[u8], salt: &[u8]) -> Keys {
    let derived = pbkdf2::pbkdf2_hmac_array::<Sha256, 80>(password, salt, PBKDF2_ROUNDS);
    let mut keys = Keys { aes: [0; 32], hmac: [0; 32], iv: [0; 16] };
    keys.aes.copy_from_slice(&derived[..32]);
    keys.hmac.copy_from_slice(&derived[32..64]);
    keys.iv.copy_from_slice(&derived[64..]);
    keys
}

/// HMAC-SHA256 of the ciphertext against the expected tag, in constant time (a tag of
/// another length does not match).
fn hmac_matches(key: &[u8], ciphertext: &[u8], expected: &[u8]) -> bool {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else { return false };
    mac.update(ciphertext);
    mac.verify_slice(expected).is_ok()
}

/// PKCS#7 with 16-byte blocks, checked as `cryptography`'s unpadder checks it.
fn unpad(mut plain: Vec<u8>) -> Result<Vec<u8>, VaultError> {
    let bad = || VaultError::Malformed("bad padding after decryption".into());
    if plain.is_empty() || !plain.len().is_multiple_of(16) {
        return Err(bad());
    }
    let pad = plain[plain.len() - 1] as usize;
    if pad == 0 || pad > 16 || plain[plain.len() - pad..].iter().any(|&b| b as usize != pad) {
        return Err(bad());
    }
    plain.truncate(plain.len() - pad);
    Ok(plain)
}

/// Encrypt as `ansible-vault encrypt` does (salt from a hash: tests only, not secret).
#[cfg(test)]
pub fn encrypt_for_tests(plaintext: &str, password: &str, label: Option<&str>) -> String {
    encrypt_bytes_for_tests(plaintext.as_bytes(), password, label)
}

#[cfg(test)]
fn encrypt_bytes_for_tests(plaintext: &[u8], password: &str, label: Option<&str>) -> String {
    use sha2::Digest;
    let salt = Sha256::digest([plaintext, b"\0", password.as_bytes()].concat()).to_vec();
    let keys = derive_keys(password.as_bytes(), &salt);
    let mut data = plaintext.to_vec();
    let pad = 16 - data.len() % 16;
    data.extend(std::iter::repeat_n(pad as u8, pad));
    Aes256Ctr::new(&keys.aes.into(), &keys.iv.into()).apply_keystream(&mut data);
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&keys.hmac).unwrap();
    mac.update(&data);
    let tag = mac.finalize().into_bytes();
    let inner = format!("{}\n{}\n{}", hex::encode(&salt), hex::encode(tag), hex::encode(&data));
    let body = hex::encode(inner);
    let mut out = match label.filter(|l| *l != DEFAULT_LABEL && !l.is_empty()) {
        Some(label) => format!("{HEADER};1.2;{CIPHER};{label}"),
        None => format!("{HEADER};1.1;{CIPHER}"),
    };
    for chunk in body.as_bytes().chunks(80) {
        out.push('\n');
        out.push_str(std::str::from_utf8(chunk).unwrap());
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    //! Vectors made by ansible-core 2.19.14's `ansible-vault` (passwords are fake):
    //! `printf 'test-vault-pw\n' > pw.txt; printf 'test-ops-pw\n' > pw-ops.txt`, then
    //! - `SECRET_VALUE`: `ansible-vault encrypt_string --vault-password-file pw.txt 'secret value'`
    //! - `OPS_SECRET`: `ansible-vault encrypt_string --vault-id ops@pw-ops.txt 'ops secret'`
    //! - `MULTI_LINE`: `ansible-vault encrypt --vault-password-file pw.txt multi.enc` of [`MULTI_PLAIN`]
    //! - `UTF8_PROD`: `ansible-vault encrypt --vault-id prod@pw-ops.txt utf8.enc` of [`UTF8_PLAIN`]
    //! - `FULL_BLOCK`: `ansible-vault encrypt_string --vault-password-file pw.txt '0123456789abcdef'`
    //! - `EMPTY`: `VaultLib(...).encrypt(b"", VaultSecret(b"test-vault-pw"))` (the CLI refuses
    //!   an empty plaintext)
    //! - `INNER_PW`: `ansible-vault encrypt --vault-password-file pw.txt inner.enc` of the password
    //!   file content `test-vault-pw-inner` (no newline)
    //!
    //! The `encrypt_string` ones are given as the YAML loader gives the `!vault |` scalar.

    use super::*;
    use proptest::prelude::*;

    const PW: &str = "test-vault-pw";
    const OPS_PW: &str = "test-ops-pw";

    const SECRET_VALUE: &str = "$ANSIBLE_VAULT;1.1;AES256
30386334346462326265643261656463313235636634633535313564316466633038313036313239
6339646331666530653964663530333663616562653663360a333366346461393738333865653037
66313063346134373633363931616536636336316434346539663766323030663265333435313335
6661616633363865340a316239623861366439373734613864376664663533306636366661363134
3130
";
    const OPS_SECRET: &str = "$ANSIBLE_VAULT;1.2;AES256;ops
62383062356164393034356234303232383264353531396432623434326539333538303566323466
3634303034323863646538323435373637343164656262300a316135306239306637396663363034
35313239353863333961633564366362633932393939633961396231656137316531613336343862
3466333830393332320a326332613663343965373162646465343764386135643733356363643937
3936
";
    const MULTI_PLAIN: &str = "db_user: app\ndb_password: \"not-a-real-secret\"\nlist:\n  - one\n  - two\n";
    const MULTI_LINE: &str = "$ANSIBLE_VAULT;1.1;AES256
33616638313233643133386162393238373532666135386332396335366431353535643361343937
3663333964656437393466313066623133356636633833640a656637663830393131666366353763
36363931323564316630316530366234353334373966613761333562346536363162376166653138
6236373838323461380a343230363864666538373339643961346639623138633030616161613161
65316336373661356131373337363663653062323964643032646664363035353635363366366238
30333064326562613563313962346433343561346664316164313431306239613666623236366632
62356333383738363739383432363162353537626532366436313933643235326337663964363339
39653932346563343432
";
    const UTF8_PLAIN: &str = "grüße: \"Ünïcödé ✓ 日本語\"\n";
    const UTF8_PROD: &str = "$ANSIBLE_VAULT;1.2;AES256;prod
33336535323638313364326366323466613333323439663531633462326233386234373130636337
3261393332623639353930393339333761623261633863380a633233633233336134303162363534
31396166343436653838633136316333343339616464636432373166383932656533326530313761
6366333663343433630a386261333461366135626539343132663364666634663464396364303531
38663433396462363634323133613632316136363631313434613839626336643664633638313462
3330323964613538323932633939396232393737326163393335
";
    const FULL_BLOCK: &str = "$ANSIBLE_VAULT;1.1;AES256
32366335316437663464383362383938363835653164336434623931383539383036646632306337
3736313063313763643833656135313732323561666466360a303631653334336532396231636433
38623363303137323136623933633036303035653035303064643939376562363937333932333531
6138373466326265610a393939663931616261393566616336353138353231663565353131353038
66616363333761303537623538353931383633316330623532306364393464633533
";
    const EMPTY: &str = "$ANSIBLE_VAULT;1.1;AES256
36303839656232336237353531353961313437356537346439346465626638323965356137616233
6134326565363435383438303166633230373063366138380a626466353131386663386135653466
36303930376362663761313962303839643665346532313934313037366635356639303366623739
3435623033366439630a303161616265663439303938646164363936316632383662366536626266
3339
";
    const INNER_PW: &str = "$ANSIBLE_VAULT;1.1;AES256
39323232633266343039626638626136393134653433313037326365336635326432623033363031
3135353138666464356139663038616639376362383031390a373531616330616565323638626538
39613037343734613133356331623131623233356166303862363631643031333964333737313635
3733313565623661620a396338306632636532613938653636663434636263396265393833306139
61646432383834353935313666653130303638373933306338643638393633383762
";

    fn secrets(list: &[(&str, &str)]) -> VaultSecrets {
        let mut s = VaultSecrets::default();
        for (label, pw) in list {
            s.push(label, pw.as_bytes().to_vec());
        }
        s
    }

    /// A scratch folder of this test, removed when dropped.
    struct Scratch(PathBuf);
    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("bootstrap-vault-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
        fn file(&self, name: &str, content: &str, mode: u32) -> PathBuf {
            use std::os::unix::fs::PermissionsExt;
            let path = self.0.join(name);
            std::fs::write(&path, content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn assert_no_secret(e: &VaultError) {
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text}");
        for secret in [PW, OPS_PW, "test-vault-pw-inner", "secret value", "not-a-real-secret"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn ansible_vectors_decrypt() {
        let all = secrets(&[("default", PW), ("ops", OPS_PW), ("prod", OPS_PW)]);
        assert_eq!(decrypt(SECRET_VALUE, &all).unwrap(), "secret value");
        assert_eq!(decrypt(OPS_SECRET, &all).unwrap(), "ops secret");
        assert_eq!(decrypt(MULTI_LINE, &all).unwrap(), MULTI_PLAIN);
        assert_eq!(decrypt(UTF8_PROD, &all).unwrap(), UTF8_PLAIN);
        assert_eq!(decrypt(FULL_BLOCK, &all).unwrap(), "0123456789abcdef");
        assert_eq!(decrypt(EMPTY, &all).unwrap(), "");
        assert_eq!(decrypt(INNER_PW, &all).unwrap(), "test-vault-pw-inner");
        // Without the trailing newline, with CRLF line ends, with spaces after the header.
        assert_eq!(decrypt(SECRET_VALUE.trim_end(), &all).unwrap(), "secret value");
        assert_eq!(decrypt(&MULTI_LINE.replace('\n', "\r\n"), &all).unwrap(), MULTI_PLAIN);
        assert_eq!(decrypt(&OPS_SECRET.replacen(";ops\n", ";ops  \n", 1), &all).unwrap(), "ops secret");
    }

    #[test]
    fn every_secret_is_tried_whatever_its_label() {
        // A 1.2 vault id that no secret has, and a 1.1 header with a labelled secret.
        assert_eq!(decrypt(OPS_SECRET, &secrets(&[("default", PW), ("other", OPS_PW)])).unwrap(), "ops secret");
        assert_eq!(decrypt(SECRET_VALUE, &secrets(&[("ops", OPS_PW), ("x", PW)])).unwrap(), "secret value");
        // The header's vault id is only a hint: another label in it changes nothing.
        let relabelled = OPS_SECRET.replacen(";ops", ";prod", 1);
        assert_eq!(decrypt(&relabelled, &secrets(&[("ops", OPS_PW)])).unwrap(), "ops secret");
    }

    #[test]
    fn wrong_password() {
        let e = decrypt(SECRET_VALUE, &secrets(&[("default", OPS_PW), ("ops", "nope")])).unwrap_err();
        assert!(matches!(&e, VaultError::WrongPassword { vault_id: None, tried } if tried == &["default", "ops"]), "{e:?}");
        assert!(e.to_string().contains("no vault password given decrypts it"), "{e}");
        assert_no_secret(&e);
        let e = decrypt(OPS_SECRET, &secrets(&[("default", PW), ("ops", PW)])).unwrap_err();
        // The matching label is tried first.
        assert!(
            matches!(&e, VaultError::WrongPassword { vault_id: Some(id), tried } if id == "ops" && tried == &["ops", "default"]),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            r#"no vault password given decrypts it (vault id "ops"; tried "ops", "default": a wrong password, or altered data)"#
        );
    }

    #[test]
    fn no_secrets() {
        let e = decrypt(SECRET_VALUE, &VaultSecrets::default()).unwrap_err();
        assert!(matches!(e, VaultError::NoSecrets));
        for option in ["--vault-password-file", "--vault-id", "--ask-vault-pass", "ANSIBLE_VAULT_PASSWORD_FILE"] {
            assert!(e.to_string().contains(option), "{e}");
        }
    }

    /// ansible-core 2.19's `VaultLib.decrypt` on the same texts: a vault format error for each,
    /// but "not vault encrypted data" for the first and the last, and "Cipher 'AES128' could
    /// not be found" for the unknown cipher.
    #[test]
    fn malformed_envelopes() {
        let s = secrets(&[("default", PW)]);
        let lines: Vec<&str> = SECRET_VALUE.lines().collect();
        let cases = [
            ("not vault", "secret value".to_string()),
            ("header only", "$ANSIBLE_VAULT".to_string()),
            ("no cipher", "$ANSIBLE_VAULT;1.1\n3130\n".to_string()),
            ("odd hex", SECRET_VALUE[..SECRET_VALUE.len() - 2].to_string()),
            ("one line of body", lines[..2].join("\n")),
            ("cut inside the HMAC", lines[..3].join("\n")),
            ("not hex", SECRET_VALUE.replacen("3038", "30zz", 1)),
            ("space in the body", SECRET_VALUE.replacen("\n3038", "\n 3038", 1)),
            ("no body", "$ANSIBLE_VAULT;1.1;AES256\n".to_string()),
            ("non-ASCII", format!("{SECRET_VALUE}é")),
        ];
        for (what, text) in cases {
            let e = decrypt(&text, &s).unwrap_err();
            assert!(matches!(e, VaultError::Malformed(_)), "{what}: {e:?}");
            assert_no_secret(&e);
        }
        let e = decrypt(&SECRET_VALUE.replacen("AES256", "AES128", 1), &s).unwrap_err();
        assert!(matches!(&e, VaultError::UnknownCipher(c) if c == "AES128"), "{e:?}");
    }

    #[test]
    fn altered_ciphertext_fails_the_hmac() {
        let s = secrets(&[("default", PW)]);
        // The last hex digit pair of the ciphertext: still well-formed, so only the HMAC tells.
        let altered = SECRET_VALUE.replacen("\n3130\n", "\n3131\n", 1);
        assert!(matches!(decrypt(&altered, &s), Err(VaultError::WrongPassword { .. })));
    }

    #[test]
    fn not_utf8_and_bad_padding() {
        let s = secrets(&[("default", PW)]);
        let text = encrypt_bytes_for_tests(b"\xff\xfe", PW, None);
        assert!(matches!(decrypt(&text, &s), Err(VaultError::NotUtf8)));
        assert_eq!(decrypt_bytes(&text, &s).unwrap(), b"\xff\xfe");
        assert!(unpad(vec![1; 15]).is_err());
        assert!(unpad(vec![0; 16]).is_err());
        assert!(unpad(vec![17; 16]).is_err());
        assert!(unpad([[3u8; 14].as_slice(), &[2, 3]].concat()).is_err());
        assert_eq!(unpad(vec![16; 16]).unwrap(), b"");
    }

    #[test]
    fn round_trip_and_headers() {
        let s = secrets(&[("default", PW), ("ops", OPS_PW)]);
        let one = encrypt_for_tests("a\nb ✓", PW, None);
        assert!(one.starts_with("$ANSIBLE_VAULT;1.1;AES256\n") && one.lines().skip(1).all(|l| l.len() <= 80));
        assert_eq!(decrypt(&one, &s).unwrap(), "a\nb ✓");
        let two = encrypt_for_tests("x", OPS_PW, Some("ops"));
        assert!(two.starts_with("$ANSIBLE_VAULT;1.2;AES256;ops\n"));
        assert_eq!(decrypt(&two, &s).unwrap(), "x");
    }

    #[test]
    fn is_encrypted_as_ansible() {
        assert!(is_encrypted(SECRET_VALUE));
        assert!(is_encrypted("$ANSIBLE_VAULT"));
        assert!(!is_encrypted(" $ANSIBLE_VAULT;1.1;AES256\n"));
        assert!(!is_encrypted("$ANSIBLE_VAULT;1.1;AES256\né"));
        assert!(!is_encrypted("secret value"));
    }

    #[test]
    fn password_files() {
        let dir = Scratch::new("files");
        // A plain file: its surrounding whitespace goes, inner spaces stay.
        let mut s = VaultSecrets::default();
        s.add_password_file(None, &dir.file("pw.txt", "test-vault-pw\n", 0o600)).unwrap();
        s.add_password_file(Some("ops"), &dir.file("ops.txt", " \ttest-ops-pw \r\n\x0b", 0o600)).unwrap();
        assert_eq!(s.passwords(), [PW, OPS_PW]);
        assert_eq!(s.labels(), ["default", "ops"]);
        assert_eq!(decrypt(SECRET_VALUE, &s).unwrap(), "secret value");
        assert_eq!(decrypt(OPS_SECRET, &s).unwrap(), "ops secret");
        // --vault-id label@file and --vault-id file.
        let mut s = VaultSecrets::default();
        let ops = dir.0.join("ops.txt");
        s.add_vault_id(&format!("ops@{}", ops.display())).unwrap();
        s.add_vault_id(&format!("@{}", dir.0.join("pw.txt").display())).unwrap();
        s.add_vault_id(dir.0.join("pw.txt").to_str().unwrap()).unwrap();
        assert_eq!(s.labels(), ["ops", "default", "default"]);
        assert_eq!(decrypt(OPS_SECRET, &s).unwrap(), "ops secret");
        // A password file that is itself vault-encrypted, with a password given before it.
        let inner = dir.file("inner.enc", INNER_PW, 0o600);
        let e = VaultSecrets::default().add_password_file(None, &inner).unwrap_err();
        assert!(e.to_string().contains("inner.enc") && e.to_string().contains("vault-encrypted"), "{e}");
        let mut s = secrets(&[("default", PW)]);
        s.add_password_file(None, &inner).unwrap();
        assert_eq!(s.passwords()[1], "test-vault-pw-inner");
        // Relative paths and `..` are made absolute, as unfrackpath does.
        let rel = dir.0.join("sub/../pw.txt");
        assert_eq!(unfrack(&rel), dir.0.join("pw.txt"));
    }

    #[test]
    fn password_file_errors_name_the_file() {
        let dir = Scratch::new("errors");
        let missing = dir.0.join("missing-pw.txt");
        let e = VaultSecrets::default().add_password_file(None, &missing).unwrap_err();
        assert_eq!(e.to_string(), format!("vault password file {}: not found", missing.display()));
        let e = VaultSecrets::default().add_vault_id(&format!("ops@{}", missing.display())).unwrap_err();
        assert!(e.to_string().contains("missing-pw.txt: not found"), "{e}");
        let e = VaultSecrets::default().add_password_file(None, &dir.0).unwrap_err();
        assert!(e.to_string().ends_with("is a directory"), "{e}");
        let e = VaultSecrets::default().add_password_file(None, &dir.file("empty", " \n\n", 0o600)).unwrap_err();
        assert!(e.to_string().contains("empty password"), "{e}");
        let failing = dir.file("failing.sh", "#!/bin/sh\necho test-vault-pw\nexit 3\n", 0o700);
        let e = VaultSecrets::default().add_password_file(None, &failing).unwrap_err();
        assert!(e.to_string().contains("failing.sh: exited with status 3"), "{e}");
        assert_no_secret(&e);
        let not_script = dir.file("not-a-script", "test-vault-pw\n", 0o700);
        let e = VaultSecrets::default().add_password_file(None, &not_script).unwrap_err();
        assert!(e.to_string().contains("remove the executable bit"), "{e}");
        assert_no_secret(&e);
    }

    #[test]
    fn password_scripts() {
        let dir = Scratch::new("scripts");
        // Stdout stripped of CR/LF only, as ScriptVaultSecret does.
        let script = dir.file("pw.sh", "#!/bin/sh\nprintf 'test-vault-pw\\r\\n\\n'\n", 0o700);
        let mut s = VaultSecrets::default();
        s.add_password_file(None, &script).unwrap();
        s.add_password_file(None, &dir.file("spaces.sh", "#!/bin/sh\necho ' pw '\n", 0o755)).unwrap();
        assert_eq!(s.passwords(), [PW, " pw "]);
        assert_eq!(decrypt(SECRET_VALUE, &s).unwrap(), "secret value");
        // A client script is asked for the label; without a label, --vault-password-file asks
        // for `default` and --vault-id PATH asks for nothing.
        let client = dir.file(
            "vault-client.sh",
            "#!/bin/sh\ncase \"$*\" in\n  '--vault-id ops') echo test-ops-pw ;;\n  '--vault-id default') echo test-vault-pw ;;\n  '') echo no-id ;;\n  *) echo \"no secret for $*\" >&2; exit 2 ;;\nesac\n",
            0o755,
        );
        let mut s = VaultSecrets::default();
        s.add_vault_id(&format!("ops@{}", client.display())).unwrap();
        s.add_password_file(None, &client).unwrap();
        s.add_vault_id(client.to_str().unwrap()).unwrap();
        assert_eq!(s.passwords(), [OPS_PW, PW, "no-id"]);
        assert_eq!(s.labels(), ["ops", "default", "default"]);
        assert_eq!(decrypt(OPS_SECRET, &s).unwrap(), "ops secret");
        let e = VaultSecrets::default().add_vault_id(&format!("other@{}", client.display())).unwrap_err();
        assert!(
            e.to_string().contains(r#"client script"#)
                && e.to_string().contains(r#"has no secret for vault id "other": no secret for --vault-id other"#),
            "{e}"
        );
        // The name decides, not the content: a script not named *-client gets no argument.
        let plain = dir.file("vault.sh", "#!/bin/sh\n[ $# -eq 0 ] && echo test-vault-pw\n", 0o755);
        let mut s = VaultSecrets::default();
        s.add_vault_id(&format!("ops@{}", plain.display())).unwrap();
        assert_eq!(s.passwords(), [PW]);
    }

    #[test]
    fn client_script_names() {
        for (name, client) in [
            ("vault-client", true),
            ("/etc/ansible/vault-client.py", true),
            ("a.b/keyring-client.sh", true),
            ("vault-client.tar.gz", false),
            ("vault", false),
            ("vault-client/x", false),
            ("dir/.vault-client", true),
            ("-client", true),
        ] {
            assert_eq!(is_client_script(Path::new(name)), client, "{name}");
        }
    }

    #[test]
    fn prompt_answers() {
        let read = |input: &str| read_answer(&mut std::io::Cursor::new(input.as_bytes().to_vec())).unwrap();
        assert_eq!(read("test-vault-pw\r\nmore\n").as_deref(), Some(PW));
        assert_eq!(read("").as_deref(), None);
        let mut s = VaultSecrets::default();
        s.add_answer("ops", read(" test-ops-pw \n"), "p").unwrap();
        assert_eq!((s.labels(), s.passwords()), (vec!["ops".to_string()], vec![OPS_PW.to_string()]));
        assert!(s.add_answer("x", read("\n"), "p").unwrap_err().to_string().contains("empty password"));
        assert!(s.add_answer("x", read(""), "p").unwrap_err().to_string().contains("end of input"));
        assert_eq!(prompt_text("default", PromptStyle::AskVaultPass), "Vault password: ");
        assert_eq!(prompt_text("ops", PromptStyle::VaultId), "Vault password (ops): ");
        assert_eq!(prompt_source("prompt"), Some(PromptStyle::VaultId));
        assert_eq!(prompt_source("prompt_ask_vault_pass"), Some(PromptStyle::AskVaultPass));
    }

    #[test]
    fn expands_variables_as_python() {
        std::env::set_var("BOOTSTRAP_VAULT_TEST_DIR", "/srv/keys");
        assert_eq!(expand_vars("$BOOTSTRAP_VAULT_TEST_DIR/pw"), "/srv/keys/pw");
        assert_eq!(expand_vars("${BOOTSTRAP_VAULT_TEST_DIR}x"), "/srv/keysx");
        assert_eq!(expand_vars("$BOOTSTRAP_VAULT_TEST_UNSET/a$"), "$BOOTSTRAP_VAULT_TEST_UNSET/a$");
        assert_eq!(expand_vars("${unclosed"), "${unclosed");
        assert_eq!(expand_vars("a$$b"), "a$$b");
    }

    /// Lines and characters to mutate a valid envelope with.
    fn mutation() -> impl Strategy<Value = (usize, u8, usize)> {
        let byte =
            prop_oneof![Just(b'0'), Just(b'9'), Just(b'a'), Just(b'F'), Just(b'g'), Just(b'\n'), Just(b';'), Just(b' '), any::<u8>()];
        (0usize..6, byte, any::<usize>())
    }

    fn mutate(text: &str, (kind, byte, at): (usize, u8, usize)) -> Vec<u8> {
        let mut bytes = text.as_bytes().to_vec();
        let i = at % bytes.len();
        match kind {
            0 => bytes[i] = byte,
            1 => bytes.insert(i, byte),
            2 => {
                bytes.remove(i);
            }
            3 => bytes.truncate(i),
            4 => {
                // Cut one line out.
                let lines: Vec<&str> = text.split('\n').collect();
                let cut = at % lines.len();
                bytes = lines.iter().enumerate().filter(|(n, _)| *n != cut).map(|(_, l)| *l).collect::<Vec<_>>().join("\n").into_bytes();
            }
            _ => bytes[i] ^= 1 << (byte % 8),
        }
        bytes
    }

    proptest! {
        // Each case that parses costs a key derivation (~30 ms unoptimised): few cases.
        #![proptest_config(ProptestConfig { cases: 40, .. ProptestConfig::default() })]

        /// Mutated ansible envelopes: an error, or (when the change left the bytes the same,
        /// as a hex digit's case or the header's label) the very plaintext.
        #[test]
        fn mutated_envelopes_never_panic(m1 in mutation(), m2 in mutation(), which in 0usize..3) {
            let (text, plain) = [(SECRET_VALUE, "secret value"), (OPS_SECRET, "ops secret"), (FULL_BLOCK, "0123456789abcdef")][which];
            let s = secrets(&[("default", PW), ("ops", OPS_PW)]);
            let once = mutate(text, m1);
            let twice = mutate(&String::from_utf8_lossy(&once), m2);
            for bytes in [once, twice] {
                let text = String::from_utf8_lossy(&bytes);
                if let Ok(out) = decrypt(&text, &s) {
                    prop_assert_eq!(out, plain);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

        /// Arbitrary text, also behind a vault header and as hex-ish lines: no panic. (No
        /// password reaches the key derivation here unless the body parses.)
        #[test]
        fn arbitrary_text_never_panics(
            text in ".{0,200}",
            hexish in proptest::collection::vec("[0-9a-fA-F\n;]{0,90}", 0..6),
            header in prop_oneof![Just("$ANSIBLE_VAULT;1.1;AES256"), Just("$ANSIBLE_VAULT;1.2;AES256;x"), Just("$ANSIBLE_VAULT"), Just("$ANSIBLE_VAULT;;")],
        ) {
            let s = secrets(&[("default", PW)]);
            let _ = decrypt(&text, &s);
            let _ = decrypt(&format!("{header}{text}"), &s);
            let _ = decrypt(&format!("{header}\n{}", hexish.join("\n")), &VaultSecrets::default());
            let _ = is_encrypted(&text);
            let _ = parse_payload(hexish.join("").as_bytes());
        }
    }
}
