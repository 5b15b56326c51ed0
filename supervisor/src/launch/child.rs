//! A running sandbox: its reports, its end and how that end is classified.

use std::net::UdpSocket;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use vitrine_sandbox::proto::{LandlockReport, Report, recv_report};
use vitrine_sandbox::spawn::Shim;

use super::summary::Enforced;
use super::{LaunchError, Prepared, kmsg};

/// How long the shim may take to set up a sandbox before the launch is abandoned; generous,
/// because it only guards against a hung shim.
const SETUP_LIMIT: Duration = Duration::from_secs(60);
const SIGSYS: i32 = 31;
const SIGKILL: i32 = 9;

/// How a visualization ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Clean,
    Code(i32),
    Signal(i32),
    /// Killed by seccomp; `syscall` is e.g. `ptrace (101)`, or a note when the kernel's audit
    /// record could not be found.
    Seccomp {
        syscall: String,
        nr: Option<u32>,
    },
    /// The cgroup ran out of memory and the kernel killed the visualization.
    Oom,
}

impl Exit {
    /// The exit code `vitrine run` uses: the child's, or 128 + signal.
    pub fn code(&self) -> i32 {
        match self {
            Exit::Clean => 0,
            Exit::Code(c) => *c,
            Exit::Signal(s) => 128 + s,
            Exit::Seccomp { .. } => 128 + SIGSYS,
            Exit::Oom => 128 + SIGKILL,
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Clean => f.write_str("exited 0"),
            Exit::Code(c) => write!(f, "exited {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
            Exit::Seccomp { syscall, .. } => write!(f, "killed by seccomp: {syscall}"),
            Exit::Oom => {
                f.write_str("killed by the OOM killer: the cgroup's memory limit was reached")
            }
        }
    }
}

/// The supervisor's end of the child's OSC channel (read by the OSC forwarding).
#[derive(Debug)]
#[allow(dead_code)]
pub enum IpcEndpoint {
    /// A UDP socket inside the sandbox's network namespace; send to `127.0.0.1:port`.
    Udp { socket: UdpSocket, port: u16 },
    /// The SOCK_SEQPACKET peer of the child's fd 3.
    Fd(OwnedFd),
}

/// What `spawn` collects before the [`Child`] exists.
pub(super) struct Parts {
    pub(super) shim: Shim,
    ipc_fd: Option<OwnedFd>,
    udp: Option<(UdpSocket, u16)>,
    landlock: Option<LandlockReport>,
    audit_session: Option<u32>,
    /// Opened at the start only for a sandbox without an audit session id (see `kmsg`).
    kmsg: Option<kmsg::Cursor>,
    /// Policy learning: where the seccomp listener goes.
    pub(super) listener: Option<std::sync::mpsc::Sender<OwnedFd>>,
}

impl Parts {
    pub(super) fn new(shim: Shim, ipc_fd: Option<OwnedFd>) -> Parts {
        Parts {
            shim,
            ipc_fd,
            udp: None,
            landlock: None,
            audit_session: None,
            kmsg: None,
            listener: None,
        }
    }

    pub(super) fn kill_and_reap(&mut self) {
        let _ = vitrine_sandbox::pidfd_send_signal(self.shim.pidfd.as_fd(), SIGKILL);
        let _ = waitid(Id::PIDFd(self.shim.pidfd.as_fd()), WaitPidFlag::WEXITED);
    }

    /// Reads the shim's reports until the visualization runs; a failed step or an early end
    /// of the shim is an error (and the shim is reaped).
    pub(super) fn read_until_running(&mut self, started: Instant) -> Result<(), LaunchError> {
        self.read_until(started, false)
    }

    /// Reads the reports of a primed sandbox until it is ready for its go.
    pub(super) fn read_until_ready(&mut self, started: Instant) -> Result<(), LaunchError> {
        self.read_until(started, true)
    }

    fn read_until(&mut self, started: Instant, ready: bool) -> Result<(), LaunchError> {
        let result = self.read_reports(started, ready);
        if result.is_err() {
            self.kill_and_reap();
        }
        result
    }

    fn read_reports(&mut self, started: Instant, until_ready: bool) -> Result<(), LaunchError> {
        loop {
            let left = SETUP_LIMIT.saturating_sub(started.elapsed());
            if !readable(self.shim.control.as_fd(), left)? {
                return Err(LaunchError::ShimDied("no report within the setup limit".into()));
            }
            let Some((report, fd)) = recv_report(self.shim.control.as_fd())? else {
                return Err(LaunchError::ShimDied("control socket closed".into()));
            };
            match report {
                Report::Started { audit_session } => {
                    self.audit_session = audit_session;
                    // Before anything of the visualization runs: the sandbox cannot have been
                    // killed yet, so every later record can be its own.
                    if audit_session.is_none() {
                        self.kmsg = Some(kmsg::Cursor::open_at_end());
                    }
                }
                Report::UdpSocket { local_port } => {
                    let fd = fd.ok_or_else(|| {
                        LaunchError::ShimDied("UDP report without a socket".into())
                    })?;
                    self.udp = Some((UdpSocket::from(fd), local_port));
                }
                Report::Landlock(report) => self.landlock = Some(report),
                Report::Listener => {
                    let (Some(fd), Some(to)) = (fd, &self.listener) else {
                        return Err(LaunchError::ShimDied("unexpected seccomp listener".into()));
                    };
                    to.send(fd).map_err(|_| LaunchError::ShimDied("learning stopped".into()))?;
                }
                Report::Ready if until_ready => return Ok(()),
                Report::Running if !until_ready => return Ok(()),
                Report::Ready | Report::Running => {
                    return Err(LaunchError::ShimDied("a report out of order".into()));
                }
                Report::Failed { step, error } => return Err(LaunchError::Refused { step, error }),
                Report::Exited { .. } => {
                    return Err(LaunchError::ShimDied("exited before exec".into()));
                }
            }
        }
    }
}

fn readable(fd: BorrowedFd<'_>, limit: Duration) -> Result<bool, LaunchError> {
    let ms = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)) {
            Ok(n) => return Ok(n > 0),
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(LaunchError::Io(e.into())),
        }
    }
}

/// A running visualization in its sandbox.
#[derive(Debug)]
pub struct Child {
    shim: Shim,
    cgroup: Option<vitrine_cgroup::Cgroup>,
    ipc: Option<IpcEndpoint>,
    enforced: Enforced,
    audit_session: Option<u32>,
    kmsg: Option<kmsg::Cursor>,
    spawn_time: Duration,
    exit: Option<Exit>,
}

impl Child {
    pub(super) fn new(
        prepared: &Prepared,
        parts: Parts,
        cgroup: vitrine_cgroup::Cgroup,
        spawn_time: Duration,
    ) -> Child {
        let enforced = Enforced::new(prepared, parts.landlock.clone(), &cgroup);
        let ipc = match (parts.udp, parts.ipc_fd) {
            (Some((socket, _)), _) => {
                let port = match prepared.ipc() {
                    vitrine_sandbox::plan::IpcPlan::Udp { port, .. } => port,
                    vitrine_sandbox::plan::IpcPlan::Fd => 0,
                };
                Some(IpcEndpoint::Udp { socket, port })
            }
            (None, Some(fd)) => Some(IpcEndpoint::Fd(fd)),
            (None, None) => None,
        };
        Child {
            shim: parts.shim,
            cgroup: Some(cgroup),
            ipc,
            enforced,
            audit_session: parts.audit_session,
            kmsg: parts.kmsg,
            spawn_time,
            exit: None,
        }
    }

    /// The pid of the shim, the sandbox's outermost process.
    pub fn pid(&self) -> u32 {
        self.shim.pid as u32
    }

    /// Readable once the sandbox has ended (for async readiness).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.shim.pidfd.as_fd()
    }

    /// What the sandbox enforces, as the shim reported it.
    pub fn enforced(&self) -> &Enforced {
        &self.enforced
    }

    /// From fork to the visualization's exec.
    pub fn spawn_time(&self) -> Duration {
        self.spawn_time
    }

    /// The OSC channel's supervisor end, once.
    pub fn take_ipc(&mut self) -> Option<IpcEndpoint> {
        self.ipc.take()
    }

    /// The read ends of stdout and stderr (with [`super::Output::Pipe`]), once.
    pub fn take_output(&mut self) -> (Option<OwnedFd>, Option<OwnedFd>) {
        (self.shim.stdout.take(), self.shim.stderr.take())
    }

    pub fn cgroup(&self) -> Option<&vitrine_cgroup::Cgroup> {
        self.cgroup.as_ref()
    }

    /// Asks the visualization to stop: SIGTERM to the shim, which the init forwards.
    pub fn terminate(&self) {
        let _ = vitrine_sandbox::pidfd_send_signal(self.shim.pidfd.as_fd(), libc_sigterm());
    }

    /// Kills every process of the sandbox (the whole cgroup, the shim included).
    pub fn kill_all(&self) {
        if let Some(cg) = &self.cgroup {
            let _ = cg.kill_all();
        }
        let _ = vitrine_sandbox::pidfd_send_signal(self.shim.pidfd.as_fd(), SIGKILL);
    }

    /// Waits until the sandbox ended and classifies the end.
    pub fn wait(&mut self) -> Exit {
        loop {
            if let Some(exit) = self.poll_exit(WaitPidFlag::WEXITED) {
                return exit;
            }
        }
    }

    /// Like [`Child::wait`] but returns `None` at once while the sandbox runs.
    pub fn try_wait(&mut self) -> Option<Exit> {
        self.poll_exit(WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG)
    }

    fn poll_exit(&mut self, flags: WaitPidFlag) -> Option<Exit> {
        if let Some(exit) = &self.exit {
            return Some(exit.clone());
        }
        let status = match waitid(Id::PIDFd(self.shim.pidfd.as_fd()), flags) {
            Ok(WaitStatus::StillAlive) | Err(nix::Error::EINTR) => return None,
            Ok(status) => Some(status),
            // Already reaped elsewhere: classify from the reports alone.
            Err(_) => None,
        };
        let exit = self.classify(status);
        self.cleanup();
        self.exit = Some(exit.clone());
        Some(exit)
    }

    fn classify(&mut self, shim_status: Option<WaitStatus>) -> Exit {
        let (code, signal) = self.exit_report().unwrap_or(match shim_status {
            Some(WaitStatus::Exited(_, c)) => (Some(c), None),
            Some(WaitStatus::Signaled(_, s, _)) => (None, Some(s as i32)),
            _ => (None, Some(SIGKILL)),
        });
        let oom = self
            .cgroup
            .as_ref()
            .and_then(|c| c.memory_events().ok())
            .is_some_and(|e| e.oom_kill > 0);
        match (code, signal) {
            (_, Some(SIGSYS)) => {
                let session = self.audit_session;
                let nr = match (self.kmsg.as_mut(), session) {
                    (Some(cursor), _) => cursor.find_seccomp_kill(session),
                    (None, Some(_)) => kmsg::Cursor::open_at_start().find_seccomp_kill(session),
                    (None, None) => None,
                };
                let syscall = nr.map_or_else(
                    || "syscall unknown (no kernel audit record found)".to_owned(),
                    |nr| format!("{} ({nr})", kmsg::syscall_name(nr)),
                );
                Exit::Seccomp { syscall, nr }
            }
            (_, Some(SIGKILL)) if oom => Exit::Oom,
            (_, Some(s)) => Exit::Signal(s),
            (Some(0), None) => Exit::Clean,
            (Some(c), None) => Exit::Code(c),
            (None, None) => Exit::Code(1),
        }
    }

    /// The init's `Exited` report, the precise word on the visualization's end.
    fn exit_report(&self) -> Option<(Option<i32>, Option<i32>)> {
        while readable(self.shim.control.as_fd(), Duration::ZERO).unwrap_or(false) {
            match recv_report(self.shim.control.as_fd()) {
                Ok(Some((Report::Exited { code, signal }, _))) => return Some((code, signal)),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
        None
    }

    fn cleanup(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.kill_all();
            let _ = cg.remove();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.exit.is_none() {
            self.kill_all();
            let _ = self.poll_exit(WaitPidFlag::WEXITED);
        }
    }
}

fn libc_sigterm() -> i32 {
    nix::sys::signal::Signal::SIGTERM as i32
}
