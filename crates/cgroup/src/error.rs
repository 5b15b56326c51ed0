//! The crate's error type. Every variant names the path involved and, where the user can do
//! something about it, what to do.

use std::io;
use std::path::PathBuf;

use crate::Controller;

/// Everything that can go wrong while managing cgroups.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no usable cgroup hierarchy: {path} is neither a cgroup2 mount nor holds cgroup v1 controller \
         mounts; mount cgroupfs (systemd does this at boot)"
    )]
    NoHierarchy { path: PathBuf },

    #[error("{path} is not a cgroup2 mount (no cgroup.controllers in it)")]
    NotCgroup2 { path: PathBuf },

    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot write {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },

    #[error(
        "cannot create cgroup directory {path}: the supervisor must run as root or own a delegated \
         subtree (systemd Delegate=yes)"
    )]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "cannot remove cgroup directory {path}: processes still run in it or the kernel has not \
         finished tearing it down"
    )]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "moving the supervisor into its leaf cgroup {path} failed; run vitrine as root or under \
         systemd with Delegate=yes"
    )]
    MoveSelf {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "the {controller} controller is not available, so `limits.{key}` cannot be enforced; enable \
         the controller on this host (see `vitrine status`) or remove `{key}` from the policy's [limits]"
    )]
    ControllerMissing { controller: Controller, key: &'static str },

    #[error("cannot apply `limits.{key}` = {value} to {path}")]
    Limit {
        key: &'static str,
        value: String,
        path: PathBuf,
        #[source]
        source: Box<cgroups_rs::fs::error::Error>,
    },

    #[error("invalid limit `limits.{key}`: {reason}")]
    InvalidLimit { key: &'static str, reason: String },

    #[error(
        "invalid cgroup name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.' (not starting with '.')"
    )]
    InvalidName { name: String },

    #[error(
        "cgroup {path} already exists and still has processes {pids:?}: another supervisor or a \
         previous run uses it; stop that one or let this supervisor clean up leftovers at start"
    )]
    Busy { path: PathBuf, pids: Vec<i32> },

    #[error("processes {pids:?} in {path} survived {rounds} kill rounds")]
    Unkillable { path: PathBuf, pids: Vec<i32>, rounds: u32 },

    #[error("cannot freeze {path}")]
    Freeze {
        path: PathBuf,
        #[source]
        source: Box<cgroups_rs::fs::error::Error>,
    },

    #[error("cannot send SIGKILL to pid {pid} of {path}")]
    Signal {
        pid: i32,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },

    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },

    #[error("unexpected content in {path}: {content:?}")]
    Parse { path: PathBuf, content: String },
}
