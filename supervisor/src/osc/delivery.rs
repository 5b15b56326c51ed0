//! Delivery to one visualization: non-blocking sends of its outbox, a writer thread that waits
//! for the socket when the child lags, and the child's feedback datagrams.
//!
//! Ingress never waits for a child: it sends what the socket takes at once and leaves the rest
//! queued in the outbox (where coalescing and drop-oldest apply); this module's thread finishes
//! the job when the socket becomes writable again.
//!
//! Why a plain thread that polls for writability only during a stall: a socket registered with
//! a reactor for reading and writing (what tokio's socket types do) wakes the reactor on every
//! send. The kernel frees a loopback datagram's send-buffer charge as soon as it is handed over
//! and reports the socket writable to every EPOLLOUT waiter, so the runtime thread woke up,
//! preempted the ingress thread on its core and pushed the child's wake-up to the other core,
//! once per message. poll(2) filters wake-ups by the events asked for, so this thread sleeps
//! through sends and wakes for feedback, a stall, or detach.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
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

/// A non-blocking socket.
#[derive(Debug)]
enum Sock {
    Udp {
        socket: std::net::UdpSocket,
        dest: SocketAddr,
    },
    /// The connected SOCK_SEQPACKET end. std has no seqpacket type, but send(2)/recv(2) on a
    /// connected socket behave alike for both types and record boundaries are kept, so the
    /// datagram wrapper drives it safely (and takes ownership of the fd).
    Seq(UnixDatagram),
}

/// One attached visualization's endpoint.
#[derive(Debug)]
pub(super) struct Out {
    sock: Sock,
    /// Wakes the delivery thread: a send would have blocked, or the visualization is detached.
    wake: EventFd,
    stop: AtomicBool,
    pub counters: OutCounters,
}

impl Out {
    pub fn new(delivery: Delivery) -> io::Result<Out> {
        let sock = match delivery {
            Delivery::Udp { socket, port } => {
                socket.set_nonblocking(true)?;
                let dest = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
                Sock::Udp { socket, dest }
            }
            Delivery::Fd(fd) => {
                let socket = UnixDatagram::from(fd);
                socket.set_nonblocking(true)?;
                Sock::Seq(socket)
            }
        };
        let wake = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        Ok(Out { sock, wake, stop: AtomicBool::new(false), counters: OutCounters::default() })
    }

    /// One send(2); a full socket buffer is `WouldBlock`.
    fn try_send(&self, bytes: &[u8]) -> io::Result<()> {
        match &self.sock {
            Sock::Udp { socket, dest } => socket.send_to(bytes, *dest).map(drop),
            Sock::Seq(socket) => socket.send(bytes).map(drop),
        }
    }

    /// Sends queued messages until the outbox is empty or the socket would block. Returns true
    /// when it stopped because the socket is full; the caller then calls [`Out::stalled`]
    /// (ingress) or waits for writability itself (the delivery thread).
    pub fn drain(&self, outbox: &mut Outbox, received: Option<Instant>, shared: &Shared) -> bool {
        while let Some(bytes) = outbox.front() {
            match self.try_send(bytes) {
                Ok(()) => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    if let Some(t) = received {
                        shared.counters.latency.observe(t.elapsed());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
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

    /// Hands a stalled outbox to the delivery thread.
    pub fn stalled(&self) {
        let _ = self.wake.write(1);
    }

    /// Ends the delivery thread; queued messages are discarded with the outbox.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.wake.write(1);
    }

    fn is_seqpacket(&self) -> bool {
        matches!(self.sock, Sock::Seq(_))
    }

    /// Receives one feedback datagram into `buf` without waiting.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.sock {
            Sock::Udp { socket, .. } => socket.recv_from(buf).map(|(n, _)| n),
            Sock::Seq(socket) => socket.recv(buf),
        }
    }
}

impl AsFd for Out {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.sock {
            Sock::Udp { socket, .. } => socket.as_fd(),
            Sock::Seq(socket) => socket.as_fd(),
        }
    }
}

/// Starts the delivery thread of visualization `id`; it ends after [`Out::stop`], or when the
/// child closes its end of the fd transport.
pub(super) fn start(
    shared: Arc<Shared>,
    id: TargetId,
    out: Arc<Out>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("osc-out-{}", id.0))
        .spawn(move || run(&shared, id, &out))
}

/// Waits for feedback, for a stall to finish, or for the stop signal.
fn run(shared: &Shared, id: TargetId, out: &Out) {
    let mut buf = vec![0u8; 65536];
    let mut stalled = false;
    while !out.stop.load(Ordering::Acquire) {
        let mut events = PollFlags::POLLIN;
        if stalled {
            events |= PollFlags::POLLOUT;
        }
        let mut fds =
            [PollFd::new(out.as_fd(), events), PollFd::new(out.wake.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
        let socket = fds[0].revents().unwrap_or(PollFlags::empty());
        if fds[1].revents().is_some_and(|r| r.contains(PollFlags::POLLIN)) {
            // A stall (or the stop flag, checked above): wait for room in the socket next.
            let _ = out.wake.read();
            stalled = true;
        }
        if socket.contains(PollFlags::POLLOUT) {
            let mut state = shared.lock();
            stalled = state.router.outbox(id).is_some_and(|o| out.drain(o, None, shared));
        }
        if socket.intersects(PollFlags::POLLIN | PollFlags::POLLERR | PollFlags::POLLHUP) {
            match out.recv(&mut buf) {
                // A seqpacket peer that closed reads as 0 bytes forever; the child is gone and
                // the launcher will detach us.
                Ok(0) if out.is_seqpacket() => return,
                Ok(n) => feedback(shared, id, out, &buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return,
            }
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
