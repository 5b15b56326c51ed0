//! Compiling a policy's seccomp profile into BPF, in the supervisor, once per policy load.
//!
//! The program has three parts. A fixed prologue: non-native architectures (`int 0x80`) and
//! x32 syscall numbers are killed outright, `clone3` and `io_uring_*` fail with ENOSYS (glibc
//! then falls back to `clone`), and the terminal-injection ioctls `TIOCSTI`/`TIOCLINUX` fail
//! with EPERM whatever the profile says. Then the syscalls the profile allows without
//! conditions, found by a binary search over their numbers (about ten instructions for any
//! syscall, where a linear chain walks hundreds; the kernel also runs the filter for every
//! syscall number when it is installed, to cache the constant answers, so a short path makes
//! the install cheaper too). Last, seccompiler's program for the syscalls allowed only with
//! argument conditions (a few), whose default is the policy's action.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::str::FromStr;

use seccompiler::{
    BpfProgram, SeccompAction as Action, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use syscalls::Sysno;
use vitrine_policy::{ArgCondition, ArgOp, SeccompAction, Syscalls};

use crate::plan::{SeccompPlan, pack_insn};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("unknown syscall `{0}` in the seccomp profile")]
    UnknownSyscall(String),
    #[error("invalid condition on `{syscall}`")]
    Condition { syscall: String, source: seccompiler::BackendError },
    #[error("seccompiler could not build the filter")]
    Build(#[source] seccompiler::BackendError),
}

/// Syscalls that always fail with ENOSYS so that libraries fall back to older interfaces.
pub const ENOSYS_SYSCALLS: [Sysno; 4] =
    [Sysno::clone3, Sysno::io_uring_setup, Sysno::io_uring_enter, Sysno::io_uring_register];

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541c;

// Classic BPF opcodes (linux/filter.h).
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const JA: u16 = 0x05;
const RET_K: u16 = 0x06;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG1_LO: u32 = 16 + 8;

/// Compiles the profile and the extra `allow` names. `exec_fd` is the descriptor the shim
/// executes from: `execveat` on it is always allowed, because exec is the shim's last call
/// after the filter is installed.
pub fn compile(syscalls: &Syscalls, exec_fd: i32) -> Result<SeccompPlan, SeccompError> {
    let mut rules = allowlist(syscalls)?;
    for sysno in ENOSYS_SYSCALLS {
        rules.remove(&i64::from(sysno.id()));
    }
    let rule_count = rules.len();
    if let Entry::Vacant(slot) = rules.entry(i64::from(Sysno::execveat.id())) {
        let cond =
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, exec_fd as u64)
                .map_err(|source| SeccompError::Condition { syscall: "execveat".into(), source })?;
        slot.insert(vec![SeccompRule::new(vec![cond]).map_err(SeccompError::Build)?]);
    }
    let (unconditional, conditional): (BTreeMap<_, _>, BTreeMap<_, _>) =
        rules.into_iter().partition(|(_, alternatives)| alternatives.is_empty());
    let mut program = prologue();
    let numbers: Vec<u32> = unconditional.keys().map(|&nr| nr as u32).collect();
    program.extend(dispatch(&numbers));
    if conditional.is_empty() {
        program.push(pack_insn(RET_K, 0, 0, u32::from(mismatch(syscalls.action))));
    } else {
        let filter = SeccompFilter::new(
            conditional,
            mismatch(syscalls.action),
            Action::Allow,
            TargetArch::x86_64,
        )
        .map_err(SeccompError::Build)?;
        let body = BpfProgram::try_from(filter).map_err(SeccompError::Build)?;
        program.extend(body.iter().map(|i| pack_insn(i.code, i.jt, i.jf, i.k)));
    }
    Ok(SeccompPlan { program, rule_count, action: action_name(syscalls.action).to_owned() })
}

/// At most this many numbers are compared one by one at a leaf of the search.
const LEAF: usize = 4;

/// Loads the syscall number and returns ALLOW when it is one of `numbers` (sorted); every
/// other number falls through to the instruction after this block. Every jump that could be
/// long is a `JA` (32-bit offset), so the block has no length limit.
fn dispatch(numbers: &[u32]) -> Vec<u64> {
    if numbers.is_empty() {
        return Vec::new();
    }
    let mut out = vec![pack_insn(LD_W_ABS, 0, 0, OFF_NR)];
    let mut misses = Vec::new();
    search(numbers, &mut out, &mut misses);
    let end = out.len();
    for at in misses {
        out[at] = pack_insn(JA, 0, 0, (end - (at + 1)) as u32);
    }
    out
}

/// One node of the search: a leaf compares each number and allows on a match, else jumps to
/// the miss; an inner node sends numbers at or above the upper half's first to that half.
fn search(numbers: &[u32], out: &mut Vec<u64>, misses: &mut Vec<usize>) {
    if numbers.len() <= LEAF {
        let n = numbers.len();
        for (i, &nr) in numbers.iter().enumerate() {
            // Over the remaining compares and the miss jump, onto the RET ALLOW.
            out.push(pack_insn(JEQ_K, (n - i) as u8, 0, nr));
        }
        misses.push(out.len());
        out.push(pack_insn(JA, 0, 0, 0));
        out.push(pack_insn(RET_K, 0, 0, RET_ALLOW));
        return;
    }
    let (lower, upper) = numbers.split_at(numbers.len() / 2);
    out.push(pack_insn(JGE_K, 1, 0, upper[0]));
    let skip_upper = out.len();
    out.push(pack_insn(JA, 0, 0, 0));
    search(upper, out, misses);
    out[skip_upper] = pack_insn(JA, 0, 0, (out.len() - (skip_upper + 1)) as u32);
    search(lower, out, misses);
}

/// The policy's word for what happens outside the allowlist.
pub fn action_name(action: SeccompAction) -> &'static str {
    match action {
        SeccompAction::Kill => "kill",
        SeccompAction::Errno => "errno",
        SeccompAction::Log => "log",
    }
}

fn mismatch(action: SeccompAction) -> Action {
    match action {
        SeccompAction::Kill => Action::KillProcess,
        SeccompAction::Errno => Action::Errno(libc::EPERM as u32),
        SeccompAction::Log => Action::Log,
    }
}

/// Builds seccompiler's rule map: several rules for one syscall are alternatives, and one
/// unconditional rule makes the syscall unconditional.
fn allowlist(syscalls: &Syscalls) -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
    let mut map: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
    for rule in &syscalls.rules {
        let nr = number(&rule.syscall)?;
        if rule.args.is_empty() {
            map.insert(nr, None);
            continue;
        }
        let conds = rule
            .args
            .iter()
            .map(|a| {
                condition(a).map_err(|source| SeccompError::Condition {
                    syscall: rule.syscall.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let built = SeccompRule::new(conds).map_err(SeccompError::Build)?;
        if let Some(alternatives) = map.entry(nr).or_insert_with(|| Some(Vec::new())) {
            alternatives.push(built);
        }
    }
    for name in &syscalls.allow {
        map.insert(number(name)?, None);
    }
    Ok(map.into_iter().map(|(nr, rules)| (nr, rules.unwrap_or_default())).collect())
}

fn number(name: &str) -> Result<i64, SeccompError> {
    Sysno::from_str(name)
        .map(|s| i64::from(s.id()))
        .map_err(|_| SeccompError::UnknownSyscall(name.to_owned()))
}

fn condition(arg: &ArgCondition) -> Result<SeccompCondition, seccompiler::BackendError> {
    let len = if arg.dword { SeccompCmpArgLen::Dword } else { SeccompCmpArgLen::Qword };
    let op = match arg.op {
        ArgOp::Eq => SeccompCmpOp::Eq,
        ArgOp::Ne => SeccompCmpOp::Ne,
        ArgOp::Lt => SeccompCmpOp::Lt,
        ArgOp::Le => SeccompCmpOp::Le,
        ArgOp::Gt => SeccompCmpOp::Gt,
        ArgOp::Ge => SeccompCmpOp::Ge,
        ArgOp::MaskedEq(mask) => SeccompCmpOp::MaskedEq(mask),
    };
    SeccompCondition::new(arg.index, len, op, arg.val)
}

/// The fixed prologue; jump offsets are relative to the next instruction. It falls through to
/// the instruction after it (the learning filter reuses it).
pub(crate) fn prologue() -> Vec<u64> {
    let enosys: Vec<u32> = ENOSYS_SYSCALLS.iter().map(|s| s.id() as u32).collect();
    let n = enosys.len();
    // Layout: 0-5 arch and x32 checks, 6..6+n ENOSYS compares, then the ioctl block (4),
    // a jump over the two returns, RET ENOSYS, RET EPERM, then seccompiler's program.
    let ioctl_at = 6 + n;
    let ja_at = ioctl_at + 4;
    let ret_enosys = ja_at + 1;
    let ret_eperm = ja_at + 2;
    let mut p = vec![
        pack_insn(LD_W_ABS, 0, 0, OFF_ARCH),
        pack_insn(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        pack_insn(RET_K, 0, 0, RET_KILL_PROCESS),
        pack_insn(LD_W_ABS, 0, 0, OFF_NR),
        pack_insn(JSET_K, 0, 1, X32_SYSCALL_BIT),
        pack_insn(RET_K, 0, 0, RET_KILL_PROCESS),
    ];
    for (i, nr) in enosys.iter().enumerate() {
        p.push(pack_insn(JEQ_K, (ret_enosys - (6 + i + 1)) as u8, 0, *nr));
    }
    p.push(pack_insn(JEQ_K, 0, (ja_at - (ioctl_at + 1)) as u8, Sysno::ioctl.id() as u32));
    p.push(pack_insn(LD_W_ABS, 0, 0, OFF_ARG1_LO));
    p.push(pack_insn(JEQ_K, (ret_eperm - (ioctl_at + 3)) as u8, 0, TIOCSTI));
    p.push(pack_insn(JEQ_K, (ret_eperm - (ioctl_at + 4)) as u8, 0, TIOCLINUX));
    p.push(pack_insn(JA, 0, 0, 2));
    p.push(pack_insn(RET_K, 0, 0, RET_ERRNO | libc::ENOSYS as u32));
    p.push(pack_insn(RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32));
    p
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
