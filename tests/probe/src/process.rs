//! Checks of the probe's own process: credentials, descriptors, environment, pid namespace.

use std::collections::BTreeSet;

use crate::{Args, Report};

/// Reads one `Key:\tvalue` line of /proc/self/status.
pub fn status_field(key: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(|v| v.trim().to_owned()))
}

pub fn threads(report: &mut Report) {
    let handles: Vec<_> = (0..4u64).map(|i| std::thread::spawn(move || i * 2)).collect();
    let sum: u64 = handles.into_iter().filter_map(|h| h.join().ok()).sum();
    report.check("threads", sum == 12, format!("4 threads joined, sum {sum}"));
}

pub fn credentials(report: &mut Report, args: &Args) {
    for (key, want) in [("NoNewPrivs", "1"), ("Seccomp", "2")] {
        let got = status_field(key).unwrap_or_default();
        report.check(key, got == want, format!("{got} (want {want})"));
    }
    for key in ["CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"] {
        let got = status_field(key).unwrap_or_default();
        let zero = !got.is_empty() && got.chars().all(|c| c == '0');
        report.check(key, zero, got);
    }
    let (uid, gid) = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
    let uid_ok = uid != 0 && args.get("uid").is_none_or(|u| u == uid.to_string());
    report.check("uid", uid_ok, format!("uid {uid}, gid {gid}"));
    report.check("gid", gid != 0, gid);
    let euid = nix::unistd::geteuid().as_raw();
    report.check("euid", euid == uid, euid);
    let groups = nix::unistd::getgroups().map(|g| g.len()).unwrap_or(usize::MAX);
    report.check("supplementary groups", groups == 0, format!("{groups} group(s)"));
}

pub fn descriptors(report: &mut Report, args: &Args) {
    let want: BTreeSet<i32> =
        args.get("fds").unwrap_or("0,1,2").split(',').filter_map(|s| s.parse().ok()).collect();
    // The directory stream holds one descriptor of its own; it is excluded by number.
    let mut open = BTreeSet::new();
    let flags = nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY;
    if let Ok(mut dir) = nix::dir::Dir::open("/proc/self/fd", flags, nix::sys::stat::Mode::empty())
    {
        let own = std::os::fd::AsRawFd::as_raw_fd(&dir);
        for entry in dir.iter().flatten() {
            if let Some(fd) = entry.file_name().to_str().ok().and_then(|s| s.parse::<i32>().ok()) {
                if fd != own {
                    open.insert(fd);
                }
            }
        }
    }
    report.check("open fds", open == want, format!("{open:?} (want {want:?})"));
}

pub fn environment(report: &mut Report, args: &Args) {
    let got: BTreeSet<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    let want: BTreeSet<String> = args.all("env").iter().cloned().collect();
    report.check("environment", got == want, format!("{got:?} (want {want:?})"));
}

/// Pids visible in /proc (this procfs belongs to the sandbox's pid namespace).
pub fn visible_pids() -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// Whether pid 1 is the sandbox's init (a fork of vitrine-shim).
pub fn init_is_shim() -> bool {
    std::fs::read("/proc/1/cmdline").map(|c| c.starts_with(b"vitrine-shim")).unwrap_or(false)
}

pub fn pid_namespace(report: &mut Report) {
    let pids = visible_pids();
    let me = std::process::id() as i32;
    let only_ours = pids.iter().all(|p| *p == 1 || *p == me) && pids.contains(&1);
    report.check("/proc shows only the sandbox", only_ours, format!("pids {pids:?}, self {me}"));
    report.check("pid 1 is the init", init_is_shim(), "/proc/1/cmdline starts with vitrine-shim");
    report.check("not pid 1", me != 1, format!("self is pid {me}"));
}

/// A setuid-root program (a copy of the probe, prepared by the harness) must not elevate.
pub fn setuid(report: &mut Report, args: &Args) {
    let Some(path) = args.get("setuid") else { return };
    let out = std::process::Command::new(path).arg("whoami").output();
    let detail = match &out {
        Ok(o) => format!("{} {}", String::from_utf8_lossy(&o.stdout).trim(), o.status),
        Err(e) => format!("could not run: {e}"),
    };
    let me = format!("euid={}", nix::unistd::getuid());
    let ok = match &out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim() == me,
        // Not being allowed to execute it at all is just as good.
        Err(e) => e.raw_os_error() == Some(libc::EACCES),
    };
    report.check("setuid does not elevate", ok, detail);
}
