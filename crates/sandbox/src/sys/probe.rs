//! Raw system calls for the in-sandbox probe: calls no safe wrapper would ever make, used to
//! show that the sandbox refuses them. Built only with the `probe` feature.

use std::io;

/// The x32 ABI marker bit in a syscall number.
pub const X32_SYSCALL_BIT: i64 = 0x4000_0000;

/// Makes syscall `nr` with six raw arguments; `Err(errno)` when it returned -1.
pub fn raw_syscall(nr: i64, args: [u64; 6]) -> Result<i64, i32> {
    // SAFETY: the probe passes only integer arguments or null pointers, which the kernel
    // validates; no Rust memory is handed out to be written.
    let ret = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
    if ret == -1 { Err(io::Error::last_os_error().raw_os_error().unwrap_or(0)) } else { Ok(ret) }
}

/// `getpid` through the 32-bit `int 0x80` entry (i386 syscall 20); returns the raw result.
pub fn int80_getpid() -> i64 {
    let mut eax: i64 = 20;
    // SAFETY: i386 getpid takes no arguments and touches no memory; `int 0x80` clobbers only
    // eax (declared) and, under the compat ABI, r8-r11 (declared).
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inout("rax") eax,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            options(nostack)
        )
    };
    eax
}

/// `TIOCSTI` on `fd`: tries to push one byte into the terminal's input queue.
pub fn tiocsti(fd: i32) -> Result<(), i32> {
    let byte: libc::c_char = b'x' as libc::c_char;
    // SAFETY: TIOCSTI reads one byte through the pointer, which points at a live local.
    let ret = unsafe { libc::ioctl(fd, libc::TIOCSTI, &byte as *const libc::c_char) };
    if ret == -1 { Err(io::Error::last_os_error().raw_os_error().unwrap_or(0)) } else { Ok(()) }
}

/// What happened to a probe run in a child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The call returned this value (or `-errno`).
    Returned(i64),
    /// The child was killed by this signal (SIGSYS: seccomp).
    Killed(i32),
    /// The child ended without reporting (exit code).
    Exited(i32),
}

/// Runs `f` in a forked child so a seccomp kill takes only the child.
///
/// The probe is single-threaded when it calls this (its thread check joins its threads first).
pub fn in_child(f: fn() -> i64) -> io::Result<Outcome> {
    let (read_end, write_end) = nix::unistd::pipe()?;
    match super::process::fork_single_threaded()? {
        super::process::Forked::Child => {
            drop(read_end);
            let value = f();
            let _ = nix::unistd::write(&write_end, &value.to_ne_bytes());
            super::process::exit_immediately(0)
        }
        super::process::Forked::Parent { child } => {
            drop(write_end);
            let mut buf = [0u8; 8];
            let n = nix::unistd::read(&read_end, &mut buf).unwrap_or(0);
            let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None)?;
            Ok(match status {
                nix::sys::wait::WaitStatus::Signaled(_, sig, _) => Outcome::Killed(sig as i32),
                _ if n == 8 => Outcome::Returned(i64::from_ne_bytes(buf)),
                nix::sys::wait::WaitStatus::Exited(_, code) => Outcome::Exited(code),
                _ => Outcome::Exited(-1),
            })
        }
    }
}
