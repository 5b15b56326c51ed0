//! Root-gated: reloads (file watcher, `vitrine reload`, SIGHUP) with real sandboxes.

mod daemon_support;

use daemon_support::{TestBox, Viz, root_or_skip, write_atomically};

#[test]
fn a_broken_policy_keeps_the_running_version() {
    if !root_or_skip("a_broken_policy_keeps_the_running_version") {
        return;
    }
    let mut b = TestBox::new();
    b.write_policy("keep", "exec sleep 1000", &Viz::default());
    b.write_policy("change", "exec sleep 1000", &Viz::default());
    b.write_policy("drop", "exec sleep 1000", &Viz::default());
    b.start_daemon();
    let keep = b.wait_state("keep", "running")["pid"].clone();
    let change = b.wait_state("change", "running")["pid"].clone();
    b.wait_state("drop", "running");

    let broken = std::fs::read_to_string(b.policy_path("keep"))
        .expect("read")
        .replace("[restart]\n", "[restart]\nburts = 3\n");
    write_atomically(&b.policy_path("keep"), &broken);
    b.write_policy("change", "exec sleep 2000", &Viz::default());
    std::fs::remove_file(b.policy_path("drop")).expect("remove");
    b.write_policy("new", "exec sleep 1000", &Viz::default());

    let out = b.vitrine(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "a rejected file makes reload exit 1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:", b.policy_path("keep").display());
    assert!(
        stderr.contains(&expected) && stderr.contains("burts"),
        "PATH:LINE:COL diagnostic: {stderr}"
    );

    b.wait_state("new", "running");
    assert_eq!(
        b.status_of("keep")["pid"],
        keep,
        "the invalid file's previous version keeps running"
    );
    b.wait_until("change restarted", |b| {
        b.status_of("change")["pid"] != change && b.status_of("change")["state"] == "running"
    });
    assert!(b.status().iter().all(|s| s["name"] != "drop"), "removed policies stop");
    let rejected = b.events().into_iter().filter(|e| e["kind"] == "policy-rejected").count();
    assert!(rejected >= 1);
}

#[test]
fn the_policy_directory_is_watched_and_sighup_reloads() {
    if !root_or_skip("the_policy_directory_is_watched_and_sighup_reloads") {
        return;
    }
    let mut b = TestBox::new();
    b.start_daemon();
    assert!(b.status().is_empty());
    // No reload request: the watcher notices the new file.
    b.write_policy("watched", "exec sleep 1000", &Viz::default());
    b.wait_state("watched", "running");
    let reloads = b.events().into_iter().filter(|e| e["kind"] == "reload").count();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(b.daemon_pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    b.wait_until("SIGHUP reloaded", |b| {
        b.events().into_iter().filter(|e| e["kind"] == "reload").count() > reloads
    });
    assert_eq!(b.status_of("watched")["state"], "running", "an unchanged policy is not restarted");
    assert_eq!(b.status_of("watched")["restarts"], 0);
}
