//! Driver tests with an in-process fake launcher under tokio's paused clock: the lifecycle logic
//! end to end (commands, exits, timers, events) without root or processes. The real launcher is
//! exercised by the root-gated `supervisor/tests/daemon_*.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use vitrine_policy::RestartPolicy;

use super::*;
use crate::daemon::launcher::NoHooks;
use crate::daemon::testing::{FakeHandle, FakeLauncher, test_policy};

struct Harness {
    tx: UnitTx<()>,
    spawned: mpsc::UnboundedReceiver<FakeHandle>,
    events: tokio::sync::broadcast::Receiver<Arc<crate::events::Envelope>>,
    launcher: Arc<FakeLauncher>,
}

fn harness(policy: RestartPolicy) -> Harness {
    let (launcher, spawned) = FakeLauncher::new();
    let mut p = test_policy("fake", PathBuf::from("/bin/true"));
    p.restart.policy = policy;
    let bus = EventBus::new();
    let events = bus.subscribe();
    let ring = LogRing::new("fake");
    let (tx, _task) =
        spawn_unit(launcher.clone(), Arc::new(p), Arc::new(()), bus, ring, Arc::new(NoHooks));
    Harness { tx, spawned, events, launcher }
}

impl Harness {
    async fn send(&self, make: impl FnOnce(Ack) -> Command<()>) -> State {
        let (ack, rx) = oneshot::channel();
        self.tx.send(make(Some(ack))).await.expect("unit alive");
        rx.await.expect("ack")
    }

    async fn status(&self) -> UnitStatus {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Status(reply)).await.expect("unit alive");
        rx.await.expect("status")
    }

    async fn next_child(&mut self) -> FakeHandle {
        self.spawned.recv().await.expect("a spawn")
    }

    /// The kinds of the events published so far.
    fn kinds(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(env) = self.events.try_recv() {
            let json = serde_json::to_value(&env.event).expect("serialize");
            out.push(json["kind"].as_str().unwrap_or_default().to_owned());
        }
        out
    }
}

#[tokio::test(start_paused = true)]
async fn crash_restarts_after_the_backoff() {
    let mut h = harness(RestartPolicy::OnFailure);
    assert_eq!(h.send(Command::Start).await, State::Running);
    let first = h.next_child().await;
    let crashed_at = Instant::now();
    first.exit.send(ExitReason::Code { code: 3 }).expect("child alive");
    let second = h.next_child().await;
    assert_eq!(
        crashed_at.elapsed(),
        Duration::from_millis(500),
        "first backoff is backoff_initial"
    );
    assert_ne!(first.pid, second.pid);
    second.exit.send(ExitReason::Code { code: 3 }).expect("child alive");
    let before = Instant::now();
    let _third = h.next_child().await;
    assert_eq!(before.elapsed(), Duration::from_secs(1), "second backoff doubles");
    let status = h.status().await;
    assert_eq!(status.state, State::Running);
    assert_eq!(status.restarts, 2);
    assert_eq!(status.last_exit, Some(ExitReason::Code { code: 3 }));
    assert_eq!(
        h.kinds(),
        [
            "starting",
            "running",
            "exited",
            "backing-off",
            "starting",
            "running",
            "exited",
            "backing-off",
            "starting",
            "running"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn crash_loop_ends_failed_and_start_revives_it() {
    let mut h = harness(RestartPolicy::Always);
    h.send(Command::Start).await;
    // burst = 5 in the test policy: five starts, then the fifth crash gives up.
    for _ in 0..5 {
        let child = h.next_child().await;
        child.exit.send(ExitReason::Seccomp { syscall: "ptrace".into() }).expect("alive");
    }
    tokio::time::sleep(Duration::from_secs(120)).await;
    let status = h.status().await;
    assert_eq!(status.state, State::Failed);
    assert!(status.error.as_deref().is_some_and(|e| e.contains("5 starts")), "{status:?}");
    assert!(
        status.fix.as_deref().is_some_and(|f| f.starts_with("no policy may allow \"ptrace\"")),
        "{status:?}"
    );
    assert!(h.spawned.try_recv().is_err(), "no spawn after failed");
    let kinds = h.kinds();
    assert_eq!(kinds.iter().filter(|k| *k == "violation").count(), 5);
    assert_eq!(kinds.last().map(String::as_str), Some("failed"));
    assert_eq!(h.send(Command::Start).await, State::Running);
}

#[tokio::test(start_paused = true)]
async fn stop_kills_the_cgroup_when_the_child_ignores_sigterm() {
    let mut h = harness(RestartPolicy::Always);
    h.launcher.ignore_term.store(true, Ordering::SeqCst);
    h.send(Command::Start).await;
    let child = h.next_child().await;
    let t = Instant::now();
    assert_eq!(h.send(Command::Stop).await, State::Stopped);
    assert_eq!(t.elapsed(), Duration::from_secs(5), "stop_timeout of the test policy");
    assert!(child.killed.load(Ordering::SeqCst));
    let status = h.status().await;
    assert_eq!((status.state, status.pid, status.restarts), (State::Stopped, None, 0));
}

#[tokio::test(start_paused = true)]
async fn graceful_stop_and_restart() {
    let mut h = harness(RestartPolicy::Always);
    h.send(Command::Start).await;
    let first = h.next_child().await;
    let t = Instant::now();
    assert_eq!(h.send(Command::Restart).await, State::Running);
    assert_eq!(t.elapsed(), Duration::ZERO, "a child that honours SIGTERM is not waited for");
    assert!(!first.killed.load(Ordering::SeqCst));
    let second = h.next_child().await;
    assert_eq!(h.status().await.pid, Some(second.pid));
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_the_child_and_ends_the_task() {
    let mut h = harness(RestartPolicy::Always);
    h.send(Command::Start).await;
    let _child = h.next_child().await;
    let (done, rx) = oneshot::channel();
    h.tx.send(Command::Shutdown(done)).await.expect("alive");
    rx.await.expect("shutdown answered");
    assert!(h.tx.send(Command::Start(None)).await.is_err(), "the task has ended");
    assert!(h.kinds().contains(&"stopped".to_owned()));
}
