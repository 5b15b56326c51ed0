//! The handle to one visualization's cgroup.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

use crate::fsutil::{self, keyed_value};
use crate::{Controller, Error, MemoryEvents, Stats, Version, kill};

/// One visualization's cgroup: one directory per v1 hierarchy, or one v2 directory.
///
/// The handle holds only paths; it is cheap to clone and may be used from any thread.
#[derive(Debug, Clone)]
pub struct Cgroup {
    name: String,
    placement: Placement,
    /// Every distinct directory, in a fixed order (co-mounted v1 controllers share one).
    dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub(crate) enum Placement {
    V1 { dirs: BTreeMap<Controller, PathBuf> },
    V2 { dir: PathBuf, available: Vec<Controller> },
}

impl Cgroup {
    pub(crate) fn new(name: String, placement: Placement) -> Cgroup {
        let mut dirs: Vec<PathBuf> = match &placement {
            Placement::V1 { dirs } => dirs.values().cloned().collect(),
            Placement::V2 { dir, .. } => vec![dir.clone()],
        };
        dirs.sort();
        dirs.dedup();
        Cgroup { name, placement, dirs }
    }

    /// The name given to [`crate::Manager::create`].
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> Version {
        match self.placement {
            Placement::V1 { .. } => Version::V1,
            Placement::V2 { .. } => Version::V2,
        }
    }

    /// The cgroup's directories (one per v1 hierarchy; one on v2).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The directory of `controller`, when it is available.
    pub(crate) fn dir_of(&self, controller: Controller) -> Option<&Path> {
        match &self.placement {
            Placement::V1 { dirs } => dirs.get(&controller).map(PathBuf::as_path),
            Placement::V2 { dir, available } => available.contains(&controller).then_some(dir),
        }
    }

    /// Moves the process `pid` (with all its threads) into the cgroup, in every hierarchy.
    pub fn add_pid(&self, pid: i32) -> Result<(), Error> {
        let value = pid.to_string();
        for dir in &self.dirs {
            fsutil::write(&dir.join("cgroup.procs"), &value)?;
        }
        Ok(())
    }

    /// Moves the calling thread alone into the cgroup, in every hierarchy, so that a process it
    /// forks now is born inside: no moment in which it runs elsewhere, and no write to
    /// `cgroup.procs` afterwards. Returns `false` on v2, where a single thread of a domain
    /// cgroup cannot move (use [`Cgroup::add_pid`] or `CLONE_INTO_CGROUP` there); nothing has
    /// moved then.
    ///
    /// v1 only, and cheap there: the kernel moves the calling thread (`0` written to `tasks`)
    /// without taking the global threadgroup lock, whose first writer waits for an RCU grace
    /// period, milliseconds on a busy host, that every `cgroup.procs` write of another process
    /// pays. The caller must return with [`crate::Manager::return_calling_thread`], also when
    /// this fails half-way.
    pub fn enter_calling_thread(&self) -> Result<bool, Error> {
        if self.version() != Version::V1 {
            return Ok(false);
        }
        for dir in &self.dirs {
            fsutil::write(&dir.join("tasks"), "0")?;
        }
        Ok(true)
    }

    /// On v2, a directory fd of the cgroup for `clone3(CLONE_INTO_CGROUP)`, which starts a
    /// child inside the cgroup with no window in which it runs outside. `None` on v1, where
    /// the caller uses [`Cgroup::add_pid`] before the child execs.
    pub fn procs_dir_fd(&self) -> Result<Option<OwnedFd>, Error> {
        let Placement::V2 { dir, .. } = &self.placement else {
            return Ok(None);
        };
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        open(dir.as_path(), flags, Mode::empty())
            .map(Some)
            .map_err(|source| Error::Open { path: dir.clone(), source })
    }

    /// The processes in the cgroup (in any of its hierarchies), sorted.
    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        let mut pids = Vec::new();
        for dir in &self.dirs {
            pids.extend(fsutil::procs(dir)?);
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Kills every process in the cgroup and waits until it is empty. Returns the pids that
    /// were running when the kill started.
    ///
    /// v2 uses `cgroup.kill` (Linux 5.14+), which the kernel applies atomically, including to
    /// processes forked meanwhile. Elsewhere the cgroup is frozen first so nothing can fork
    /// between listing and signalling, every process gets SIGKILL, and the cgroup is thawed so
    /// the signals are delivered; this repeats until the cgroup is empty.
    pub fn kill_all(&self) -> Result<Vec<i32>, Error> {
        kill::kill_all(self)
    }

    /// A snapshot of the cgroup's resource use.
    pub fn stats(&self) -> Result<Stats, Error> {
        let mut stats =
            Stats { oom_kills: self.memory_events_or_default()?.oom_kill, ..Stats::default() };
        if let Some(dir) = self.dir_of(Controller::Cpuacct) {
            stats.cpu_seconds = match self.version() {
                Version::V1 => fsutil::read_u64(&dir.join("cpuacct.usage"))? as f64 / 1e9,
                Version::V2 => {
                    let path = dir.join("cpu.stat");
                    let text = fsutil::read(&path)?;
                    let usec = keyed_value(&text, "usage_usec")
                        .ok_or(Error::Parse { path, content: text })?;
                    usec as f64 / 1e6
                }
            };
        }
        if let Some(dir) = self.dir_of(Controller::Memory) {
            let (current, peak) = match self.version() {
                Version::V1 => ("memory.usage_in_bytes", "memory.max_usage_in_bytes"),
                Version::V2 => ("memory.current", "memory.peak"),
            };
            stats.memory_current = fsutil::read_u64(&dir.join(current))?;
            stats.memory_peak = fsutil::read_u64_if_present(&dir.join(peak))?.unwrap_or(0);
        }
        stats.pids_current = match self.dir_of(Controller::Pids) {
            Some(dir) => fsutil::read_u64(&dir.join("pids.current"))?,
            None => self.pids()?.len() as u64,
        };
        Ok(stats)
    }

    /// The OOM counters of the cgroup. Fails when the memory controller is unavailable,
    /// because then nothing counts them.
    ///
    /// v2 reads `memory.events` (the library underneath does not report v2 OOMs); v1 reads the
    /// `oom_kill` line of `memory.oom_control` (Linux 4.13+), the only counter v1 has.
    pub fn memory_events(&self) -> Result<MemoryEvents, Error> {
        let dir = self
            .dir_of(Controller::Memory)
            .ok_or(Error::ControllerMissing { controller: Controller::Memory, key: "memory" })?;
        let file = match self.version() {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        let path = dir.join(file);
        let text = fsutil::read(&path)?;
        let oom_kill = keyed_value(&text, "oom_kill")
            .ok_or_else(|| Error::Parse { path: path.clone(), content: text.clone() })?;
        let oom = match self.version() {
            Version::V1 => oom_kill,
            Version::V2 => keyed_value(&text, "oom").unwrap_or(oom_kill),
        };
        Ok(MemoryEvents { oom, oom_kill })
    }

    fn memory_events_or_default(&self) -> Result<MemoryEvents, Error> {
        if self.dir_of(Controller::Memory).is_some() {
            self.memory_events()
        } else {
            Ok(MemoryEvents::default())
        }
    }

    /// Kills whatever still runs in the cgroup, then removes its directories (children
    /// first). The kernel tears a cgroup down asynchronously after its last process exits,
    /// so `rmdir` is retried for a short while on `EBUSY`.
    pub fn remove(&self) -> Result<(), Error> {
        if !self.pids()?.is_empty() {
            self.kill_all()?;
        }
        for dir in &self.dirs {
            remove_tree(dir)?;
        }
        Ok(())
    }
}

/// Removes `dir` and any sub-cgroups below it, deepest first.
fn remove_tree(dir: &Path) -> Result<(), Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Read { path: dir.to_owned(), source });
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    rmdir_retrying(dir)
}

fn rmdir_retrying(dir: &Path) -> Result<(), Error> {
    let mut delay = Duration::from_millis(5);
    let mut attempt = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if attempt < 8 && e.raw_os_error() == Some(nix::libc::EBUSY) => {
                sleep(delay);
                delay *= 2;
                attempt += 1;
            }
            Err(source) => {
                return Err(Error::Remove { path: dir.to_owned(), source });
            }
        }
    }
}
