//! The sandbox's network namespace: loopback up, and the supervisor's UDP socket made inside.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

use crate::sys;

/// Brings `lo` up in the calling process's (new) network namespace.
pub fn loopback_up() -> std::io::Result<()> {
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    sys::netif::set_up(&sock, "lo")
}

/// Creates the supervisor's UDP socket inside the namespace, bound to `127.0.0.1:reply_port`
/// (or an ephemeral port), so datagrams it sends to `127.0.0.1:<port>` reach the child there.
pub fn supervisor_udp_socket(reply_port: Option<u16>) -> std::io::Result<(UdpSocket, u16)> {
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, reply_port.unwrap_or(0)))?;
    let port = sock.local_addr()?.port();
    Ok((sock, port))
}
