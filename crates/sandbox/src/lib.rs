//! The launch plan and its application: namespaces, mounts, Landlock, seccomp, privileges.
//!
//! The supervisor (feature `supervisor`) compiles a policy into a [`plan::Plan`] and spawns the
//! shim through [`spawn`]; the shim reads the plan over [`proto`] and applies it with
//! [`mounts`], [`net`], [`creds`], [`landlock`] and [`filter`], in the order of DESIGN §3.
//!
//! This is the only crate of vitrine that contains `unsafe`, and only in `sys/`.

#![deny(unsafe_code)]

pub mod child;
pub mod creds;
pub mod filter;
pub mod init;
pub mod landlock;
pub mod learn;
pub mod mounts;
pub mod net;
pub mod plan;
pub mod proto;
#[cfg(feature = "supervisor")]
pub mod seccomp;
pub mod spawn;
pub mod trace;
pub mod verify;

#[allow(unsafe_code)]
mod sys;

#[cfg(feature = "probe")]
pub use sys::probe;
pub use sys::process::{
    Forked, exit_immediately, fork_single_threaded, pidfd_open, pidfd_send_signal,
    reset_signal_dispositions,
};
