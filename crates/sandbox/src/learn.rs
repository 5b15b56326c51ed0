//! Policy learning: a seccomp filter that notifies a listener in the supervisor instead of
//! killing, and the listener's side of the protocol.
//!
//! The filter keeps the normal prologue (non-native ABIs and x32 numbers are killed, `clone3`
//! and `io_uring_*` fail with ENOSYS, terminal injection fails with EPERM), lets a "hot set" of
//! syscalls through without a round trip, and turns every other syscall into a user
//! notification that the supervisor records and then continues. The hot set is chosen by the
//! supervisor among the syscalls the base profile allows unconditionally, so nothing that a
//! draft would have to name is ever left unobserved, and it never contains the syscalls whose
//! arguments name a path or an address ([`ALWAYS_NOTIFIED`]).
//!
//! The shim installs the filter as its last step with `SECCOMP_FILTER_FLAG_NEW_LISTENER` and
//! sends the listener to the supervisor over the control socket before exec. The calls between
//! the two (allocation, `sendmsg`, `close`) must be in the hot set, or the shim would wait for
//! an answer from a supervisor that does not hold the listener yet.

use std::os::fd::OwnedFd;

#[path = "learn_decode.rs"]
pub mod decode;

use crate::plan::SeccompPlan;
pub use crate::sys::notify::{Notification, check_sizes, id_valid, recv, send_continue};

/// `SeccompPlan::action` of a learning filter: the shim installs it with a listener.
pub const LEARN_ACTION: &str = "learn";

/// Syscalls the shim makes between installing the learning filter and handing the listener
/// over; the hot set must contain them.
pub const HANDOVER_SYSCALLS: [&str; 6] = ["sendmsg", "close", "brk", "mmap", "munmap", "write"];

/// Syscalls that are always notified, whatever the profile says: their arguments name the
/// paths and addresses a draft has to grant.
pub const ALWAYS_NOTIFIED: [&str; 26] = [
    "open",
    "openat",
    "openat2",
    "creat",
    "execve",
    "execveat",
    "connect",
    "bind",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "unlink",
    "unlinkat",
    "rmdir",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "truncate",
    "socket",
    "ioctl",
    "clone",
];

impl SeccompPlan {
    /// Whether this is a learning filter (installed with a listener).
    pub fn is_learning(&self) -> bool {
        self.action == LEARN_ACTION
    }
}

/// Installs the plan's learning filter on the calling thread and returns its listener;
/// `PR_SET_NO_NEW_PRIVS` must be set.
pub fn install_listener(plan: &SeccompPlan) -> std::io::Result<OwnedFd> {
    crate::sys::notify::install_listener(&crate::filter::unpacked(plan))
}

#[cfg(feature = "supervisor")]
pub use compile::{LearnFilterError, compile};

#[cfg(feature = "supervisor")]
mod compile {
    use std::str::FromStr;

    use syscalls::Sysno;

    use super::{ALWAYS_NOTIFIED, HANDOVER_SYSCALLS, LEARN_ACTION};
    use crate::plan::{SeccompPlan, pack_insn};

    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;
    const RET_ALLOW: u32 = 0x7fff_0000;
    /// SECCOMP_RET_ERRNO | EPERM.
    const RET_EPERM: u32 = 0x0005_0001;
    /// The namespace flags of clone(2) (CLONE_NEWNS … CLONE_NEWNET, CLONE_NEWCGROUP, as in
    /// the shipped profiles' `masked_eq` rule).
    const CLONE_NS_FLAGS: u32 = 0x7E02_0000;
    /// Where `args[0]` (low word on little endian) sits in `struct seccomp_data`.
    const ARG0_LOW: u32 = 16;
    const RET_USER_NOTIF: u32 = 0x7fc0_0000;
    /// A conditional jump reaches at most 255 instructions ahead.
    const MAX_HOT: usize = 255;

    #[derive(Debug, thiserror::Error)]
    pub enum LearnFilterError {
        #[error("unknown syscall `{0}` in the learning hot set")]
        Unknown(String),
        #[error("the learning hot set lacks `{0}`, which the shim needs to hand the listener over")]
        MissingHandover(&'static str),
        #[error("the learning hot set has {0} syscalls, more than {MAX_HOT}")]
        TooLarge(usize),
    }

    /// Compiles the learning filter: the fixed prologue, then `refused` (the syscalls no policy
    /// may grant) and clone(2) with namespace flags answered EPERM without a round trip, as a
    /// real run would never let them through, then `hot` (minus the always-notified syscalls)
    /// allowed, everything else notified. Learning relaxes only what it needs to observe.
    pub fn compile(hot: &[String], refused: &[&str]) -> Result<SeccompPlan, LearnFilterError> {
        let mut numbers = Vec::new();
        for name in hot {
            if ALWAYS_NOTIFIED.contains(&name.as_str()) {
                continue;
            }
            let nr = Sysno::from_str(name).map_err(|_| LearnFilterError::Unknown(name.clone()))?;
            numbers.push(nr.id() as u32);
        }
        for needed in HANDOVER_SYSCALLS {
            if !hot.iter().any(|h| h == needed) {
                return Err(LearnFilterError::MissingHandover(needed));
            }
        }
        numbers.sort_unstable();
        numbers.dedup();
        let k = numbers.len();
        if k > MAX_HOT {
            return Err(LearnFilterError::TooLarge(k));
        }
        let mut program = crate::seccomp::prologue();
        program.push(pack_insn(LD_W_ABS, 0, 0, 0));
        // clone with any namespace flag: EPERM; otherwise reload the number and go on.
        program.push(pack_insn(JEQ_K, 0, 4, Sysno::clone.id() as u32));
        program.push(pack_insn(LD_W_ABS, 0, 0, ARG0_LOW));
        program.push(pack_insn(JSET_K, 0, 1, CLONE_NS_FLAGS));
        program.push(pack_insn(RET_K, 0, 0, RET_EPERM));
        program.push(pack_insn(LD_W_ABS, 0, 0, 0));
        // Names this architecture does not have (e.g. a 32-bit-only call) need no rule.
        for nr in refused.iter().filter_map(|name| Sysno::from_str(name).ok()) {
            program.push(pack_insn(JEQ_K, 0, 1, nr.id() as u32));
            program.push(pack_insn(RET_K, 0, 0, RET_EPERM));
        }
        // Compare i jumps to RET_ALLOW, which sits after the k compares and RET_USER_NOTIF.
        for (i, nr) in numbers.iter().enumerate() {
            program.push(pack_insn(JEQ_K, (k - i) as u8, 0, *nr));
        }
        program.push(pack_insn(RET_K, 0, 0, RET_USER_NOTIF));
        program.push(pack_insn(RET_K, 0, 0, RET_ALLOW));
        Ok(SeccompPlan { program, rule_count: k, action: LEARN_ACTION.to_owned() })
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::plan::unpack_insn;

        fn names(v: &[&str]) -> Vec<String> {
            v.iter().map(|s| (*s).to_owned()).collect()
        }

        #[test]
        fn every_hot_compare_jumps_to_allow_and_the_rest_is_notified() {
            let hot = names(&[
                "read", "futex", "openat", "sendmsg", "close", "brk", "mmap", "munmap", "write",
            ]);
            let plan = compile(&hot, &["unshare"]).expect("compile");
            assert!(plan.is_learning());
            // openat is always notified, so 8 compares remain.
            assert_eq!(plan.rule_count, 8);
            let n = plan.program.len();
            assert_eq!(unpack_insn(plan.program[n - 1]), (RET_K, 0, 0, RET_ALLOW));
            assert_eq!(unpack_insn(plan.program[n - 2]), (RET_K, 0, 0, RET_USER_NOTIF));
            for at in n - 2 - 8..n - 2 {
                let (code, jt, _, _) = unpack_insn(plan.program[at]);
                assert_eq!(code, JEQ_K);
                assert_eq!(at + 1 + usize::from(jt), n - 1, "compare at {at}");
            }
        }

        #[test]
        fn refused_syscalls_and_namespace_clones_get_eperm_before_any_allow() {
            let hot = names(&["clone", "sendmsg", "close", "brk", "mmap", "munmap", "write"]);
            let plan = compile(&hot, &["unshare", "setns", "no_such_call"]).expect("compile");
            let insns: Vec<_> = plan.program.iter().map(|i| unpack_insn(*i)).collect();
            let first_allow_compare = insns
                .iter()
                .position(|&(c, jt, _, k)| c == JEQ_K && jt > 0 && k == Sysno::sendmsg.id() as u32)
                .expect("hot compares");
            for name in ["unshare", "setns"] {
                let nr = Sysno::from_str(name).expect("known").id() as u32;
                let at = insns
                    .iter()
                    .position(|&(c, _, jf, k)| c == JEQ_K && jf == 1 && k == nr)
                    .unwrap_or_else(|| panic!("{name} has no rule"));
                assert_eq!(insns[at + 1], (RET_K, 0, 0, RET_EPERM), "{name}");
                assert!(at < first_allow_compare, "{name} is refused before anything is allowed");
            }
            let clone = insns
                .iter()
                .position(|&(c, _, jf, k)| c == JEQ_K && jf == 4 && k == Sysno::clone.id() as u32)
                .expect("clone rule");
            assert_eq!(insns[clone + 2], (JSET_K, 0, 1, CLONE_NS_FLAGS));
            assert_eq!(insns[clone + 3], (RET_K, 0, 0, RET_EPERM));
            assert_eq!(insns[clone + 4], (LD_W_ABS, 0, 0, 0));
        }

        #[test]
        fn the_handover_syscalls_must_be_hot() {
            let err = compile(&names(&["read"]), &[]).expect_err("sendmsg missing");
            assert!(matches!(err, LearnFilterError::MissingHandover("sendmsg")), "{err}");
            assert!(matches!(compile(&names(&["nosuch"]), &[]), Err(LearnFilterError::Unknown(_))));
        }
    }
}
