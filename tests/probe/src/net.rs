//! Network checks: only loopback, nothing of the host reachable, no TCP at all.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;

use crate::{Args, Report};

pub fn checks(report: &mut Report, args: &Args) {
    interfaces(report);
    if let Some(port) = args.get("tcp").and_then(|p| p.parse::<u16>().ok()) {
        let r = TcpStream::connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        report.check("host TCP unreachable", r.is_err(), describe(&r));
    }
    let bind = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
    let denied = matches!(&bind, Err(e) if e.kind() == ErrorKind::PermissionDenied);
    report.check("TCP bind denied (Landlock)", denied, describe(&bind));
    if let Some(port) = args.get("udp").and_then(|p| p.parse::<u16>().ok()) {
        // Loopback delivery is synchronous: the harness checks after the probe exited that its
        // host socket received nothing.
        let sent = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.send_to(b"probe", SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)));
        report.check(
            "UDP to host port sent into the sandbox's own loopback",
            true,
            describe(&sent),
        );
    }
    if let Some(path) = args.get("unix") {
        let r = UnixStream::connect(path);
        report.check("host pathname Unix socket unreachable", r.is_err(), describe(&r));
    }
    if let Some(name) = args.get("abstract") {
        let r = connect_abstract(name);
        report.check("host abstract Unix socket unreachable", r.is_err(), describe(&r));
    }
}

fn interfaces(report: &mut Report) {
    let text = std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default();
    let names: Vec<&str> =
        text.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    report.check("only loopback", names == ["lo"], format!("{names:?}"));
}

fn connect_abstract(name: &str) -> std::io::Result<UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    UnixStream::connect_addr(&addr)
}

fn describe<T>(r: &std::io::Result<T>) -> String {
    match r {
        Ok(_) => "succeeded".to_owned(),
        Err(e) => format!("refused: {e}"),
    }
}
