//! The last steps of the visualization's process: descriptors, limits and the exec itself.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::resource::{Resource, setrlimit};

use crate::plan::{Plan, fds};
use crate::sys;

/// The descriptors the visualization's process still needs before exec, moved out of the way.
#[derive(Debug)]
pub struct KeptFds {
    /// The control socket, close-on-exec.
    pub control: OwnedFd,
    /// The exec-status pipe to the sandbox's init, close-on-exec.
    pub status: OwnedFd,
}

/// Puts the descriptors that came with the plan at the contract's numbers: the binary at fd 4
/// and, with `ipc`, the IPC end at fd 5 (neither close-on-exec). Anything but exactly those
/// is refused.
pub fn install_plan_fds(received: Vec<OwnedFd>, ipc: bool) -> std::io::Result<()> {
    let expected = if ipc { 2 } else { 1 };
    if received.len() != expected {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("the plan came with {} descriptors, expected {expected}", received.len()),
        ));
    }
    // First out of the way of 4 and 5 (the kernel installed them at the lowest free numbers),
    // then each to its place.
    let high = received
        .iter()
        .map(|fd| fcntl(fd.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(16)).map(sys::fd::adopt))
        .collect::<Result<Vec<_>, _>>()?;
    drop(received);
    for (fd, target) in high.iter().zip([fds::EXEC, fds::IPC]) {
        sys::fd::dup_to(fd.as_raw_fd(), target)?;
    }
    Ok(())
}

/// Moves the control socket and the status pipe above the contract's numbers, puts the IPC end
/// (fd transport) at fd 3, marks the exec fd close-on-exec and closes every other descriptor.
///
/// Afterwards exactly 0, 1, 2, 4 and, with `ipc`, 3 are left for the visualization; the kept
/// descriptors vanish at exec.
///
/// The originals of `control` and `status` are closed here although their `OwnedFd`s live on:
/// the caller must only exec or `_exit` afterwards, never drop them.
pub fn arrange_fds(control: &OwnedFd, status: &OwnedFd, ipc: bool) -> std::io::Result<KeptFds> {
    let high = |fd: &OwnedFd| fcntl(fd.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(16)).map(sys::fd::adopt);
    let kept = KeptFds { control: high(control)?, status: high(status)? };
    if ipc {
        sys::fd::dup_to(fds::IPC, fds::CHILD_IPC)?;
    }
    // fd 4 is the exec fd by contract; it must not leak into the visualization.
    let exec_fd = sys::fd::borrow_inherited(fds::EXEC)?;
    fcntl(exec_fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    let mut keep = vec![0, 1, 2, fds::EXEC, kept.control.as_raw_fd(), kept.status.as_raw_fd()];
    if ipc {
        keep.push(fds::CHILD_IPC);
    }
    close_all_except(&mut keep)?;
    Ok(kept)
}

/// Closes every descriptor not in `keep`.
fn close_all_except(keep: &mut [RawFd]) -> std::io::Result<()> {
    keep.sort_unstable();
    let mut next: u32 = 0;
    for &fd in keep.iter() {
        let fd = fd as u32;
        if fd > next {
            sys::fd::close_range(next, fd - 1)?;
        }
        next = fd + 1;
    }
    sys::fd::close_range(next, u32::MAX)
}

/// RLIMIT_NOFILE from the plan and no core dumps (they could carry secrets out of the
/// sandbox). RLIMIT_AS is never set: GPU drivers reserve huge address ranges.
pub fn set_rlimits(plan: &Plan) -> nix::Result<()> {
    setrlimit(Resource::RLIMIT_NOFILE, plan.rlimits.nofile, plan.rlimits.nofile)?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0)
}

/// Executes fd 4 with the plan's argv and environment; returns only on failure.
pub fn exec(plan: &Plan) -> std::io::Error {
    let argv: Result<Vec<CString>, _> =
        plan.argv.iter().map(|a| CString::new(a.as_bytes())).collect();
    let envp: Result<Vec<CString>, _> =
        plan.env.iter().map(|(k, v)| CString::new(format!("{k}={v}"))).collect();
    let (Ok(argv), Ok(envp)) = (argv, envp) else {
        return std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "argv or env contains a NUL byte",
        );
    };
    let exec_fd = match sys::fd::borrow_inherited(fds::EXEC) {
        Ok(fd) => fd,
        Err(e) => return e,
    };
    match nix::unistd::execveat(exec_fd, c"", &argv, &envp, nix::fcntl::AtFlags::AT_EMPTY_PATH) {
        Err(e) => e.into(),
        Ok(never) => match never {},
    }
}
