//! UDP ingress: the `[osc] listen` sockets, one plain thread each.
//!
//! Each listener blocks in recvmsg(2) on its own thread, reads datagrams into one buffer large
//! enough for any UDP datagram, detects truncation with MSG_TRUNC anyway (it is counted, never
//! decoded), drops senders outside `allow_from`, and routes the rest synchronously; delivery is
//! non-blocking, so a slow child never slows ingress down.
//!
//! Why a thread and not a tokio task: a datagram then costs one wake-up and one recvmsg, where
//! the reactor path costs an epoll wake-up, a task poll, the recvmsg and a second recvmsg that
//! ends in EAGAIN before the task parks again. Controller → child latency is the number this
//! path is measured by (`bench/osc_latency.rs`), and nothing else here needs the runtime.

use std::io;
use std::io::IoSliceMut;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    MsgFlags, Shutdown, SockaddrStorage, recvmsg, setsockopt, shutdown, sockopt,
};
use vitrine_osc::Reason;

use super::{Shared, allow};

/// The receive buffer we ask the kernel for: bursts from a fader bank must not be lost
/// while the router holds its lock for a moment.
const RCVBUF: usize = 4 << 20;
/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65536;
/// How often a blocked listener looks at the stop flag even if nothing woke it.
const STOP_POLL: Duration = Duration::from_millis(250);

/// Binds a blocking listener with a large receive buffer.
pub(super) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    // Root may exceed net.core.rmem_max; anyone else gets what the sysctl allows.
    if setsockopt(&socket, sockopt::RcvBufForce, &RCVBUF).is_err() {
        setsockopt(&socket, sockopt::RcvBuf, &RCVBUF)?;
    }
    socket.set_read_timeout(Some(STOP_POLL))?;
    Ok(socket)
}

/// Starts the listener thread of `socket` (`shared.listeners[index]`).
pub(super) fn start(shared: Arc<Shared>, index: usize) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(format!("osc-ingress-{index}")).spawn(move || {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let socket = &shared.listeners[index];
        while !shared.stopping.load(Ordering::Acquire) {
            let Ok((len, truncated, from)) = recv(socket, &mut buf) else { continue };
            let at = Instant::now();
            shared.counters.received_udp.fetch_add(1, Ordering::Relaxed);
            if truncated {
                shared.lock().router.count_rejected(Reason::TruncatedDatagram);
            } else if !allow::allowed(&shared.allow_from, from.ip()) {
                shared.lock().router.count_rejected(Reason::SourceNotAllowed);
            } else {
                let routed = shared.route(&buf[..len], from, at);
                if routed.unknown > 0 {
                    if let Some(relay) = shared.relay.get() {
                        relay(&buf[..len], from);
                    }
                }
            }
        }
    })
}

/// Wakes a listener blocked in recvmsg: on Linux, shutdown(SHUT_RD) of an unconnected UDP
/// socket reports ENOTCONN but still marks it shut and wakes its readers.
pub(super) fn wake(socket: &UdpSocket) {
    let _ = shutdown(socket.as_raw_fd(), Shutdown::Read);
}

/// One datagram: (length, truncated, sender). Errors include the periodic timeout and the
/// zero-length read of a socket that was shut for stopping.
fn recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, bool, SocketAddr)> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, None, MsgFlags::empty())
        .map_err(io::Error::from)?;
    let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
    match msg.address.and_then(to_socket_addr) {
        Some(from) => Ok((msg.bytes, truncated, from)),
        None => Err(io::Error::from(Errno::EAGAIN)),
    }
}

fn to_socket_addr(addr: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6().map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}
