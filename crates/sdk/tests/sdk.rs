//! The SDK over a real SOCK_SEQPACKET pair, in process and through the example binary.

#![allow(clippy::unwrap_used)] // A failing unwrap is a failing test.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};
use vitrine_osc::encode::encode_message;
use vitrine_osc::wire::Arg;
use vitrine_sdk::{Error, Receiver, Value};

fn packet(address: &str, args: &[Arg<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message(&mut out, address, args);
    out
}

#[test]
fn receives_polls_and_replies() {
    let (ours, theirs) =
        socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).unwrap();
    let mut rx = Receiver::from_raw_fd(theirs.as_raw_fd()).unwrap();
    assert_eq!(rx.try_recv().unwrap(), None, "nothing waiting, no block");
    send(ours.as_raw_fd(), &packet("/speed", &[Arg::Float(2.5)]), MsgFlags::empty()).unwrap();
    send(ours.as_raw_fd(), &packet("/palette", &[Arg::Str(b"warm")]), MsgFlags::empty()).unwrap();
    let m = rx.try_recv().unwrap().unwrap();
    assert_eq!((m.address.as_str(), m.args.as_slice()), ("/speed", &[Value::Float(2.5)][..]));
    let m = rx.recv().unwrap().unwrap();
    assert_eq!(m.args, vec![Value::String("warm".into())]);
    rx.send("/level", &[Arg::Float(0.5)]).unwrap();
    let mut buf = [0u8; 64];
    let n = recv(ours.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
    assert_eq!(&buf[..n], packet("/level", &[Arg::Float(0.5)]).as_slice());
    send(ours.as_raw_fd(), b"/bad\0\0\0\0,q\0\0", MsgFlags::empty()).unwrap();
    assert!(matches!(rx.recv(), Err(Error::Malformed(_))));
    drop(ours);
    assert_eq!(rx.recv().unwrap(), None, "closed channel ends the stream");
}

#[test]
fn refuses_an_fd_that_is_not_a_socket() {
    let file = std::fs::File::open("/proc/self/status").unwrap();
    assert!(matches!(Receiver::from_raw_fd(file.as_raw_fd()), Err(Error::NotASocket { .. })));
    assert!(matches!(Receiver::from_raw_fd(9999), Err(Error::NotASocket { .. })));
}

/// `cargo test` builds the examples next to the test binaries' `deps/` directory.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|deps| deps.parent()).unwrap().join("examples").join(name)
}

#[test]
fn example_visualization_prints_what_it_receives() {
    let exe = example("sdk-viz");
    assert!(exe.exists(), "{} is built by cargo test", exe.display());
    // The child's end is inherited (no CLOEXEC) and named through the environment, exactly as
    // the sandbox names fd 3.
    let (ours, theirs) =
        socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::empty()).unwrap();
    nix::fcntl::fcntl(&ours, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .unwrap();
    let mut child = Command::new(exe)
        .env("VITRINE_OSC_FD", theirs.as_raw_fd().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    drop(theirs);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "sdk-viz: waiting for OSC");
    send(ours.as_raw_fd(), &packet("/speed", &[Arg::Float(1.5)]), MsgFlags::empty()).unwrap();
    send(ours.as_raw_fd(), &packet("/ping", &[]), MsgFlags::empty()).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "/speed f:1.5");
    assert_eq!(lines.next().unwrap().unwrap(), "/ping");
    let mut buf = [0u8; 64];
    let n = recv(ours.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
    assert_eq!(&buf[..n], packet("/pong", &[]).as_slice());
    drop(ours);
    assert_eq!(lines.next().unwrap().unwrap(), "sdk-viz: channel closed");
    assert!(child.wait().unwrap().success());
}
