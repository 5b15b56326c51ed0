//! Lock-free counters of the OSC path, read by the metrics exporter as snapshots.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use vitrine_osc::Reason;

/// Upper bounds (seconds) of the forward-latency histogram buckets.
pub const LATENCY_BOUNDS: [f64; 10] =
    [0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05];

/// A histogram of receive-to-send latency.
#[derive(Debug, Default)]
pub struct Latency {
    /// One count per bound plus the overflow bucket.
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Latency {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BOUNDS.iter().position(|&b| s <= b).unwrap_or(LATENCY_BOUNDS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            bounds: &LATENCY_BOUNDS,
            counts: self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect(),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Per-bucket (not cumulative) counts; `counts` has one more entry than `bounds` (+Inf).
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySnapshot {
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
    pub sum_seconds: f64,
}

/// Counters of one visualization's delivery path.
#[derive(Debug, Default)]
pub struct OutCounters {
    pub sent: AtomicU64,
    pub send_failed: AtomicU64,
    pub feedback: AtomicU64,
}

/// Everything the OSC hub counted, at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSnapshot {
    /// Datagrams received on the UDP listeners (`osc_received_total{source="udp"}`).
    pub received_udp: u64,
    /// Packets handed in by other ingresses (peers, MIDI) through [`super::Hub::inject`].
    pub received_injected: u64,
    /// `osc_rejected_total{reason}`: every reason, zeros included.
    pub rejected: Vec<(&'static str, u64)>,
    pub visualizations: Vec<VisualizationStats>,
    pub latency: LatencySnapshot,
    /// Sources blocked so far.
    pub blocks: u64,
}

/// `osc_forwarded_total{name}` and `osc_dropped_total{name,reason}`.
#[derive(Debug, Clone, PartialEq)]
pub struct VisualizationStats {
    pub name: String,
    /// Messages handed to the visualization's socket.
    pub forwarded: u64,
    /// (reason, count): `outbox-full`, `coalesced`, `send-failed`.
    pub dropped: Vec<(&'static str, u64)>,
    /// Replies from the visualization offered to subscribers.
    pub feedback: u64,
}

/// Hub-wide counters.
#[derive(Debug, Default)]
pub struct Counters {
    pub received_udp: AtomicU64,
    pub received_injected: AtomicU64,
    pub blocks: AtomicU64,
    pub latency: Latency,
}

pub(super) fn rejected_list(count: impl Fn(Reason) -> u64) -> Vec<(&'static str, u64)> {
    Reason::ALL
        .iter()
        .filter(|r| !matches!(r, Reason::OutboxFull | Reason::Coalesced | Reason::SendFailed))
        .map(|&r| (r.as_str(), count(r)))
        .collect()
}
