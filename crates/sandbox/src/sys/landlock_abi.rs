//! The running kernel's Landlock ABI version.

const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;

/// Returns the kernel's Landlock ABI, or 0 when Landlock is missing or disabled.
///
/// The landlock crate keeps this query private and caps it at the ABIs it knows; the policy's
/// floor is compared against what the kernel itself says.
pub fn abi() -> u32 {
    // SAFETY: with a null attribute pointer, size 0 and the VERSION flag, the kernel reads no
    // memory and returns the ABI version or -1.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(ret).unwrap_or(0)
}
