//! Root-gated: SIGKILL of the supervisor leaves no sandboxed process alive, and the next start
//! cleans up what a previous run left behind.

mod daemon_support;

use daemon_support::{TestBox, Viz, alive, root_or_skip};

#[test]
fn sigkill_of_the_supervisor_leaves_nothing_running() {
    if !root_or_skip("sigkill_of_the_supervisor_leaves_nothing_running") {
        return;
    }
    let mut b = TestBox::new();
    // Each visualization also starts a background child that would outlive a careless init.
    for name in ["one", "two", "three"] {
        b.write_policy(name, "sleep 1000 & exec sleep 1001", &Viz::default());
    }
    b.start_daemon();
    let pids: Vec<u32> = ["one", "two", "three"]
        .iter()
        .map(|n| b.wait_state(n, "running")["pid"].as_u64().expect("pid") as u32)
        .collect();
    let sandboxed = descendants_of(&pids);
    assert!(sandboxed.len() >= 6, "sandboxes and their children: {sandboxed:?}");

    let mut daemon = b.daemon.take().expect("daemon");
    daemon.kill().expect("SIGKILL the supervisor");
    daemon.wait().expect("reap the supervisor");
    b.wait_until("every sandboxed process is gone", |_| sandboxed.iter().all(|p| !alive(*p)));

    // A new daemon starts cleanly over the leftovers (cgroups, socket) of the killed one.
    b.start_daemon();
    for name in ["one", "two", "three"] {
        b.wait_state(name, "running");
    }
    assert!(b.stop_daemon().success());
}

/// `pids` and every process below them.
fn descendants_of(pids: &[u32]) -> Vec<u32> {
    let mut all: Vec<u32> = pids.to_vec();
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1))
                .and_then(|p| p.parse().ok());
            if ppid == Some(parent) && !all.contains(&pid) {
                all.push(pid);
            }
        }
        i += 1;
    }
    all
}

#[test]
fn a_starting_daemon_leaves_a_foreground_run_alone() {
    if !root_or_skip("a_starting_daemon_leaves_a_foreground_run_alone") {
        return;
    }
    let mut b = TestBox::new();
    // A policy outside the daemon's directory, run in the foreground next to the daemon.
    b.write_policy("foreground", "exec sleep 1000", &Viz::default());
    let outside = b.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    let policy = outside.join("foreground.toml");
    std::fs::rename(b.policy_path("foreground"), &policy).expect("move policy");
    let mut run = std::process::Command::new(daemon_support::VITRINE)
        .arg("run")
        .arg(&policy)
        .arg("--config")
        .arg(b.path().join("vitrine.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn vitrine run");
    let mut stderr = std::io::BufReader::new(run.stderr.take().expect("stderr"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).expect("read the start line");
    assert!(line.contains("started"), "vitrine run did not start: {line}");
    let sandboxed = descendants_of(&[run.id()]);
    assert!(sandboxed.len() >= 4, "run, shim, init, sleep: {sandboxed:?}");

    // The daemon removes the cgroups a previous daemon left behind when it starts; the
    // foreground run's are not among them.
    b.start_daemon();
    assert!(b.log().contains("cgroups"), "the daemon has set up its cgroups");
    assert_eq!(run.try_wait().expect("try_wait"), None, "vitrine run was stopped");
    assert!(sandboxed.iter().all(|p| alive(*p)), "a sandboxed process was killed");
    b.stop_daemon();

    let pid = nix::unistd::Pid::from_raw(run.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM vitrine run");
    let status = run.wait().expect("wait vitrine run");
    assert_eq!(status.code(), Some(128 + 15), "{status:?}");
}
