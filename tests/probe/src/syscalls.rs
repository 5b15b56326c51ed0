//! Syscalls the sandbox must refuse. Each runs in a forked child: with the default `kill`
//! action a refused call ends the child with SIGSYS, which is the expected outcome.

use vitrine_sandbox::probe::{
    Outcome, X32_SYSCALL_BIT, in_child, int80_getpid, raw_syscall, tiocsti,
};

use crate::Report;

const SIGSYS: i32 = libc::SIGSYS;

fn errno_of(r: Result<i64, i32>) -> i64 {
    r.unwrap_or_else(|e| -i64::from(e))
}

/// `(name, call)`: each call returns its raw result or `-errno`.
/// A raw call that returns its result or `-errno`.
type Call = fn() -> i64;

const REFUSED: &[(&str, Call)] = &[
    ("mount", || errno_of(raw_syscall(libc::SYS_mount, [0; 6]))),
    ("unshare", || {
        errno_of(raw_syscall(libc::SYS_unshare, [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]))
    }),
    ("bpf", || errno_of(raw_syscall(libc::SYS_bpf, [0; 6]))),
    ("perf_event_open", || errno_of(raw_syscall(libc::SYS_perf_event_open, [0; 6]))),
    ("keyctl", || errno_of(raw_syscall(libc::SYS_keyctl, [0; 6]))),
    ("userfaultfd", || errno_of(raw_syscall(libc::SYS_userfaultfd, [0; 6]))),
    ("ptrace", || {
        errno_of(raw_syscall(libc::SYS_ptrace, [libc::PTRACE_TRACEME as u64, 0, 0, 0, 0, 0]))
    }),
    ("clock_settime", || errno_of(raw_syscall(libc::SYS_clock_settime, [0; 6]))),
    ("setns", || errno_of(raw_syscall(libc::SYS_setns, [0; 6]))),
    ("init_module", || errno_of(raw_syscall(libc::SYS_init_module, [0; 6]))),
    ("x32 getpid", || errno_of(raw_syscall(X32_SYSCALL_BIT | libc::SYS_getpid, [0; 6]))),
    ("int 0x80 getpid", int80_getpid),
    ("clone with CLONE_NEWUSER", || {
        errno_of(raw_syscall(
            libc::SYS_clone,
            [(libc::CLONE_NEWUSER | libc::SIGCHLD) as u64, 0, 0, 0, 0, 0],
        ))
    }),
];

pub fn checks(report: &mut Report) {
    for (name, call) in REFUSED {
        let outcome = in_child(*call);
        let ok = matches!(outcome, Ok(Outcome::Killed(SIGSYS)))
            || matches!(outcome, Ok(Outcome::Returned(r)) if r == -i64::from(libc::EPERM) || r == -i64::from(libc::EACCES));
        report.check(&format!("{name} refused"), ok, format!("{outcome:?}"));
    }
    let uring = in_child(|| errno_of(raw_syscall(libc::SYS_io_uring_setup, [1, 0, 0, 0, 0, 0])));
    let enosys = matches!(uring, Ok(Outcome::Returned(r)) if r == -i64::from(libc::ENOSYS));
    report.check("io_uring_setup fails with ENOSYS", enosys, format!("{uring:?}"));
    let clone3 = in_child(|| errno_of(raw_syscall(libc::SYS_clone3, [0; 6])));
    let enosys = matches!(clone3, Ok(Outcome::Returned(r)) if r == -i64::from(libc::ENOSYS));
    report.check("clone3 fails with ENOSYS", enosys, format!("{clone3:?}"));
    let sti = in_child(|| tiocsti(0).map_or_else(|e| -i64::from(e), |()| 0));
    let eperm = matches!(sti, Ok(Outcome::Returned(r)) if r == -i64::from(libc::EPERM));
    report.check("TIOCSTI refused", eperm, format!("{sti:?}"));
}
