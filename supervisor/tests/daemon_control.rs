//! Root-gated: the control socket refuses callers without a role, by their kernel credentials.

mod daemon_support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use daemon_support::{TestBox, VITRINE, Viz, root_or_skip};

const NOBODY: u32 = 65534;

fn as_nobody(b: &TestBox, args: &[&str]) -> std::process::Output {
    Command::new(VITRINE)
        .args(args)
        .arg("--socket")
        .arg(b.socket())
        // std clears supplementary groups when root changes the uid.
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run vitrine as nobody")
}

#[test]
fn an_unauthorized_user_is_refused() {
    if !root_or_skip("an_unauthorized_user_is_refused") {
        return;
    }
    let mut b = TestBox::new();
    b.write_policy("guarded", "exec sleep 1000", &Viz::default());
    b.start_daemon();
    b.wait_state("guarded", "running");

    // The socket is 0660 root:vitrine (or root:root): nobody cannot even connect.
    let out = as_nobody(&b, &["status"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"), "{out:?}");

    // Even with the file opened up, the daemon refuses by SO_PEERCRED.
    std::fs::set_permissions(b.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    std::fs::set_permissions(b.path().join("run"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod run");
    std::fs::set_permissions(b.socket(), std::fs::Permissions::from_mode(0o666))
        .expect("chmod socket");
    for args in [&["status"][..], &["stop", "guarded"], &["reload"], &["logs", "guarded"]] {
        let out = as_nobody(&b, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("permission denied: uid 65534"), "{args:?}: {stderr}");
    }
    assert_eq!(b.status_of("guarded")["state"], "running", "the refused stop changed nothing");
    let refusals = b
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "control-action" && e["uid"] == NOBODY && e["allowed"] == false)
        .count();
    assert_eq!(refusals, 4, "every refusal is published with the caller's uid");
}
