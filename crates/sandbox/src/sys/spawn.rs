//! The supervisor's one fork+exec: only async-signal-safe calls between fork and exec.
//!
//! The supervisor is multi-threaded (tokio), so the child of its fork may not allocate, lock or
//! run destructors: everything is prepared before the fork, and the child only calls
//! `sigprocmask`, `signal`, `prctl`, `getppid`, `dup2`, `execve`, `write` and `_exit`.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

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

fn ptr_array(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

/// Forks and execs `exec`; the child gets `PR_SET_PDEATHSIG(SIGKILL)` bound to the calling
/// thread, an empty signal mask and default dispositions. Returns the child's pid once the exec
/// succeeded, or the child's exec error.
pub fn fork_exec(exec: &Exec) -> io::Result<i32> {
    let (err_read, err_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let parent = std::process::id() as libc::pid_t;
    let empty = empty_sigset();
    // SAFETY: fork has no memory-safety preconditions; the child below only makes
    // async-signal-safe calls on data prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        child(exec, parent, &empty, err_write.as_raw_fd());
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(err_write);
    let mut errno = [0u8; 4];
    let n = read_retrying(&err_read, &mut errno)?;
    if n == 0 {
        return Ok(pid);
    }
    // The exec failed: reap the child so it does not linger as a zombie.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)))
}

fn read_retrying(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::read(fd, buf) {
            Err(nix::Error::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

fn empty_sigset() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; all-zero is a valid value that sigemptyset then defines.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    set
}

/// The child side: async-signal-safe calls only, then exec or report errno and `_exit`.
fn child(exec: &Exec, parent: libc::pid_t, empty: &libc::sigset_t, err_fd: RawFd) -> ! {
    // SAFETY: `empty` is a valid sigset_t; a null old-set pointer is allowed.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, empty, std::ptr::null_mut()) };
    // SAFETY: SIG_DFL installs no handler; the supervisor's runtime ignores SIGPIPE and the shim
    // must start with the default.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // SAFETY: prctl with integer arguments only.
    let ret =
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
    if ret != 0 {
        fail(err_fd);
    }
    // The parent may have died before PDEATHSIG was armed; then nobody would ever kill us.
    // SAFETY: getppid has no arguments and cannot fail.
    if unsafe { libc::getppid() } != parent {
        fail(err_fd);
    }
    for (src, dst) in &exec.moves {
        // SAFETY: dup2 takes integers; `src` is open (owned by `exec`) and above every target.
        if unsafe { libc::dup2(src.as_raw_fd(), *dst) } < 0 {
            fail(err_fd);
        }
    }
    let path: &CStr = &exec.path;
    // SAFETY: path, argv and envp are NUL-terminated strings and NULL-terminated arrays that
    // live in `exec`, which outlives this call; execve only returns on failure.
    unsafe { libc::execve(path.as_ptr(), exec.argv_ptrs.as_ptr(), exec.envp_ptrs.as_ptr()) };
    fail(err_fd)
}

fn fail(err_fd: RawFd) -> ! {
    // SAFETY: __errno_location returns the calling thread's errno slot, always valid to read.
    let errno = unsafe { *libc::__errno_location() };
    let bytes = errno.to_ne_bytes();
    // SAFETY: `bytes` is a valid 4-byte buffer for the duration of the call.
    unsafe { libc::write(err_fd, bytes.as_ptr().cast(), bytes.len()) };
    // SAFETY: _exit has no preconditions and does not run atexit handlers or destructors.
    unsafe { libc::_exit(127) }
}
