//! The OSC hub counts on its own lock-free counters (`crate::osc::stats`); this bridges its
//! snapshots into the registry. The daemon installs the hub as the source
//! ([`Metrics::set_osc_source`]), and every scrape first applies what changed since the last one.

use std::sync::{Arc, Mutex};

use super::Metrics;
use crate::osc::StatsSnapshot;

/// Produces the hub's current counters.
pub type OscSource = Arc<dyn Fn() -> StatsSnapshot + Send + Sync>;

/// The installed source and the last snapshot applied (totals become counter increments).
#[derive(Default)]
pub(super) struct OscBridge {
    source: Option<OscSource>,
    last: Option<StatsSnapshot>,
}

impl Metrics {
    /// Reads OSC counters from `source` (typically `move || hub.stats()`) at every scrape.
    pub fn set_osc_source(&self, source: OscSource) {
        self.lock_osc().source = Some(source);
    }

    /// Pulls a snapshot from the installed source, if any, and applies it.
    pub(super) fn pull_osc(&self) {
        let source = self.lock_osc().source.clone();
        if let Some(source) = source {
            self.sync_osc(&source());
        }
    }

    /// Applies a hub snapshot: every counter grows by what it grew in the hub since the last
    /// snapshot. Latency buckets are exact; each new observation counts at its bucket's middle,
    /// so the histogram's sum is approximate within a bucket's width.
    pub fn sync_osc(&self, snap: &StatsSnapshot) {
        let mut bridge = self.lock_osc();
        let last = bridge.last.take();
        let before = |now: u64, then: Option<u64>| now.saturating_sub(then.unwrap_or(0));
        let prev = last.as_ref();
        self.osc_received
            .with_label_values(&["udp"])
            .inc_by(before(snap.received_udp, prev.map(|p| p.received_udp)));
        self.osc_received
            .with_label_values(&["injected"])
            .inc_by(before(snap.received_injected, prev.map(|p| p.received_injected)));
        for (reason, count) in &snap.rejected {
            let then = prev.and_then(|p| p.rejected.iter().find(|(r, _)| r == reason)).map(|x| x.1);
            self.osc_rejected.with_label_values(&[reason]).inc_by(before(*count, then));
        }
        for viz in &snap.visualizations {
            let old = prev.and_then(|p| p.visualizations.iter().find(|v| v.name == viz.name));
            let name = viz.name.as_str();
            self.osc_forwarded
                .with_label_values(&[name])
                .inc_by(before(viz.forwarded, old.map(|o| o.forwarded)));
            for (reason, count) in &viz.dropped {
                let then =
                    old.and_then(|o| o.dropped.iter().find(|(r, _)| r == reason)).map(|x| x.1);
                self.osc_dropped.with_label_values(&[name, reason]).inc_by(before(*count, then));
            }
        }
        self.absorb_latency(snap, prev);
        bridge.last = Some(snap.clone());
    }

    fn absorb_latency(&self, snap: &StatsSnapshot, prev: Option<&StatsSnapshot>) {
        let bounds = snap.latency.bounds;
        for (i, count) in snap.latency.counts.iter().enumerate() {
            let then = prev.and_then(|p| p.latency.counts.get(i)).copied().unwrap_or(0);
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            // The overflow bucket has no upper bound: count it just above the last one.
            let upper = bounds.get(i).copied().unwrap_or(lower * 2.0);
            let middle = (lower + upper) / 2.0;
            for _ in 0..count.saturating_sub(then) {
                self.osc_latency.observe(middle);
            }
        }
    }

    fn lock_osc(&self) -> std::sync::MutexGuard<'_, OscBridge> {
        // A panic while holding the lock leaves at worst one snapshot unapplied.
        self.osc_bridge.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for OscBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OscBridge").field("source", &self.source.is_some()).finish()
    }
}

/// Shared between clones of [`Metrics`].
pub(super) type SharedBridge = Arc<Mutex<OscBridge>>;
