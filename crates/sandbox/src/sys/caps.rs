//! Capability sets: the bounding set, the ambient set and capset(2).

use std::io;

use super::check;

/// Removes one capability from the calling thread's bounding set.
pub fn bounding_drop(cap: u32) -> io::Result<()> {
    // SAFETY: prctl(PR_CAPBSET_DROP) takes integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
    check(libc::c_long::from(ret)).map(drop)
}

/// Whether `cap` is in the calling thread's bounding set; `EINVAL` past the kernel's last.
pub fn bounding_has(cap: u32) -> io::Result<bool> {
    // SAFETY: prctl(PR_CAPBSET_READ) takes integer arguments only and changes nothing.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) };
    check(libc::c_long::from(ret)).map(|r| r == 1)
}

/// Empties the ambient set.
pub fn ambient_clear() -> io::Result<()> {
    // SAFETY: prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL) takes integer arguments only.
    let ret = unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0)
    };
    check(libc::c_long::from(ret)).map(drop)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets the calling thread's effective and permitted sets to `keep` and inheritable to empty.
pub fn set_only(keep: u64) -> io::Result<()> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let lo = keep as u32;
    let hi = (keep >> 32) as u32;
    let data = [
        CapData { effective: lo, permitted: lo, inheritable: 0 },
        CapData { effective: hi, permitted: hi, inheritable: 0 },
    ];
    // SAFETY: both pointers refer to live, correctly laid out v3 structures (a header and two
    // data words) that outlive the call; the kernel only reads `data` and may write `header`.
    let ret =
        unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) };
    check(ret).map(drop)
}
