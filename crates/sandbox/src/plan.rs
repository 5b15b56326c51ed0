//! The launch plan: everything the shim needs, already resolved by the supervisor.
//!
//! The supervisor builds a `Plan` from a validated policy (user names resolved to ids, presets
//! merged, seccomp compiled to BPF) and writes it as JSON on the shim's control socket. The shim
//! never sees TOML and never decides anything the plan does not say: it applies the plan in a
//! fixed order and execs, or fails closed.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The largest plan the shim accepts; the reader refuses a longer length before allocating.
pub const MAX_PLAN_BYTES: usize = 1 << 20;

/// The fd numbers of the shim's contract with the supervisor (DESIGN §3).
pub mod fds {
    /// The control socket: plan in, reports and the UDP socket out.
    pub const CONTROL: i32 = 3;
    /// The sealed memfd (or verified file) that is executed.
    pub const EXEC: i32 = 4;
    /// The IPC end for `transport = "fd"`; it becomes fd 3 of the visualization.
    pub const IPC: i32 = 5;
    /// Where the visualization finds the IPC end for `transport = "fd"`.
    pub const CHILD_IPC: i32 = 3;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The visualization's name, used as hostname and in messages.
    pub name: String,
    /// The pid the shim must see as its parent; anything else means the supervisor is gone.
    pub supervisor_pid: u32,
    pub uid: u32,
    pub gid: u32,
    /// `argv[0]` first; the program itself comes from fd 4.
    pub argv: Vec<String>,
    /// The whole environment of the visualization.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    /// Mount operations, applied in order inside the new mount namespace.
    pub mounts: Vec<MountOp>,
    pub landlock: LandlockPlan,
    pub seccomp: SeccompPlan,
    pub rlimits: Rlimits,
    pub ipc: IpcPlan,
    /// Write launch-trace stamps on stderr ([`crate::trace`]); benchmarks only.
    #[serde(default)]
    pub trace: bool,
    /// A primed sandbox for a restart: the init reports [`crate::proto::Report::Ready`] after
    /// the mounts and the network and forks the visualization only on a go
    /// ([`crate::proto::send_go`]); the end of the control socket instead ends the sandbox.
    #[serde(default)]
    pub hold: bool,
}

/// One step of building the sandbox's view of the filesystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum MountOp {
    /// A fresh tmpfs; hides whatever the host had at `target`.
    Tmpfs { target: PathBuf, size: u64, mode: u32 },
    /// Bind a host path (file or directory) to the same path inside, usually under a tmpfs
    /// that hid it. The source is opened before any tmpfs is mounted, so grants under masked
    /// directories still reach the host object.
    Bind { path: PathBuf, read_only: bool, optional: bool },
    /// A minimal `/dev`: a tmpfs with the standard symlinks and only the listed device nodes
    /// bound in from the host.
    Dev { devices: Vec<PathBuf>, shm_size: u64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LandlockPlan {
    pub required: bool,
    /// The lowest kernel Landlock ABI this policy accepts.
    pub min_abi: u8,
    pub rules: Vec<FsRule>,
}

/// Access granted beneath one path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FsRule {
    pub path: PathBuf,
    pub access: FsAccess,
    /// Preset paths may be absent on a host; the policy's own paths may not.
    pub optional: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsAccess {
    Read,
    ReadWrite,
    /// Read and execute.
    Exec,
    /// Read, write and device ioctls (where the ABI has them).
    Device,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeccompPlan {
    /// `struct sock_filter` instructions, each packed as `code | jt << 16 | jf << 24 | k << 32`.
    pub program: Vec<u64>,
    /// How many syscalls the allowlist names (for the start line).
    pub rule_count: usize,
    /// `kill`, `errno` or `log`, as the policy said.
    pub action: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimits {
    pub nofile: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "kebab-case")]
pub enum IpcPlan {
    /// The shim creates a UDP socket in the sandbox's network namespace, bound to
    /// `127.0.0.1:reply_port` (or an ephemeral port), and sends it to the supervisor.
    Udp { port: u16, reply_port: Option<u16> },
    /// fd 5 of the shim becomes fd 3 of the visualization.
    Fd,
}

/// Packs one BPF instruction the way `SeccompPlan::program` stores it.
pub fn pack_insn(code: u16, jt: u8, jf: u8, k: u32) -> u64 {
    u64::from(code) | (u64::from(jt) << 16) | (u64::from(jf) << 24) | (u64::from(k) << 32)
}

/// Splits a packed instruction back into `(code, jt, jf, k)`.
pub fn unpack_insn(insn: u64) -> (u16, u8, u8, u32) {
    (insn as u16, (insn >> 16) as u8, (insn >> 24) as u8, (insn >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insn_packing_round_trips() {
        for (c, t, f, k) in [(0x20, 0, 0, 4), (0x15, 255, 7, 0xc000_003e), (6, 1, 2, u32::MAX)] {
            assert_eq!(unpack_insn(pack_insn(c, t, f, k)), (c, t, f, k));
        }
    }
}
