//! The supervisor's one spawn: `clone(CLONE_VM | CLONE_VFORK)` and exec, like `posix_spawn`.
//!
//! The child shares the supervisor's memory until it execs, and the calling thread sleeps until
//! then. Nothing is copied: no page tables, no copy-on-write faults in the supervisor afterwards,
//! no address space to tear down at exec. The price is discipline in the child:
//! - it runs on its own stack (mapped here, with a guard page) and only makes async-signal-safe
//!   calls on data prepared before the clone: `sigaction`, `prctl`, `getppid`, `dup2`,
//!   `sigprocmask`, `execve`, `_exit`;
//! - every signal is blocked in the calling thread across the clone, and the child resets every
//!   handler to the default before it unblocks, so no handler of the supervisor can ever run
//!   on the shared memory;
//! - it reports an exec failure by storing errno in the shared [`Shared`] before `_exit`; the
//!   parent reads it once the kernel woke it (after the child's exec or exit).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// A fully prepared exec: C strings, pointer arrays and descriptor moves.
#[derive(Debug)]
pub struct Exec {
    path: CString,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// `(source, target)`: each source is a descriptor above every target, so dup2 in order
    /// never overwrites a source that is still needed.
    moves: Vec<(OwnedFd, RawFd)>,
}

// SAFETY: the raw pointers point into the CStrings owned by the same struct; they are never
// written through and stay valid wherever the struct moves, so sending it to another thread is
// sound.
unsafe impl Send for Exec {}

impl Exec {
    /// Prepares `path` with `argv` and `envp`; `moves` lists `(source, target)` descriptors.
    ///
    /// Sources are duplicated above [`MIN_SOURCE_FD`] (close-on-exec) so that no target number
    /// can collide with a source.
    pub fn new(
        path: CString,
        argv: Vec<CString>,
        envp: Vec<CString>,
        moves: Vec<(std::os::fd::BorrowedFd<'_>, RawFd)>,
    ) -> io::Result<Self> {
        let argv_ptrs = ptr_array(&argv);
        let envp_ptrs = ptr_array(&envp);
        let mut owned = Vec::with_capacity(moves.len());
        for (src, dst) in moves {
            let high =
                nix::fcntl::fcntl(src, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(MIN_SOURCE_FD))?;
            owned.push((super::fd::adopt(high), dst));
        }
        Ok(Self { path, _argv: argv, _envp: envp, argv_ptrs, envp_ptrs, moves: owned })
    }
}

/// Every descriptor the child moves is first duplicated to this number or higher.
pub const MIN_SOURCE_FD: RawFd = 64;

/// The child's stack: its calls need a few KiB; the page below it is a guard.
const STACK_SIZE: usize = 64 * 1024;
const GUARD_SIZE: usize = 4096;

fn ptr_array(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

/// What the child reads and writes in the parent's memory.
struct Shared<'a> {
    exec: &'a Exec,
    parent: libc::pid_t,
    empty: libc::sigset_t,
    /// errno of the step that failed; 0 while nothing failed.
    errno: AtomicI32,
}

/// Starts `exec` in a new process; returns its pid and pidfd once the exec succeeded, or the
/// child's error. The child gets `PR_SET_PDEATHSIG(SIGKILL)` bound to the calling thread, an
/// empty signal mask and default dispositions for every signal the supervisor handles (and
/// SIGPIPE, which the Rust runtime ignores).
pub fn spawn(exec: &Exec) -> io::Result<(i32, OwnedFd)> {
    let stack = Stack::map()?;
    let shared = Shared {
        exec,
        parent: std::process::id() as libc::pid_t,
        empty: sigset(false),
        errno: AtomicI32::new(0),
    };
    let all = sigset(true);
    let mut saved = sigset(false);
    // SAFETY: both pointers refer to valid sigset_t values that outlive the call.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    let mut pidfd: libc::c_int = -1;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
    // SAFETY: `child` is an extern "C" function that only reads `shared` and writes its atomic
    // errno; `shared`, `exec` and the stack outlive the call because CLONE_VFORK suspends this
    // thread until the child has exec'd or exited, after which it no longer uses our memory.
    // The stack top is 16-byte aligned. With CLONE_PIDFD the kernel stores the new pidfd in
    // `pidfd`, a valid int.
    let pid = unsafe {
        libc::clone(
            child,
            stack.top(),
            flags,
            std::ptr::from_ref(&shared).cast_mut().cast(),
            &mut pidfd as *mut libc::c_int,
        )
    };
    let clone_error = io::Error::last_os_error();
    // SAFETY: `saved` is the valid mask stored above; restoring it cannot fail.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut()) };
    drop(stack);
    if pid < 0 {
        return Err(clone_error);
    }
    let pidfd = super::fd::adopt(pidfd);
    let errno = shared.errno.load(Ordering::SeqCst);
    if errno != 0 {
        // The child already exited; reap it so it does not linger as a zombie.
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok((pid, pidfd))
}

fn sigset(full: bool) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; all-zero is a valid value that the call below defines.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    if full {
        // SAFETY: `set` is a valid, writable sigset_t.
        unsafe { libc::sigfillset(&mut set) };
    } else {
        // SAFETY: `set` is a valid, writable sigset_t.
        unsafe { libc::sigemptyset(&mut set) };
    }
    set
}

/// The child's stack: an anonymous mapping whose lowest page is inaccessible.
struct Stack {
    base: *mut libc::c_void,
}

impl Stack {
    fn map() -> io::Result<Stack> {
        let len = STACK_SIZE + GUARD_SIZE;
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK;
        // SAFETY: an anonymous mapping at an address of the kernel's choosing touches no
        // existing memory.
        let base = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, -1, 0) };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack { base };
        // SAFETY: the first page lies inside the mapping created above, which nothing else uses.
        let ret = unsafe { libc::mprotect(base, GUARD_SIZE, libc::PROT_NONE) };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The highest address (stacks grow down); page-aligned, hence 16-byte aligned.
    fn top(&self) -> *mut libc::c_void {
        self.base.cast::<u8>().wrapping_add(STACK_SIZE + GUARD_SIZE).cast()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: `base` is the start of a mapping of exactly this length made in `map`; the
        // child no longer runs on it when the parent drops it (CLONE_VFORK).
        unsafe { libc::munmap(self.base, STACK_SIZE + GUARD_SIZE) };
    }
}

/// The child side: async-signal-safe calls only, then exec, or store errno and `_exit`.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Shared` that `spawn` passed to clone; it lives in the suspended
    // parent's frame for as long as this function runs, and is only read here (the errno is an
    // atomic).
    let shared = unsafe { &*arg.cast::<Shared<'_>>() };
    reset_signal_handlers();
    // SAFETY: prctl with integer arguments only.
    let ret =
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
    if ret != 0 {
        fail(shared);
    }
    // The parent may have died before PDEATHSIG was armed; then nobody would ever kill us.
    // SAFETY: getppid has no arguments and cannot fail.
    if unsafe { libc::getppid() } != shared.parent {
        fail(shared);
    }
    for (src, dst) in &shared.exec.moves {
        // SAFETY: dup2 takes integers; `src` is open (owned by `exec`) and above every target.
        if unsafe { libc::dup2(src.as_raw_fd(), *dst) } < 0 {
            fail(shared);
        }
    }
    // No handler is left that could run supervisor code, so signals may arrive now.
    // SAFETY: `empty` is a valid sigset_t; a null old-set pointer is allowed.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &shared.empty, std::ptr::null_mut()) };
    let exec = shared.exec;
    let path: &CStr = &exec.path;
    // SAFETY: path, argv and envp are NUL-terminated strings and NULL-terminated arrays that
    // live in `exec`, which outlives this call; execve only returns on failure.
    unsafe { libc::execve(path.as_ptr(), exec.argv_ptrs.as_ptr(), exec.envp_ptrs.as_ptr()) };
    fail(shared)
}

/// Sets every signal that has a handler, and SIGPIPE, to the default action. The child has its
/// own copy of the dispositions (no CLONE_SIGHAND), so the parent's stay as they are.
fn reset_signal_handlers() {
    for sig in 1..libc::SIGRTMAX() + 1 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: sigaction is plain data; all-zero is a valid value that the call overwrites.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only queries; `old` is a valid, writable sigaction.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
            continue;
        }
        if old.sa_sigaction == libc::SIG_DFL
            || (old.sa_sigaction == libc::SIG_IGN && sig != libc::SIGPIPE)
        {
            continue;
        }
        // SAFETY: SIG_DFL installs no handler code; numbers glibc reserves just fail with
        // EINVAL, which is ignored.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

fn fail(shared: &Shared<'_>) -> ! {
    // SAFETY: __errno_location returns the calling thread's errno slot, always valid to read.
    let errno = unsafe { *libc::__errno_location() };
    shared.errno.store(if errno == 0 { libc::EIO } else { errno }, Ordering::SeqCst);
    // SAFETY: _exit has no preconditions and does not run atexit handlers or destructors.
    unsafe { libc::_exit(127) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    fn exec_of(
        path: &str,
        args: &[&str],
        moves: Vec<(std::os::fd::BorrowedFd<'_>, RawFd)>,
    ) -> Exec {
        let c = |s: &str| CString::new(s).expect("no NUL");
        Exec::new(c(path), args.iter().map(|a| c(a)).collect(), vec![c("K=v")], moves)
            .expect("prepare")
    }

    #[test]
    fn the_child_gets_its_descriptors_environment_and_default_sigpipe() {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        // The Rust runtime of this test binary ignores SIGPIPE, as the supervisor's does; the
        // child must start with the default anyway.
        let script = "echo \"$K\"; grep SigIgn /proc/self/status; ls /proc/self/fd";
        let exec = exec_of("/bin/sh", &["sh", "-c", script], vec![(write.as_fd(), 1)]);
        let sources: Vec<RawFd> = exec.moves.iter().map(|(src, _)| src.as_raw_fd()).collect();
        let (pid, pidfd) = spawn(&exec).expect("spawn");
        drop(exec);
        drop(write);
        let mut out = String::new();
        std::fs::File::from(read).read_to_string(&mut out).expect("read");
        let pid = nix::unistd::Pid::from_raw(pid);
        let status = nix::sys::wait::waitpid(pid, None).expect("wait");
        assert_eq!(status, nix::sys::wait::WaitStatus::Exited(pid, 0));
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("v"), "{out}");
        let ign = lines.next().and_then(|l| l.split_whitespace().nth(1)).expect("SigIgn");
        let ign = u64::from_str_radix(ign, 16).expect("hex");
        assert_eq!(ign & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE still ignored: {out}");
        // The duplicated sources were close-on-exec.
        let fds: Vec<i32> = lines.map(|l| l.trim().parse().expect("fd number")).collect();
        assert!(fds.contains(&1), "{out}");
        assert!(sources.iter().all(|src| !fds.contains(src)), "{sources:?} leaked: {out}");
        assert!(pidfd.as_raw_fd() >= 0);
    }

    #[test]
    fn an_exec_failure_is_reported_with_its_errno() {
        let exec = exec_of("/nonexistent/vitrine-test", &["x"], Vec::new());
        let err = spawn(&exec).expect_err("no such file");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn the_parent_keeps_its_signal_mask() {
        let mask = || {
            let mut set = sigset(false);
            // SAFETY: a null new set only queries; `set` is a valid, writable sigset_t.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut set) };
            set
        };
        let before = mask();
        let exec = exec_of("/bin/true", &["true"], Vec::new());
        let (pid, _pidfd) = spawn(&exec).expect("spawn");
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        let after = mask();
        for sig in 1..32 {
            // SAFETY: both are valid sigset_t values.
            let same = unsafe { libc::sigismember(&before, sig) == libc::sigismember(&after, sig) };
            assert!(same, "signal {sig}");
        }
    }
}
