//! The TCP stream under a direct SSH connection, able to acknowledge at
//! once (`TCP_QUICKACK`) while the connection waits on the host.
//!
//! After authentication, sshd sends its host keys (`hostkeys-00@openssh.com`)
//! and then the confirmation of our first channel, in two writes. sshd keeps
//! Nagle's algorithm on for commands without a terminal, so the second write
//! waits until the first is acknowledged, and Linux delays that
//! acknowledgement by 40 ms because nothing of ours is going out to carry
//! it. Measured on one converged host: 42 ms of a 250 ms run. While
//! [`QuickAck`] is armed, every read first switches the socket to quick
//! acknowledgements (the kernel leaves that mode again by itself once we
//! send), so what arrives is acknowledged as soon as it is read.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Shared switch: armed, reads acknowledge at once.
#[derive(Clone, Default)]
pub(super) struct QuickAck(Arc<AtomicBool>);

impl QuickAck {
    pub(super) fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }

    fn armed(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A [`TcpStream`] whose reads honour a [`QuickAck`].
pub(super) struct Tcp {
    stream: TcpStream,
    quick: QuickAck,
}

impl Tcp {
    pub(super) fn new(stream: TcpStream, quick: QuickAck) -> Tcp {
        Tcp { stream, quick }
    }
}

/// Best effort: a socket that refuses it only acknowledges later.
fn quickack(stream: &TcpStream) {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor owned by `stream`, and a pointer to
    // an int that lives for the call, with its size.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

impl AsyncRead for Tcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.quick.armed() {
            quickack(&me.stream);
        }
        Pin::new(&mut me.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
