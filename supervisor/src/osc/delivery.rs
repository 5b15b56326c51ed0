//! Delivery to one visualization: non-blocking sends of its outbox, a writer task that waits
//! for the socket when the child lags, and the child's feedback datagrams.
//!
//! Ingress never waits for a child: it sends what the socket takes at once and leaves the rest
//! queued in the outbox (where coalescing and drop-oldest apply); this module's task finishes
//! the job when the socket becomes writable again.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::net::{UdpSocket, UnixDatagram};
use tokio::sync::{Notify, watch};
use vitrine_osc::{Outbox, TargetId};

use super::Shared;
use super::stats::OutCounters;

/// How a visualization receives its messages (DESIGN §6, `[ipc] transport`).
#[derive(Debug)]
pub enum Delivery {
    /// A UDP socket the sandbox created inside the child's network namespace (bound to
    /// `127.0.0.1:reply_port`, or an ephemeral port when there is none): messages go to
    /// `127.0.0.1:port` there, and datagrams arriving on it are the child's feedback.
    Udp { socket: std::net::UdpSocket, port: u16 },
    /// The supervisor's end of the SOCK_SEQPACKET pair whose other end is the child's fd 3.
    Fd(OwnedFd),
}

#[derive(Debug)]
enum Sock {
    Udp {
        socket: UdpSocket,
        dest: SocketAddr,
    },
    /// The connected SOCK_SEQPACKET end. tokio has no seqpacket type, but send(2)/recv(2) on a
    /// connected socket behave alike for both types and record boundaries are kept, so the
    /// datagram wrapper drives it safely (and takes ownership of the fd).
    Seq(UnixDatagram),
}

/// One attached visualization's endpoint.
#[derive(Debug)]
pub(super) struct Out {
    sock: Sock,
    /// Signalled when a send would have blocked and the writer task must wait for the socket.
    stalled: Notify,
    pub counters: OutCounters,
}

impl Out {
    /// Wraps a delivery; must run inside the tokio runtime.
    pub fn new(delivery: Delivery) -> io::Result<Out> {
        let sock = match delivery {
            Delivery::Udp { socket, port } => {
                socket.set_nonblocking(true)?;
                let dest = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
                Sock::Udp { socket: UdpSocket::from_std(socket)?, dest }
            }
            Delivery::Fd(fd) => {
                let socket = std::os::unix::net::UnixDatagram::from(fd);
                socket.set_nonblocking(true)?;
                Sock::Seq(UnixDatagram::from_std(socket)?)
            }
        };
        Ok(Out { sock, stalled: Notify::new(), counters: OutCounters::default() })
    }

    fn try_send(&self, bytes: &[u8]) -> io::Result<()> {
        match &self.sock {
            Sock::Udp { socket, dest } => socket.try_send_to(bytes, *dest).map(drop),
            Sock::Seq(socket) => socket.try_send(bytes).map(drop),
        }
    }

    /// Sends queued messages until the outbox is empty or the socket would block. Returns true
    /// when it stopped because the socket is full (the writer task takes over).
    pub fn drain(&self, outbox: &mut Outbox, received: Option<Instant>, shared: &Shared) -> bool {
        while let Some(bytes) = outbox.front() {
            match self.try_send(bytes) {
                Ok(()) => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    if let Some(t) = received {
                        shared.counters.latency.observe(t.elapsed());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stalled.notify_one();
                    return true;
                }
                // The child is not listening (ICMP port unreachable), gone, or the message
                // cannot be sent at all: it is lost either way, and counted.
                Err(_) => {
                    self.counters.send_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            outbox.pop_front();
        }
        false
    }

    fn is_seqpacket(&self) -> bool {
        matches!(self.sock, Sock::Seq(_))
    }

    async fn writable(&self) -> io::Result<()> {
        match &self.sock {
            Sock::Udp { socket, .. } => socket.writable().await,
            Sock::Seq(socket) => socket.writable().await,
        }
    }

    /// Receives one feedback datagram into `buf`.
    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.sock {
            Sock::Udp { socket, .. } => socket.recv_from(buf).await.map(|(n, _)| n),
            Sock::Seq(socket) => socket.recv(buf).await,
        }
    }
}

/// The task of one visualization: finishes stalled deliveries and forwards feedback. It ends
/// when the visualization is detached (`stop` changes) or the hub shuts down.
pub(super) async fn run(
    shared: Arc<Shared>,
    id: TargetId,
    out: Arc<Out>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = out.stalled.notified() => {
                if out.writable().await.is_err() {
                    return;
                }
                let mut state = shared.lock();
                if let Some(outbox) = state.router.outbox(id) {
                    out.drain(outbox, None, &shared);
                }
            }
            received = out.recv(&mut buf) => match received {
                Ok(0) if out.is_seqpacket() => return,
                Ok(n) => feedback(&shared, id, &out, &buf[..n]),
                // A seqpacket peer that closed reads as 0 bytes forever; the child is gone and
                // the launcher will detach us.
                Err(_) => return,
            },
        }
    }
}

/// Validates a reply from the child and offers it to the subscribed controllers.
fn feedback(shared: &Shared, id: TargetId, out: &Out, packet: &[u8]) {
    if packet.is_empty() {
        return;
    }
    let now = Instant::now();
    let mut replies = Vec::new();
    let subscribers = {
        let mut state = shared.lock();
        let _ = state.router.feedback(id, packet, now, &mut |bytes| replies.push(bytes.to_vec()));
        state.router.subscribers(id, now)
    };
    for reply in &replies {
        out.counters.feedback.fetch_add(1, Ordering::Relaxed);
        for to in &subscribers {
            shared.send_reply(reply, *to);
        }
    }
}
