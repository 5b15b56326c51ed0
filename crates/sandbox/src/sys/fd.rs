//! File descriptor operations the shim and the spawner need by number.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::check;

/// Takes ownership of a descriptor number this process holds and nobody else owns: one the
/// kernel just installed through `SCM_RIGHTS`, or one the shim inherited by contract (3, 4, 5).
pub(crate) fn adopt(fd: RawFd) -> OwnedFd {
    // SAFETY: callers pass only descriptors that are open in this process and not owned by any
    // other Rust object (documented contract above), so the new OwnedFd is the sole owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Closes every descriptor in `first..=last`.
pub fn close_range(first: u32, last: u32) -> io::Result<()> {
    // SAFETY: close_range takes plain integers; closing descriptors that Rust objects still own
    // is prevented by the callers, which only run it right before exec in the shim's child.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    check(ret).map(drop)
}

/// Makes `new` refer to the same open file as `old`, without close-on-exec.
pub fn dup_to(old: RawFd, new: RawFd) -> io::Result<()> {
    // SAFETY: dup2 takes plain integers and returns a new descriptor number or -1.
    let ret = unsafe { libc::dup2(old, new) };
    check(libc::c_long::from(ret)).map(drop)
}

/// Borrows a descriptor number the process holds by contract for the rest of its life (the
/// shim's fd 4), after checking it is open.
pub fn borrow_inherited(fd: RawFd) -> io::Result<std::os::fd::BorrowedFd<'static>> {
    nix::fcntl::fcntl(
        // SAFETY: the descriptor is only used for the F_GETFD probe below during this call.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_GETFD,
    )?;
    // SAFETY: the F_GETFD above proved the descriptor is open; by the shim's fd contract it
    // stays open until exec, so a 'static borrow never outlives it.
    Ok(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
}
