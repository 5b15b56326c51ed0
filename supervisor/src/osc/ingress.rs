//! UDP ingress: the `[osc] listen` sockets.
//!
//! Each listener reads datagrams into one buffer large enough for any UDP datagram, detects
//! truncation with MSG_TRUNC anyway (it is counted, never decoded), drops senders outside
//! `allow_from`, and routes the rest synchronously; delivery is non-blocking, so a slow child
//! never slows ingress down.

use std::io;
use std::io::IoSliceMut;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use nix::sys::socket::{MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use vitrine_osc::Reason;

use super::{Shared, allow};

/// The receive buffer we ask the kernel for: bursts from a fader bank must not be lost
/// while the router holds its lock for a moment.
const RCVBUF: usize = 4 << 20;
/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65536;

/// Binds a listener with a large receive buffer.
pub(super) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    // Root may exceed net.core.rmem_max; anyone else gets what the sysctl allows.
    if setsockopt(&socket, sockopt::RcvBufForce, &RCVBUF).is_err() {
        setsockopt(&socket, sockopt::RcvBuf, &RCVBUF)?;
    }
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Reads and routes datagrams until `stop` changes.
pub(super) async fn run(
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            _ = stop.changed() => return,
            r = recv(&socket, &mut buf) => r,
        };
        let Ok((len, truncated, from)) = received else { continue };
        let at = Instant::now();
        shared.counters.received_udp.fetch_add(1, Ordering::Relaxed);
        if truncated {
            shared.lock().router.count_rejected(Reason::TruncatedDatagram);
        } else if !allow::allowed(&shared.allow_from, from.ip()) {
            shared.lock().router.count_rejected(Reason::SourceNotAllowed);
        } else {
            shared.route(&buf[..len], from, at);
        }
    }
}

/// One datagram: (length, truncated, sender).
async fn recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, bool, SocketAddr)> {
    loop {
        socket.readable().await?;
        let result = socket.try_io(Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(buf)];
            let msg = recvmsg::<SockaddrStorage>(
                socket.as_raw_fd(),
                &mut iov,
                None,
                MsgFlags::MSG_DONTWAIT,
            )
            .map_err(io::Error::from)?;
            let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
            Ok((msg.bytes, truncated, msg.address.and_then(to_socket_addr)))
        });
        match result {
            Ok((len, truncated, Some(from))) => return Ok((len, truncated, from)),
            Ok((_, _, None)) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

fn to_socket_addr(addr: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6().map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}
