//! Installing the seccomp program the supervisor compiled.

use crate::plan::{SeccompPlan, unpack_insn};
use crate::sys;

/// Installs the plan's BPF program on the calling thread; `PR_SET_NO_NEW_PRIVS` must be set.
///
/// This is the last restriction before exec: from here on only the allowlist (plus `execveat`
/// on the exec fd) is reachable.
pub fn install(plan: &SeccompPlan) -> std::io::Result<()> {
    sys::filter::install(&unpacked(plan), 0).map(drop)
}

/// The plan's instructions in the kernel's layout.
pub(crate) fn unpacked(plan: &SeccompPlan) -> Vec<libc::sock_filter> {
    plan.program
        .iter()
        .map(|&insn| {
            let (code, jt, jf, k) = unpack_insn(insn);
            libc::sock_filter { code, jt, jf, k }
        })
        .collect()
}
