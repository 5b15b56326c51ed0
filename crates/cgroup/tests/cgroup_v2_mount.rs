//! Privileged tests of the v2 code paths against a cgroup2 mount: the `unified` mount of a
//! hybrid host (which has no memory/cpu/pids controllers) or `/sys/fs/cgroup` itself on a v2
//! host. They check placement, `cgroup.kill`, the `CLONE_INTO_CGROUP` fd and that limits fail
//! closed when their controller is missing.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use common::{go, pid_of, remove_bases, spawn_waiting, unique_root};
use vitrine_cgroup::{Controller, Error, Limits, Manager, Version};

/// The cgroup2 mount to test against, if the host has one.
fn cgroup2_mount() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").exists())
}

macro_rules! require_cgroup2 {
    () => {{
        require_root!();
        match cgroup2_mount() {
            Some(mount) => mount,
            None => {
                eprintln!("skipped: no cgroup2 mount on this host");
                return;
            }
        }
    }};
}

#[test]
fn v2_places_kills_and_removes() {
    let mount = require_cgroup2!();
    let m = Manager::detect_v2_at(&mount, &unique_root("v2place")).expect("detect v2");
    assert_eq!(m.version(), Version::V2);
    let cg = m.create("viz", &Limits::default()).expect("create");
    let fd = cg.procs_dir_fd().expect("open").expect("v2 has a directory fd");
    let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("readlink");
    assert_eq!(target, cg.dirs()[0]);

    let (mut child, stdin) = spawn_waiting("sleep 1000 & sleep 1000 & wait");
    cg.add_pid(pid_of(&child)).expect("add pid");
    go(stdin);
    while cg.pids().expect("pids").len() < 3 {
        std::thread::yield_now();
    }
    assert!(cg.stats().expect("stats").pids_current >= 3);
    let killed = cg.kill_all().expect("kill");
    assert!(killed.contains(&pid_of(&child)));
    assert_eq!(child.wait().expect("wait").signal(), Some(9));
    cg.remove().expect("remove");
    assert!(!cg.dirs()[0].exists());
    remove_bases(&m);
}

#[test]
fn v2_limits_without_their_controller_fail_closed() {
    let mount = require_cgroup2!();
    let m = Manager::detect_v2_at(&mount, &unique_root("v2closed")).expect("detect v2");
    let cases = [
        (Controller::Memory, Limits { memory: Some(64 << 20), ..Limits::default() }),
        (Controller::Cpu, Limits { cpu: Some(1.0), ..Limits::default() }),
        (Controller::Cpuset, Limits { cpuset: Some("0".into()), ..Limits::default() }),
        (Controller::Pids, Limits { pids: Some(8), ..Limits::default() }),
    ];
    let mut checked = 0;
    for (controller, limits) in cases {
        if m.has(controller) {
            continue;
        }
        match m.create("limited", &limits) {
            Err(Error::ControllerMissing { controller: c, .. }) => assert_eq!(c, controller),
            other => panic!("{controller}: expected ControllerMissing, got {other:?}"),
        }
        assert!(m.missing().iter().any(|x| x.controller == controller));
        assert!(!m.base_dirs()[0].join("limited").exists());
        checked += 1;
    }
    if checked == 0 {
        eprintln!("skipped: {} offers every controller", mount.display());
    }
    remove_bases(&m);
}

#[test]
fn v1_hosts_have_no_clone_into_cgroup_fd() {
    require_root!();
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        eprintln!("skipped: this host is cgroup v2");
        return;
    }
    let m = Manager::detect(&unique_root("v1fd")).expect("detect");
    assert_eq!(m.version(), Version::V1);
    let cg = m.create("nofd", &Limits::default()).expect("create");
    assert!(cg.procs_dir_fd().expect("no error").is_none());
    cg.remove().expect("remove");
    remove_bases(&m);
}
