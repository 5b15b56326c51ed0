//! The supervisor's event bus: every part of the daemon publishes what happened here, and the
//! metrics, audit log, `vitrine events` and peers subscribe.
//!
//! An [`Event`] is serialized with a `kind` tag (`{"kind":"exited","name":"aurora",...}`); the
//! [`Envelope`] adds a sequence number and a wall-clock timestamp. The bus keeps a bounded ring of
//! recent events so a client that connects late (`vitrine events`) still sees the recent past, and
//! a tokio broadcast channel for live subscribers. A subscriber that falls behind loses the oldest
//! events (it is told how many through `RecvError::Lagged`); publishing never blocks.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// How many recent events the ring keeps for late subscribers.
pub const RECENT_CAPACITY: usize = 1024;
/// How many events a live subscriber may fall behind before it starts losing the oldest.
const CHANNEL_CAPACITY: usize = 4096;

/// Something that happened in the supervisor, as other parts and operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Event {
    /// A sandbox is being spawned for the visualization (`attempt` counts starts in this run).
    Starting { name: String, attempt: u64 },
    /// The sandbox is up; `layers` are the sandbox layers the shim reported as enforced.
    Running { name: String, pid: u32, layers: Vec<String> },
    /// The sandbox could not be spawned (verification, cgroup or shim failure).
    SpawnFailed { name: String, error: String },
    /// The visualization's process ended.
    Exited { name: String, pid: u32, exit: ExitReason, uptime_ms: u64 },
    /// The next start waits `delay_ms` (exponential backoff).
    BackingOff { name: String, delay_ms: u64, restarts: u64 },
    /// The visualization will not be restarted until an operator starts it again.
    Failed { name: String, reason: String },
    /// The visualization was stopped on purpose (operator, reload or shutdown).
    Stopped { name: String },
    /// The visualization made a syscall its seccomp profile forbids; `fix` is the one-line
    /// policy change that would allow it (when the syscall is known).
    Violation {
        name: String,
        syscall: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fix: Option<String>,
    },
    /// The visualization's cgroup ran out of memory and the kernel killed a process in it.
    Oom { name: String },
    /// A policy was read and validated (at start or on reload).
    PolicyLoaded { name: String, path: String },
    /// A policy file was invalid; `diagnostic` is `PATH:LINE:COL: error: MESSAGE`. The
    /// previously running version, if any, keeps running.
    PolicyRejected { path: String, diagnostic: String },
    /// The policy directory was read again and applied.
    Reload { added: Vec<String>, changed: Vec<String>, removed: Vec<String>, rejected: Vec<String> },
    /// A request on the control socket, allowed or refused, with the caller's uid.
    ControlAction { uid: u32, verb: String, target: Option<String>, allowed: bool },
    /// An OSC source was blocked for a cooldown after repeated violations.
    OscBlock { source: String, reason: String },
    /// Peering: a link came up or went down, a handshake failed, a peer was paired or forgotten.
    Peer { peer: String, action: String, detail: String },
    /// Something an operator should know that is not tied to one of the kinds above (for
    /// example a cgroup controller missing at start).
    Warning { subject: String, message: String },
}

/// How a visualization's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ExitReason {
    /// Exit status 0.
    Clean,
    /// A non-zero exit status.
    Code { code: i32 },
    /// Killed by a signal (other than a seccomp kill).
    Signal { signal: i32 },
    /// Killed by seccomp for making a forbidden syscall.
    Seccomp { syscall: String },
    /// Killed by the kernel's OOM killer inside the visualization's cgroup.
    Oom,
}

impl ExitReason {
    /// Whether the restart policy `on-failure` treats this exit as a failure.
    pub fn is_failure(&self) -> bool {
        !matches!(self, ExitReason::Clean)
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitReason::Clean => f.write_str("exited 0"),
            ExitReason::Code { code } => write!(f, "exited {code}"),
            ExitReason::Signal { signal } => write!(f, "signal {signal}"),
            ExitReason::Seccomp { syscall } => write!(f, "seccomp: {syscall}"),
            ExitReason::Oom => f.write_str("out of memory"),
        }
    }
}

/// The one-line policy change that would allow the syscall a seccomp kill named
/// (`sched_setaffinity (203)`): `to allow it, add "sched_setaffinity" to [syscalls] allow in
/// FILE`. A syscall no policy may allow says so instead, and one the profile allows only with
/// other arguments is not suggested by name (that would allow every argument). `None` when
/// the kernel did not name the syscall.
pub fn seccomp_fix(syscall: &str, policy: &vitrine_policy::Policy) -> Option<String> {
    fix_for(syscall, &policy.source.display().to_string(), &policy.syscalls)
}

fn fix_for(syscall: &str, source: &str, filter: &vitrine_policy::Syscalls) -> Option<String> {
    let name = syscall.split_whitespace().next()?;
    syscalls::Sysno::from_str(name).ok()?;
    if vitrine_policy::NEVER_ALLOWED_SYSCALLS.contains(&name) {
        return Some(format!(
            "no policy may allow \"{name}\": it is never allowed in a vitrine sandbox"
        ));
    }
    if filter.rules.iter().any(|r| r.syscall == name) {
        return Some(format!(
            "profile \"{}\" allows \"{name}\" only with certain arguments; adding it to \
             [syscalls] allow in {source} would allow every argument, so learn the program \
             again (`vitrine policy learn`) rather than allowing it by name",
            filter.profile
        ));
    }
    Some(format!("to allow it, add \"{name}\" to [syscalls] allow in {source}"))
}

/// An event with its place in the sequence and the time it was published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// The daemon-wide event bus; cheap to clone, safe to publish into from any thread.
#[derive(Debug, Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: broadcast::Sender<Arc<Envelope>>,
    recent: Mutex<VecDeque<Arc<Envelope>>>,
    next_seq: AtomicU64,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        EventBus {
            inner: Arc::new(Inner {
                tx,
                recent: Mutex::new(VecDeque::with_capacity(RECENT_CAPACITY)),
                next_seq: AtomicU64::new(1),
            }),
        }
    }

    /// Publishes an event to the ring and every live subscriber; returns its sequence number.
    pub fn publish(&self, event: Event) -> u64 {
        // The ring lock is held while sending so that the ring and the channel see events in the
        // same order, and `subscribe_with_recent` never misses or repeats one.
        let mut recent = self.lock_recent();
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let envelope = Arc::new(Envelope { seq, ts_ms: now_ms(), event });
        if recent.len() == RECENT_CAPACITY {
            recent.pop_front();
        }
        recent.push_back(envelope.clone());
        // An error only means nobody is subscribed right now, which is fine.
        let _ = self.inner.tx.send(envelope);
        seq
    }

    /// A live subscription: every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.inner.tx.subscribe()
    }

    /// The recent events (oldest first) and a subscription that continues exactly after them.
    pub fn subscribe_with_recent(
        &self,
    ) -> (Vec<Arc<Envelope>>, broadcast::Receiver<Arc<Envelope>>) {
        let recent = self.lock_recent();
        (recent.iter().cloned().collect(), self.inner.tx.subscribe())
    }

    fn lock_recent(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Envelope>>> {
        // A panic while holding this lock cannot leave the ring inconsistent (push/pop only),
        // so a poisoned lock is still usable.
        self.inner.recent.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(name: &str) -> Event {
        Event::Stopped { name: name.to_owned() }
    }

    #[test]
    fn serializes_with_kind_tag_and_round_trips() {
        let bus = EventBus::new();
        bus.publish(Event::Exited {
            name: "aurora".into(),
            pid: 42,
            exit: ExitReason::Seccomp { syscall: "ptrace".into() },
            uptime_ms: 1500,
        });
        let env = &bus.subscribe_with_recent().0[0];
        let json = serde_json::to_string(&**env).expect("serialize");
        assert!(json.contains(r#""kind":"exited""#), "{json}");
        assert!(json.contains(r#""exit":{"type":"seccomp","syscall":"ptrace"}"#), "{json}");
        let back: Envelope = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(&back, &**env);
    }

    #[test]
    fn a_named_seccomp_kill_says_how_to_allow_it_when_a_policy_may() {
        use vitrine_policy::{ArgCondition, ArgOp, SeccompAction, SyscallRule, Syscalls};
        let filter = Syscalls {
            profile: "default".into(),
            profile_path: "/p/default.json".into(),
            rules: vec![
                SyscallRule { syscall: "read".into(), args: vec![] },
                SyscallRule {
                    syscall: "socket".into(),
                    args: vec![ArgCondition { index: 0, dword: true, op: ArgOp::Eq, val: 1 }],
                },
            ],
            allow: vec![],
            action: SeccompAction::Kill,
        };
        let fix = |s: &str| fix_for(s, "/etc/vitrine/policies/a.toml", &filter);
        assert_eq!(
            fix("sched_setaffinity (203)").as_deref(),
            Some(
                "to allow it, add \"sched_setaffinity\" to [syscalls] allow in \
                 /etc/vitrine/policies/a.toml"
            )
        );
        // `policy check` refuses these by name: never suggest them.
        for never in ["ptrace (101)", "unshare (272)", "mount (165)"] {
            let f = fix(never).expect("named");
            assert!(f.starts_with("no policy may allow \""), "{f}");
            assert!(!f.contains("add "), "{f}");
        }
        let socket = fix("socket (41)").expect("named");
        assert!(socket.contains("only with certain arguments") && !socket.contains("add \""));
        assert_eq!(fix("syscall unknown (no kernel audit record found)"), None);
        assert_eq!(fix("syscall 999 (999)"), None);
    }

    #[test]
    fn ring_keeps_only_the_most_recent() {
        let bus = EventBus::new();
        for i in 0..RECENT_CAPACITY + 10 {
            bus.publish(stopped(&format!("v{i}")));
        }
        let recent = bus.subscribe_with_recent().0;
        assert_eq!(recent.len(), RECENT_CAPACITY);
        assert_eq!(recent[0].seq, 11);
        assert_eq!(recent.last().map(|e| e.seq), Some(RECENT_CAPACITY as u64 + 10));
    }

    #[tokio::test]
    async fn subscription_continues_after_the_recent_events() {
        let bus = EventBus::new();
        bus.publish(stopped("a"));
        let (recent, mut rx) = bus.subscribe_with_recent();
        bus.publish(stopped("b"));
        assert_eq!(recent.len(), 1);
        let next = rx.recv().await.expect("live event");
        assert_eq!(next.seq, recent[0].seq + 1);
        assert_eq!(next.event, stopped("b"));
    }
}
