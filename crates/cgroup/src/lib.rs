//! Per-visualization cgroups on cgroup v2 (a delegated subtree) and on cgroup v1 hosts
//! (one hierarchy per controller): limits, statistics, OOM counters, reliable kill.
//!
//! ```no_run
//! use vitrine_cgroup::{Limits, Manager};
//!
//! let manager = Manager::detect("vitrine")?;
//! for missing in manager.missing() {
//!     eprintln!("warning: {missing}"); // "memory controller missing: memory limits cannot be enforced …"
//! }
//! manager.cleanup_leftovers()?;
//! let limits = Limits { memory: Some(512 << 20), cpu: Some(1.5), cpuset: None, pids: Some(64) };
//! let cgroup = manager.create("aurora", &limits)?;
//! // v2: pass cgroup.procs_dir_fd()? to clone3(CLONE_INTO_CGROUP); v1: cgroup.add_pid(pid)?
//! let stats = cgroup.stats()?;
//! cgroup.kill_all()?;
//! cgroup.remove()?;
//! # Ok::<(), vitrine_cgroup::Error>(())
//! ```
//!
//! The layout (where the directories go, and why) is described in the `manager` module's
//! source. In short: v2 `<own cgroup>/<root>/<name>` after the supervisor moved itself into
//! `<own cgroup>/supervisor`; v1 `<mount>/<own cgroup>/<root>/<name>` in each hierarchy.
//!
//! Rules the API keeps:
//! - A limit whose controller is unavailable is an error, never skipped ([`Manager::create`]).
//! - Memory limits switch swap off (v2 `memory.swap.max = 0`; v1 `memory.memsw.limit_in_bytes`
//!   plus `memory.swappiness = 0`); without swap accounting they fail unless the host has no swap.
//! - [`Cgroup::kill_all`] returns only when the cgroup is empty.
//!
//! Every call is synchronous file I/O on cgroupfs; async callers use `spawn_blocking`.

#![forbid(unsafe_code)]

mod cgroup;
mod error;
mod fsutil;
mod kill;
mod limits;
mod manager;
mod model;

pub use cgroup::Cgroup;
pub use error::Error;
pub use fsutil::{keyed_value, own_cgroup};
pub use manager::{Cleaned, Manager};
pub use model::{Controller, Limits, MemoryEvents, Missing, Stats, Version};
