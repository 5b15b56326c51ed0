//! The driver of one visualization: a tokio task that owns its [`Machine`], its sandbox (if one
//! runs) and its one timer, and carries out what the machine decides.
//!
//! Everything that changes a visualization goes through the task's command channel, so there is
//! exactly one writer of its state and no lock is held across a spawn or a wait.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use vitrine_policy::Policy;

use super::launcher::{Hooks, Launcher, Sandboxed, Started, Stats};
use super::machine::{Action, Input, Machine, State};
use super::output::{self, LogRing};
use crate::events::{Event, EventBus, ExitReason};

/// A request to a visualization's task.
#[derive(Debug)]
pub enum Command<P> {
    Start(Ack),
    Stop(Ack),
    Restart(Ack),
    /// A reload changed the policy: use it from now on, restarting a running sandbox.
    Replace {
        policy: Arc<Policy>,
        prepared: Arc<P>,
    },
    Status(oneshot::Sender<UnitStatus>),
    /// Stop the sandbox and end the task; answered once nothing of it runs any more.
    Shutdown(oneshot::Sender<()>),
}

/// Answered with the state the visualization settled in after a start, stop or restart.
pub type Ack = Option<oneshot::Sender<State>>;

/// What `vitrine status` shows about one visualization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitStatus {
    pub name: String,
    pub state: State,
    pub pid: Option<u32>,
    /// When the current state was entered, in milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// How long the current sandbox has been running.
    pub uptime_ms: Option<u64>,
    pub restarts: u64,
    pub last_exit: Option<ExitReason>,
    /// Why the visualization is `failed`, or the last spawn error.
    pub error: Option<String>,
    pub layers: Vec<String>,
    pub stats: Option<Stats>,
    /// OOM exits counted by the supervisor over the daemon's life.
    pub oom_exits: u64,
    pub policy: String,
    /// The policy's `[osc] prefix`, for peering (no peer may claim it); not shown.
    #[serde(skip)]
    pub osc_prefix: String,
    /// After a seccomp kill: the policy change that would allow the syscall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The MIDI input ports of a policy with `[midi]`, while its sandbox runs or after.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub midi: Vec<crate::midi::MidiPortStatus>,
}

/// The channel end other parts of the daemon hold.
pub type UnitTx<P> = mpsc::Sender<Command<P>>;

/// Starts the task of one visualization (initially `stopped`).
pub fn spawn_unit<L: Launcher>(
    launcher: Arc<L>,
    policy: Arc<Policy>,
    prepared: Arc<L::Prepared>,
    bus: EventBus,
    ring: Arc<LogRing>,
    hooks: Arc<dyn Hooks>,
) -> (UnitTx<L::Prepared>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(16);
    let driver = Driver {
        name: policy.visualization.name.to_string(),
        machine: Machine::new(policy.restart.clone(), Instant::now().into_std()),
        launcher,
        policy,
        prepared,
        bus,
        ring,
        hooks,
        child: None,
        started_at: None,
        timer: None,
        acks: Vec::new(),
        error: None,
        attempts: 0,
        oom_exits: 0,
        shutdown: None,
    };
    (tx, tokio::spawn(driver.run(rx)))
}

struct Driver<L: Launcher> {
    name: String,
    machine: Machine,
    launcher: Arc<L>,
    policy: Arc<Policy>,
    prepared: Arc<L::Prepared>,
    bus: EventBus,
    ring: Arc<LogRing>,
    hooks: Arc<dyn Hooks>,
    child: Option<L::Child>,
    started_at: Option<Instant>,
    timer: Option<Instant>,
    acks: Vec<oneshot::Sender<State>>,
    error: Option<String>,
    attempts: u64,
    oom_exits: u64,
    shutdown: Option<oneshot::Sender<()>>,
}

impl<L: Launcher> Driver<L> {
    async fn run(mut self, mut rx: mpsc::Receiver<Command<L::Prepared>>) {
        loop {
            let timer = self.timer;
            let input = tokio::select! {
                cmd = rx.recv(), if self.shutdown.is_none() => match cmd {
                    Some(cmd) => self.command(cmd),
                    // Every sender is gone: the daemon is ending without a shutdown request.
                    None => self.begin_shutdown(None),
                },
                exit = wait_child(&mut self.child) => Some(Input::Exited(exit)),
                () = sleep_until(timer) => {
                    self.timer = None;
                    Some(Input::Timer)
                }
            };
            if let Some(input) = input {
                self.apply(input).await;
            }
            self.settle();
            if self.shutdown.is_some()
                && self.child.is_none()
                && self.machine.state() != State::Stopping
            {
                if let Some(done) = self.shutdown.take() {
                    let _ = done.send(());
                }
                return;
            }
        }
    }

    fn command(&mut self, cmd: Command<L::Prepared>) -> Option<Input> {
        match cmd {
            Command::Start(ack) => self.with_ack(ack, Input::Start),
            Command::Stop(ack) => self.with_ack(ack, Input::Stop),
            Command::Restart(ack) => self.with_ack(ack, Input::Restart),
            Command::Replace { policy, prepared } => {
                self.machine.set_rules(policy.restart.clone());
                self.policy = policy;
                self.prepared = prepared;
                let active = matches!(
                    self.machine.state(),
                    State::Running | State::Starting | State::BackingOff
                );
                active.then_some(Input::Restart)
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
                None
            }
            Command::Shutdown(done) => self.begin_shutdown(Some(done)),
        }
    }

    fn with_ack(&mut self, ack: Ack, input: Input) -> Option<Input> {
        self.acks.extend(ack);
        Some(input)
    }

    fn begin_shutdown(&mut self, done: Option<oneshot::Sender<()>>) -> Option<Input> {
        // Without a requester the task still ends; the receiver is simply dropped.
        self.shutdown = Some(done.unwrap_or_else(|| oneshot::channel().0));
        Some(Input::Stop)
    }

    /// Feeds one input to the machine and carries out the resulting actions, which may produce
    /// further inputs (a spawn's outcome).
    async fn apply(&mut self, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            if let Input::Exited(exit) = &input {
                self.exited(exit);
            }
            let actions = self.machine.handle(input, Instant::now().into_std());
            for action in actions {
                if let Some(next) = self.execute(action).await {
                    inputs.push_back(next);
                }
            }
        }
    }

    async fn execute(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::Spawn => return Some(self.spawn().await),
            Action::Terminate => {
                if let Some(child) = self.child.as_mut() {
                    child.terminate();
                }
            }
            Action::KillAll => {
                self.note("stop timeout reached: killing every process of the cgroup");
                if let Some(child) = self.child.as_mut() {
                    child.kill_all();
                }
            }
            Action::Arm(delay) => self.timer = Some(Instant::now() + delay),
            Action::Disarm => self.timer = None,
            Action::BackingOff { delay, restarts } => {
                self.note(&format!("restarting in {}", human_duration(delay)));
                self.in_background(|launcher, prepared| launcher.prime(prepared));
                self.publish(Event::BackingOff {
                    name: self.name.clone(),
                    delay_ms: millis(delay),
                    restarts,
                });
            }
            Action::Failed(reason) => {
                self.in_background(|launcher, prepared| launcher.unprime(prepared));
                self.note(&format!("failed: {reason}"));
                tracing::error!(visualization = %self.name, "failed: {reason}");
                self.error = Some(reason.clone());
                self.publish(Event::Failed { name: self.name.clone(), reason });
            }
            Action::Stopped => {
                self.in_background(|launcher, prepared| launcher.unprime(prepared));
                self.note("stopped");
                self.publish(Event::Stopped { name: self.name.clone() });
            }
        }
        None
    }

    /// Blocking launcher work that nothing waits for (the launcher orders it with spawns).
    fn in_background(&self, work: impl FnOnce(&L, &L::Prepared) + Send + 'static) {
        let (launcher, prepared) = (self.launcher.clone(), self.prepared.clone());
        drop(tokio::task::spawn_blocking(move || work(&launcher, &prepared)));
    }

    async fn spawn(&mut self) -> Input {
        self.attempts += 1;
        self.publish(Event::Starting { name: self.name.clone(), attempt: self.attempts });
        let launcher = self.launcher.clone();
        let prepared = self.prepared.clone();
        let result = tokio::task::spawn_blocking(move || launcher.spawn(&prepared))
            .await
            .unwrap_or_else(|e| Err(format!("spawn task failed: {e}")));
        match result {
            Ok(mut child) => {
                let (pid, layers) = (child.pid(), child.layers());
                self.note(&format!("running as pid {pid}; enforced: {}", layers.join(", ")));
                for (stream, fd) in child.take_output() {
                    tokio::spawn(output::pump(self.ring.clone(), stream, fd));
                }
                let started =
                    Started { layers: layers.clone(), spawn_seconds: child.spawn_seconds() };
                self.hooks.started(&self.policy, &started, child.take_delivery());
                tracing::info!(visualization = %self.name, pid, "running");
                self.publish(Event::Running { name: self.name.clone(), pid, layers });
                self.child = Some(child);
                self.started_at = Some(Instant::now());
                self.error = None;
                Input::Spawned
            }
            Err(error) => {
                self.note(&format!("cannot start: {error}"));
                tracing::error!(visualization = %self.name, "cannot start: {error}");
                self.error = Some(error.clone());
                self.publish(Event::SpawnFailed { name: self.name.clone(), error: error.clone() });
                Input::SpawnFailed(error)
            }
        }
    }

    /// Bookkeeping and events for an exit, before the machine decides what follows.
    fn exited(&mut self, exit: &ExitReason) {
        let pid = self.child.take().map_or(0, |c| c.pid());
        self.hooks.ended(&self.name);
        let uptime = self.started_at.take().map_or(Duration::ZERO, |t| t.elapsed());
        self.note(&format!("pid {pid} ended: {exit} after {}", human_duration(uptime)));
        tracing::warn!(visualization = %self.name, pid, "ended: {exit}");
        let name = self.name.clone();
        match exit {
            ExitReason::Oom => {
                self.oom_exits += 1;
                self.publish(Event::Oom { name: name.clone() });
            }
            ExitReason::Seccomp { syscall } => {
                let fix = crate::events::seccomp_fix(syscall, &self.policy);
                self.publish(Event::Violation {
                    name: name.clone(),
                    syscall: syscall.clone(),
                    fix,
                });
            }
            _ => {}
        }
        self.publish(Event::Exited { name, pid, exit: exit.clone(), uptime_ms: millis(uptime) });
    }

    /// Answers waiting operators once the state is one that lasts.
    fn settle(&mut self) {
        let state = self.machine.state();
        if matches!(state, State::Running | State::Stopped | State::Failed | State::BackingOff) {
            for ack in self.acks.drain(..) {
                let _ = ack.send(state);
            }
        }
    }

    fn status(&self) -> UnitStatus {
        let since = Instant::now().into_std().saturating_duration_since(self.machine.since());
        UnitStatus {
            name: self.name.clone(),
            state: self.machine.state(),
            pid: self.child.as_ref().map(Sandboxed::pid),
            since_ms: now_ms().saturating_sub(millis(since)),
            uptime_ms: self.started_at.map(|t| millis(t.elapsed())),
            restarts: self.machine.restarts(),
            last_exit: self.machine.last_exit().cloned(),
            error: self.error.clone(),
            layers: self.child.as_ref().map(Sandboxed::layers).unwrap_or_default(),
            stats: self.child.as_ref().and_then(Sandboxed::stats),
            oom_exits: self.oom_exits,
            policy: self.policy.source.display().to_string(),
            osc_prefix: self.policy.osc.prefix.clone(),
            fix: match self.machine.last_exit() {
                Some(ExitReason::Seccomp { syscall }) => {
                    crate::events::seccomp_fix(syscall, &self.policy)
                }
                _ => None,
            },
            midi: self.hooks.midi_ports(&self.name),
        }
    }

    fn note(&self, line: &str) {
        self.ring.supervisor_line(line);
    }

    fn publish(&self, event: Event) {
        self.bus.publish(event);
    }
}

async fn wait_child<C: Sandboxed>(child: &mut Option<C>) -> ExitReason {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, millis)
}

/// `1.5s`, `250ms`, `2m3s`: for log lines people read.
pub fn human_duration(d: Duration) -> String {
    let ms = millis(d);
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{:.1}s", d.as_secs_f64()),
        _ => format!("{}m{}s", ms / 60_000, (ms / 1000) % 60),
    }
}

#[cfg(test)]
#[path = "unit_tests.rs"]
mod tests;
