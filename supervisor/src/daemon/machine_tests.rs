//! Unit tests of the lifecycle state machine: virtual time, no processes.

use std::time::{Duration, Instant};

use vitrine_policy::{Restart, RestartPolicy};

use super::*;

fn rules(policy: RestartPolicy) -> Restart {
    Restart {
        policy,
        backoff_initial: Duration::from_millis(500),
        backoff_max: Duration::from_secs(4),
        burst: 5,
        burst_window: Duration::from_secs(60),
        stop_timeout: Duration::from_secs(5),
    }
}

fn crash() -> Input {
    Input::Exited(ExitReason::Code { code: 1 })
}

/// Drives a started machine through `crashes` crashes that happen immediately after each start
/// and returns the backoff delays it chose, plus the final actions.
fn crash_loop(m: &mut Machine, t: &mut Instant, crashes: usize) -> (Vec<Duration>, Vec<Action>) {
    let mut delays = Vec::new();
    let mut last = Vec::new();
    for _ in 0..crashes {
        assert_eq!(m.handle(Input::Spawned, *t), vec![]);
        last = m.handle(crash(), *t);
        if let [Action::Arm(d), Action::BackingOff { .. }] = last.as_slice() {
            delays.push(*d);
            *t += *d;
            assert_eq!(m.handle(Input::Timer, *t), vec![Action::Spawn]);
        } else {
            break;
        }
    }
    (delays, last)
}

#[test]
fn start_spawns_and_runs() {
    let t = Instant::now();
    let mut m = Machine::new(rules(RestartPolicy::Always), t);
    assert_eq!(m.state(), State::Stopped);
    assert_eq!(m.handle(Input::Start, t), vec![Action::Spawn]);
    assert_eq!(m.state(), State::Starting);
    m.handle(Input::Spawned, t);
    assert_eq!(m.state(), State::Running);
    assert_eq!(m.handle(Input::Start, t), vec![], "start while running is a no-op");
}

#[test]
fn backoff_doubles_up_to_the_maximum() {
    let r = Restart { burst: 100, ..rules(RestartPolicy::Always) };
    let mut t = Instant::now();
    let mut m = Machine::new(r, t);
    m.handle(Input::Start, t);
    let (delays, _) = crash_loop(&mut m, &mut t, 7);
    let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, vec![500, 1000, 2000, 4000, 4000, 4000, 4000]);
    assert_eq!(m.restarts(), 7);
}

#[test]
fn more_starts_than_burst_within_window_fails() {
    let mut t = Instant::now();
    let mut m = Machine::new(rules(RestartPolicy::Always), t);
    m.handle(Input::Start, t);
    let (delays, last) = crash_loop(&mut m, &mut t, 10);
    // Five starts are allowed in the window (the first plus four restarts); the fifth crash
    // would need a sixth start.
    assert_eq!(delays.len(), 4);
    assert!(
        matches!(last.as_slice(), [Action::Failed(msg)] if msg.contains("5 starts")),
        "{last:?}"
    );
    assert_eq!(m.state(), State::Failed);
    assert_eq!(m.handle(Input::Timer, t), vec![], "a stray timer does not revive a failed unit");
    // An operator start clears the history and tries again.
    assert_eq!(m.handle(Input::Start, t), vec![Action::Spawn]);
    m.handle(Input::Spawned, t);
    assert!(
        matches!(m.handle(crash(), t).as_slice(), [Action::Arm(d), _] if *d == Duration::from_millis(500))
    );
}

#[test]
fn starts_outside_the_window_do_not_count() {
    let mut t = Instant::now();
    let mut m = Machine::new(rules(RestartPolicy::Always), t);
    m.handle(Input::Start, t);
    for _ in 0..20 {
        m.handle(Input::Spawned, t);
        // Each run lasts 61 s: longer than the window, so neither burst nor backoff accumulate.
        t += Duration::from_secs(61);
        let actions = m.handle(crash(), t);
        assert_eq!(actions[0], Action::Arm(Duration::from_millis(500)), "{actions:?}");
        t += Duration::from_millis(500);
        m.handle(Input::Timer, t);
    }
    assert_eq!(m.state(), State::Starting);
}

#[test]
fn on_failure_policy_keeps_clean_exits_stopped() {
    let t = Instant::now();
    let mut m = Machine::new(rules(RestartPolicy::OnFailure), t);
    m.handle(Input::Start, t);
    m.handle(Input::Spawned, t);
    assert_eq!(m.handle(Input::Exited(ExitReason::Clean), t), vec![Action::Stopped]);
    assert_eq!(m.state(), State::Stopped);
    m.handle(Input::Start, t);
    m.handle(Input::Spawned, t);
    let actions = m.handle(Input::Exited(ExitReason::Seccomp { syscall: "ptrace".into() }), t);
    assert!(matches!(actions.as_slice(), [Action::Arm(_), Action::BackingOff { restarts: 1, .. }]));
    assert_eq!(m.last_exit(), Some(&ExitReason::Seccomp { syscall: "ptrace".into() }));
}

#[test]
fn never_policy_marks_failures_failed() {
    let t = Instant::now();
    let mut m = Machine::new(rules(RestartPolicy::Never), t);
    m.handle(Input::Start, t);
    m.handle(Input::Spawned, t);
    let actions = m.handle(Input::Exited(ExitReason::Oom), t);
    assert!(matches!(actions.as_slice(), [Action::Failed(msg)] if msg.contains("out of memory")));
    assert_eq!(m.state(), State::Failed);
}

#[test]
fn stop_terminates_then_kills_the_cgroup_after_the_timeout() {
    let mut t = Instant::now();
    let mut m = Machine::new(rules(RestartPolicy::Always), t);
    m.handle(Input::Start, t);
    m.handle(Input::Spawned, t);
    assert_eq!(
        m.handle(Input::Stop, t),
        vec![Action::Terminate, Action::Arm(Duration::from_secs(5))]
    );
    assert_eq!(m.state(), State::Stopping);
    t += Duration::from_secs(5);
    assert_eq!(m.handle(Input::Timer, t), vec![Action::KillAll]);
    let actions = m.handle(Input::Exited(ExitReason::Signal { signal: 9 }), t);
    assert_eq!(actions, vec![Action::Disarm, Action::Stopped]);
    assert_eq!(m.state(), State::Stopped);
    assert_eq!(m.restarts(), 0, "a stop is not a restart");
}

#[test]
fn graceful_stop_needs_no_kill() {
    let t = Instant::now();
    let mut m = Machine::new(rules(RestartPolicy::Always), t);
    m.handle(Input::Start, t);
    m.handle(Input::Spawned, t);
    m.handle(Input::Stop, t);
    assert_eq!(
        m.handle(Input::Exited(ExitReason::Clean), t),
        vec![Action::Disarm, Action::Stopped]
    );
    assert_eq!(m.handle(Input::Timer, t), vec![], "the disarmed timer racing in changes nothing");
}

#[test]
fn restart_stops_then_starts_with_cleared_history() {
    let mut t = Instant::now();
    let mut m = Machine::new(rules(RestartPolicy::Always), t);
    m.handle(Input::Start, t);
    crash_loop(&mut m, &mut t, 3);
    m.handle(Input::Spawned, t);
    assert_eq!(
        m.handle(Input::Restart, t),
        vec![Action::Terminate, Action::Arm(Duration::from_secs(5))]
    );
    let actions = m.handle(Input::Exited(ExitReason::Signal { signal: 15 }), t);
    assert_eq!(actions, vec![Action::Disarm, Action::Spawn]);
    m.handle(Input::Spawned, t);
    // The backoff sequence begins again after an operator restart.
    assert!(
        matches!(m.handle(crash(), t).as_slice(), [Action::Arm(d), _] if *d == Duration::from_millis(500))
    );
}

#[test]
fn stop_during_backoff_cancels_the_restart() {
    let t = Instant::now();
    let mut m = Machine::new(rules(RestartPolicy::Always), t);
    m.handle(Input::Start, t);
    m.handle(Input::Spawned, t);
    m.handle(crash(), t);
    assert_eq!(m.state(), State::BackingOff);
    assert_eq!(m.handle(Input::Stop, t), vec![Action::Disarm, Action::Stopped]);
    assert_eq!(m.handle(Input::Timer, t), vec![]);
    assert_eq!(m.state(), State::Stopped);
}

#[test]
fn stop_while_spawning_terminates_the_new_sandbox() {
    let t = Instant::now();
    let mut m = Machine::new(rules(RestartPolicy::Always), t);
    m.handle(Input::Start, t);
    assert_eq!(m.handle(Input::Stop, t), vec![]);
    assert_eq!(
        m.handle(Input::Spawned, t),
        vec![Action::Terminate, Action::Arm(Duration::from_secs(5))]
    );
    assert_eq!(
        m.handle(Input::Exited(ExitReason::Clean), t),
        vec![Action::Disarm, Action::Stopped]
    );
}

#[test]
fn spawn_failures_back_off_and_hit_the_burst_limit() {
    let mut t = Instant::now();
    let mut m = Machine::new(rules(RestartPolicy::Always), t);
    m.handle(Input::Start, t);
    let mut failed = false;
    for _ in 0..10 {
        match m.handle(Input::SpawnFailed("hash mismatch".into()), t).as_slice() {
            [Action::Arm(d), _] => {
                t += *d;
                m.handle(Input::Timer, t);
            }
            [Action::Failed(msg)] => {
                assert!(msg.contains("hash mismatch"), "{msg}");
                failed = true;
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(failed);
}

#[test]
fn backoff_saturates_instead_of_overflowing() {
    let r =
        Restart { backoff_max: Duration::from_secs(u64::MAX / 4), ..rules(RestartPolicy::Always) };
    assert_eq!(backoff(&r, 1000), r.backoff_initial * (1u32 << 31));
}
