//! Seccomp user notification: installing a filter with a listener and answering its
//! notifications (`SECCOMP_IOCTL_NOTIF_RECV/SEND/ID_VALID`). Used only by policy learning,
//! where every notified syscall is recorded and then continued.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::check;

/// One syscall a task of the sandbox is stopped in, waiting for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    /// The kernel's cookie for this notification; answers and validity checks name it.
    pub id: u64,
    /// The task (thread id) in the supervisor's pid namespace.
    pub pid: u32,
    pub nr: i32,
    pub arch: u32,
    pub args: [u64; 6],
}

/// Installs `program` on the calling thread with `SECCOMP_FILTER_FLAG_NEW_LISTENER` and returns
/// the listener. `PR_SET_NO_NEW_PRIVS` must be set.
pub fn install_listener(program: &[libc::sock_filter]) -> io::Result<OwnedFd> {
    let fd = super::filter::install(program, libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32)?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("seccomp returned no descriptor"))?;
    Ok(super::fd::adopt(fd))
}

/// Checks that the kernel's notification structures have the sizes this code was built with;
/// a larger kernel structure would be written past the buffer `recv` passes.
pub fn check_sizes() -> io::Result<()> {
    let mut sizes =
        libc::seccomp_notif_sizes { seccomp_notif: 0, seccomp_notif_resp: 0, seccomp_data: 0 };
    // SAFETY: SECCOMP_GET_NOTIF_SIZES writes one `struct seccomp_notif_sizes` into `sizes`,
    // which is valid and writable for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_NOTIF_SIZES,
            0u32,
            &mut sizes as *mut libc::seccomp_notif_sizes,
        )
    };
    check(ret)?;
    let ours = (
        std::mem::size_of::<libc::seccomp_notif>(),
        std::mem::size_of::<libc::seccomp_notif_resp>(),
        std::mem::size_of::<libc::seccomp_data>(),
    );
    let kernel = (
        usize::from(sizes.seccomp_notif),
        usize::from(sizes.seccomp_notif_resp),
        usize::from(sizes.seccomp_data),
    );
    if kernel != ours {
        return Err(io::Error::other(format!(
            "the kernel's seccomp notification sizes {kernel:?} differ from {ours:?}"
        )));
    }
    Ok(())
}

/// Receives the next notification; blocks until one arrives (poll the listener first).
/// [`check_sizes`] must have succeeded.
pub fn recv(listener: BorrowedFd<'_>) -> io::Result<Notification> {
    // The kernel refuses a buffer that is not zeroed.
    let mut notif = libc::seccomp_notif {
        id: 0,
        pid: 0,
        flags: 0,
        data: libc::seccomp_data { nr: 0, arch: 0, instruction_pointer: 0, args: [0; 6] },
    };
    // SAFETY: NOTIF_RECV writes one `struct seccomp_notif` (size checked by `check_sizes`) into
    // `notif`, which is valid and writable for the duration of the call.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut notif as *mut libc::seccomp_notif,
        )
    };
    check(libc::c_long::from(ret))?;
    Ok(Notification {
        id: notif.id,
        pid: notif.pid,
        nr: notif.data.nr,
        arch: notif.data.arch,
        args: notif.data.args,
    })
}

/// Lets the stopped syscall run as if no filter had notified (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`).
/// `ENOENT` means the task was killed meanwhile.
pub fn send_continue(listener: BorrowedFd<'_>, id: u64) -> io::Result<()> {
    let mut resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: 0,
        flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
    };
    // SAFETY: NOTIF_SEND reads one `struct seccomp_notif_resp` from `resp`, which is valid for
    // the duration of the call.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut resp as *mut libc::seccomp_notif_resp,
        )
    };
    check(libc::c_long::from(ret)).map(drop)
}

/// Whether notification `id` is still pending: after reading a stopped task's memory this
/// proves the pid still named that task while it was read.
pub fn id_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
    let mut id = id;
    // SAFETY: NOTIF_ID_VALID reads one u64 from `id`, which is valid for the call.
    let ret = unsafe {
        libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id as *mut u64)
    };
    ret == 0
}
