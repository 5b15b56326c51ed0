//! The seccomp listener: records every notified syscall of the learning sandbox and lets it
//! continue. One thread owns the listener; it ends when no task of the sandbox is left (the
//! listener hangs up) or when told to stop.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use vitrine_policy::{ArgOp, Syscalls};
use vitrine_sandbox::learn;

use super::observe::{self, Fact, Need, Task};

/// Everything the listener saw.
#[derive(Debug)]
pub struct Observed {
    /// Notifications answered.
    pub notified: u64,
    /// Calls per syscall name, for the notified syscalls.
    pub syscalls: BTreeMap<String, u64>,
    /// Per candidate profile (same order), the syscalls it would not have allowed.
    pub beyond: Vec<BTreeSet<String>>,
    /// Paths and the strongest access each needed, with how it was used.
    pub paths: BTreeMap<(PathBuf, Need), &'static str>,
    pub unix_connects: BTreeSet<PathBuf>,
    pub abstract_unix: BTreeSet<String>,
    pub inet_binds: BTreeSet<(String, u16)>,
    pub inet_connects: BTreeSet<(String, u16)>,
    /// The highest descriptor number seen plus one, in any task of the sandbox.
    pub fd_peak: u64,
    /// The most tasks in the sandbox's cgroup, counted at every clone.
    pub pids_peak: u64,
    /// Notifications whose task went away before its arguments could be trusted.
    pub discarded: u64,
    /// Paths not recorded because [`MAX_PATHS`] were already.
    pub dropped_paths: u64,
    fd_sampled: std::time::Instant,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            notified: 0,
            syscalls: BTreeMap::new(),
            beyond: Vec::new(),
            paths: BTreeMap::new(),
            unix_connects: BTreeSet::new(),
            abstract_unix: BTreeSet::new(),
            inet_binds: BTreeSet::new(),
            inet_connects: BTreeSet::new(),
            fd_peak: 0,
            pids_peak: 0,
            discarded: 0,
            dropped_paths: 0,
            fd_sampled: std::time::Instant::now()
                .checked_sub(FD_SAMPLE)
                .unwrap_or_else(std::time::Instant::now),
        }
    }
}

/// Distinct paths recorded at most.
const MAX_PATHS: usize = 65_536;

/// At most one descriptor listing per this interval from the listener.
const FD_SAMPLE: Duration = Duration::from_millis(2);

/// Runs the listener on its own thread; `candidates` are the profiles a draft may name.
pub fn start(
    rx: mpsc::Receiver<OwnedFd>,
    candidates: Vec<Syscalls>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Observed> {
    std::thread::spawn(move || {
        let mut seen =
            Observed { beyond: vec![BTreeSet::new(); candidates.len()], ..Default::default() };
        let listener = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(fd) => break fd,
                Err(mpsc::RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => continue,
                Err(_) => return seen,
            }
        };
        serve(&listener, &candidates, &stop, &mut seen);
        seen
    })
}

fn serve(listener: &OwnedFd, candidates: &[Syscalls], stop: &AtomicBool, seen: &mut Observed) {
    loop {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(50u8)) {
            Ok(0) | Err(nix::Error::EINTR) => {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
            Ok(_) => {}
            Err(_) => return,
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if revents.contains(PollFlags::POLLIN) {
            match learn::recv(listener.as_fd()) {
                Ok(n) => handle(listener, &n, candidates, seen),
                // ENOENT: the task died between poll and recv.
                Err(e) if e.raw_os_error() == Some(libc_enoent()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        } else if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            // Every task that used the filter is gone.
            return;
        }
    }
}

fn handle(
    listener: &OwnedFd,
    n: &learn::Notification,
    candidates: &[Syscalls],
    seen: &mut Observed,
) {
    let name = syscalls::Sysno::new(n.nr as usize)
        .map_or_else(|| format!("syscall {}", n.nr), |s| s.name().to_owned());
    let task = Task::new(n.pid);
    let facts = observe::facts(&task, &name, &n.args);
    // Descriptor peaks between the main thread's samples: the call may add one more. Listing
    // a large table on every open would slow the program down, hence the rate limit.
    if (name.starts_with("open") || name == "socket") && seen.fd_sampled.elapsed() >= FD_SAMPLE {
        seen.fd_peak = seen.fd_peak.max(highest_fd(n.pid) + 2);
        seen.fd_sampled = std::time::Instant::now();
    }
    if name == "clone" || name == "fork" || name == "vfork" {
        // The task about to be created counts too; sampling alone misses short-lived threads.
        if let Some(now) = tasks_in_cgroup_of(n.pid) {
            seen.pids_peak = seen.pids_peak.max(now + 1);
        }
    }
    // The reads above are only trustworthy if the task was still stopped in this syscall.
    let valid = learn::id_valid(listener.as_fd(), n.id);
    // Continue even when recording fails: learning observes, it never decides.
    let _ = learn::send_continue(listener.as_fd(), n.id);
    seen.notified += 1;
    if !valid {
        seen.discarded += 1;
        return;
    }
    *seen.syscalls.entry(name.clone()).or_default() += 1;
    for (profile, beyond) in candidates.iter().zip(seen.beyond.iter_mut()) {
        if !allows(profile, &name, &n.args) {
            beyond.insert(name.clone());
        }
    }
    for fact in facts {
        record(seen, fact);
    }
}

fn record(seen: &mut Observed, fact: Fact) {
    match fact {
        Fact::Path { path, need, what } => {
            // A program opening endless distinct names must not grow the supervisor without
            // bound; the draft then says how many were dropped.
            let key = (super::paths::canonical(&path), need);
            if seen.paths.len() >= MAX_PATHS && !seen.paths.contains_key(&key) {
                seen.dropped_paths += 1;
                return;
            }
            seen.paths.entry(key).or_insert(what);
        }
        Fact::UnixConnect(p) => {
            seen.unix_connects.insert(p);
        }
        Fact::AbstractUnix(name) => {
            seen.abstract_unix.insert(name);
        }
        Fact::InetBind { addr, port } => {
            seen.inet_binds.insert((addr, port));
        }
        Fact::InetConnect { addr, port } => {
            seen.inet_connects.insert((addr, port));
        }
    }
}

/// `pids.current` of the cgroup `pid` is in; `/proc/PID/cgroup` names it relative to this
/// process's cgroup namespace, which is the host's.
fn tasks_in_cgroup_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let dir = text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            Some(PathBuf::from("/sys/fs/cgroup").join(rel))
        } else if controllers.split(',').any(|c| c == "pids") {
            Some(PathBuf::from("/sys/fs/cgroup/pids").join(rel))
        } else {
            None
        }
    })?;
    std::fs::read_to_string(dir.join("pids.current")).ok()?.trim().parse().ok()
}

/// The highest open descriptor number of process `pid` (0 when none or unreadable).
pub fn highest_fd(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok()).max().unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Whether `profile` allows this call as the real filter would (argument conditions included).
pub fn allows(profile: &Syscalls, name: &str, args: &[u64; 6]) -> bool {
    if profile.allow.iter().any(|a| a == name) {
        return true;
    }
    profile.rules.iter().filter(|r| r.syscall == name).any(|r| {
        r.args.iter().all(|c| {
            let Some(&raw) = args.get(usize::from(c.index)) else { return false };
            let arg = if c.dword { raw & 0xffff_ffff } else { raw };
            match c.op {
                ArgOp::Eq => arg == c.val,
                ArgOp::Ne => arg != c.val,
                ArgOp::Lt => arg < c.val,
                ArgOp::Le => arg <= c.val,
                ArgOp::Gt => arg > c.val,
                ArgOp::Ge => arg >= c.val,
                ArgOp::MaskedEq(mask) => arg & mask == c.val,
            }
        })
    })
}

fn libc_enoent() -> i32 {
    nix::Error::ENOENT as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitrine_policy::{ArgCondition, SeccompAction, SyscallRule};

    #[test]
    fn conditions_decide_like_the_filter() {
        let profile = Syscalls {
            profile: "t".into(),
            profile_path: "/t".into(),
            rules: vec![
                SyscallRule { syscall: "read".into(), args: vec![] },
                SyscallRule {
                    syscall: "socket".into(),
                    args: vec![ArgCondition { index: 0, dword: true, op: ArgOp::Eq, val: 1 }],
                },
            ],
            allow: vec!["ptrace".into()],
            action: SeccompAction::Kill,
        };
        assert!(allows(&profile, "read", &[0; 6]));
        assert!(allows(&profile, "ptrace", &[0; 6]));
        assert!(allows(&profile, "socket", &[1 | (7 << 32), 0, 0, 0, 0, 0]), "dword compare");
        assert!(!allows(&profile, "socket", &[2, 0, 0, 0, 0, 0]));
        assert!(!allows(&profile, "mount", &[0; 6]));
    }
}
