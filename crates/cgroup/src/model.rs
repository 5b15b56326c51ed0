//! The plain data types of the crate: versions, controllers, limits, statistics.

use std::fmt;

/// Which cgroup interface the host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// One hierarchy per controller (`/sys/fs/cgroup/<controller>`).
    V1,
    /// The unified hierarchy with delegated controllers.
    V2,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "cgroup v1",
            Version::V2 => "cgroup v2",
        })
    }
}

/// The controllers vitrine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Memory,
    Cpu,
    /// CPU time accounting; a controller of its own only on v1 (v2 always has `cpu.stat`).
    Cpuacct,
    Cpuset,
    Pids,
    /// Freezing for a race-free kill; a controller of its own only on v1 (v2 has `cgroup.freeze`).
    Freezer,
}

impl Controller {
    /// Every controller vitrine looks for, in the order they are reported.
    pub const ALL: [Controller; 6] = [
        Controller::Memory,
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Cpuset,
        Controller::Pids,
        Controller::Freezer,
    ];

    /// The kernel's name of the controller.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Cpuset => "cpuset",
            Controller::Pids => "pids",
            Controller::Freezer => "freezer",
        }
    }

    /// What the supervisor cannot do without this controller, for the start-up report.
    pub fn consequence(self) -> &'static str {
        match self {
            Controller::Memory => "memory limits cannot be enforced and OOM kills are not counted",
            Controller::Cpu => "CPU limits cannot be enforced",
            Controller::Cpuacct => "CPU time is not reported",
            Controller::Cpuset => "cpuset limits cannot be enforced",
            Controller::Pids => "process-count limits cannot be enforced",
            Controller::Freezer => {
                "a visualization cannot be frozen before it is killed, so a fork racing the kill may survive a round"
            }
        }
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A controller the host does not offer, with what that means for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub controller: Controller,
    /// Why it is missing when the supervisor knows more than "not mounted".
    pub reason: Option<String>,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} controller missing: {}", self.controller, self.controller.consequence())?;
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

/// The resource limits of one cgroup. `None` leaves a resource unlimited.
///
/// A limit that is set while its controller is unavailable makes [`crate::Manager::create`]
/// fail: limits are never skipped silently.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Bytes of memory; swap is switched off for the cgroup at the same time.
    pub memory: Option<u64>,
    /// CPU bandwidth in cores (1.5 = one and a half CPUs' worth of time per period).
    pub cpu: Option<f64>,
    /// A CPU list in the kernel's format, such as `2-3` or `0,2`.
    pub cpuset: Option<String>,
    /// The maximum number of tasks (processes and threads).
    pub pids: Option<u32>,
}

/// A snapshot of a cgroup's resource use.
///
/// A figure whose controller is unavailable (or whose file the kernel lacks, such as
/// `memory.peak` before Linux 5.19) is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// CPU time used by every process that ever ran in the cgroup.
    pub cpu_seconds: f64,
    pub memory_current: u64,
    /// The highest memory use seen (v2 `memory.peak`, v1 `memory.max_usage_in_bytes`).
    pub memory_peak: u64,
    pub pids_current: u64,
    pub oom_kills: u64,
}

/// Memory events of a cgroup since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryEvents {
    /// Times the cgroup ran out of memory. v1 kernels only count kills, so on v1 this
    /// equals `oom_kill`.
    pub oom: u64,
    /// Processes the OOM killer killed inside the cgroup.
    pub oom_kill: u64,
}
