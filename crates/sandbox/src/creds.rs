//! Dropping privileges: supplementary groups, gid, uid, every capability, no_new_privs.

use nix::unistd::{Gid, Uid};

use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum CredsError {
    #[error("refusing to run the visualization as uid/gid 0")]
    Root,
    #[error("{step} failed")]
    Call { step: &'static str, source: std::io::Error },
    #[error("credentials did not change as requested ({0})")]
    Verify(&'static str),
    #[error("capability {0} is still in the bounding set")]
    Bounding(u32),
}

fn call<T, E: Into<std::io::Error>>(step: &'static str, r: Result<T, E>) -> Result<T, CredsError> {
    r.map_err(|e| CredsError::Call { step, source: e.into() })
}

/// The highest capability number the running kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// Empties the bounding set (every cap up to the kernel's last) and the ambient set.
pub fn drop_bounding_and_ambient() -> Result<(), CredsError> {
    for cap in 0..=last_cap() {
        call("PR_CAPBSET_DROP", sys::caps::bounding_drop(cap))?;
    }
    call("PR_CAP_AMBIENT_CLEAR_ALL", sys::caps::ambient_clear())
}

/// Fails unless the bounding set is empty. Reading it is cheap, while every
/// `PR_CAPBSET_DROP` allocates new credentials: the shim empties the set once, before it forks,
/// and the processes below only check that they inherited it so.
pub fn require_empty_bounding() -> Result<(), CredsError> {
    for cap in 0..64 {
        match sys::caps::bounding_has(cap) {
            Ok(false) => {}
            Ok(true) => return Err(CredsError::Bounding(cap)),
            // Past the kernel's last capability.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && cap > 0 => return Ok(()),
            Err(source) => return Err(CredsError::Call { step: "PR_CAPBSET_READ", source }),
        }
    }
    Ok(())
}

/// Becomes `uid`/`gid` with no supplementary groups, no capabilities and no_new_privs.
///
/// The bounding set must already be empty ([`drop_bounding_and_ambient`] before the fork):
/// dropping from it needs CAP_SETPCAP, which the uid change takes away.
pub fn drop_to(uid: u32, gid: u32) -> Result<(), CredsError> {
    if uid == 0 || gid == 0 {
        return Err(CredsError::Root);
    }
    require_empty_bounding()?;
    call("PR_CAP_AMBIENT_CLEAR_ALL", sys::caps::ambient_clear())?;
    call("setgroups", nix::unistd::setgroups(&[]))?;
    let (g, u) = (Gid::from_raw(gid), Uid::from_raw(uid));
    call("setresgid", nix::unistd::setresgid(g, g, g))?;
    call("setresuid", nix::unistd::setresuid(u, u, u))?;
    call("capset", sys::caps::set_only(0))?;
    call("PR_SET_NO_NEW_PRIVS", nix::sys::prctl::set_no_new_privs())?;
    verify(uid, gid)
}

const CAP_KILL: u32 = 5;

/// Keeps only CAP_KILL (to forward signals to the visualization) and sets no_new_privs: what the
/// sandbox's init needs once it has forked the visualization. The bounding set must already be
/// empty.
pub fn reduce_init() -> Result<(), CredsError> {
    require_empty_bounding()?;
    call("PR_CAP_AMBIENT_CLEAR_ALL", sys::caps::ambient_clear())?;
    call("capset", sys::caps::set_only(1 << CAP_KILL))?;
    call("PR_SET_NO_NEW_PRIVS", nix::sys::prctl::set_no_new_privs())
}

fn verify(uid: u32, gid: u32) -> Result<(), CredsError> {
    let r = call("getresuid", nix::unistd::getresuid())?;
    if [r.real, r.effective, r.saved].iter().any(|u| u.as_raw() != uid) {
        return Err(CredsError::Verify("uid"));
    }
    let g = call("getresgid", nix::unistd::getresgid())?;
    if [g.real, g.effective, g.saved].iter().any(|x| x.as_raw() != gid) {
        return Err(CredsError::Verify("gid"));
    }
    if !call("getgroups", nix::unistd::getgroups())?.is_empty() {
        return Err(CredsError::Verify("supplementary groups"));
    }
    Ok(())
}
