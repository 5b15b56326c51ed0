//! The control socket between the supervisor and the shim (fd 3, `SOCK_SEQPACKET`).
//!
//! Sequenced packets keep message boundaries, so every report is one packet and a passed file
//! descriptor belongs to exactly one report. The plan can be larger than one packet may be, so
//! it travels as a length packet followed by chunks; the reader checks the length against
//! [`MAX_PLAN_BYTES`] before it allocates anything.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};

use crate::plan::{MAX_PLAN_BYTES, Plan};

/// The largest report packet either side sends.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;
const CHUNK: usize = 32 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("control socket I/O failed")]
    Io(#[source] nix::Error),
    #[error("the plan announces {0} bytes, more than the {MAX_PLAN_BYTES}-byte limit")]
    PlanTooLarge(u64),
    #[error("the control socket closed in the middle of a message")]
    Truncated,
    #[error("malformed message on the control socket")]
    Json(#[source] serde_json::Error),
}

/// What the shim side tells the supervisor, in the order it can happen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "kebab-case")]
pub enum Report {
    /// The plan was accepted; `audit_session` tags the kernel's audit records of this sandbox
    /// (seccomp kills are named from them).
    Started { audit_session: Option<u32> },
    /// The UDP socket inside the sandbox's network namespace rides along as `SCM_RIGHTS`.
    UdpSocket { local_port: u16 },
    /// What Landlock enforces on the visualization, sent right before seccomp and exec.
    Landlock(LandlockReport),
    /// A primed sandbox (the plan's `hold`) is built up to the visualization's fork and waits
    /// for a go.
    Ready,
    /// Policy learning only: the seccomp listener rides along as `SCM_RIGHTS`, sent right
    /// after the learning filter was installed and before exec.
    Listener,
    /// The visualization's exec succeeded (seen by the sandbox's init through a close-on-exec
    /// pipe).
    Running,
    /// A step failed; nothing was executed.
    Failed { step: String, error: String },
    /// The visualization (not the init) ended; exactly one of the two is set.
    Exited { code: Option<i32>, signal: Option<i32> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LandlockReport {
    /// The kernel's Landlock ABI (0: none).
    pub kernel_abi: u32,
    /// The ABI whose rights were requested (the kernel's, capped at what the crate knows).
    pub abi: u32,
    /// `fully-enforced`, `partially-enforced` or `not-enforced`.
    pub status: String,
    pub no_new_privs: bool,
    /// Rule paths that were optional and absent on this host.
    pub skipped: Vec<String>,
}

/// Sends the plan: one packet with its length, carrying `fds` as `SCM_RIGHTS` (the binary to
/// execute and, for the fd transport, the IPC end), then chunks.
pub fn send_plan(
    sock: BorrowedFd<'_>,
    plan: &Plan,
    fds: &[BorrowedFd<'_>],
) -> Result<(), ProtoError> {
    let bytes = serde_json::to_vec(plan).map_err(ProtoError::Json)?;
    let len = (bytes.len() as u64).to_le_bytes();
    let iov = [IoSlice::new(&len)];
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    let n = socket::sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(ProtoError::Io)?;
    if n != len.len() {
        return Err(ProtoError::Truncated);
    }
    for chunk in bytes.chunks(CHUNK) {
        send_all(sock, chunk)?;
    }
    Ok(())
}

/// Receives the plan and the descriptors that came with it (close-on-exec), refusing an
/// announced length above [`MAX_PLAN_BYTES`].
pub fn recv_plan(sock: BorrowedFd<'_>) -> Result<(Plan, Vec<OwnedFd>), ProtoError> {
    let mut len = [0u8; 8];
    let mut cmsg_space = nix::cmsg_space!([RawFd; 4]);
    let (n, fds) = loop {
        let mut iov = [std::io::IoSliceMut::new(&mut len)];
        match socket::recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(ProtoError::Io(e)),
            Ok(msg) => {
                let mut fds = Vec::new();
                for cmsg in msg.cmsgs().map_err(ProtoError::Io)? {
                    if let ControlMessageOwned::ScmRights(raw) = cmsg {
                        // Just installed in this process by the kernel; nobody else owns them.
                        fds.extend(raw.into_iter().map(owned_from_scm));
                    }
                }
                if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
                    return Err(ProtoError::Truncated);
                }
                break (msg.bytes, fds);
            }
        }
    };
    if n != len.len() {
        return Err(ProtoError::Truncated);
    }
    let len = u64::from_le_bytes(len);
    if len > MAX_PLAN_BYTES as u64 {
        return Err(ProtoError::PlanTooLarge(len));
    }
    let mut bytes = vec![0u8; len as usize];
    let mut filled = 0;
    while filled < bytes.len() {
        let end = (filled + CHUNK).min(bytes.len());
        let n = recv_packet(sock, &mut bytes[filled..end])?;
        if n == 0 {
            return Err(ProtoError::Truncated);
        }
        filled += n;
    }
    let plan = serde_json::from_slice(&bytes).map_err(ProtoError::Json)?;
    Ok((plan, fds))
}

const GO: &[u8] = b"go";

/// Lets a primed sandbox fork its visualization.
pub fn send_go(sock: BorrowedFd<'_>) -> Result<(), ProtoError> {
    send_all(sock, GO)
}

/// The primed sandbox's init waits here; anything but a go (the supervisor dropped the
/// sandbox and closed the socket) is an error, and the sandbox ends without exec.
pub fn wait_go(sock: BorrowedFd<'_>) -> Result<(), ProtoError> {
    let mut buf = [0u8; 8];
    let n = recv_packet(sock, &mut buf)?;
    if &buf[..n] != GO {
        return Err(ProtoError::Truncated);
    }
    Ok(())
}

/// Sends one report, optionally with a file descriptor attached.
pub fn send_report(
    sock: BorrowedFd<'_>,
    report: &Report,
    fd: Option<BorrowedFd<'_>>,
) -> Result<(), ProtoError> {
    let bytes = serde_json::to_vec(report).map_err(ProtoError::Json)?;
    let iov = [IoSlice::new(&bytes)];
    let raw: [RawFd; 1] = [fd.map_or(-1, |f| f.as_raw_fd())];
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if fd.is_some() { &cmsg } else { &[] };
    socket::sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(ProtoError::Io)?;
    Ok(())
}

/// Receives one report and the descriptor that came with it; `None` at end of stream.
pub fn recv_report(sock: BorrowedFd<'_>) -> Result<Option<(Report, Option<OwnedFd>)>, ProtoError> {
    let mut buf = vec![0u8; MAX_REPORT_BYTES];
    let mut cmsg_space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = socket::recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg_space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(ProtoError::Io)?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs().map_err(ProtoError::Io)? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            // The kernel just installed these descriptors in this process; nobody else owns them.
            fds.extend(raw.into_iter().map(owned_from_scm));
        }
    }
    let n = msg.bytes;
    if n == 0 {
        return Ok(None);
    }
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(ProtoError::Truncated);
    }
    let report = serde_json::from_slice(&buf[..n]).map_err(ProtoError::Json)?;
    Ok(Some((report, fds.into_iter().next())))
}

fn owned_from_scm(fd: RawFd) -> OwnedFd {
    crate::sys::fd::adopt(fd)
}

fn send_all(sock: BorrowedFd<'_>, bytes: &[u8]) -> Result<(), ProtoError> {
    let n =
        socket::send(sock.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL).map_err(ProtoError::Io)?;
    if n != bytes.len() {
        return Err(ProtoError::Truncated);
    }
    Ok(())
}

fn recv_packet(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, ProtoError> {
    loop {
        match socket::recv(sock.as_raw_fd(), buf, MsgFlags::empty()) {
            Err(nix::Error::EINTR) => continue,
            other => return other.map_err(ProtoError::Io),
        }
    }
}

/// Wraps a raw descriptor this process owns (used by the shim for its inherited fds).
pub fn inherited(fd: RawFd) -> OwnedFd {
    crate::sys::fd::adopt(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::*;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    use std::os::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
            .expect("socketpair")
    }

    fn plan(argv_len: usize) -> Plan {
        Plan {
            name: "t".into(),
            supervisor_pid: 1,
            uid: 1000,
            gid: 1000,
            argv: vec!["x".repeat(argv_len)],
            env: vec![("A".into(), "b".into())],
            working_dir: None,
            mounts: vec![MountOp::Tmpfs { target: "/tmp".into(), size: 1, mode: 0o1777 }],
            landlock: LandlockPlan { required: true, min_abi: 1, rules: vec![] },
            seccomp: SeccompPlan { program: vec![1, 2], rule_count: 2, action: "kill".into() },
            rlimits: Rlimits { nofile: 64 },
            ipc: IpcPlan::Fd,
            trace: false,
            hold: false,
        }
    }

    #[test]
    fn plan_round_trips_across_chunks() {
        let (a, b) = pair();
        let p = plan(100_000);
        let (x, _y) = pair();
        let sender = std::thread::spawn(move || send_plan(a.as_fd(), &p, &[x.as_fd()]).map(|()| p));
        let (got, fds) = recv_plan(b.as_fd()).expect("recv");
        let sent = sender.join().expect("join").expect("send");
        assert_eq!(got, sent);
        assert_eq!(fds.len(), 1);
    }

    #[test]
    fn only_a_go_releases_a_primed_sandbox() {
        let (a, b) = pair();
        send_go(a.as_fd()).expect("go");
        wait_go(b.as_fd()).expect("released");
        send_all(a.as_fd(), b"no").expect("send");
        assert!(wait_go(b.as_fd()).is_err());
        drop(a);
        assert!(wait_go(b.as_fd()).is_err(), "a closed socket is no go");
    }

    #[test]
    fn oversized_plan_is_refused_before_allocation() {
        let (a, b) = pair();
        send_all(a.as_fd(), &(u64::MAX).to_le_bytes()).expect("send");
        assert!(matches!(recv_plan(b.as_fd()), Err(ProtoError::PlanTooLarge(u64::MAX))));
    }

    #[test]
    fn report_carries_a_descriptor() {
        let (a, b) = pair();
        let (x, _y) = pair();
        let report = Report::UdpSocket { local_port: 9 };
        send_report(a.as_fd(), &report, Some(x.as_fd())).expect("send");
        let (got, fd) = recv_report(b.as_fd()).expect("recv").expect("some");
        assert_eq!(got, report);
        assert!(fd.is_some());
        drop(a);
        assert!(recv_report(b.as_fd()).expect("eof").is_none());
    }
}
