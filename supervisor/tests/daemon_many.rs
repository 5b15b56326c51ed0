//! Root-gated: sixteen visualizations at once, and many start/stop cycles under load without
//! leaked descriptors, zombies or cgroups.

mod daemon_support;

use daemon_support::{TestBox, Viz, fd_count, root_or_skip, zombie_children};

/// Start/stop cycles of the stress test (each is a real sandbox spawn and stop), spread over
/// [`WORKERS`] concurrent clients that each cycle their own visualization. The default keeps
/// the test near a minute on a small machine; `VITRINE_STRESS_CYCLES=2000` runs the full soak
/// (about 4.5 minutes on 2 shared cores).
const DEFAULT_CYCLES: usize = 400;
const WORKERS: usize = 4;

fn cycles() -> usize {
    std::env::var("VITRINE_STRESS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CYCLES)
}

#[test]
fn sixteen_visualizations_and_many_cycles_leak_nothing() {
    if !root_or_skip("sixteen_visualizations_and_many_cycles_leak_nothing") {
        return;
    }
    let mut b = TestBox::new();
    let names: Vec<String> = (0..16).map(|i| format!("viz-{i:02}")).collect();
    for name in &names {
        // Output keeps the log pumps busy while the cycles run.
        b.write_policy(name, "while :; do echo tick; sleep 0.2; done", &Viz::default());
    }
    b.start_daemon();
    for name in &names {
        b.wait_state(name, "running");
    }
    let daemon = b.daemon_pid();
    let fds_before = fd_count(daemon);

    let cycles = cycles();
    std::thread::scope(|scope| {
        for name in &names[..WORKERS] {
            let b = &b;
            scope.spawn(move || {
                for _ in 0..cycles / WORKERS {
                    assert_eq!(b.ok(&["stop", name]).trim(), format!("{name}: stopped"));
                    assert_eq!(b.ok(&["start", name]).trim(), format!("{name}: running"));
                }
            });
        }
    });
    for name in &names {
        b.wait_state(name, "running");
    }
    // The last CLI connection may still be closing and the stats collector opens cgroup files
    // for a moment, so the count fluctuates: a leak is a count that never comes back down
    // (`wait_until` panics with the daemon's log after its patience runs out).
    b.wait_until(
        &format!("the daemon's descriptors are back to {fds_before} after {cycles} cycles"),
        |_| fd_count(daemon) <= fds_before,
    );
    assert!(zombie_children(daemon).is_empty(), "no zombies");
    let status = b.status();
    assert_eq!(status.len(), 16);
    assert!(status.iter().all(|s| s["restarts"] == 0), "no crash during the cycles");

    assert!(b.stop_daemon().success());
    let leftovers = cgroups_named(&names);
    assert!(leftovers.is_empty(), "cgroups removed at shutdown: {leftovers:?}");
}

/// Cgroup directories (any hierarchy) named after one of `names`.
fn cgroups_named(names: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir())
                && !entry.file_type().is_ok_and(|t| t.is_symlink())
            {
                if names.iter().any(|n| entry.file_name() == n.as_str()) {
                    found.push(path.display().to_string());
                }
                stack.push(path);
            }
        }
    }
    found
}
