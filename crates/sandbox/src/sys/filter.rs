//! Installing a seccomp BPF program with seccomp(2).

use std::io;

use super::check;

/// Installs `program` (already unpacked instructions) on the calling thread and returns what
/// seccomp(2) returned (a listener descriptor with `SECCOMP_FILTER_FLAG_NEW_LISTENER`).
///
/// seccompiler's `apply_filter` takes no flags; this is the same call with `flags` exposed.
pub fn install(program: &[libc::sock_filter], flags: u32) -> io::Result<libc::c_long> {
    let len = u16::try_from(program.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "BPF program too long"))?;
    let prog = libc::sock_fprog { len, filter: program.as_ptr().cast_mut() };
    // SAFETY: `prog` points at `len` valid instructions that outlive the call; the kernel copies
    // the program and does not keep the pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    check(ret)
}
