//! Killing every process of a cgroup, including ones that fork while we kill.

use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use cgroups_rs::FreezerState;
use cgroups_rs::fs::freezer::FreezerController;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cgroup::Cgroup;
use crate::fsutil;
use crate::{Controller, Error, Version};

/// Kill rounds before giving up. A round only fails to empty the cgroup when a process
/// forked between listing and signalling (no freezer) or is stuck in the kernel.
const ROUNDS: u32 = 50;
/// Polls for an emptied cgroup per round, with a growing pause between them.
const POLLS: u32 = 12;

pub(crate) fn kill_all(cgroup: &Cgroup) -> Result<Vec<i32>, Error> {
    let first = pids(cgroup)?;
    if first.is_empty() {
        return Ok(first);
    }
    let kill_file = cgroup.dirs()[0].join("cgroup.kill");
    if cgroup.version() == Version::V2 && kill_file.exists() {
        // The kernel kills the whole cgroup, new forks included, in one step.
        fsutil::write(&kill_file, "1")?;
        if wait_empty(cgroup)? {
            return Ok(first);
        }
    }
    let freezer = cgroup
        .dir_of(Controller::Freezer)
        .map(|dir| (dir.to_owned(), freezer_at(dir, cgroup.version())));
    for _ in 0..ROUNDS {
        let pids = pids(cgroup)?;
        if pids.is_empty() {
            return Ok(first);
        }
        if let Some((dir, f)) = &freezer {
            freeze(dir, f)?;
        }
        let signalled = signal_all(cgroup, &pids);
        if let Some((dir, f)) = &freezer {
            // Thaw even when a signal failed, or the survivors would stay frozen forever.
            f.thaw()
                .map_err(|source| Error::Freeze { path: dir.clone(), source: Box::new(source) })?;
        }
        signalled?;
        if wait_empty(cgroup)? {
            return Ok(first);
        }
    }
    Err(Error::Unkillable { path: cgroup.dirs()[0].clone(), pids: pids(cgroup)?, rounds: ROUNDS })
}

/// The cgroup's processes, except the calling one: a supervisor thread is inside a
/// visualization's cgroup for the instant it forks a sandbox into it (v1), and the kill must
/// never reach the supervisor itself.
fn pids(cgroup: &Cgroup) -> Result<Vec<i32>, Error> {
    let own = std::process::id() as i32;
    Ok(cgroup.pids()?.into_iter().filter(|&p| p != own).collect())
}

fn freezer_at(dir: &Path, version: Version) -> FreezerController {
    FreezerController::new(dir.to_owned(), dir.to_owned(), version == Version::V2)
}

/// Freezes and waits (briefly) until the kernel reports every task frozen. A cgroup that stays
/// FREEZING (a task in uninterruptible sleep) is still signalled: the signal is delivered when
/// the task wakes.
fn freeze(dir: &Path, f: &FreezerController) -> Result<(), Error> {
    f.freeze()
        .map_err(|source| Error::Freeze { path: dir.to_owned(), source: Box::new(source) })?;
    let mut delay = Duration::from_micros(200);
    for _ in 0..POLLS {
        if matches!(f.state(), Ok(FreezerState::Frozen)) {
            break;
        }
        sleep(delay);
        delay *= 2;
    }
    Ok(())
}

fn signal_all(cgroup: &Cgroup, pids: &[i32]) -> Result<(), Error> {
    for &pid in pids {
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            // Already gone: exactly what we want.
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(source) => {
                return Err(Error::Signal { pid, path: cgroup.dirs()[0].clone(), source });
            }
        }
    }
    Ok(())
}

/// Waits until the cgroup has no processes; `false` when some remain after the last poll.
fn wait_empty(cgroup: &Cgroup) -> Result<bool, Error> {
    let mut delay = Duration::from_micros(500);
    for _ in 0..POLLS {
        if pids(cgroup)?.is_empty() {
            return Ok(true);
        }
        sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(100));
    }
    Ok(pids(cgroup)?.is_empty())
}
