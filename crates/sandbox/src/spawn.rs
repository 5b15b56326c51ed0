//! Starting `vitrine-shim` with the fd contract of DESIGN §3 (the supervisor's only spawn).
//!
//! The shim gets fd 3 = its end of the control socket, stdin = /dev/null, stdout/stderr = pipes
//! or the caller's own, and an empty environment. The descriptor to execute and the IPC end
//! arrive later with the plan ([`crate::proto::send_plan`]), and the shim puts them at fds 4
//! and 5, so a shim can start while the binary is still being verified. Its parent-death
//! signal is tied to the calling thread, so callers spawn from one long-lived thread.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};

use crate::plan::fds;
use crate::sys;

/// Where the shim's (and the visualization's) stdout and stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// New pipes; the read ends are returned in [`Shim`].
    Pipe,
    /// The caller's own fds 1 and 2 (`vitrine run` in the foreground).
    Inherit,
}

/// A running shim, right after its exec.
#[derive(Debug)]
pub struct Shim {
    pub pid: i32,
    pub pidfd: OwnedFd,
    /// The supervisor's end of the control socket.
    pub control: OwnedFd,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot prepare the shim's descriptors")]
    Setup(#[source] std::io::Error),
    #[error("cannot execute the shim {path}")]
    Exec { path: String, source: std::io::Error },
    #[error("shim path contains a NUL byte")]
    Nul,
}

fn setup<T, E: Into<std::io::Error>>(r: Result<T, E>) -> Result<T, SpawnError> {
    r.map_err(|e| SpawnError::Setup(e.into()))
}

/// Starts the shim at `shim_path` (`clone(CLONE_VM | CLONE_VFORK)`, see `sys::spawn`): the new
/// process belongs to the calling thread's cgroups, and this returns once its exec succeeded.
pub fn spawn_shim(shim_path: &Path, output: Output) -> Result<Shim, SpawnError> {
    let (control, child_control) =
        setup(socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC))?;
    let null = setup(std::fs::File::open("/dev/null"))?;
    let (out, err) = match output {
        Output::Pipe => (Some(setup(pipe())?), Some(setup(pipe())?)),
        Output::Inherit => (None, None),
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let moves: Vec<(BorrowedFd<'_>, i32)> = vec![
        (null.as_fd(), 0),
        (out.as_ref().map_or(stdout.as_fd(), |(_, w)| w.as_fd()), 1),
        (err.as_ref().map_or(stderr.as_fd(), |(_, w)| w.as_fd()), 2),
        (child_control.as_fd(), fds::CONTROL),
    ];
    let path = CString::new(shim_path.as_os_str().as_bytes()).map_err(|_| SpawnError::Nul)?;
    let argv = vec![CString::new("vitrine-shim").map_err(|_| SpawnError::Nul)?];
    let exec = setup(sys::spawn::Exec::new(path, argv, Vec::new(), moves))?;
    let (pid, pidfd) = sys::spawn::spawn(&exec)
        .map_err(|source| SpawnError::Exec { path: shim_path.display().to_string(), source })?;
    Ok(Shim { pid, pidfd, control, stdout: out.map(|(r, _)| r), stderr: err.map(|(r, _)| r) })
}

fn pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
}
