//! Process creation and signalling that nix offers only as `unsafe` or not at all.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::check;

/// Which side of a fork the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    Parent { child: i32 },
    Child,
}

/// fork(2) for single-threaded callers (the shim and its sandbox init).
///
/// The shim never starts threads, so the child may run ordinary Rust code; the multi-threaded
/// supervisor uses [`super::spawn`] instead, which only makes async-signal-safe calls.
pub fn fork_single_threaded() -> io::Result<Forked> {
    // SAFETY: fork itself has no memory-safety preconditions; the documented contract is that
    // only single-threaded processes call this, so the child holds no lock another thread owned.
    let ret = unsafe { libc::fork() };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        child => Ok(Forked::Parent { child }),
    }
}

/// Opens a pidfd for `pid`.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    let fd = check(ret)?;
    Ok(super::fd::adopt(fd as i32))
}

/// Sends `signal` to the process behind `pidfd` (no pid reuse race).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: a null siginfo pointer asks the kernel to fill one in; the other arguments are
    // integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    check(ret).map(drop)
}

/// Resets every catchable signal to its default action.
///
/// Rust's runtime ignores SIGPIPE and ignored signals survive exec, so without this the
/// visualization would inherit a disposition it never asked for.
pub fn reset_signal_dispositions() {
    for sig in 1..libc::SIGRTMIN() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: setting SIG_DFL installs no handler code, so no Rust function can be
        // invoked asynchronously; invalid numbers just fail with EINVAL, which is ignored.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// Ends the process at once, without running atexit handlers or flushing stdio.
pub fn exit_immediately(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and never returns.
    unsafe { libc::_exit(code) }
}
