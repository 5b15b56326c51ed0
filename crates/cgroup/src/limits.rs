//! Checking limits and writing them through the controllers of `cgroups-rs`.

use std::path::{Path, PathBuf};

use cgroups_rs::fs::MaxValue;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;

use crate::cgroup::Cgroup;
use crate::fsutil;
use crate::{Controller, Error, Limits, Version};

/// The CFS period: 100 ms is the kernel default and keeps throttling latency acceptable for
/// rendering loops.
const CPU_PERIOD_US: u64 = 100_000;
/// The kernel rejects quotas below 1 ms.
const CPU_MIN_QUOTA_US: u64 = 1_000;

/// Rejects limits the kernel would refuse or that make no sense, before touching cgroupfs.
pub(crate) fn validate(limits: &Limits) -> Result<(), Error> {
    if limits.memory == Some(0) {
        return Err(invalid("memory", "must be more than 0 bytes"));
    }
    if let Some(memory) = limits.memory
        && i64::try_from(memory).is_err()
    {
        return Err(invalid("memory", "is larger than the kernel can represent"));
    }
    if let Some(cpu) = limits.cpu
        && !(cpu.is_finite() && cpu > 0.0 && cpu <= 4096.0)
    {
        return Err(invalid("cpu", "must be a number of cores above 0 and at most 4096"));
    }
    if let Some(set) = &limits.cpuset {
        let ok =
            !set.is_empty() && set.bytes().all(|b| b.is_ascii_digit() || b == b',' || b == b'-');
        if !ok {
            return Err(invalid("cpuset", "must be a CPU list such as `2-3` or `0,2`"));
        }
    }
    if limits.pids == Some(0) {
        return Err(invalid("pids", "must allow at least 1 process"));
    }
    Ok(())
}

fn invalid(key: &'static str, reason: &str) -> Error {
    Error::InvalidLimit { key, reason: reason.to_owned() }
}

/// Fails closed when a requested limit has no controller to enforce it.
pub(crate) fn require_controllers(limits: &Limits, available: &[Controller]) -> Result<(), Error> {
    let needs = [
        (limits.memory.is_some(), Controller::Memory, "memory"),
        (limits.cpu.is_some(), Controller::Cpu, "cpu"),
        (limits.cpuset.is_some(), Controller::Cpuset, "cpuset"),
        (limits.pids.is_some(), Controller::Pids, "pids"),
    ];
    for (wanted, controller, key) in needs {
        if wanted && !available.contains(&controller) {
            return Err(Error::ControllerMissing { controller, key });
        }
    }
    Ok(())
}

/// On v1 a new cpuset cgroup starts with empty `cpuset.cpus` and `cpuset.mems`, and no task
/// can join it until both are set: copy them from the parent (for the `<root>` directory too).
pub(crate) fn prepare_cpuset(cgroup: &Cgroup) -> Result<(), Error> {
    if cgroup.version() != Version::V1 {
        return Ok(());
    }
    let Some(dir) = cgroup.dir_of(Controller::Cpuset) else {
        return Ok(());
    };
    let Some(base) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        inherit(base, file)?;
        inherit(dir, file)?;
    }
    Ok(())
}

fn inherit(dir: &Path, file: &str) -> Result<(), Error> {
    let own = dir.join(file);
    if !fsutil::read(&own)?.trim().is_empty() {
        return Ok(());
    }
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    let value = fsutil::read(&parent.join(file))?;
    fsutil::write(&own, value.trim())
}

/// Writes every limit that is set. The caller has checked that the controllers exist.
pub(crate) fn apply(cgroup: &Cgroup, limits: &Limits) -> Result<(), Error> {
    let v2 = cgroup.version() == Version::V2;
    if let Some(bytes) = limits.memory {
        memory(dir(cgroup, Controller::Memory)?, bytes, v2)?;
    }
    if let Some(cores) = limits.cpu {
        let dir = dir(cgroup, Controller::Cpu)?;
        let quota = ((cores * CPU_PERIOD_US as f64).ceil() as u64).max(CPU_MIN_QUOTA_US);
        let c = CpuController::new(dir.clone(), dir.clone(), v2);
        c.set_cfs_quota_and_period(Some(quota as i64), Some(CPU_PERIOD_US))
            .map_err(|source| limit_error("cpu", cores, &dir, source))?;
    }
    if let Some(cpus) = &limits.cpuset {
        let dir = dir(cgroup, Controller::Cpuset)?;
        let c = CpuSetController::new(dir.clone(), dir.clone(), v2);
        c.set_cpus(cpus).map_err(|source| limit_error("cpuset", cpus, &dir, source))?;
    }
    if let Some(max) = limits.pids {
        let dir = dir(cgroup, Controller::Pids)?;
        let c = PidController::new(dir.clone(), dir.clone(), v2);
        c.set_pid_max(MaxValue::Value(i64::from(max)))
            .map_err(|source| limit_error("pids", max, &dir, source))?;
    }
    Ok(())
}

fn dir(cgroup: &Cgroup, controller: Controller) -> Result<PathBuf, Error> {
    cgroup
        .dir_of(controller)
        .map(Path::to_owned)
        .ok_or(Error::ControllerMissing { controller, key: controller.name() })
}

fn limit_error(
    key: &'static str,
    value: impl std::fmt::Display,
    path: &Path,
    source: cgroups_rs::fs::error::Error,
) -> Error {
    Error::Limit { key, value: value.to_string(), path: path.to_owned(), source: Box::new(source) }
}

/// Sets the memory limit with swap off, and makes an OOM kill take the whole cgroup on v2.
fn memory(dir: PathBuf, bytes: u64, v2: bool) -> Result<(), Error> {
    let c = MemController::new(dir.clone(), dir.clone(), v2);
    let limit = bytes as i64;
    let err = |source| limit_error("memory", bytes, &dir, source);
    if v2 {
        c.set_limit(limit).map_err(err)?;
        if dir.join("memory.swap.max").exists() {
            c.set_memswap_limit(0).map_err(err)?;
        } else {
            require_no_swap(&dir)?;
        }
        // One OOM kill ends the whole visualization, so the supervisor restarts it cleanly
        // instead of leaving a half-dead process tree behind (Linux 4.19+; older kernels kill
        // only the largest process, which the supervisor still sees as an OOM exit).
        let group = dir.join("memory.oom.group");
        if group.exists() {
            fsutil::write(&group, "1")?;
        }
        return Ok(());
    }
    if dir.join("memory.memsw.limit_in_bytes").exists() {
        // memory+swap must never be below memory: lift it first, so a reused cgroup with an
        // older, smaller limit accepts the new one, then pin it to the memory limit.
        c.set_memswap_limit(-1).map_err(err)?;
        c.set_limit(limit).map_err(err)?;
        c.set_memswap_limit(limit).map_err(err)?;
    } else {
        require_no_swap(&dir)?;
        c.set_limit(limit).map_err(err)?;
    }
    c.set_swappiness(0).map_err(err)
}

/// Without swap accounting the cgroup could swap beyond its limit: only acceptable when the
/// host has no swap at all.
fn require_no_swap(dir: &Path) -> Result<(), Error> {
    let swaps = fsutil::read(Path::new("/proc/swaps"))?;
    if swaps.lines().skip(1).any(|l| !l.trim().is_empty()) {
        return Err(Error::InvalidLimit {
            key: "memory",
            reason: format!(
                "swap is active but {} has no swap accounting, so swap cannot be switched off; \
                 boot with swapaccount=1 or disable swap",
                dir.display()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(f: impl FnOnce(&mut Limits)) -> Limits {
        let mut l = Limits::default();
        f(&mut l);
        l
    }

    #[test]
    fn nonsense_limits_are_refused_before_any_write() {
        let bad = [
            limits(|l| l.memory = Some(0)),
            limits(|l| l.memory = Some(u64::MAX)),
            limits(|l| l.cpu = Some(0.0)),
            limits(|l| l.cpu = Some(f64::NAN)),
            limits(|l| l.cpu = Some(-1.0)),
            limits(|l| l.cpuset = Some(String::new())),
            limits(|l| l.cpuset = Some("0-1\n".to_owned())),
            limits(|l| l.pids = Some(0)),
        ];
        for l in bad {
            assert!(validate(&l).is_err(), "{l:?}");
        }
        let good = Limits {
            memory: Some(512 << 20),
            cpu: Some(1.5),
            cpuset: Some("0,2-3".to_owned()),
            pids: Some(64),
        };
        assert!(validate(&good).is_ok());
        assert!(validate(&Limits::default()).is_ok());
    }

    #[test]
    fn every_limit_names_the_controller_it_needs() {
        let all =
            Limits { memory: Some(1), cpu: Some(1.0), cpuset: Some("0".to_owned()), pids: Some(1) };
        assert!(require_controllers(&all, &Controller::ALL).is_ok());
        for missing in [Controller::Memory, Controller::Cpu, Controller::Cpuset, Controller::Pids] {
            let available: Vec<Controller> =
                Controller::ALL.into_iter().filter(|c| *c != missing).collect();
            match require_controllers(&all, &available) {
                Err(Error::ControllerMissing { controller, key }) => {
                    assert_eq!(controller, missing);
                    assert_eq!(key, missing.name());
                }
                other => panic!("{missing}: {other:?}"),
            }
        }
        assert!(require_controllers(&Limits::default(), &[]).is_ok());
    }
}
