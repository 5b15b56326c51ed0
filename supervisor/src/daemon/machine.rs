//! The lifecycle of one visualization as a pure state machine.
//!
//! The machine does no I/O and reads no clock: the driver (`unit.rs`) feeds it [`Input`]s with the
//! current time and carries out the [`Action`]s it returns (spawn through the launcher, signal the
//! sandbox, kill its cgroup, arm the one timer). That keeps every restart rule of DESIGN §4
//! (`[restart]`) testable without root, processes or real time.
//!
//! States: `starting` (a spawn is under way) → `running` → on exit either `backing-off` (a restart
//! is scheduled), `failed` (too many starts within the burst window, or a failure the policy does
//! not restart) or `stopped` (a clean exit the policy does not restart). An operator stop goes
//! through `stopping`: SIGTERM, and when `stop_timeout` passes the whole cgroup is killed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vitrine_policy::{Restart, RestartPolicy};

use crate::events::ExitReason;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Starting,
    Running,
    BackingOff,
    Stopping,
    Stopped,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::BackingOff => "backing-off",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Failed => "failed",
        }
    }
}

/// What happened, as the driver tells the machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// An operator (or the daemon at start-up) wants the visualization running.
    Start,
    /// An operator, a reload or the shutdown wants it stopped.
    Stop,
    /// An operator wants a fresh process now, with the backoff and burst history cleared.
    Restart,
    /// The launcher produced a running sandbox.
    Spawned,
    /// The launcher could not produce a sandbox.
    SpawnFailed(String),
    /// The sandbox's process ended.
    Exited(ExitReason),
    /// The armed timer expired (backoff over, or stop timeout reached).
    Timer,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Spawn a sandbox through the launcher and report `Spawned` or `SpawnFailed`.
    Spawn,
    /// Ask the sandbox to end (SIGTERM to its init, which forwards it).
    Terminate,
    /// Kill every process of the visualization's cgroup.
    KillAll,
    /// Arm the single timer (replacing any armed one).
    Arm(Duration),
    /// Disarm the timer.
    Disarm,
    /// A restart was scheduled after `delay`; `restarts` counts automatic restarts so far.
    BackingOff { delay: Duration, restarts: u64 },
    /// The machine gave up until the next operator start.
    Failed(String),
    /// The visualization reached `stopped`.
    Stopped,
}

/// One visualization's lifecycle.
#[derive(Debug)]
pub struct Machine {
    rules: Restart,
    state: State,
    /// What should happen after the current process ends while `stopping`.
    after_stop: AfterStop,
    /// Start times within the burst window, oldest first.
    starts: VecDeque<Instant>,
    /// Consecutive automatic restarts since the last stable run; drives the backoff exponent.
    consecutive: u32,
    /// Automatic restarts over the machine's whole life (for status and metrics).
    restarts: u64,
    last_start: Option<Instant>,
    last_exit: Option<ExitReason>,
    since: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterStop {
    Stay,
    Start,
}

impl Machine {
    pub fn new(rules: Restart, now: Instant) -> Self {
        Machine {
            rules,
            state: State::Stopped,
            after_stop: AfterStop::Stay,
            starts: VecDeque::new(),
            consecutive: 0,
            restarts: 0,
            last_start: None,
            last_exit: None,
            since: now,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
    pub fn last_exit(&self) -> Option<&ExitReason> {
        self.last_exit.as_ref()
    }
    /// When the machine entered its current state.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Replaces the restart rules (a reload changed only them); takes effect at the next decision.
    pub fn set_rules(&mut self, rules: Restart) {
        self.rules = rules;
    }

    /// Applies one input and returns the actions to carry out.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        match (self.state, input) {
            (State::Stopped | State::Failed, Input::Start | Input::Restart) => {
                self.clear_history();
                self.begin_start(now)
            }
            (State::BackingOff, Input::Start | Input::Restart) => {
                self.clear_history();
                let mut actions = vec![Action::Disarm];
                actions.extend(self.begin_start(now));
                actions
            }
            (State::BackingOff, Input::Timer) => self.begin_start(now),
            (State::BackingOff, Input::Stop) => {
                self.enter(State::Stopped, now);
                vec![Action::Disarm, Action::Stopped]
            }
            (State::Failed, Input::Stop) => {
                self.enter(State::Stopped, now);
                vec![Action::Stopped]
            }
            (State::Starting, Input::Spawned) => self.spawned(now),
            (State::Starting, Input::SpawnFailed(error)) => self.after_failure(error, now),
            (State::Starting, Input::Stop) => {
                self.after_stop = AfterStop::Stay;
                self.enter(State::Stopping, now);
                // The spawn is still in flight; `Spawned` will find us stopping and terminate.
                Vec::new()
            }
            (State::Running, Input::Exited(exit)) => self.exited(exit, now),
            (State::Running, Input::Stop) => self.begin_stop(AfterStop::Stay, now),
            (State::Running, Input::Restart) => self.begin_stop(AfterStop::Start, now),
            (State::Stopping, Input::Spawned) => {
                // A stop arrived while the spawn was in flight.
                let timeout = self.rules.stop_timeout;
                vec![Action::Terminate, Action::Arm(timeout)]
            }
            (State::Stopping, Input::SpawnFailed(_)) => self.stopped(now),
            (State::Stopping, Input::Exited(exit)) => {
                self.last_exit = Some(exit);
                self.stopped(now)
            }
            (State::Stopping, Input::Timer) => vec![Action::KillAll],
            (State::Stopping, Input::Start | Input::Restart) => {
                self.after_stop = AfterStop::Start;
                Vec::new()
            }
            (State::Stopping, Input::Stop) => {
                self.after_stop = AfterStop::Stay;
                Vec::new()
            }
            // Everything else (a start while running, a stray timer, a stop while stopped) is a
            // no-op by design: operators may repeat commands and timers may race with exits.
            _ => Vec::new(),
        }
    }

    fn enter(&mut self, state: State, now: Instant) {
        self.state = state;
        self.since = now;
    }

    fn clear_history(&mut self) {
        self.starts.clear();
        self.consecutive = 0;
    }

    fn begin_start(&mut self, now: Instant) -> Vec<Action> {
        self.starts.push_back(now);
        self.last_start = Some(now);
        self.enter(State::Starting, now);
        vec![Action::Spawn]
    }

    fn spawned(&mut self, now: Instant) -> Vec<Action> {
        self.enter(State::Running, now);
        Vec::new()
    }

    fn begin_stop(&mut self, after: AfterStop, now: Instant) -> Vec<Action> {
        self.after_stop = after;
        self.enter(State::Stopping, now);
        vec![Action::Terminate, Action::Arm(self.rules.stop_timeout)]
    }

    fn stopped(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = vec![Action::Disarm];
        if self.after_stop == AfterStop::Start {
            self.after_stop = AfterStop::Stay;
            self.clear_history();
            actions.extend(self.begin_start(now));
        } else {
            self.enter(State::Stopped, now);
            actions.push(Action::Stopped);
        }
        actions
    }

    fn exited(&mut self, exit: ExitReason, now: Instant) -> Vec<Action> {
        let uptime = self.last_start.map(|s| now.saturating_duration_since(s));
        // A run that outlived the burst window was stable: the next failure starts the backoff
        // sequence from the beginning again.
        if uptime.is_some_and(|u| u >= self.rules.burst_window) {
            self.consecutive = 0;
        }
        let wants_restart = match self.rules.policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit.is_failure(),
            RestartPolicy::Never => false,
        };
        let failure = exit.is_failure();
        let reason = exit.to_string();
        self.last_exit = Some(exit);
        if wants_restart {
            self.after_failure(reason, now)
        } else if failure {
            self.enter(State::Failed, now);
            vec![Action::Failed(format!("{reason}; restart policy does not restart it"))]
        } else {
            self.enter(State::Stopped, now);
            vec![Action::Stopped]
        }
    }

    /// Schedules a restart with backoff, or gives up when the burst limit is reached.
    fn after_failure(&mut self, reason: String, now: Instant) -> Vec<Action> {
        let window = self.rules.burst_window;
        while self.starts.front().is_some_and(|t| now.saturating_duration_since(*t) >= window) {
            self.starts.pop_front();
        }
        if self.starts.len() >= self.rules.burst as usize {
            self.enter(State::Failed, now);
            return vec![Action::Failed(format!(
                "{} starts within {:?} (last: {reason}); `vitrine start` to try again",
                self.starts.len(),
                window
            ))];
        }
        let delay = backoff(&self.rules, self.consecutive);
        self.consecutive = self.consecutive.saturating_add(1);
        self.restarts += 1;
        self.enter(State::BackingOff, now);
        vec![Action::Arm(delay), Action::BackingOff { delay, restarts: self.restarts }]
    }
}

/// The delay before automatic restart number `n` (0-based): `initial * 2^n`, capped at `max`.
pub fn backoff(rules: &Restart, n: u32) -> Duration {
    let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
    rules
        .backoff_initial
        .checked_mul(factor)
        .map_or(rules.backoff_max, |d| d.min(rules.backoff_max))
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
