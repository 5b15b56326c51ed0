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

/// A set or map that stops growing at a cap and counts what it turned away: the learned
/// program chooses what is recorded, and must not grow the supervisor without bound.
#[derive(Debug, Clone)]
pub struct Capped<K, V = ()> {
    map: BTreeMap<K, V>,
    cap: usize,
    /// Insertions of new keys refused because the cap was reached.
    pub dropped: u64,
}

impl<K: Ord, V> Capped<K, V> {
    pub fn new(cap: usize) -> Self {
        Capped { map: BTreeMap::new(), cap, dropped: 0 }
    }

    /// The value for `key`, made by `make` if there is room; `None` (counted) otherwise.
    pub fn entry(&mut self, key: K, make: impl FnOnce() -> V) -> Option<&mut V> {
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            self.dropped += 1;
            return None;
        }
        Some(self.map.entry(key).or_insert_with(make))
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    pub fn iter(&self) -> std::collections::btree_map::Iter<'_, K, V> {
        self.map.iter()
    }

    pub fn keys(&self) -> std::collections::btree_map::Keys<'_, K, V> {
        self.map.keys()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

impl<K: Ord> Capped<K> {
    pub fn insert(&mut self, key: K) {
        self.entry(key, || ());
    }
}

/// Calls to a syscall a profile has rules for, whose arguments none of the rules accepts
/// (`socket` of another family, `ioctl` with another request, `clone` with other flags).
#[derive(Debug, Clone)]
pub struct Conditioned {
    pub calls: u64,
    /// The arguments the profile's conditions look at, as seen ("arg0 = 17 (AF_PACKET)").
    pub args: Capped<String>,
}

/// Everything the listener saw.
#[derive(Debug)]
pub struct Observed {
    /// Notifications answered.
    pub notified: u64,
    /// Calls per syscall name (`syscall N` for numbers without a name), for the notified
    /// syscalls.
    pub syscalls: Capped<String, u64>,
    /// Per candidate profile (same order), the syscalls it has no rule for.
    pub beyond: Vec<BTreeSet<String>>,
    /// Per candidate profile (same order), the syscalls it allows only with arguments other
    /// than the ones seen. `[syscalls] allow` would allow every argument, so a draft never
    /// lists these there.
    pub conditioned: Vec<BTreeMap<String, Conditioned>>,
    /// Paths and the strongest access each needed, with how it was used.
    pub paths: Capped<(PathBuf, Need), &'static str>,
    /// Path arguments that cannot become grants, with the reason.
    pub lossy: Capped<String>,
    pub unix_connects: Capped<PathBuf>,
    pub abstract_unix: Capped<String>,
    pub inet_binds: Capped<(String, u16)>,
    pub inet_connects: Capped<(String, u16)>,
    /// The highest descriptor number seen plus one, in any task of the sandbox.
    pub fd_peak: u64,
    /// The most tasks in the sandbox's cgroup, counted at every clone.
    pub pids_peak: u64,
    /// Notifications whose task went away before its arguments could be trusted.
    pub discarded: u64,
    /// Why the listener stopped answering before the sandbox ended; the run is then void.
    pub failure: Option<String>,
    fd_sampled: std::time::Instant,
}

impl Observed {
    pub fn new(candidates: usize) -> Self {
        Observed {
            notified: 0,
            syscalls: Capped::new(MAX_SYSCALLS),
            beyond: vec![BTreeSet::new(); candidates],
            conditioned: vec![BTreeMap::new(); candidates],
            paths: Capped::new(MAX_PATHS),
            lossy: Capped::new(MAX_NOTES),
            unix_connects: Capped::new(MAX_NOTES),
            abstract_unix: Capped::new(MAX_NOTES),
            inet_binds: Capped::new(MAX_NOTES),
            inet_connects: Capped::new(MAX_NOTES),
            fd_peak: 0,
            pids_peak: 0,
            discarded: 0,
            failure: None,
            fd_sampled: std::time::Instant::now()
                .checked_sub(FD_SAMPLE)
                .unwrap_or_else(std::time::Instant::now),
        }
    }
}

/// Distinct paths recorded at most.
const MAX_PATHS: usize = 65_536;
/// Distinct syscalls recorded at most: every name of the table fits; numbers without a name
/// beyond it are counted only.
const MAX_SYSCALLS: usize = 1024;
/// Distinct entries of each list that ends up as comments (sockets, addresses, lossy paths).
const MAX_NOTES: usize = 256;
/// Distinct argument values recorded per conditioned syscall.
const MAX_ARGS: usize = 16;

/// At most one descriptor listing per this interval from the listener.
const FD_SAMPLE: Duration = Duration::from_millis(2);

/// Runs the listener on its own thread; `candidates` are the profiles a draft may name. When
/// the listener fails (it can no longer answer), `failed` is set so that the run ends at once.
pub fn start(
    rx: mpsc::Receiver<OwnedFd>,
    candidates: Vec<Syscalls>,
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Observed> {
    std::thread::spawn(move || {
        let mut seen = Observed::new(candidates.len());
        let listener = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(fd) => break fd,
                Err(mpsc::RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => continue,
                Err(_) => return seen,
            }
        };
        if let Err(e) = serve(&listener, &candidates, &stop, &mut seen) {
            seen.failure = Some(e);
            failed.store(true, Ordering::Relaxed);
        }
        // Dropping the listener answers every pending and later notification with ENOSYS:
        // no task waits for an answer that will not come.
        drop(listener);
        seen
    })
}

/// Whether a listener error only means that the task died meanwhile (ENOENT), or that the
/// call was interrupted; anything else leaves a task waiting and ends the run.
pub fn benign(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(nix::Error::ENOENT as i32)
        || e.kind() == std::io::ErrorKind::Interrupted
}

fn serve(
    listener: &OwnedFd,
    candidates: &[Syscalls],
    stop: &AtomicBool,
    seen: &mut Observed,
) -> Result<(), String> {
    loop {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(50u8)) {
            Ok(0) | Err(nix::Error::EINTR) => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => return Err(format!("polling the seccomp listener: {e}")),
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if revents.contains(PollFlags::POLLIN) {
            match learn::recv(listener.as_fd()) {
                Ok(n) => handle(listener, &n, candidates, seen)?,
                Err(e) if benign(&e) => {}
                Err(e) => return Err(format!("receiving a seccomp notification: {e}")),
            }
        } else if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            // Every task that used the filter is gone.
            return Ok(());
        }
    }
}

fn handle(
    listener: &OwnedFd,
    n: &learn::Notification,
    candidates: &[Syscalls],
    seen: &mut Observed,
) -> Result<(), String> {
    let name = syscall_name(n.nr);
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
    // Learning observes, it never decides: the call goes on whatever was recorded.
    match learn::send_continue(listener.as_fd(), n.id) {
        Ok(()) => {}
        Err(e) if benign(&e) => {}
        Err(e) => return Err(format!("continuing {name} of task {}: {e}", n.pid)),
    }
    seen.notified += 1;
    if !valid {
        seen.discarded += 1;
        return Ok(());
    }
    seen.syscall(candidates, &name, &n.args);
    for fact in facts {
        record(seen, fact);
    }
    Ok(())
}

impl Observed {
    /// Counts a call and records what each candidate profile would do with it; only for
    /// recorded syscall names, so the per-profile sets are bounded by the same cap.
    pub fn syscall(&mut self, candidates: &[Syscalls], name: &str, args: &[u64; 6]) {
        let Some(calls) = self.syscalls.entry(name.to_owned(), || 0) else { return };
        *calls += 1;
        let seen = self;
        for (i, profile) in candidates.iter().enumerate() {
            match verdict(profile, name, args) {
                Verdict::Allowed => {}
                Verdict::NoRule => {
                    seen.beyond[i].insert(name.to_owned());
                }
                Verdict::OtherArgs(indices) => {
                    let c = seen.conditioned[i]
                        .entry(name.to_owned())
                        .or_insert_with(|| Conditioned { calls: 0, args: Capped::new(MAX_ARGS) });
                    c.calls += 1;
                    c.args.insert(describe_args(name, args, &indices));
                }
            }
        }
    }
}

/// The syscall's name, or `syscall N` for a number the table does not know.
fn syscall_name(nr: i32) -> String {
    usize::try_from(nr)
        .ok()
        .and_then(syscalls::Sysno::new)
        .map_or_else(|| format!("syscall {nr}"), |s| s.name().to_owned())
}

fn record(seen: &mut Observed, fact: Fact) {
    match fact {
        Fact::Path { path, need, what } => {
            seen.paths.entry((super::paths::canonical(&path), need), || what);
        }
        Fact::UnixConnect(p) => seen.unix_connects.insert(p),
        Fact::AbstractUnix(name) => seen.abstract_unix.insert(name),
        Fact::InetBind { addr, port } => seen.inet_binds.insert((addr, port)),
        Fact::InetConnect { addr, port } => seen.inet_connects.insert((addr, port)),
        Fact::Lossy { call, detail } => seen.lossy.insert(format!("{call}: {detail}")),
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

/// What a profile's filter would do with this call.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// The profile has no rule for the syscall.
    NoRule,
    /// The profile has rules for the syscall, but their conditions refuse these arguments;
    /// the argument indices the conditions look at.
    OtherArgs(BTreeSet<u8>),
}

/// What `profile` does with this call, as the real filter would (argument conditions included).
pub fn verdict(profile: &Syscalls, name: &str, args: &[u64; 6]) -> Verdict {
    if profile.allow.iter().any(|a| a == name) {
        return Verdict::Allowed;
    }
    let rules: Vec<_> = profile.rules.iter().filter(|r| r.syscall == name).collect();
    if rules.is_empty() {
        return Verdict::NoRule;
    }
    let accepts = |c: &vitrine_policy::ArgCondition| {
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
    };
    if rules.iter().any(|r| r.args.iter().all(accepts)) {
        return Verdict::Allowed;
    }
    Verdict::OtherArgs(rules.iter().flat_map(|r| r.args.iter().map(|c| c.index)).collect())
}

/// The arguments at `indices`, for a comment: `arg0 = 17 (AF_PACKET)`, `arg1 = 0x5401`.
pub fn describe_args(name: &str, args: &[u64; 6], indices: &BTreeSet<u8>) -> String {
    let parts: Vec<String> = indices
        .iter()
        .filter_map(|&i| Some((i, *args.get(usize::from(i))?)))
        .map(|(i, v)| match (name, i) {
            ("socket", 0) => {
                let family = v & 0xffff_ffff;
                match socket_family(family) {
                    Some(f) => format!("arg{i} = {family} ({f})"),
                    None => format!("arg{i} = {family}"),
                }
            }
            ("socket", _) => format!("arg{i} = {}", v & 0xffff_ffff),
            _ => format!("arg{i} = {v:#x}"),
        })
        .collect();
    parts.join(", ")
}

fn socket_family(f: u64) -> Option<&'static str> {
    Some(match f {
        1 => "AF_UNIX",
        2 => "AF_INET",
        10 => "AF_INET6",
        16 => "AF_NETLINK",
        17 => "AF_PACKET",
        29 => "AF_CAN",
        31 => "AF_BLUETOOTH",
        38 => "AF_ALG",
        40 => "AF_VSOCK",
        _ => return None,
    })
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
        assert_eq!(verdict(&profile, "read", &[0; 6]), Verdict::Allowed);
        assert_eq!(verdict(&profile, "ptrace", &[0; 6]), Verdict::Allowed);
        let socket = [1 | (7 << 32), 0, 0, 0, 0, 0];
        assert_eq!(verdict(&profile, "socket", &socket), Verdict::Allowed, "dword compare");
        let packet = [17, 3, 0, 0, 0, 0];
        assert_eq!(verdict(&profile, "socket", &packet), Verdict::OtherArgs([0].into()));
        assert_eq!(describe_args("socket", &packet, &[0].into()), "arg0 = 17 (AF_PACKET)");
        assert_eq!(describe_args("ioctl", &[3, 0x5401, 0, 0, 0, 0], &[1].into()), "arg1 = 0x5401");
        assert_eq!(verdict(&profile, "mount", &[0; 6]), Verdict::NoRule);
    }

    #[test]
    fn capped_collections_stop_growing_and_count_the_rest() {
        let mut c: Capped<u32> = Capped::new(2);
        for v in [1, 2, 1, 3, 4, 2] {
            c.insert(v);
        }
        assert_eq!(c.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(c.dropped, 2, "3 and 4 turned away; known keys are not counted");
        let mut counts: Capped<String, u64> = Capped::new(1);
        for name in ["read", "read", "syscall 999"] {
            if let Some(n) = counts.entry(name.to_owned(), || 0) {
                *n += 1;
            }
        }
        assert_eq!(counts.get(&"read".to_owned()), Some(&2));
        assert_eq!(counts.dropped, 1);
    }

    #[test]
    fn endless_unknown_numbers_do_not_grow_the_per_profile_sets() {
        let profile = Syscalls {
            profile: "t".into(),
            profile_path: "/t".into(),
            rules: vec![],
            allow: vec![],
            action: vitrine_policy::SeccompAction::Kill,
        };
        let mut seen = Observed::new(1);
        for nr in 0..MAX_SYSCALLS as i32 + 500 {
            seen.syscall(std::slice::from_ref(&profile), &syscall_name(100_000 + nr), &[0; 6]);
        }
        assert_eq!(seen.syscalls.len(), MAX_SYSCALLS);
        assert_eq!(seen.syscalls.dropped, 500);
        assert_eq!(seen.beyond[0].len(), MAX_SYSCALLS);
    }

    #[test]
    fn only_a_task_that_died_meanwhile_is_a_benign_listener_error() {
        assert!(benign(&std::io::Error::from_raw_os_error(nix::Error::ENOENT as i32)));
        assert!(benign(&std::io::Error::from_raw_os_error(nix::Error::EINTR as i32)));
        for fatal in [nix::Error::EINVAL, nix::Error::EBADF, nix::Error::EINPROGRESS] {
            assert!(!benign(&std::io::Error::from_raw_os_error(fatal as i32)), "{fatal}");
        }
    }

    #[test]
    fn numbers_without_a_name_stay_numbers() {
        assert_eq!(syscall_name(0), "read");
        assert_eq!(syscall_name(1000), "syscall 1000");
        assert_eq!(syscall_name(-1), "syscall -1");
    }
}
