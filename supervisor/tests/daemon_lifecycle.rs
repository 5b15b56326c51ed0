//! Root-gated: the restart rules with real sandboxes (crash → backoff restart, crash loop →
//! failed, stop timeout → cgroup kill, clean start/stop from the CLI).

mod daemon_support;

use daemon_support::{TestBox, Viz, alive, root_or_skip};

#[test]
fn crash_restarts_with_backoff_then_fails_after_the_burst() {
    if !root_or_skip("crash_restarts_with_backoff_then_fails_after_the_burst") {
        return;
    }
    let mut b = TestBox::new();
    b.write_policy("crashy", "echo starting; exit 3", &Viz { burst: 3, ..Viz::default() });
    b.start_daemon();
    let failed = b.wait_state("crashy", "failed");
    assert_eq!(failed["last_exit"], serde_json::json!({"type": "code", "code": 3}));
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("3 starts")), "{failed}");
    assert_eq!(failed["restarts"], 2, "three starts: the first and two restarts");

    let backoffs: Vec<u64> = b
        .events_of("crashy", "backing-off")
        .iter()
        .map(|e| e["delay_ms"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(backoffs, [100, 200], "exponential backoff from backoff_initial");
    assert_eq!(b.events_of("crashy", "exited").len(), 3);
    let logs = b.ok(&["logs", "crashy"]);
    assert_eq!(logs.lines().filter(|l| l.ends_with(" starting")).count(), 3, "{logs}");

    // An operator start clears the failure and the burst history.
    b.write_policy("crashy", "echo fixed; exec sleep 1000", &Viz { burst: 3, ..Viz::default() });
    b.ok(&["reload"]);
    b.wait_state("crashy", "running");
}

#[test]
fn stop_sends_sigterm_then_kills_the_cgroup() {
    if !root_or_skip("stop_sends_sigterm_then_kills_the_cgroup") {
        return;
    }
    let mut b = TestBox::new();
    // The shell ignores SIGTERM and keeps a child; only the cgroup kill ends them.
    b.write_policy(
        "stubborn",
        "trap \"\" TERM; sleep 1000 & while :; do sleep 1; done",
        &Viz::default(),
    );
    b.write_policy("polite", "exec sleep 1000", &Viz::default());
    b.start_daemon();
    let stubborn = b.wait_state("stubborn", "running");
    let polite = b.wait_state("polite", "running");
    let stubborn_pid = stubborn["pid"].as_u64().expect("pid") as u32;

    let out = b.ok(&["stop", "stubborn"]);
    assert_eq!(out.trim(), "stubborn: stopped");
    assert!(!alive(stubborn_pid), "the sandbox is gone");
    let logs = b.ok(&["logs", "stubborn"]);
    assert!(logs.contains("stop timeout reached"), "{logs}");
    assert_eq!(b.status_of("stubborn")["last_exit"]["type"], "signal");

    b.ok(&["stop", "polite"]);
    let logs = b.ok(&["logs", "polite"]);
    assert!(!logs.contains("stop timeout reached"), "SIGTERM was enough: {logs}");
    assert_eq!(b.status_of("polite")["restarts"], 0);
    let _ = polite;

    // Start and restart from the CLI; restart gives a new pid.
    b.ok(&["start", "polite"]);
    let first = b.wait_state("polite", "running")["pid"].clone();
    assert_eq!(b.ok(&["restart", "polite"]).trim(), "polite: running");
    let second = b.status_of("polite")["pid"].clone();
    assert_ne!(first, second);
    assert!(b.stop_daemon().success());
}

#[test]
fn status_table_and_json_show_the_sandbox() {
    if !root_or_skip("status_table_and_json_show_the_sandbox") {
        return;
    }
    let mut b = TestBox::new();
    b.write_policy("steady", "echo hello from the sandbox; exec sleep 1000", &Viz::default());
    b.start_daemon();
    let s = b.wait_state("steady", "running");
    assert!(s["pid"].as_u64().is_some(), "{s}");
    assert!(s["layers"].as_array().is_some_and(|l| !l.is_empty()), "enforced layers reported: {s}");
    assert!(s["stats"]["memory_bytes"].as_u64().is_some(), "cgroup stats reported: {s}");
    let table = b.ok(&["status"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("steady") && l.contains("running")), "{table}");
    b.wait_until("the child's output is in its log", |b| {
        b.ok(&["logs", "steady"]).contains("hello from the sandbox")
    });
    let missing = b.vitrine(&["stop", "nosuch"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no visualization named"));
}
