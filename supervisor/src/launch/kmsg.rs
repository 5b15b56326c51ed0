//! Naming the syscall behind a seccomp kill from the kernel's audit record.
//!
//! With SECCOMP_RET_KILL_PROCESS nobody sees the victim's `si_syscall`: the whole process dies
//! and its parent only learns "SIGSYS". The kernel does log every KILL_PROCESS action as an
//! audit record (`type=1326 … ses=N … sig=31 … syscall=101`), which reaches the kernel log when
//! no audit daemon consumes it. The shim gives each sandbox a fresh audit session id (by
//! writing its login uid), so the record is matched by `ses=`, not guessed from timing: the log
//! is only opened when a sandbox was killed, and read from its oldest record (opening
//! `/dev/kmsg` walks the kernel's ring buffer, too slow to do for every start). Only when the
//! kernel gave no session id is the log opened at the start, at its end, so that records older
//! than the sandbox are never taken for its own. The record is printed by a kernel thread
//! shortly after the kill, so the lookup polls briefly.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

/// How long to wait for the kernel's audit thread to print the record.
const RECORD_WAIT: Duration = Duration::from_secs(2);
const POLL_STEP: Duration = Duration::from_millis(20);

/// A reader of `/dev/kmsg` positioned at the end when the sandbox started.
#[derive(Debug)]
pub struct Cursor {
    file: Option<File>,
}

impl Cursor {
    /// Opens the kernel log at its end (for a sandbox without an audit session id); without
    /// access, seccomp kills are still reported, unnamed.
    pub fn open_at_end() -> Cursor {
        let file = open().and_then(|mut f| f.seek(SeekFrom::End(0)).map(|_| f)).ok();
        Cursor { file }
    }

    /// Opens the kernel log at its oldest record, to find a record by its session id.
    pub fn open_at_start() -> Cursor {
        Cursor { file: open().ok() }
    }

    /// The syscall number of this sandbox's seccomp kill, if the kernel logged one.
    pub fn find_seccomp_kill(&mut self, session: Option<u32>) -> Option<u32> {
        let file = self.file.as_mut()?;
        let deadline = Instant::now() + RECORD_WAIT;
        let mut buf = vec![0u8; 8192];
        loop {
            match file.read(&mut buf) {
                Ok(n) if n > 0 => {
                    let line = String::from_utf8_lossy(&buf[..n]);
                    if let Some(nr) = match_record(&line, session) {
                        return Some(nr);
                    }
                }
                // EPIPE: records were overwritten while we read; the next read continues.
                Err(e) if e.raw_os_error() == Some(32) => {}
                _ => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    std::thread::sleep(POLL_STEP);
                }
            }
        }
    }
}

fn open() -> std::io::Result<File> {
    std::fs::OpenOptions::new().read(true).custom_flags(libc_o_nonblock()).open("/dev/kmsg")
}

/// Matches one kernel log record against a seccomp kill of `session`.
pub fn match_record(line: &str, session: Option<u32>) -> Option<u32> {
    let (_, msg) = line.split_once(';')?;
    if !msg.contains("type=1326") || field(msg, "sig") != Some("31") {
        return None;
    }
    if let Some(ses) = session {
        if field(msg, "ses") != Some(ses.to_string().as_str()) {
            return None;
        }
    }
    field(msg, "syscall")?.parse().ok()
}

fn field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// The x86_64 name of syscall `nr`.
pub fn syscall_name(nr: u32) -> String {
    syscalls::Sysno::new(nr as usize)
        .map_or_else(|| format!("syscall {nr}"), |s| s.name().to_owned())
}

fn libc_o_nonblock() -> i32 {
    nix::fcntl::OFlag::O_NONBLOCK.bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = "5,1234,515416061,-;audit: type=1326 audit(1795413490.291:2): auid=65534 \
        uid=65534 gid=65534 ses=7 pid=8695 comm=\"t\" exe=\"/memfd:viz (deleted)\" sig=31 \
        arch=c000003e syscall=101 compat=0 ip=0x7f174ea52829 code=0x80000000";

    #[test]
    fn matches_the_sandbox_session_only() {
        assert_eq!(match_record(RECORD, Some(7)), Some(101));
        assert_eq!(match_record(RECORD, Some(8)), None);
        assert_eq!(match_record(RECORD, None), Some(101));
        assert_eq!(match_record("6,1,2,-;audit: type=1400 sig=31 syscall=5", None), None);
    }

    #[test]
    fn names_syscalls() {
        assert_eq!(syscall_name(101), "ptrace");
        assert_eq!(syscall_name(1), "write");
    }
}
