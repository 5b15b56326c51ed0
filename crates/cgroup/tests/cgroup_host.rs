//! Privileged tests against the host's cgroup hierarchy: the v1 per-controller hierarchies, or
//! cgroup v2 where `/sys/fs/cgroup` is cgroup2 (the VM lane). Each test uses its own root name,
//! so they run in parallel without interfering.

mod common;

use std::os::unix::process::ExitStatusExt;

use common::{go, pid_of, remove_bases, spawn_waiting, unique_root};
use vitrine_cgroup::{Controller, Error, Limits, Manager};

fn manager(test: &str) -> Manager {
    Manager::detect(&unique_root(test)).expect("detect cgroups")
}

#[test]
fn detection_accounts_for_every_controller() {
    require_root!();
    let m = manager("detect");
    for c in Controller::ALL {
        let missing = m.missing().iter().any(|x| x.controller == c);
        assert_ne!(m.has(c), missing, "{c} must be either available or missing");
    }
    for missing in m.missing() {
        assert!(missing.to_string().contains("controller missing"), "{missing}");
    }
    eprintln!("{}", m.summary());
    // The documented layout: each visualization nests under the supervisor's own cgroup.
    let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    for base in m.base_dirs() {
        assert!(base.ends_with(unique_root("detect")), "{}", base.display());
        let parent = base.parent().expect("parent");
        let hierarchy = match m.version() {
            vitrine_cgroup::Version::V1 => parent
                .strip_prefix("/sys/fs/cgroup")
                .ok()
                .and_then(|p| p.components().next())
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .expect("a v1 hierarchy under /sys/fs/cgroup"),
            vitrine_cgroup::Version::V2 => String::new(),
        };
        let own = vitrine_cgroup::own_cgroup(&own, &hierarchy).expect("own cgroup");
        let own = own.strip_prefix("/").expect("absolute");
        // On v2 the supervisor has moved itself into `<own>/supervisor`.
        let own = match own.ends_with("supervisor") {
            true => own.parent().expect("parent"),
            false => own,
        };
        assert!(
            parent.ends_with(own),
            "{} is not under the supervisor's cgroup {}",
            base.display(),
            own.display()
        );
    }
    remove_bases(&m);
}

#[test]
fn a_process_is_placed_counted_killed_and_removed() {
    require_root!();
    let m = manager("place");
    let cg = m.create("viz", &Limits::default()).expect("create");
    let (mut child, stdin) = spawn_waiting("exec sleep 1000");
    let pid = pid_of(&child);
    cg.add_pid(pid).expect("add pid");
    go(stdin);
    assert_eq!(cg.pids().expect("pids"), vec![pid]);
    assert_eq!(cg.stats().expect("stats").pids_current, 1);

    let killed = cg.kill_all().expect("kill");
    assert_eq!(killed, vec![pid]);
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert!(cg.pids().expect("pids").is_empty());

    cg.remove().expect("remove");
    for dir in cg.dirs() {
        assert!(!dir.exists(), "{} still exists", dir.display());
    }
    remove_bases(&m);
}

#[test]
fn pids_limit_stops_a_fork_loop_at_the_limit() {
    require_root!();
    let m = manager("pids");
    let limits = Limits { pids: Some(5), ..Limits::default() };
    let cg = m.create("forky", &limits).expect("create");
    // The shell counts as one task; it tries to start 20 sleepers, and forks past the limit fail.
    let (mut child, stdin) =
        spawn_waiting("i=0; while [ $i -lt 20 ]; do sleep 1000 & i=$((i+1)); done; exit 0");
    cg.add_pid(pid_of(&child)).expect("add pid");
    go(stdin);
    let _ = child.wait().expect("wait for the shell");
    // Only the sleepers that fit under the limit exist: 5 tasks minus the shell.
    let survivors = cg.pids().expect("pids");
    assert_eq!(survivors.len(), 4, "{survivors:?}");
    assert_eq!(cg.stats().expect("stats").pids_current, 4);
    let dir = cg.dirs().iter().find(|d| d.join("pids.max").exists()).expect("pids dir");
    let events = std::fs::read_to_string(dir.join("pids.events")).expect("pids.events");
    let refused = vitrine_cgroup::keyed_value(&events, "max").expect("max line");
    assert!(refused >= 1, "pids.events: {events}");

    assert_eq!(cg.kill_all().expect("kill").len(), 4);
    cg.remove().expect("remove");
    remove_bases(&m);
}

#[test]
fn memory_limit_oom_kills_and_is_counted() {
    require_root!();
    let m = manager("oom");
    let limit: u64 = 32 << 20;
    let limits = Limits { memory: Some(limit), ..Limits::default() };
    let cg = m.create("hungry", &limits).expect("create");
    assert_eq!(cg.memory_events().expect("events").oom_kill, 0);
    // dd fills a 256 MiB buffer from /dev/zero, touching every page: far past the limit.
    let (mut child, stdin) = spawn_waiting("exec dd if=/dev/zero of=/dev/null bs=256M count=1");
    cg.add_pid(pid_of(&child)).expect("add pid");
    go(stdin);
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(9), "dd must be OOM-killed: {status:?}");

    let events = cg.memory_events().expect("events");
    assert!(events.oom_kill >= 1, "{events:?}");
    let stats = cg.stats().expect("stats");
    assert_eq!(stats.oom_kills, events.oom_kill);
    assert!(stats.memory_peak <= limit, "peak {} above the limit", stats.memory_peak);
    assert!(stats.memory_peak > limit / 2, "peak {} never neared the limit", stats.memory_peak);
    cg.remove().expect("remove");
    remove_bases(&m);
}

#[test]
fn cpu_and_cpuset_limits_reach_the_kernel() {
    require_root!();
    let m = manager("cpu");
    let limits = Limits { cpu: Some(0.5), cpuset: Some("0".to_owned()), ..Limits::default() };
    let cg = m.create("slow", &limits).expect("create");
    let read = |file: &str| {
        let dir = cg.dirs().iter().find(|d| d.join(file).exists()).expect(file);
        std::fs::read_to_string(dir.join(file)).expect(file).trim().to_owned()
    };
    if m.version() == vitrine_cgroup::Version::V1 {
        assert_eq!(read("cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu.cfs_period_us"), "100000");
    } else {
        assert_eq!(read("cpu.max"), "50000 100000");
    }
    assert_eq!(read("cpuset.cpus"), "0");

    // A process in the cgroup burns CPU and is charged for it.
    let (mut child, stdin) = spawn_waiting("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done");
    cg.add_pid(pid_of(&child)).expect("add pid");
    go(stdin);
    assert!(child.wait().expect("wait").success());
    assert!(cg.stats().expect("stats").cpu_seconds > 0.0);
    cg.remove().expect("remove");
    remove_bases(&m);
}

#[test]
fn kill_all_empties_a_cgroup_that_keeps_forking() {
    require_root!();
    let m = manager("forkloop");
    let limits = Limits { pids: Some(32), ..Limits::default() };
    let cg = m.create("spawner", &limits).expect("create");
    // Forks without pause; failures at the limit do not stop it.
    let (mut child, stdin) = spawn_waiting("while :; do (sleep 1000 &) 2>/dev/null; done");
    cg.add_pid(pid_of(&child)).expect("add pid");
    go(stdin);
    while cg.pids().expect("pids").len() < 8 {
        std::thread::yield_now();
    }
    cg.kill_all().expect("kill");
    assert!(cg.pids().expect("pids").is_empty());
    assert_eq!(child.wait().expect("wait").signal(), Some(9));
    cg.remove().expect("remove");
    remove_bases(&m);
}

#[test]
fn a_limit_the_kernel_refuses_leaves_no_cgroup_behind() {
    require_root!();
    let m = manager("refused");
    let limits = Limits { cpuset: Some("4095".to_owned()), ..Limits::default() };
    match m.create("bad", &limits) {
        Err(Error::Limit { key: "cpuset", .. }) => {}
        other => panic!("expected a cpuset error, got {other:?}"),
    }
    for base in m.base_dirs() {
        assert!(!base.join("bad").exists(), "{} left behind", base.display());
    }
    remove_bases(&m);
}

#[test]
fn a_cgroup_with_processes_is_not_taken_over() {
    require_root!();
    let m = manager("busy");
    let cg = m.create("taken", &Limits::default()).expect("create");
    let (mut child, stdin) = spawn_waiting("exec sleep 1000");
    cg.add_pid(pid_of(&child)).expect("add pid");
    go(stdin);
    match m.create("taken", &Limits::default()) {
        Err(Error::Busy { pids, .. }) => assert_eq!(pids, vec![pid_of(&child)]),
        other => panic!("expected Busy, got {other:?}"),
    }
    cg.remove().expect("remove kills and removes");
    assert_eq!(child.wait().expect("wait").signal(), Some(9));
    remove_bases(&m);
}

#[test]
fn leftovers_of_a_previous_run_are_killed_and_removed() {
    require_root!();
    let root = unique_root("leftovers");
    let previous = Manager::detect(&root).expect("detect");
    let busy = previous.create("left-busy", &Limits::default()).expect("create");
    previous.create("left-idle", &Limits::default()).expect("create");
    let (mut child, stdin) = spawn_waiting("exec sleep 1000");
    busy.add_pid(pid_of(&child)).expect("add pid");
    go(stdin);
    drop(previous);

    let next = Manager::detect(&root).expect("detect again");
    let cleaned = next.cleanup_leftovers().expect("cleanup");
    let names: Vec<&str> = cleaned.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["left-busy", "left-idle"]);
    assert_eq!(cleaned[0].killed, vec![pid_of(&child)]);
    assert!(cleaned[1].killed.is_empty());
    assert_eq!(child.wait().expect("wait").signal(), Some(9));
    for dir in busy.dirs() {
        assert!(!dir.exists(), "{} still exists", dir.display());
    }
    assert!(next.cleanup_leftovers().expect("second cleanup").is_empty());
    remove_bases(&next);
}

#[test]
fn a_thread_inside_forks_children_born_in_the_cgroup_and_returns() {
    require_root!();
    let m = manager("enter");
    let cg = m.create("born", &Limits { pids: Some(8), ..Limits::default() }).expect("create");
    let own = || std::fs::read_to_string("/proc/thread-self/cgroup").expect("thread cgroups");
    let (entered, child, before, after) = std::thread::scope(|s| {
        s.spawn(|| {
            let before = own();
            let entered = cg.enter_calling_thread();
            let child = std::process::Command::new("sleep")
                .arg("1000")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn");
            m.return_calling_thread().expect("return");
            (entered.expect("enter"), child, before, own())
        })
        .join()
        .expect("thread")
    });
    let mut child = child;
    // The thread is back where it started, whatever the version.
    assert_eq!(before, after);
    let pid = child.id() as i32;
    let inside = cg.pids().expect("pids");
    match m.version() {
        // v1: the child was born inside, and the supervisor process is not listed.
        vitrine_cgroup::Version::V1 => {
            assert!(entered);
            assert_eq!(inside, vec![pid]);
        }
        // v2: nothing moved; placement is the caller's job.
        vitrine_cgroup::Version::V2 => {
            assert!(!entered);
            assert!(inside.is_empty(), "{inside:?}");
            cg.add_pid(pid).expect("add pid");
        }
    }
    assert_eq!(cg.kill_all().expect("kill"), vec![pid]);
    assert_eq!(child.wait().expect("wait").signal(), Some(9));
    cg.remove().expect("remove");
    remove_bases(&m);
}

#[test]
fn kill_all_never_signals_the_calling_process() {
    require_root!();
    let m = manager("self");
    let cg = m.create("with-us", &Limits::default()).expect("create");
    if m.version() != vitrine_cgroup::Version::V1 {
        eprintln!("skipped: only v1 lets one supervisor thread stand in a cgroup");
        cg.remove().expect("remove");
        remove_bases(&m);
        return;
    }
    let (mut child, stdin) = spawn_waiting("exec sleep 1000");
    cg.add_pid(pid_of(&child)).expect("add pid");
    go(stdin);
    // Another thread of this process stands inside, as the spawn thread does for an instant,
    // while this one kills the cgroup (the freezer may freeze that thread meanwhile).
    let (inside_tx, inside_rx) = std::sync::mpsc::channel();
    let (leave_tx, leave_rx) = std::sync::mpsc::channel::<()>();
    let killed = std::thread::scope(|s| {
        let (cg, m) = (&cg, &m);
        let visitor = s.spawn(move || {
            let entered = cg.enter_calling_thread();
            inside_tx.send(()).expect("send");
            let _ = leave_rx.recv();
            m.return_calling_thread().expect("return");
            entered.expect("enter")
        });
        inside_rx.recv().expect("inside");
        assert!(cg.pids().expect("pids").contains(&(std::process::id() as i32)));
        let killed = cg.kill_all();
        leave_tx.send(()).expect("send");
        assert!(visitor.join().expect("thread"));
        killed
    });
    assert_eq!(killed.expect("kill"), vec![pid_of(&child)]);
    assert_eq!(child.wait().expect("wait").signal(), Some(9));
    cg.remove().expect("remove");
    remove_bases(&m);
}
