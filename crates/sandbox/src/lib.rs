//! The launch plan and its application: namespaces, mounts, Landlock, seccomp, privileges.
//!
//! This is the only crate of vitrine that contains `unsafe`, and only in `sys/`.

#![deny(unsafe_code)]

pub mod verify;
