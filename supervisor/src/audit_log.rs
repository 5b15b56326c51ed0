//! The audit log of the daemon: security-relevant events from the bus, written to the
//! hash-chained log of `vitrine-audit`.
//!
//! Writing is blocking (one `write` plus fsyncs per record), so it happens on a dedicated
//! thread that owns the [`AuditLog`]; the bus follower only translates events and hands them
//! over without ever blocking the runtime. When the log cannot be written (missing directory, a
//! full disk), records wait in a bounded queue and are retried every few seconds; what does not
//! fit is dropped, and every failure is counted in `vitrine_audit_write_errors_total` and
//! logged. Each record keeps the time the event happened in `detail.event_ts_ms`, because a
//! retried record is written later than it occurred.

// The daemon wires this in at start.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast;
use vitrine_audit::{AuditLog, kinds};

use crate::events::{Envelope, Event};
use crate::metrics::Metrics;

/// Records handed to the writer thread but not yet taken; beyond this the follower drops.
const CHANNEL_CAPACITY: usize = 1024;
/// Records kept while the log cannot be written.
const PENDING_CAPACITY: usize = 4096;
/// Records written with one write and one round of syncs (group commit).
const BATCH: usize = 64;
/// How often an unwritable log is tried again when no new record arrives.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// One record on its way to the log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub kind: String,
    pub subject: String,
    pub detail: Value,
}

/// The daemon's handle on the audit writer thread; clone it to record from anywhere.
#[derive(Debug, Clone)]
pub struct AuditHandle {
    tx: SyncSender<Message>,
    metrics: Metrics,
}

/// What the writer thread receives.
#[derive(Debug)]
enum Message {
    Record(AuditRecord),
    /// Write what is pending and stop, even while other handles still exist.
    Shutdown,
}

/// Owns the writer thread; [`AuditWriter::shutdown`] flushes and joins it.
#[derive(Debug)]
pub struct AuditWriter {
    handle: AuditHandle,
    thread: Option<JoinHandle<()>>,
}

impl AuditWriter {
    /// Starts the writer thread for the log at `path` and records `daemon-started`.
    pub fn start(path: PathBuf, metrics: Metrics) -> std::io::Result<AuditWriter> {
        let (tx, rx) = sync_channel(CHANNEL_CAPACITY);
        let thread_metrics = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("vitrine-audit".into())
            .spawn(move || writer_thread(path, rx, thread_metrics))?;
        let handle = AuditHandle { tx, metrics };
        handle.record(
            kinds::DAEMON_STARTED,
            "vitrine",
            json!({"version": env!("CARGO_PKG_VERSION")}),
        );
        Ok(AuditWriter { handle, thread: Some(thread) })
    }

    pub fn handle(&self) -> AuditHandle {
        self.handle.clone()
    }

    /// Records `daemon-stopping`, then waits until the thread has written (or given up on)
    /// everything it was handed. Blocking: call it from `spawn_blocking` or a plain thread.
    pub fn shutdown(mut self) {
        self.handle.record(kinds::DAEMON_STOPPING, "vitrine", json!({}));
        // A blocking send: the stop must not be lost to a full queue.
        let _ = self.handle.tx.send(Message::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl AuditHandle {
    /// Queues a record without blocking; a full queue counts as a write error.
    pub fn record(&self, kind: &str, subject: &str, detail: Value) {
        let record = AuditRecord { kind: kind.to_owned(), subject: subject.to_owned(), detail };
        match self.tx.try_send(Message::Record(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(Message::Record(r))) => {
                self.metrics.audit_write_error();
                tracing::error!(kind = %r.kind, subject = %r.subject, "audit queue full: record dropped");
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.audit_write_error();
                tracing::error!(kind, subject, "audit writer stopped: record dropped");
            }
        }
    }
}

/// Follows the bus and records every security-relevant event until the bus closes.
pub async fn follow_events(mut rx: broadcast::Receiver<Arc<Envelope>>, audit: AuditHandle) {
    use broadcast::error::RecvError;
    loop {
        match rx.recv().await {
            Ok(envelope) => {
                if let Some(record) = to_record(&envelope) {
                    audit.record(&record.kind, &record.subject, record.detail);
                }
            }
            Err(RecvError::Lagged(missed)) => {
                // The loss itself is security-relevant: say so in the log.
                audit.metrics.audit_write_error();
                audit.record("audit-events-missed", "audit", json!({"missed": missed}));
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// The audit record for a bus event, or `None` when the event is not security-relevant
/// (lifecycle noise such as starting, backing off or a clean stop).
pub fn to_record(envelope: &Envelope) -> Option<AuditRecord> {
    let (kind, subject, mut detail) = match &envelope.event {
        Event::PolicyLoaded { name, path } => {
            (kinds::POLICY_LOADED.into(), name.clone(), json!({"path": path}))
        }
        Event::PolicyRejected { path, diagnostic } => {
            (kinds::POLICY_REJECTED.into(), path.clone(), json!({"diagnostic": diagnostic}))
        }
        Event::SpawnFailed { name, error } => {
            ("spawn-failed".into(), name.clone(), json!({"error": error}))
        }
        Event::Violation { name, syscall, fix } => {
            let detail = match fix {
                Some(fix) => json!({"syscall": syscall, "fix": fix}),
                None => json!({"syscall": syscall}),
            };
            (kinds::SANDBOX_VIOLATION.into(), name.clone(), detail)
        }
        Event::Oom { name } => (kinds::OOM.into(), name.clone(), json!({})),
        Event::ControlAction { uid, verb, target, allowed } => {
            let kind = if *allowed { kinds::CONTROL_ACTION } else { kinds::CONTROL_REFUSED };
            let subject = target.clone().unwrap_or_default();
            (kind.into(), subject, json!({"uid": uid, "verb": verb, "allowed": allowed}))
        }
        Event::OscBlock { source, reason } => {
            (kinds::RATE_LIMIT_BLOCK.into(), source.clone(), json!({"reason": reason}))
        }
        Event::Peer { peer, action, detail } => {
            (peer_kind(action), peer.clone(), json!({"detail": detail}))
        }
        Event::Warning { subject, message } => {
            ("warning".into(), subject.clone(), json!({"message": message}))
        }
        _ => return None,
    };
    if let Value::Object(map) = &mut detail {
        map.insert("event_seq".into(), json!(envelope.seq));
        map.insert("event_ts_ms".into(), json!(envelope.ts_ms));
    }
    Some(AuditRecord { kind, subject, detail })
}

/// `peer_auth_ok` → `peer-auth-ok`: audit kinds are kebab-case and bounded to `[a-z0-9-]`.
fn peer_kind(action: &str) -> String {
    let kebab: String = action
        .chars()
        .take(48)
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    if kebab.starts_with("peer-") || kebab.starts_with("identity-") {
        kebab
    } else {
        format!("peer-{kebab}")
    }
}

/// The writer thread: open (and keep reopening) the log, write records in order, retry.
fn writer_thread(path: PathBuf, rx: Receiver<Message>, metrics: Metrics) {
    let mut writer = Writer { path, log: None, pending: VecDeque::new(), metrics };
    loop {
        match rx.recv_timeout(RETRY_INTERVAL) {
            Ok(Message::Record(record)) => writer.enqueue(record),
            Ok(Message::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        writer.flush();
    }
    writer.flush();
    if !writer.pending.is_empty() {
        tracing::error!(lost = writer.pending.len(), path = %writer.path.display(), "audit records not written at shutdown");
        for _ in 0..writer.pending.len() {
            writer.metrics.audit_write_error();
        }
    }
}

struct Writer {
    path: PathBuf,
    log: Option<AuditLog>,
    pending: VecDeque<AuditRecord>,
    metrics: Metrics,
}

impl Writer {
    fn enqueue(&mut self, record: AuditRecord) {
        if self.pending.len() == PENDING_CAPACITY {
            self.pending.pop_front();
            self.metrics.audit_write_error();
            tracing::error!("audit backlog full: the oldest unwritten record was dropped");
        }
        self.pending.push_back(record);
    }

    /// Writes pending records in order, in batches (one write and one round of syncs each),
    /// until a batch fails; the failed batch stays first in line.
    fn flush(&mut self) {
        while !self.pending.is_empty() {
            if !self.ensure_open() {
                return;
            }
            let Some(log) = self.log.as_mut() else { return };
            let count = self.pending.len().min(BATCH);
            let batch = self
                .pending
                .iter()
                .take(count)
                .map(|r| (r.kind.as_str(), r.subject.as_str(), r.detail.clone()));
            match log.append_batch(batch) {
                Ok(_) => {}
                Err(e) if e.record_written() => {
                    self.metrics.audit_write_error();
                    tracing::error!(error = %e, "audit head file not updated");
                }
                Err(e) => {
                    self.metrics.audit_write_error();
                    tracing::error!(error = %e, path = %self.path.display(), records = count, "audit records not written; will retry");
                    return;
                }
            }
            let last_seq = log.last().seq;
            for record in self.pending.drain(..count) {
                self.metrics.audit_event(&record.kind, last_seq);
            }
        }
    }

    /// Opens the log when it is not open; `false` (counted and logged) when it cannot be.
    fn ensure_open(&mut self) -> bool {
        if self.log.is_some() {
            return true;
        }
        match AuditLog::open(&self.path) {
            Ok((log, resumed)) => {
                let last = log.last();
                tracing::info!(path = %self.path.display(), seq = last.seq, hash = %hex_full(&last.hash), "audit log open");
                if let Some(reason) = resumed.restart {
                    tracing::warn!(path = %self.path.display(), %reason, "audit chain restarted");
                    self.metrics.audit_event(kinds::CHAIN_RESTART, last.seq);
                }
                self.log = Some(log);
                true
            }
            Err(e) => {
                self.metrics.audit_write_error();
                tracing::error!(error = %e, path = %self.path.display(), "cannot open the audit log; will retry");
                false
            }
        }
    }
}

fn hex_full(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventBus;

    fn audit_lines(path: &std::path::Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .expect("read log")
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }

    #[test]
    fn security_events_map_to_records_and_lifecycle_noise_does_not() {
        let env = |event| Envelope { seq: 9, ts_ms: 1234, event };
        let r = to_record(&env(Event::ControlAction {
            uid: 1000,
            verb: "stop".into(),
            target: Some("aurora".into()),
            allowed: false,
        }))
        .expect("control actions are audited");
        assert_eq!(r.kind, "control-refused");
        assert_eq!(r.detail["uid"], 1000);
        assert_eq!(r.detail["event_ts_ms"], 1234);
        let peer = Event::Peer {
            peer: "ABCD".into(),
            action: "peer_auth_failed".into(),
            detail: "bad pin".into(),
        };
        assert_eq!(to_record(&env(peer)).expect("peer").kind, "peer-auth-failed");
        let rotation = Event::Peer {
            peer: "ABCD".into(),
            action: "identity_rotation".into(),
            detail: String::new(),
        };
        assert_eq!(to_record(&env(rotation)).expect("rotation").kind, "identity-rotation");
        assert!(to_record(&env(Event::Stopped { name: "aurora".into() })).is_none());
        assert!(to_record(&env(Event::Starting { name: "aurora".into(), attempt: 1 })).is_none());
    }

    #[tokio::test]
    async fn bus_events_reach_a_verifiable_log_and_the_counters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let metrics = Metrics::new();
        let bus = EventBus::new();
        let writer = AuditWriter::start(path.clone(), metrics.clone()).expect("start");
        let follower = tokio::spawn(follow_events(bus.subscribe(), writer.handle()));
        // A handle that outlives the shutdown must not keep the writer thread alive.
        let _late = writer.handle();
        bus.publish(Event::PolicyLoaded {
            name: "aurora".into(),
            path: "/etc/vitrine/policies/aurora.toml".into(),
        });
        bus.publish(Event::Stopped { name: "aurora".into() });
        bus.publish(Event::Violation {
            name: "aurora".into(),
            syscall: "ptrace".into(),
            fix: None,
        });
        bus.publish(Event::OscBlock { source: "10.0.0.7".into(), reason: "rate".into() });
        drop(bus);
        follower.await.expect("follower ends with the bus");
        tokio::task::spawn_blocking(move || writer.shutdown()).await.expect("shutdown");

        let kinds: Vec<String> = audit_lines(&path)
            .iter()
            .map(|l| l["kind"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(
            kinds,
            [
                "daemon-started",
                "policy-loaded",
                "sandbox-violation",
                "rate-limit-block",
                "daemon-stopping"
            ]
        );
        let report = vitrine_audit::verify(&path).expect("verify");
        assert!(report.is_intact() && report.notices.is_empty(), "{report:?}");
        let text = metrics.render();
        assert!(
            text.contains(r#"vitrine_audit_events_total{kind="sandbox-violation"} 1"#),
            "{text}"
        );
        assert!(text.contains("vitrine_audit_last_seq 5"), "{text}");
        assert!(text.contains("vitrine_audit_write_errors_total 0"), "{text}");
    }

    #[test]
    fn an_unwritable_log_is_retried_and_nothing_is_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The directory does not exist yet: opening fails until it is created.
        let path = dir.path().join("later").join("audit.jsonl");
        let metrics = Metrics::new();
        let mut writer = Writer {
            path: path.clone(),
            log: None,
            pending: VecDeque::new(),
            metrics: metrics.clone(),
        };
        writer.enqueue(AuditRecord {
            kind: "oom".into(),
            subject: "aurora".into(),
            detail: json!({}),
        });
        writer.flush();
        assert_eq!(writer.pending.len(), 1);
        assert!(metrics.render().contains("vitrine_audit_write_errors_total 1"));
        std::fs::create_dir(dir.path().join("later")).expect("mkdir");
        writer.enqueue(AuditRecord {
            kind: "oom".into(),
            subject: "borealis".into(),
            detail: json!({}),
        });
        writer.flush();
        assert!(writer.pending.is_empty());
        let subjects: Vec<Value> =
            audit_lines(&path).iter().map(|l| l["subject"].clone()).collect();
        assert_eq!(subjects, [json!("aurora"), json!("borealis")]);
    }
}
