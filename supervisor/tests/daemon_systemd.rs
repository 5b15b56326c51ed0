//! Root-gated: the systemd protocol (Type=notify): READY=1 after start-up, a STATUS= line that
//! follows the visualizations, WATCHDOG=1 pings when WATCHDOG_USEC asks for them, and
//! STOPPING=1 at shutdown. The test plays systemd's side of $NOTIFY_SOCKET.

mod daemon_support;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use daemon_support::{TestBox, Viz, root_or_skip};

#[test]
fn readiness_status_watchdog_and_stopping_are_notified() {
    if !root_or_skip("readiness_status_watchdog_and_stopping_are_notified") {
        return;
    }
    let mut b = TestBox::new();
    b.write_policy("steady", "exec sleep 1000", &Viz::default());
    b.write_policy("broken", "exit 1", &Viz { restart: "never", ..Viz::default() });
    let path = b.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&path).expect("bind notify socket");
    // Only a guard against a daemon that never notifies; no assertion depends on timing.
    systemd.set_read_timeout(Some(Duration::from_secs(90))).expect("timeout");
    let notify = path.to_str().expect("utf-8 path");
    b.start_daemon_with_env(&[("NOTIFY_SOCKET", notify), ("WATCHDOG_USEC", "200000")]);

    let next = || {
        let mut buf = [0u8; 4096];
        let n = systemd.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let wanted = ["READY=1", "STATUS=1 running, 1 failed", "WATCHDOG=1"];
    let mut found = [false; 3];
    while !found.iter().all(|f| *f) {
        let msg = next();
        for (i, w) in wanted.iter().enumerate() {
            found[i] |= msg.lines().any(|l| l == *w);
        }
    }
    let daemon = b.daemon.take().expect("daemon");
    let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    while !next().lines().any(|l| l == "STOPPING=1") {}
    let mut daemon = daemon;
    assert!(daemon.wait().expect("wait").success());
}
