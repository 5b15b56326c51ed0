//! Root-gated: hostile visualizations are contained by their cgroup and the daemon carries on.

mod daemon_support;

use daemon_support::{TestBox, Viz, root_or_skip};

#[test]
fn a_memory_bomb_is_reported_as_oom_and_restarted() {
    if !root_or_skip("a_memory_bomb_is_reported_as_oom_and_restarted") {
        return;
    }
    let mut b = TestBox::new();
    // Doubling a shell string quickly exceeds the 32 MiB limit.
    b.write_policy(
        "bomb",
        "x=a; while :; do x=$x$x; done",
        &Viz { memory: "32MiB", burst: 100, ..Viz::default() },
    );
    b.write_policy("bystander", "exec sleep 1000", &Viz::default());
    b.start_daemon();
    b.wait_until("the bomb was OOM-killed twice", |b| b.events_of("bomb", "oom").len() >= 2);
    let exits = b.events_of("bomb", "exited");
    assert!(exits.iter().any(|e| e["exit"]["type"] == "oom"), "exit classified as OOM: {exits:?}");
    let status = b.status_of("bomb");
    assert!(status["restarts"].as_u64().is_some_and(|r| r >= 1), "{status}");
    assert!(status["oom_exits"].as_u64().is_some_and(|n| n >= 2), "{status}");
    assert_eq!(b.status_of("bystander")["state"], "running");
    assert_eq!(b.status_of("bystander")["restarts"], 0);
    assert!(b.stop_daemon().success());
}

#[test]
fn a_fork_bomb_is_contained_by_the_pids_limit() {
    if !root_or_skip("a_fork_bomb_is_contained_by_the_pids_limit") {
        return;
    }
    let mut b = TestBox::new();
    b.write_policy(
        "forks",
        "f() { f | f & }; f; sleep 1000",
        &Viz { pids: 16, stop_timeout: "1s", ..Viz::default() },
    );
    b.start_daemon();
    // dash gives up when a fork fails, so the bomb may already have burnt out by the time
    // status is read: the proof that pids.max stopped it is the shell's own "Cannot fork".
    b.wait_until("the fork bomb hit its cgroup's pids limit", |b| {
        b.ok(&["logs", "forks"]).contains("Cannot fork")
            || b.status_of("forks")["stats"]["pids"].as_u64().is_some_and(|p| p >= 8)
    });
    for _ in 0..20 {
        let pids = b.status_of("forks")["stats"]["pids"].as_u64().unwrap_or(0);
        assert!(pids <= 16, "pids.max holds: {pids}");
    }
    // The daemon still answers and can end the bomb (its cgroup is killed after stop_timeout).
    assert_eq!(b.ok(&["stop", "forks"]).trim(), "forks: stopped");
    assert!(b.status_of("forks")["stats"].is_null());
    assert!(b.stop_daemon().success());
}
