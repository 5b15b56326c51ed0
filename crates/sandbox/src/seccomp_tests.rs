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

/// The program as it was built before the binary search: the prologue and seccompiler's linear
/// chain over every rule. The search must decide exactly like it.
fn linear_reference(syscalls: &Syscalls, exec_fd: i32) -> Vec<u64> {
    let mut rules = allowlist(syscalls).expect("allowlist");
    for sysno in ENOSYS_SYSCALLS {
        rules.remove(&i64::from(sysno.id()));
    }
    if let Entry::Vacant(slot) = rules.entry(i64::from(Sysno::execveat.id())) {
        let cond =
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, exec_fd as u64)
                .expect("condition");
        slot.insert(vec![SeccompRule::new(vec![cond]).expect("rule")]);
    }
    let filter =
        SeccompFilter::new(rules, mismatch(syscalls.action), Action::Allow, TargetArch::x86_64)
            .expect("filter");
    let body = BpfProgram::try_from(filter).expect("program");
    let mut program = prologue();
    program.extend(body.iter().map(|i| pack_insn(i.code, i.jt, i.jf, i.k)));
    program
}

#[test]
fn binary_search_decides_like_a_linear_chain_for_every_number() {
    let args_list: [[u64; 6]; 4] = [
        [0; 6],
        [4, 0x541b, 0, 0, 0, 0],
        [5, u64::from(TIOCSTI), 1, 0, 0, 0],
        [u64::MAX, 0xffff_ffff_0000_541b, 2, 3, 4, 5],
    ];
    // Every known syscall allowed, every third one, none, and the test profile; conditions on
    // ioctl and socket, execveat allowed outright in one of them.
    let all: Vec<Sysno> = Sysno::iter().collect();
    let mut profiles = vec![profile(SeccompAction::Kill), profile(SeccompAction::Errno)];
    for (step, action) in
        [(1, SeccompAction::Kill), (3, SeccompAction::Log), (7, SeccompAction::Errno)]
    {
        let mut p = profile(action);
        p.allow = all.iter().step_by(step).map(|s| s.name().to_owned()).collect();
        profiles.push(p);
    }
    let mut empty = profile(SeccompAction::Kill);
    empty.rules.clear();
    empty.allow.clear();
    profiles.push(empty);
    for p in &profiles {
        let plan = compile(p, 4).expect("compile");
        let reference = linear_reference(p, 4);
        for arch in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386] {
            for nr in (0..600).chain([X32_SYSCALL_BIT | 1, u32::MAX]) {
                for args in args_list {
                    assert_eq!(
                        run(&plan.program, arch, nr, args),
                        run(&reference, arch, nr, args),
                        "syscall {nr} arch {arch:#x} args {args:?} allow {}",
                        p.allow.len()
                    );
                }
            }
        }
    }
}

#[test]
fn an_allowed_syscall_is_found_in_a_few_instructions() {
    let mut p = profile(SeccompAction::Kill);
    p.allow = Sysno::iter().map(|s| s.name().to_owned()).collect();
    let plan = compile(&p, 4).expect("compile");
    let before = plan.program.len();
    // The instructions run until the verdict, for every allowed number: a linear chain walks
    // up to all of them.
    let steps = Sysno::iter()
        .filter(|s| !ENOSYS_SYSCALLS.contains(s) && *s != Sysno::ioctl)
        .map(|s| steps_to_verdict(&plan.program, nr(s)))
        .max()
        .expect("some");
    assert!(steps < 40, "{steps} instructions of {before}");
}

fn steps_to_verdict(program: &[u64], nr: u32) -> usize {
    let (mut pc, mut acc, mut steps) = (0usize, 0u32, 0usize);
    loop {
        let (code, jt, jf, k) = unpack_insn(program[pc]);
        pc += 1;
        steps += 1;
        let jump = |cond: bool| if cond { usize::from(jt) } else { usize::from(jf) };
        match code {
            0x20 => {
                acc = if k == 4 {
                    AUDIT_ARCH_X86_64
                } else if k == 0 {
                    nr
                } else {
                    0
                }
            }
            0x05 => pc += k as usize,
            0x15 => pc += jump(acc == k),
            0x35 => pc += jump(acc >= k),
            0x45 => pc += jump(acc & k != 0),
            0x06 => return steps,
            other => panic!("opcode {other:#x} on the way to the verdict"),
        }
    }
}
