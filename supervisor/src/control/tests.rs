//! The control protocol end to end over a real Unix socket, with the fake launcher behind the
//! daemon. Refusal of unprivileged callers needs a second uid and is tested by
//! `supervisor/tests/daemon_control.rs`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;
use vitrine_policy::{ControlConfig, LoadContext};

use super::*;
use crate::daemon::launcher::NoHooks;
use crate::daemon::testing::{FakeLauncher, test_policy_toml};
use crate::daemon::{Daemon, machine::State};
use crate::events::EventBus;

struct Setup {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stop: watch::Sender<bool>,
    /// Kept so the fake launcher can announce its spawns.
    _spawned: tokio::sync::mpsc::UnboundedReceiver<crate::daemon::testing::FakeHandle>,
}

async fn setup(names: &[&str]) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    for name in names {
        let toml = test_policy_toml(name, Path::new("/bin/true"));
        std::fs::write(policies.join(format!("{name}.toml")), toml).expect("write");
    }
    let (launcher, spawned) = FakeLauncher::new();
    let ctx = LoadContext { allow_unsigned: true, system_dirs: Vec::new() };
    let daemon = Daemon::new(launcher, EventBus::new(), Arc::new(NoHooks), policies, ctx);
    daemon.reload().await;
    let config = ControlConfig {
        socket: dir.path().join("run/control.sock"),
        admin_group: "vitrine-admin-test-missing".into(),
        operator_group: "vitrine-test-missing".into(),
    };
    let listener = server::bind(&config).expect("bind");
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(server::serve(listener, daemon, Arc::new(config.clone()), stop_rx));
    Setup { socket: config.socket, _dir: dir, stop, _spawned: spawned }
}

/// One request through the real (blocking) client, off the runtime's threads.
async fn ask(socket: &Path, request: Request) -> Vec<Response> {
    let socket = socket.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut answers = client::send(&socket, &request).expect("send");
        let mut out = Vec::new();
        while let Some(a) = answers.next_answer().expect("answer") {
            out.push(a);
        }
        out
    })
    .await
    .expect("client thread")
}

#[tokio::test]
async fn socket_is_created_0660() {
    let s = setup(&[]).await;
    let mode = std::fs::metadata(&s.socket).expect("socket").permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
}

#[tokio::test]
async fn status_start_stop_restart_round_trip() {
    let s = setup(&["alpha", "beta"]).await;
    let answers = ask(&s.socket, Request::Status { name: None }).await;
    let [Response::Status { visualizations }] = answers.as_slice() else { panic!("{answers:?}") };
    let names: Vec<&str> = visualizations.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta"]);

    let stop = ask(&s.socket, Request::Stop { name: "alpha".into() }).await;
    assert_eq!(stop, [Response::State { name: "alpha".into(), state: State::Stopped }]);
    let start = ask(&s.socket, Request::Start { name: "alpha".into() }).await;
    assert_eq!(start, [Response::State { name: "alpha".into(), state: State::Running }]);
    let restart = ask(&s.socket, Request::Restart { name: "beta".into() }).await;
    assert_eq!(restart, [Response::State { name: "beta".into(), state: State::Running }]);

    let missing = ask(&s.socket, Request::Start { name: "gamma".into() }).await;
    assert!(
        matches!(missing.as_slice(), [Response::Error { message }] if message.contains("gamma"))
    );

    // Root is admin: every mutating request above was published with uid 0.
    let events = ask(&s.socket, Request::Events { follow: false }).await;
    let actions = events
        .iter()
        .filter(|e| matches!(e, Response::Event { event } if matches!(&event.event, crate::events::Event::ControlAction { uid: 0, allowed: true, .. })))
        .count();
    assert_eq!(actions, 4, "stop, start, restart and the refused-by-name start are actions");
    let _ = s.stop.send(true);
}

#[tokio::test]
async fn logs_follow_streams_new_lines_and_ends_when_the_client_leaves() {
    let s = setup(&["alpha"]).await;
    // Start answers once running, so the start-up lines are in the ring.
    ask(&s.socket, Request::Start { name: "alpha".into() }).await;
    let answers = ask(&s.socket, Request::Logs { name: "alpha".into(), follow: false }).await;
    assert!(
        answers.iter().any(
            |a| matches!(a, Response::Log { line } if line.line.starts_with("running as pid"))
        ),
        "{answers:?}"
    );
    let socket = s.socket.clone();
    let follower = tokio::task::spawn_blocking(move || {
        let mut answers = client::send(&socket, &Request::Events { follow: true }).expect("send");
        // Read until the stop below shows up, then hang up.
        while let Some(a) = answers.next_answer().expect("answer") {
            if let Response::Event { event } = a
                && matches!(event.event, crate::events::Event::Stopped { .. })
            {
                return true;
            }
        }
        false
    });
    ask(&s.socket, Request::Stop { name: "alpha".into() }).await;
    assert!(follower.await.expect("follower"));
    let _ = s.stop.send(true);
}

#[tokio::test]
async fn oversized_and_malformed_requests_are_refused() {
    let s = setup(&[]).await;
    let socket = s.socket.clone();
    let replies = tokio::task::spawn_blocking(move || {
        let mut replies = Vec::new();
        for request in [vec![b'x'; MAX_REQUEST * 4], b"{\"verb\":\"explode\"}\n".to_vec()] {
            let mut stream = UnixStream::connect(&socket).expect("connect");
            // The daemon may stop reading (and close) before the whole oversized request is sent.
            let _ = stream.write_all(&request);
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line).expect("reply");
            replies.push(line);
        }
        replies
    })
    .await
    .expect("client");
    assert!(replies[0].contains("at most 4096 bytes"), "{}", replies[0]);
    assert!(replies[1].contains("invalid request"), "{}", replies[1]);
    let _ = s.stop.send(true);
}
