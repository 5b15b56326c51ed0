//! Small file helpers for cgroupfs that attach the path to every error, and parsers for the
//! kernel's flat-keyed files. The parsers are pure so they are tested without a cgroup.

use std::fs;
use std::path::{Path, PathBuf};

use crate::Error;

pub(crate) fn read(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })
}

pub(crate) fn write(path: &Path, value: &str) -> Result<(), Error> {
    fs::write(path, value).map_err(|source| Error::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

/// Reads a file that holds a single unsigned number.
pub(crate) fn read_u64(path: &Path) -> Result<u64, Error> {
    let text = read(path)?;
    text.trim().parse().map_err(|_| Error::Parse { path: path.to_owned(), content: text })
}

/// Reads a single number when the file exists; `Ok(None)` when the kernel does not offer it.
pub(crate) fn read_u64_if_present(path: &Path) -> Result<Option<u64>, Error> {
    if path.exists() { read_u64(path).map(Some) } else { Ok(None) }
}

/// Looks `key` up in a flat-keyed file such as `memory.events`, `cpu.stat` or
/// `memory.oom_control` (`key value` per line). A missing key is `None`.
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != key {
            return None;
        }
        words.next()?.parse().ok()
    })
}

/// The process ids listed in a `cgroup.procs` text.
pub fn parse_pids(text: &str) -> Vec<i32> {
    text.lines().filter_map(|line| line.trim().parse().ok()).collect()
}

/// Reads `cgroup.procs` of a cgroup directory. A directory that has vanished (or is being
/// removed) has no processes.
pub(crate) fn procs(dir: &Path) -> Result<Vec<i32>, Error> {
    let path = dir.join("cgroup.procs");
    match fs::read_to_string(&path) {
        Ok(text) => Ok(parse_pids(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        // ENODEV: the kernel is tearing the cgroup down (removed by someone else meanwhile).
        Err(e) if e.raw_os_error() == Some(19) => Ok(Vec::new()),
        Err(source) => Err(Error::Read { path, source }),
    }
}

/// The cgroup path of the calling process in one hierarchy, from `/proc/self/cgroup` text.
///
/// `hierarchy` is `""` for the unified (v2) hierarchy, else a v1 controller name. Lines look
/// like `4:memory:/a/b` (v1, possibly with several comma-separated controllers) and `0::/a/b` (v2).
pub fn own_cgroup(proc_self_cgroup: &str, hierarchy: &str) -> Option<PathBuf> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        let matches = if hierarchy.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == hierarchy)
        };
        matches.then(|| PathBuf::from(path))
    })
}

/// Joins a cgroup path as the kernel reports it (absolute within the hierarchy) to the mount
/// point of that hierarchy. `mount_root` is the part of the hierarchy the mount shows (`/`
/// except inside containers); a path outside it is unreachable, so the mount point is used.
pub(crate) fn on_disk(mount_point: &Path, mount_root: &Path, cgroup: &Path) -> PathBuf {
    match cgroup.strip_prefix(mount_root) {
        Ok(rel) => mount_point.join(rel),
        Err(_) => mount_point.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values_are_found_by_exact_key() {
        let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(keyed_value(events, "oom"), Some(3));
        assert_eq!(keyed_value(events, "oom_kill"), Some(2));
        assert_eq!(keyed_value(events, "oom_group"), None);
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 7\n";
        assert_eq!(keyed_value(oom_control, "oom_kill"), Some(7));
    }

    #[test]
    fn own_cgroup_matches_v1_and_v2_lines() {
        let text = "9:name=systemd:/\n4:memory:/process_api/71f9\n2:cpu,cpuacct:/x\n0::/system.slice/vitrine.service\n";
        assert_eq!(own_cgroup(text, "memory"), Some(PathBuf::from("/process_api/71f9")));
        assert_eq!(own_cgroup(text, "cpuacct"), Some(PathBuf::from("/x")));
        assert_eq!(own_cgroup(text, ""), Some(PathBuf::from("/system.slice/vitrine.service")));
        assert_eq!(own_cgroup(text, "pids"), None);
    }

    #[test]
    fn on_disk_respects_the_mount_root() {
        let p = on_disk(Path::new("/sys/fs/cgroup/memory"), Path::new("/"), Path::new("/a/b"));
        assert_eq!(p, PathBuf::from("/sys/fs/cgroup/memory/a/b"));
        let p = on_disk(Path::new("/m"), Path::new("/ctr"), Path::new("/ctr/a"));
        assert_eq!(p, PathBuf::from("/m/a"));
        let p = on_disk(Path::new("/m"), Path::new("/ctr"), Path::new("/other"));
        assert_eq!(p, PathBuf::from("/m"));
    }

    #[test]
    fn pids_skip_blank_lines() {
        assert_eq!(parse_pids("12\n\n345\n"), vec![12, 345]);
    }
}
