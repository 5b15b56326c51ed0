//! The seam between the daemon's lifecycle logic and the one spawn site (`crate::launch`).
//!
//! The daemon drives visualizations through these two traits only, so its state machine and
//! drivers can be exercised by unit tests with an in-process fake, while the shipped daemon uses
//! [`crate::daemon::real::RealLauncher`], which goes through `launch` and `vitrine-shim`.

use std::future::Future;
use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};
use vitrine_policy::Policy;

use crate::events::ExitReason;
use crate::osc::Delivery;

/// Creates sandboxes for policies.
pub trait Launcher: Send + Sync + 'static {
    /// What is computed once per policy load (verified binary, compiled filter, cgroup).
    type Prepared: Send + Sync + std::fmt::Debug + 'static;
    type Child: Sandboxed;

    /// Verifies the binary and prepares everything a spawn needs. Blocking (hashing).
    fn prepare(&self, policy: &Policy) -> Result<Self::Prepared, String>;

    /// Spawns one sandbox. Blocking but short; called from `spawn_blocking`.
    fn spawn(&self, prepared: &Self::Prepared) -> Result<Self::Child, String>;

    /// A restart of `prepared` will follow (the unit is backing off): the launcher may build
    /// its sandbox ahead, so that the next `spawn` has less to do. Blocking; best effort.
    fn prime(&self, _prepared: &Self::Prepared) {}

    /// No restart of `prepared` follows (stopped or failed): drop what `prime` built.
    fn unprime(&self, _prepared: &Self::Prepared) {}
}

/// A running sandbox as the daemon sees it.
pub trait Sandboxed: Send + 'static {
    /// The pid of the sandbox's outermost process (in the supervisor's pid namespace).
    fn pid(&self) -> u32;

    /// The sandbox layers the shim reported as enforced (e.g. `landlock-abi-6`, `seccomp`).
    fn layers(&self) -> Vec<String>;

    /// The read ends of the child's stdout and stderr, once.
    fn take_output(&mut self) -> Vec<(Stream, OwnedFd)>;

    /// Resolves when the sandbox has ended, with the classified reason. Must be cancel-safe:
    /// the driver polls it in a `select!` and calls it again after other work.
    fn wait(&mut self) -> impl Future<Output = ExitReason> + Send;

    /// Asks the sandbox to end (SIGTERM to its init, which forwards it to the visualization).
    fn terminate(&mut self);

    /// Kills every process of the visualization's cgroup.
    fn kill_all(&mut self);

    /// Resource usage of the visualization's cgroup, when it can be read.
    fn stats(&self) -> Option<Stats>;

    /// The supervisor's end of the child's OSC channel, once.
    fn take_delivery(&mut self) -> Option<Delivery> {
        None
    }

    /// From fork to the visualization's exec, when the launcher measured it.
    fn spawn_seconds(&self) -> Option<f64> {
        None
    }
}

/// What the other parts of the daemon (OSC routing, metrics) learn about sandboxes as they come
/// and go. Called from the visualization's task; implementations must not block.
pub trait Hooks: Send + Sync + std::fmt::Debug + 'static {
    /// A sandbox of `policy` runs; `delivery` is its OSC channel.
    fn started(&self, policy: &Policy, sandbox: &Started, delivery: Option<Delivery>);
    /// The sandbox of `name` ended (it may be started again).
    fn ended(&self, name: &str);
    /// The visualization `name` was removed from the box.
    fn removed(&self, name: &str);
    /// The OSC prefixes of every visualization on the box after a reload, told before any
    /// new visualization starts (peering relays nothing under them).
    fn local_prefixes(&self, _prefixes: Vec<String>) {}
    /// The MIDI input ports of `name`, for `vitrine status`.
    fn midi_ports(&self, _name: &str) -> Vec<crate::midi::MidiPortStatus> {
        Vec::new()
    }
}

/// What [`Hooks::started`] is told about a new sandbox.
#[derive(Debug, Clone)]
pub struct Started {
    pub layers: Vec<String>,
    pub spawn_seconds: Option<f64>,
}

/// Hooks that do nothing, for the unit tests of the lifecycle.
#[cfg(test)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

#[cfg(test)]
impl Hooks for NoHooks {
    fn started(&self, _: &Policy, _: &Started, _: Option<Delivery>) {}
    fn ended(&self, _: &str) {}
    fn removed(&self, _: &str) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Resource usage of one visualization's cgroup, in base units.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
    pub memory_peak_bytes: Option<u64>,
    pub pids: u64,
    pub oom_kills: u64,
}
