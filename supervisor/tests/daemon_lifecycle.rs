//! Root-gated: the restart rules with real sandboxes (crash → backoff restart, crash loop →
//! failed, stop timeout → cgroup kill, clean start/stop from the CLI).

mod daemon_support;

use std::path::Path;

use daemon_support::{TestBox, Viz, alive, root_or_skip, write_atomically};

/// The processes in the cgroup `name` under `root` (0 when it does not exist).
fn cgroup_procs(root: &str, name: &str) -> usize {
    let base = Path::new("/sys/fs/cgroup");
    let v1 = std::fs::read_dir(base).into_iter().flatten().flatten();
    v1.map(|h| h.path())
        .chain([base.to_owned()])
        .filter_map(|dir| {
            std::fs::read_to_string(dir.join(root).join(name).join("cgroup.procs")).ok()
        })
        .map(|procs| procs.lines().count())
        .max()
        .unwrap_or(0)
}

/// Whether the cgroup `name` exists under `root` in any v1 hierarchy or the v2 tree.
fn cgroup_exists(root: &str, name: &str) -> bool {
    let base = Path::new("/sys/fs/cgroup");
    let v1 = std::fs::read_dir(base).into_iter().flatten().flatten();
    v1.map(|h| h.path()).chain([base.to_owned()]).any(|dir| dir.join(root).join(name).exists())
}

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
    // Restarts run in sandboxes primed during the backoff; the failure leaves none behind.
    let root = b.cgroup_root();
    b.wait_until("no sandbox is left primed", |_| !cgroup_exists(&root, "crashy"));

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

#[test]
fn a_restart_is_primed_during_the_backoff_and_dropped_on_stop() {
    if !root_or_skip("a_restart_is_primed_during_the_backoff_and_dropped_on_stop") {
        return;
    }
    let mut b = TestBox::new();
    b.write_policy("later", "echo ran; exit 1", &Viz::default());
    let path = b.policy_path("later");
    let text = std::fs::read_to_string(&path)
        .expect("policy")
        .replace(r#"backoff_initial = "100ms""#, r#"backoff_initial = "60s""#)
        .replace(r#"backoff_max = "400ms""#, r#"backoff_max = "60s""#);
    write_atomically(&path, &text);
    b.start_daemon();
    b.wait_state("later", "backing-off");
    // The restart's sandbox is built at once, in the visualization's cgroup: the shim and the
    // sandbox's init wait there, and nothing of the program ran again.
    let root = b.cgroup_root();
    b.wait_until("the restart is primed", |_| cgroup_procs(&root, "later") == 2);
    let logs = b.ok(&["logs", "later"]);
    assert_eq!(logs.lines().filter(|l| l.ends_with(" ran")).count(), 1, "{logs}");
    // No restart follows a stop: the primed sandbox is killed and its cgroup removed.
    assert_eq!(b.ok(&["stop", "later"]).trim(), "later: stopped");
    b.wait_until("the primed sandbox is dropped", |_| !cgroup_exists(&root, "later"));
}
