//! Property: granting more never lowers the exposure score.

#![allow(clippy::unwrap_used)] // A failing unwrap is a failing test.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::explain;
use crate::model::*;
use crate::{LoadContext, load_policy};

fn base() -> Policy {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/examples/oscdump.toml");
    load_policy(&path, &LoadContext { allow_unsigned: false, system_dirs: Vec::new() }).unwrap()
}

const PATHS: &[&str] = &[
    "/opt/viz/bin",
    "/opt/viz/share",
    "/var/lib/vitrine/a",
    "/tmp/x",
    "/etc",
    "/etc/hosts",
    "/home/artist",
    "/usr/share/fonts",
    "/var/cache",
    "/srv/media",
    "/opt",
];
const DEVICES: &[&str] = &[
    "/dev/dri/renderD128",
    "/dev/dri/renderD129",
    "/dev/dri/card0",
    "/dev/snd",
    "/dev/input/event0",
    "/dev/video0",
    "/dev/null",
];
const SYSCALLS: &[&str] = &["memfd_create", "kcmp", "ioctl", "read", "sched_setaffinity", "mlock"];

fn abs(s: &str) -> AbsPath {
    AbsPath(PathBuf::from(s))
}

/// One way of granting more.
#[derive(Debug, Clone)]
enum Grant {
    Read(usize),
    ReadWrite(usize),
    Exec(usize),
    Device(usize),
    Syscall(usize),
    Memory(Option<u64>),
    Pids(Option<u32>),
    NoCpuLimit,
    OpenFiles(u64),
    TmpSize(u64),
    Action(SeccompAction),
    BestEffort,
    LowerAbi(u8),
    Unsigned,
    ExecFromFile,
    ReplyPort,
    OscRate(u32),
    Sysex,
}

fn grant() -> impl Strategy<Value = Grant> {
    prop_oneof![
        (0..PATHS.len()).prop_map(Grant::Read),
        (0..PATHS.len()).prop_map(Grant::ReadWrite),
        (0..PATHS.len()).prop_map(Grant::Exec),
        (0..DEVICES.len()).prop_map(Grant::Device),
        (0..SYSCALLS.len()).prop_map(Grant::Syscall),
        prop::option::of(1u64..64).prop_map(|g| Grant::Memory(g.map(|g| g << 30))),
        prop::option::of(1u32..100_000).prop_map(Grant::Pids),
        Just(Grant::NoCpuLimit),
        (16u64..100_000).prop_map(Grant::OpenFiles),
        (1u64..4096).prop_map(|m| Grant::TmpSize(m << 20)),
        prop_oneof![
            Just(SeccompAction::Kill),
            Just(SeccompAction::Errno),
            Just(SeccompAction::Log)
        ]
        .prop_map(Grant::Action),
        Just(Grant::BestEffort),
        (1u8..=7).prop_map(Grant::LowerAbi),
        Just(Grant::Unsigned),
        Just(Grant::ExecFromFile),
        Just(Grant::ReplyPort),
        (1u32..100_000).prop_map(Grant::OscRate),
        Just(Grant::Sysex),
    ]
}

fn push(v: &mut Vec<AbsPath>, p: &str) {
    if !v.contains(&abs(p)) {
        v.push(abs(p));
    }
}

fn action_rank(a: SeccompAction) -> u8 {
    match a {
        SeccompAction::Kill => 0,
        SeccompAction::Errno => 1,
        SeccompAction::Log => 2,
    }
}

/// Applies a grant; limits only ever grow and weakening knobs only ever weaken.
fn apply(p: &mut Policy, g: &Grant) {
    let l = &mut p.limits;
    match *g {
        Grant::Read(i) => push(&mut p.filesystem.read, PATHS[i]),
        Grant::ReadWrite(i) => push(&mut p.filesystem.read_write, PATHS[i]),
        Grant::Exec(i) => push(&mut p.filesystem.exec, PATHS[i]),
        Grant::Device(i) => push(&mut p.filesystem.devices, DEVICES[i]),
        Grant::Syscall(i) => {
            if !p.syscalls.allow.iter().any(|s| s == SYSCALLS[i]) {
                p.syscalls.allow.push(SYSCALLS[i].to_string());
            }
        }
        Grant::Memory(m) => l.memory = l.memory.zip(m).map(|(a, b)| a.max(b)),
        Grant::Pids(n) => l.pids = l.pids.zip(n).map(|(a, b)| a.max(b)),
        Grant::NoCpuLimit => l.cpu = None,
        Grant::OpenFiles(n) => l.open_files = l.open_files.max(n),
        Grant::TmpSize(n) => l.tmp_size = l.tmp_size.max(n),
        Grant::Action(a) => {
            if action_rank(a) > action_rank(p.syscalls.action) {
                p.syscalls.action = a;
            }
        }
        Grant::BestEffort => p.sandbox.landlock = LandlockMode::BestEffort,
        Grant::LowerAbi(a) => p.sandbox.landlock_min_abi = p.sandbox.landlock_min_abi.min(a),
        Grant::Unsigned => {
            p.verify.sha256 = None;
            p.verify.minisign_signature = None;
        }
        Grant::ExecFromFile => p.verify.exec_from = ExecFrom::File,
        Grant::ReplyPort => {
            if let Ipc::Udp { reply_port, .. } = &mut p.ipc {
                reply_port.get_or_insert(9001);
            }
        }
        Grant::OscRate(r) => p.osc.max_rate = p.osc.max_rate.max(r),
        Grant::Sysex => {
            if let Some(m) = &mut p.midi {
                m.sysex = true;
            }
        }
    }
}

proptest! {
    #[test]
    fn granting_more_never_lowers_the_score(before in prop::collection::vec(grant(), 0..12), extra in grant()) {
        let mut p = base();
        for g in &before {
            apply(&mut p, g);
        }
        let score = explain(&p).exposure;
        apply(&mut p, &extra);
        let after = explain(&p).exposure;
        prop_assert!(after >= score, "{extra:?} lowered the score from {score} to {after}");
        prop_assert!((0.0..=10.0).contains(&after));
    }
}

#[test]
fn grants_raise_the_score_where_they_should() {
    let p = base();
    let s0 = explain(&p).exposure;
    for g in [
        Grant::ReadWrite(4),
        Grant::Device(3),
        Grant::Action(SeccompAction::Log),
        Grant::Unsigned,
        Grant::Memory(None),
    ] {
        let mut q = p.clone();
        apply(&mut q, &g);
        if let Grant::Memory(None) = g {
            q.limits.memory = None;
        }
        assert!(explain(&q).exposure > s0, "{g:?} did not raise {s0}");
    }
}
