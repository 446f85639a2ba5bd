//! One SSH connection per host (russh), channels multiplexed.
//!
//! - Host keys are checked strictly against a known_hosts file. An unknown
//!   key is refused unless `--accept-new-host-keys`; a changed key is always
//!   refused, naming the line to fix. Nothing is sent before that check.
//! - ProxyJump chains are dialled hop by hop, every hop checked the same way.
//! - At most [`MAX_CHANNELS`] channels are open at once on a connection,
//!   under OpenSSH's default `MaxSessions` of 10. Every channel is read to
//!   its end and closed.
//! - Privilege escalation (sudo) is done here and only here: [`Become`].
//!   A become password goes on the channel's stdin, never on a command line.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect};
use tokio::sync::Semaphore;

use super::auth::authenticate;
use super::error::{describe, SshError};
use super::known_hosts::{self, KnownHosts, Verdict};
use super::options::SshOptions;
use super::ssh_config::{jump_chain, Target};
use super::tcp::{QuickAck, Tcp};

/// Channels open at once on one connection (OpenSSH allows 10).
pub const MAX_CHANNELS: usize = 8;

/// Bytes read from a host's socket at a time (larger packets are read
/// straight into russh's own buffer).
const READ_BUFFER: usize = 16 * 1024;

#[derive(Debug, Clone)]
enum KeyVerdict {
    Unknown { fingerprint: String },
    Changed { line: usize },
    Error(String),
}

pub(super) struct Handler {
    host: String,
    port: u16,
    known_hosts: Arc<KnownHosts>,
    accept_new: bool,
    /// false: `host_key_checking = False`, every key accepted.
    checking: bool,
    verdict: Arc<Mutex<Option<KeyVerdict>>>,
}

impl client::Handler for Handler {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let key: &PublicKey = match server {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key,
            _ => {
                self.set(KeyVerdict::Error("the host presented a certificate; host certificates are not supported".into()));
                return Ok(false);
            }
        };
        let openssh = match key.to_openssh() {
            Ok(s) => s,
            Err(e) => {
                self.set(KeyVerdict::Error(format!("cannot encode the host's key: {e}")));
                return Ok(false);
            }
        };
        let mut words = openssh.split_whitespace();
        let (kt, kb) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        if !self.checking {
            return Ok(true);
        }
        match self.known_hosts.check(&self.host, self.port, kt, kb) {
            Verdict::Match => Ok(true),
            Verdict::Unknown if self.accept_new => match self.known_hosts.accept(&self.host, self.port, kt, kb) {
                Ok(()) => Ok(true),
                Err(e) => {
                    self.set(KeyVerdict::Error(format!("cannot record the host key in {}: {e}", self.known_hosts.path().display())));
                    Ok(false)
                }
            },
            Verdict::Unknown => {
                self.set(KeyVerdict::Unknown { fingerprint: key.fingerprint(HashAlg::Sha256).to_string() });
                Ok(false)
            }
            Verdict::Changed { line } => {
                self.set(KeyVerdict::Changed { line });
                Ok(false)
            }
            Verdict::Revoked { line } => {
                self.set(KeyVerdict::Error(format!(
                    "the host key of {} is marked @revoked in {} line {line}; refusing to connect",
                    self.host,
                    self.known_hosts.path().display()
                )));
                Ok(false)
            }
        }
    }
}

impl Handler {
    fn set(&self, v: KeyVerdict) {
        if let Ok(mut g) = self.verdict.lock() {
            *g = Some(v);
        }
    }
}

/// How commands are run on the host: as the login user, or through sudo.
#[derive(Clone)]
pub enum Become {
    No,
    Sudo { user: String, password: Option<String> },
}

/// First line of stdin after a sudo password, so the script starts in the
/// same place whether sudo read the password or not (NOPASSWD rules).
const SENTINEL: &str = "#bootstrap-script-follows";

/// The output of one remote command.
#[derive(Debug, Default)]
pub struct Output {
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// One authenticated connection.
pub struct Session {
    handle: client::Handle<Handler>,
    channels: Arc<Semaphore>,
    round_trips: AtomicU32,
    /// Armed from authentication to the first channel's confirmation: see
    /// [`super::tcp`]. A ProxyJump hop's socket is the jump host's, so there
    /// it is attached to nothing.
    quick_ack: QuickAck,
    // A ProxyJump connection must live as long as this one.
    _jump: Option<Box<Session>>,
}

impl Session {
    /// Connect (through every ProxyJump hop), check host keys,
    /// authenticate.
    pub async fn connect(target: &Target, opts: &SshOptions) -> Result<Session, SshError> {
        let hops = jump_chain(target, opts.ssh_config.as_deref())
            .map_err(|e| SshError::Unreachable(format!("{e}; refusing to connect to {} directly", target.address)))?;
        let timeout = opts.connect_timeout;
        let dial = async {
            let mut through: Option<Session> = None;
            for hop in hops.iter().chain(std::iter::once(target)) {
                let via = through.take();
                through = Some(Session::connect_one(hop, via, opts).await?);
            }
            through.ok_or_else(|| SshError::Protocol("no connection was made".into()))
        };
        match tokio::time::timeout(timeout * (hops.len() as u32 + 1), dial).await {
            Ok(r) => r,
            Err(_) => Err(SshError::Unreachable(format!(
                "no SSH answer from {}:{} within {}s (connect timeout)",
                target.address,
                target.port,
                timeout.as_secs()
            ))),
        }
    }

    /// One hop: directly, or through the connection `via`.
    async fn connect_one(target: &Target, via: Option<Session>, opts: &SshOptions) -> Result<Session, SshError> {
        let config = Arc::new(client::Config { keepalive_interval: Some(Duration::from_secs(15)), keepalive_max: 3, ..Default::default() });
        let verdict = Arc::new(Mutex::new(None));
        let handler = Handler {
            host: target.address.clone(),
            port: target.port,
            known_hosts: opts.known_hosts.clone(),
            accept_new: opts.accept_new_host_keys,
            checking: opts.host_key_checking,
            verdict: verdict.clone(),
        };
        let quick_ack = QuickAck::default();
        let handle = match &via {
            Some(jump) => {
                let ch = jump.handle.channel_open_direct_tcpip(target.address.clone(), target.port as u32, "127.0.0.1", 0).await.map_err(
                    |e| {
                        SshError::Unreachable(format!("ProxyJump: cannot reach {}:{} from the jump host: {e}", target.address, target.port))
                    },
                )?;
                client::connect_stream(config, ch.into_stream(), handler).await
            }
            None => match tokio::net::TcpStream::connect((target.address.as_str(), target.port)).await {
                // russh reads a packet's length, then its body, each straight
                // from the stream: two reads (and often a third that finds
                // nothing) per packet. A buffer takes what has arrived in one.
                // (russh's own `nodelay` applies only to its `connect`.)
                Ok(socket) => {
                    let _ = socket.set_nodelay(true);
                    let socket = Tcp::new(socket, quick_ack.clone());
                    client::connect_stream(config, tokio::io::BufReader::with_capacity(READ_BUFFER, socket), handler).await
                }
                Err(e) => Err(russh::Error::from(e)),
            },
        };
        let kh = opts.known_hosts.path();
        let mut handle = handle.map_err(|e| {
            let v = verdict.lock().ok().and_then(|g| g.clone());
            match v {
                Some(KeyVerdict::Unknown { fingerprint }) => SshError::HostKey(format!(
                    "host key of {}:{} is not in {} ({fingerprint}); refusing to connect\n  help: check the fingerprint, then run again with --accept-new-host-keys to record it",
                    target.address, target.port, kh.display()
                )),
                Some(KeyVerdict::Changed { line }) => SshError::HostKey(format!(
                    "HOST KEY CHANGED for {}:{}: it does not match {} line {line}; refusing to connect (possible man-in-the-middle)\n  help: if the host was rebuilt, remove that line (ssh-keygen -R {} -f {})",
                    target.address, target.port, kh.display(), known_hosts::host_name(&target.address, target.port), kh.display()
                )),
                Some(KeyVerdict::Error(m)) => SshError::HostKey(m),
                None => SshError::Unreachable(format!("cannot connect to {}:{}: {}", target.address, target.port, describe(&e))),
            }
        })?;
        authenticate(&mut handle, target, opts).await?;
        quick_ack.set(true);
        Ok(Session {
            handle,
            channels: Arc::new(Semaphore::new(MAX_CHANNELS)),
            round_trips: AtomicU32::new(0),
            quick_ack,
            _jump: via.map(Box::new),
        })
    }

    /// Command round trips made on this connection so far.
    pub fn round_trips(&self) -> u32 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Run `command` with `stdin`, calling `on_stdout` with output as it
    /// arrives. Stdin is written while output is read, so neither side can
    /// block the other.
    /// With `sent`, the bytes of stdin past the first `skip` are added to
    /// it as they go out (an upload's progress).
    async fn exec_counted(
        &self,
        command: &str,
        stdin: Vec<u8>,
        mut on_stdout: impl FnMut(&[u8]) + Send,
        sent: Option<(Arc<std::sync::atomic::AtomicU64>, u64)>,
    ) -> Result<Output, SshError> {
        let _permit = self.channels.acquire().await.map_err(|_| SshError::Protocol("connection closed".into()))?;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| SshError::Unreachable(format!("cannot open a channel: {}", describe(&e))))?;
        self.quick_ack.set(false);
        let (mut read, write) = channel.split();
        // Stdin that fits in one packet of the host's window is queued right
        // behind the request, so the connection's task can write the
        // command, its stdin and EOF at once. Nothing here waits on the
        // host, so reading afterwards cannot block it. OpenSSH's sshd opens
        // a session channel with a window of 0 and grants it once the
        // command has started, so against it stdin always takes the writer
        // task, after that window adjust.
        let inline = sent.is_none() && stdin.len() <= write.writable_packet_size().await;
        if let Err(e) = write.exec(true, command).await {
            let _ = write.close().await;
            return Err(SshError::Unreachable(format!("cannot run a command: {}", describe(&e))));
        }
        // As with the writer task, a failed write shows as a lost
        // connection (no exit status) below.
        let writer = if inline {
            if write.data_bytes(stdin).await.is_ok() {
                let _ = write.eof().await;
            }
            None
        } else {
            Some(Self::spawn_writer(write.make_writer(), stdin, sent))
        };
        let mut out = Output::default();
        let mut closed = false;
        while let Some(msg) = read.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    on_stdout(&data);
                    out.stdout.extend_from_slice(&data);
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                ChannelMsg::Close => {
                    closed = true;
                    break;
                }
                _ => {}
            }
        }
        if let Some(writer) = writer {
            let _ = writer.await;
        }
        if !closed {
            let _ = write.close().await;
        }
        if out.status.is_none() {
            return Err(SshError::Unreachable("the connection was lost while a command ran".into()));
        }
        Ok(out)
    }

    /// Write `stdin` on its own task while the output is read (it may be
    /// larger than the host's window), then EOF.
    fn spawn_writer(
        mut stdin_writer: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
        stdin: Vec<u8>,
        sent: Option<(Arc<std::sync::atomic::AtomicU64>, u64)>,
    ) -> tokio::task::JoinHandle<std::io::Result<()>> {
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let r = match &sent {
                None => stdin_writer.write_all(&stdin).await,
                Some((n, skip)) => {
                    // Counted past the first `skip` bytes (a become password).
                    let mut r = Ok(());
                    let mut written = 0u64;
                    for chunk in stdin.chunks(256 * 1024) {
                        r = stdin_writer.write_all(chunk).await;
                        if r.is_err() {
                            break;
                        }
                        let before = written.saturating_sub(*skip);
                        written += chunk.len() as u64;
                        n.fetch_add(written.saturating_sub(*skip) - before, Ordering::Relaxed);
                    }
                    r
                }
            };
            // Shutting the writer down sends EOF.
            let _ = stdin_writer.shutdown().await;
            r
        })
    }

    /// Run a shell script (fed on stdin to `sh -s`) as the become user.
    pub async fn run_script(&self, script: &str, become_: &Become, on_stdout: impl FnMut(&[u8]) + Send) -> Result<Output, SshError> {
        self.run_as("exec sh -s", script.as_bytes().to_vec(), become_, on_stdout).await
    }

    /// Run the shell command `inner` as the become user with `data` on its
    /// stdin. This is the one place that knows how to use sudo.
    pub async fn run_as(
        &self,
        inner: &str,
        data: Vec<u8>,
        become_: &Become,
        on_stdout: impl FnMut(&[u8]) + Send,
    ) -> Result<Output, SshError> {
        self.run_as_counted(inner, data, become_, on_stdout, None).await
    }

    /// [`Session::run_as`], counting the bytes of `data` sent in `sent`
    /// (the become password before them is not counted).
    pub async fn run_as_counted(
        &self,
        inner: &str,
        data: Vec<u8>,
        become_: &Become,
        on_stdout: impl FnMut(&[u8]) + Send,
        sent: Option<Arc<std::sync::atomic::AtomicU64>>,
    ) -> Result<Output, SshError> {
        use super::shell::quote;
        let (command, mut stdin) = match become_ {
            Become::No => (format!("sh -c {}", quote(inner)), Vec::new()),
            Become::Sudo { user, password: None } => (format!("sudo -n -H -u {} -- sh -c {}", quote(user), quote(inner)), Vec::new()),
            Become::Sudo { user, password: Some(pw) } => {
                // The password is the first line of stdin; the sentinel line
                // after it lets the shell start at the same place whether
                // sudo read the password or not (NOPASSWD rules).
                let reader = format!("IFS= read -r l; [ \"$l\" = \"{SENTINEL}\" ] || IFS= read -r l; {inner}");
                let cmd = format!("sudo -k -S -p '' -H -u {} -- sh -c {}", quote(user), quote(&reader));
                let mut s = pw.as_bytes().to_vec();
                s.push(b'\n');
                s.extend_from_slice(SENTINEL.as_bytes());
                s.push(b'\n');
                (cmd, s)
            }
        };
        let preamble = stdin.len() as u64;
        stdin.extend_from_slice(&data);
        let out = self.exec_counted(&command, stdin, on_stdout, sent.map(|n| (n, preamble))).await?;
        if let Become::Sudo { user, .. } = become_ {
            if out.status == Some(1) && out.stdout.is_empty() {
                let err = String::from_utf8_lossy(&out.stderr);
                if err.contains("a password is required") || err.contains("a terminal is required") {
                    return Err(SshError::Become(format!("sudo to {user} needs a password: set ansible_become_password for this host")));
                }
                if err.contains("incorrect password") || err.contains("Sorry, try again") {
                    return Err(SshError::Become(format!("sudo to {user} refused the become password")));
                }
                if err.contains("sudo:") {
                    return Err(SshError::Become(format!("sudo to {user} failed: {}", err.trim())));
                }
            }
            if out.status == Some(127) && String::from_utf8_lossy(&out.stderr).contains("sudo: not found") {
                return Err(SshError::Become("become needs sudo, which is not installed on the host".into()));
            }
        }
        Ok(out)
    }

    pub async fn close(self) {
        let _ = self.handle.disconnect(Disconnect::ByApplication, "", "en").await;
    }
}
