//! The compiled program is checked by running it in a small classic-BPF interpreter, so the
//! tests say what the kernel would decide without installing anything.

use super::*;
use crate::plan::unpack_insn;
use vitrine_policy::SyscallRule;

const ALLOW: u32 = 0x7fff_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;

fn run(program: &[u64], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let word = |off: u32| -> u32 {
        match off {
            0 => nr,
            4 => arch,
            o if (16..64).contains(&o) => {
                let a = args[((o - 16) / 8) as usize];
                if (o - 16) % 8 == 0 { a as u32 } else { (a >> 32) as u32 }
            }
            o => panic!("load from unexpected offset {o}"),
        }
    };
    let (mut pc, mut acc) = (0usize, 0u32);
    loop {
        let (code, jt, jf, k) = unpack_insn(program[pc]);
        pc += 1;
        let jump = |cond: bool| if cond { usize::from(jt) } else { usize::from(jf) };
        match code {
            0x20 => acc = word(k),
            0x54 => acc &= k,
            0x05 => pc += k as usize,
            0x15 => pc += jump(acc == k),
            0x25 => pc += jump(acc > k),
            0x35 => pc += jump(acc >= k),
            0x45 => pc += jump(acc & k != 0),
            0x06 => return k,
            other => panic!("opcode {other:#x} not handled by the test interpreter"),
        }
    }
}

fn profile(action: SeccompAction) -> Syscalls {
    let ioctl_fionread = SyscallRule {
        syscall: "ioctl".into(),
        args: vec![ArgCondition { index: 1, dword: true, op: ArgOp::Eq, val: 0x541b }],
    };
    Syscalls {
        profile: "test".into(),
        profile_path: "/dev/null".into(),
        rules: vec![
            SyscallRule { syscall: "read".into(), args: vec![] },
            SyscallRule { syscall: "clone3".into(), args: vec![] },
            ioctl_fionread.clone(),
            SyscallRule {
                syscall: "ioctl".into(),
                args: vec![ArgCondition { val: 0x5412, ..ioctl_fionread.args[0].clone() }],
            },
        ],
        allow: vec!["getpid".into()],
        action,
    }
}

fn nr(s: Sysno) -> u32 {
    s.id() as u32
}

#[test]
fn allowlist_allows_and_default_kills_the_process() {
    let plan = compile(&profile(SeccompAction::Kill), 4).expect("compile");
    let x86 = AUDIT_ARCH_X86_64;
    assert_eq!(run(&plan.program, x86, nr(Sysno::read), [0; 6]), ALLOW);
    assert_eq!(run(&plan.program, x86, nr(Sysno::getpid), [0; 6]), ALLOW);
    assert_eq!(run(&plan.program, x86, nr(Sysno::ptrace), [0; 6]), RET_KILL_PROCESS);
    assert_eq!(plan.action, "kill");
    // read, ioctl, getpid; clone3 is not counted because it is forced to ENOSYS.
    assert_eq!(plan.rule_count, 3);
}

#[test]
fn clone3_and_io_uring_fail_with_enosys_even_when_allowed() {
    let plan = compile(&profile(SeccompAction::Kill), 4).expect("compile");
    for s in ENOSYS_SYSCALLS {
        assert_eq!(run(&plan.program, AUDIT_ARCH_X86_64, nr(s), [0; 6]), RET_ERRNO | 38, "{s}");
    }
}

#[test]
fn x32_numbers_and_foreign_architectures_are_killed() {
    let plan = compile(&profile(SeccompAction::Errno), 4).expect("compile");
    let x32_read = X32_SYSCALL_BIT | nr(Sysno::read);
    assert_eq!(run(&plan.program, AUDIT_ARCH_X86_64, x32_read, [0; 6]), RET_KILL_PROCESS);
    assert_eq!(run(&plan.program, AUDIT_ARCH_I386, 3, [0; 6]), RET_KILL_PROCESS);
}

#[test]
fn ioctl_is_compared_as_32_bits_and_tiocsti_is_always_refused() {
    let plan = compile(&profile(SeccompAction::Kill), 4).expect("compile");
    let ioctl = nr(Sysno::ioctl);
    let high_bits = 0xffff_ffff_0000_0000 | 0x541b;
    assert_eq!(run(&plan.program, AUDIT_ARCH_X86_64, ioctl, [1, high_bits, 0, 0, 0, 0]), ALLOW);
    assert_eq!(
        run(&plan.program, AUDIT_ARCH_X86_64, ioctl, [1, 0x5401, 0, 0, 0, 0]),
        RET_KILL_PROCESS
    );
    // The profile tries to allow TIOCSTI; the prologue refuses it first.
    let eperm = RET_ERRNO | libc::EPERM as u32;
    assert_eq!(
        run(&plan.program, AUDIT_ARCH_X86_64, ioctl, [0, u64::from(TIOCSTI), 0, 0, 0, 0]),
        eperm
    );
    assert_eq!(
        run(&plan.program, AUDIT_ARCH_X86_64, ioctl, [0, u64::from(TIOCLINUX), 0, 0, 0, 0]),
        eperm
    );
}

#[test]
fn execveat_is_allowed_only_on_the_exec_fd() {
    let plan = compile(&profile(SeccompAction::Kill), 4).expect("compile");
    let execveat = nr(Sysno::execveat);
    assert_eq!(run(&plan.program, AUDIT_ARCH_X86_64, execveat, [4, 0, 0, 0, 0x1000, 0]), ALLOW);
    assert_eq!(
        run(&plan.program, AUDIT_ARCH_X86_64, execveat, [5, 0, 0, 0, 0x1000, 0]),
        RET_KILL_PROCESS
    );
}

#[test]
fn errno_and_log_actions_replace_the_kill() {
    let errno = compile(&profile(SeccompAction::Errno), 4).expect("compile");
    assert_eq!(run(&errno.program, AUDIT_ARCH_X86_64, nr(Sysno::ptrace), [0; 6]), RET_ERRNO | 1);
    let log = compile(&profile(SeccompAction::Log), 4).expect("compile");
    assert_eq!(run(&log.program, AUDIT_ARCH_X86_64, nr(Sysno::ptrace), [0; 6]), RET_LOG);
}

#[test]
fn unknown_names_are_refused() {
    let mut p = profile(SeccompAction::Kill);
    p.allow.push("no_such_call".into());
    assert!(matches!(compile(&p, 4), Err(SeccompError::UnknownSyscall(n)) if n == "no_such_call"));
}
