//! Prometheus metrics: every series of DESIGN §9 in one registry, the methods the daemon, OSC,
//! MIDI and peer code call to update them, and a small HTTP/1.1 responder for `/metrics`.
//!
//! Names carry the `vitrine_` prefix and base units (seconds, bytes); counters end in `_total`.
//! Label values must come from bounded sets (visualization names, syscall names, reasons,
//! peer IDs) — never a remote address and port, which would grow without limit.

// Publishers (daemon, OSC, MIDI, peers) wire themselves in as they land.
#![allow(dead_code)]

mod http;
mod midi;
mod osc;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

// `vitrine serve` starts the endpoint through these two.
#[allow(unused_imports)]
pub use self::http::{bind, serve};
#[allow(unused_imports)]
pub use self::osc::OscSource;
use crate::events::{Envelope, Event, ExitReason};

/// The states `vitrine_visualization_state{state}` reports; exactly one is 1 per visualization.
pub const STATES: [&str; 5] = ["starting", "running", "backing-off", "failed", "stopped"];

/// The sandbox layers `vitrine_sandbox_layer_enforced{layer}` reports. Mounts, dropped
/// privileges and no_new_privs are not listed: the shim fails closed without them, so a running
/// visualization always has them. The launcher reports layers with details attached
/// (`landlock-abi-6`, `seccomp-kill`); [`layer_enforced`] maps them to these names.
pub const LAYERS: [&str; 5] = ["namespaces", "landlock", "seccomp", "cgroup", "verified"];

/// Buckets for spawn → exec: a sandbox normally starts in milliseconds, a slow disk or a large
/// binary copied into a memfd can take a second.
const SPAWN_BUCKETS: [f64; 12] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Buckets for ingress → child: tens of microseconds on an idle box, milliseconds under load.
/// The same bounds as the OSC hub's own histogram, so its counts carry over exactly.
const LATENCY_BUCKETS: [f64; 10] =
    [0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05];

/// Resource usage of one visualization, as read from its cgroup. Values are cumulative for the
/// cgroup's lifetime; the metrics keep counters monotonic across restarts (a new cgroup).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VisualizationStats {
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
    pub pids: u64,
    /// Processes the kernel's OOM killer killed in this cgroup (`memory.events` `oom_kill`).
    pub oom_kills: u64,
}

/// Every vitrine series; cheap to clone (each metric is a shared handle).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    build_info: IntGaugeVec,
    up: IntGaugeVec,
    state: IntGaugeVec,
    restarts: IntCounterVec,
    cpu_seconds: prometheus::CounterVec,
    memory_bytes: IntGaugeVec,
    pids: IntGaugeVec,
    oom_kills: IntCounterVec,
    violations: IntCounterVec,
    landlock_abi: IntGaugeVec,
    layer_enforced: IntGaugeVec,
    spawn_seconds: Histogram,
    osc_received: IntCounterVec,
    osc_forwarded: IntCounterVec,
    osc_rejected: IntCounterVec,
    osc_dropped: IntCounterVec,
    osc_latency: Histogram,
    midi_messages: IntCounterVec,
    peer_connected: IntGaugeVec,
    peer_handshakes: IntCounterVec,
    audit_events: IntCounterVec,
    audit_write_errors: IntCounter,
    audit_last_seq: IntGauge,
    /// The last cumulative stats per visualization, to turn cgroup totals into counter steps.
    last_stats: Arc<Mutex<HashMap<String, VisualizationStats>>>,
    /// Where OSC counters come from at scrape time.
    osc_bridge: osc::SharedBridge,
    /// Where MIDI port counters come from at scrape time.
    midi_bridge: midi::SharedBridge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Builds the registry with every series registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Metrics {
            build_info: gauge_vec(
                &registry,
                "build_info",
                "Version of the running vitrine; always 1.",
                &["version"],
            ),
            up: gauge_vec(
                &registry,
                "visualization_up",
                "1 while the visualization's process runs.",
                &["name"],
            ),
            state: gauge_vec(
                &registry,
                "visualization_state",
                "1 for the visualization's current state, 0 for the others.",
                &["name", "state"],
            ),
            restarts: counter_vec(
                &registry,
                "visualization_restarts_total",
                "Restarts, by the reason the previous run ended.",
                &["name", "reason"],
            ),
            cpu_seconds: float_counter_vec(
                &registry,
                "visualization_cpu_seconds_total",
                "CPU time used by the visualization's cgroup.",
                &["name"],
            ),
            memory_bytes: gauge_vec(
                &registry,
                "visualization_memory_bytes",
                "Memory charged to the visualization's cgroup.",
                &["name"],
            ),
            pids: gauge_vec(
                &registry,
                "visualization_pids",
                "Processes and threads in the visualization's cgroup.",
                &["name"],
            ),
            oom_kills: counter_vec(
                &registry,
                "visualization_oom_kills_total",
                "Processes killed by the OOM killer in the visualization's cgroup.",
                &["name"],
            ),
            violations: counter_vec(
                &registry,
                "sandbox_violations_total",
                "Syscalls the seccomp profile refused, by syscall name.",
                &["name", "syscall"],
            ),
            landlock_abi: gauge_vec(
                &registry,
                "sandbox_landlock_abi",
                "Landlock ABI enforced for the visualization (0: none).",
                &["name"],
            ),
            layer_enforced: gauge_vec(
                &registry,
                "sandbox_layer_enforced",
                "1 when the sandbox layer is enforced for the visualization.",
                &["name", "layer"],
            ),
            spawn_seconds: histogram(
                &registry,
                "spawn_seconds",
                "Time from spawning the shim to the visualization's exec.",
                &SPAWN_BUCKETS,
            ),
            osc_received: counter_vec(
                &registry,
                "osc_received_total",
                "OSC packets received, by ingress (udp; injected: relayed by peers or the MIDI bridge).",
                &["source"],
            ),
            osc_forwarded: counter_vec(
                &registry,
                "osc_forwarded_total",
                "OSC messages delivered to the visualization.",
                &["name"],
            ),
            osc_rejected: counter_vec(
                &registry,
                "osc_rejected_total",
                "OSC packets or messages rejected by validation, by reason.",
                &["reason"],
            ),
            osc_dropped: counter_vec(
                &registry,
                "osc_dropped_total",
                "Valid OSC messages dropped on the way to the visualization, by reason.",
                &["name", "reason"],
            ),
            osc_latency: histogram(
                &registry,
                "osc_forward_latency_seconds",
                "Time from receiving an OSC packet to handing it to the visualization.",
                &LATENCY_BUCKETS,
            ),
            midi_messages: counter_vec(
                &registry,
                "midi_messages_total",
                "MIDI messages read, by visualization, input port and result (accepted or the drop reason).",
                &["name", "port", "result"],
            ),
            peer_connected: gauge_vec(
                &registry,
                "peer_connected",
                "1 while an authenticated link to the peer is up.",
                &["peer"],
            ),
            peer_handshakes: counter_vec(
                &registry,
                "peer_handshakes_total",
                "Peer TLS handshakes, by result.",
                &["result"],
            ),
            audit_events: counter_vec(
                &registry,
                "audit_events_total",
                "Records written to the audit log, by kind.",
                &["kind"],
            ),
            audit_write_errors: counter(
                &registry,
                "audit_write_errors_total",
                "Audit records that could not be written (or whose head file was not updated).",
            ),
            audit_last_seq: int_gauge(
                &registry,
                "audit_last_seq",
                "Sequence number of the last audit record written; compare off the box to detect a rewritten log.",
            ),
            last_stats: Arc::default(),
            osc_bridge: Arc::default(),
            midi_bridge: Arc::default(),
            registry,
        };
        m.build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        self.pull_osc();
        self.pull_midi();
        let mut out = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The full name of every registered series (`vitrine_…`), whether or not it has a sample
    /// yet (a labelled series appears in a scrape only once a label set was used).
    pub fn names(&self) -> Vec<String> {
        let collectors: &[&dyn prometheus::core::Collector] = &[
            &self.build_info,
            &self.up,
            &self.state,
            &self.restarts,
            &self.cpu_seconds,
            &self.memory_bytes,
            &self.pids,
            &self.oom_kills,
            &self.violations,
            &self.landlock_abi,
            &self.layer_enforced,
            &self.spawn_seconds,
            &self.osc_received,
            &self.osc_forwarded,
            &self.osc_rejected,
            &self.osc_dropped,
            &self.osc_latency,
            &self.midi_messages,
            &self.peer_connected,
            &self.peer_handshakes,
            &self.audit_events,
            &self.audit_write_errors,
            &self.audit_last_seq,
        ];
        let mut names: Vec<String> = collectors
            .iter()
            .flat_map(|c| c.desc().into_iter().map(|d| d.fq_name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The registry, for callers that want to add their own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Sets the visualization's state (one of [`STATES`]) and `visualization_up`.
    pub fn set_state(&self, name: &str, state: &str) {
        for s in STATES {
            self.state.with_label_values(&[name, s]).set(i64::from(s == state));
        }
        self.up.with_label_values(&[name]).set(i64::from(state == "running"));
    }

    /// Counts a restart; `reason` is how the previous run ended (see [`exit_reason_label`]).
    pub fn record_restart(&self, name: &str, reason: &str) {
        self.restarts.with_label_values(&[name, reason]).inc();
    }

    /// Updates the per-visualization resource series from cumulative cgroup stats. Every start
    /// gets a new cgroup whose totals begin at zero: a `Starting` event (or a total that went
    /// down) marks that, and the new cgroup's whole usage is then counted as new.
    pub fn set_visualization_stats(&self, name: &str, stats: &VisualizationStats) {
        let mut last = self.last_stats.lock().unwrap_or_else(|e| e.into_inner());
        let mut prev = last.insert(name.to_owned(), *stats).unwrap_or_default();
        if stats.cpu_seconds < prev.cpu_seconds || stats.oom_kills < prev.oom_kills {
            prev = VisualizationStats::default();
        }
        let cpu_step = stats.cpu_seconds - prev.cpu_seconds;
        let oom_step = stats.oom_kills - prev.oom_kills;
        self.cpu_seconds.with_label_values(&[name]).inc_by(cpu_step);
        self.oom_kills.with_label_values(&[name]).inc_by(oom_step);
        self.memory_bytes.with_label_values(&[name]).set(saturating_i64(stats.memory_bytes));
        self.pids.with_label_values(&[name]).set(saturating_i64(stats.pids));
    }

    /// Forgets the previous cgroup's totals: the next stats come from a fresh cgroup.
    pub fn new_cgroup(&self, name: &str) {
        self.last_stats.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
    }

    /// Records what the shim reported as enforced.
    pub fn set_sandbox(&self, name: &str, landlock_abi: u8, enforced_layers: &[String]) {
        self.landlock_abi.with_label_values(&[name]).set(i64::from(landlock_abi));
        self.set_layers(name, enforced_layers);
    }

    fn set_layers(&self, name: &str, reported: &[String]) {
        for layer in LAYERS {
            let on = reported.iter().any(|r| layer_enforced(r, layer));
            self.layer_enforced.with_label_values(&[name, layer]).set(i64::from(on));
        }
    }

    /// Drops the gauges of a visualization whose policy was removed (counters stay: they are
    /// history).
    pub fn remove_visualization(&self, name: &str) {
        let _ = self.up.remove_label_values(&[name]);
        let _ = self.memory_bytes.remove_label_values(&[name]);
        let _ = self.pids.remove_label_values(&[name]);
        let _ = self.landlock_abi.remove_label_values(&[name]);
        for s in STATES {
            let _ = self.state.remove_label_values(&[name, s]);
        }
        for layer in LAYERS {
            let _ = self.layer_enforced.remove_label_values(&[name, layer]);
        }
        self.last_stats.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
    }

    pub fn record_violation(&self, name: &str, syscall: &str) {
        self.violations.with_label_values(&[name, syscall]).inc();
    }

    pub fn observe_spawn(&self, seconds: f64) {
        self.spawn_seconds.observe(seconds);
    }

    /// `source`: the ingress kind (`udp`, `injected`), never an address.
    pub fn osc_received(&self, source: &str) {
        self.osc_received.with_label_values(&[source]).inc();
    }

    pub fn osc_forwarded(&self, name: &str) {
        self.osc_forwarded.with_label_values(&[name]).inc();
    }

    pub fn osc_rejected(&self, reason: &str) {
        self.osc_rejected.with_label_values(&[reason]).inc();
    }

    pub fn osc_dropped(&self, name: &str, reason: &str) {
        self.osc_dropped.with_label_values(&[name, reason]).inc();
    }

    pub fn observe_osc_latency(&self, seconds: f64) {
        self.osc_latency.observe(seconds);
    }

    /// `result`: `accepted`, a drop reason of `vitrine_midi::DropReason` or `queue-full`.
    pub fn midi_messages(&self, name: &str, port: &str, result: &str, n: u64) {
        self.midi_messages.with_label_values(&[name, port, result]).inc_by(n);
    }

    pub fn set_peer_connected(&self, peer: &str, connected: bool) {
        self.peer_connected.with_label_values(&[peer]).set(i64::from(connected));
    }

    /// Drops the series of a peer key that is gone (rotated away from).
    pub fn remove_peer(&self, peer: &str) {
        let _ = self.peer_connected.remove_label_values(&[peer]);
    }

    /// `result`: e.g. `ok`, `pending`, `refused`, `tls-error`, `unknown-peer`.
    pub fn peer_handshake(&self, result: &str) {
        self.peer_handshakes.with_label_values(&[result]).inc();
    }

    pub fn audit_event(&self, kind: &str, seq: u64) {
        self.audit_events.with_label_values(&[kind]).inc();
        self.audit_last_seq.set(saturating_i64(seq));
    }

    pub fn audit_write_error(&self) {
        self.audit_write_errors.inc();
    }

    /// Applies one bus event to the lifecycle series (state, up, restarts, violations, sandbox
    /// layers). Resource usage comes from [`Self::set_visualization_stats`], OSC/MIDI/peer
    /// counters from their own call sites.
    pub fn observe_event(&self, event: &Event, last_exit: &mut HashMap<String, String>) {
        match event {
            Event::Starting { name, attempt } => {
                self.set_state(name, "starting");
                self.new_cgroup(name);
                if *attempt > 1 {
                    let reason = last_exit.get(name).map_or("unknown", String::as_str);
                    self.record_restart(name, reason);
                }
            }
            Event::Running { name, layers, .. } => {
                self.set_state(name, "running");
                self.set_layers(name, layers);
            }
            Event::Exited { name, exit, .. } => {
                self.up.with_label_values(&[name]).set(0);
                last_exit.insert(name.clone(), exit_reason_label(exit).to_owned());
            }
            Event::SpawnFailed { name, .. } => {
                last_exit.insert(name.clone(), "spawn-failed".to_owned());
            }
            Event::BackingOff { name, .. } => self.set_state(name, "backing-off"),
            Event::Failed { name, .. } => self.set_state(name, "failed"),
            Event::Stopped { name } => self.set_state(name, "stopped"),
            Event::Violation { name, syscall, .. } => self.record_violation(name, syscall),
            _ => {}
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether the launcher's layer name `reported` (e.g. `landlock-abi-6`, `seccomp-kill`) means
/// `layer` is enforced. Seccomp in `log` action only records and allows: not enforced.
pub fn layer_enforced(reported: &str, layer: &str) -> bool {
    let matches =
        reported == layer || reported.strip_prefix(layer).is_some_and(|rest| rest.starts_with('-'));
    matches && reported != "seccomp-log"
}

/// The `reason` label of a restart for an exit.
pub fn exit_reason_label(exit: &ExitReason) -> &'static str {
    match exit {
        ExitReason::Clean => "clean",
        ExitReason::Code { .. } => "exit-code",
        ExitReason::Signal { .. } => "signal",
        ExitReason::Seccomp { .. } => "seccomp",
        ExitReason::Oom => "oom",
    }
}

/// Follows the event bus and keeps the lifecycle series current until the bus closes.
pub async fn follow_events(
    mut rx: tokio::sync::broadcast::Receiver<Arc<Envelope>>,
    metrics: Metrics,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut last_exit = HashMap::new();
    loop {
        match rx.recv().await {
            Ok(envelope) => metrics.observe_event(&envelope.event, &mut last_exit),
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "metrics fell behind the event bus; some events were not counted"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn full_name(name: &str) -> String {
    format!("vitrine_{name}")
}

// Registration only fails for a duplicate or invalid name, which the tests exercise: a failure
// here is a programming error caught before release, so these helpers may panic.
#[allow(clippy::expect_used)]
fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry.register(Box::new(c.clone())).expect("metric names are unique and valid");
    c
}

#[allow(clippy::expect_used)]
fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(r, IntGaugeVec::new(Opts::new(full_name(name), help), labels).expect("valid gauge"))
}

#[allow(clippy::expect_used)]
fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(full_name(name), help), labels).expect("valid counter"),
    )
}

#[allow(clippy::expect_used)]
fn float_counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::CounterVec {
    let opts = Opts::new(full_name(name), help);
    register(r, prometheus::CounterVec::new(opts, labels).expect("valid counter"))
}

#[allow(clippy::expect_used)]
fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(r, IntCounter::new(full_name(name), help).expect("valid counter"))
}

#[allow(clippy::expect_used)]
fn int_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(r, IntGauge::new(full_name(name), help).expect("valid gauge"))
}

#[allow(clippy::expect_used)]
fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let opts = HistogramOpts::new(full_name(name), help).buckets(buckets.to_vec());
    register(r, Histogram::with_opts(opts).expect("valid histogram"))
}

#[cfg(test)]
mod tests;
