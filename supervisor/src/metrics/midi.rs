//! The MIDI bridges count per port on their own (`crate::midi::Bridges`); this turns their
//! cumulative counts into counter increments at every scrape, as `osc.rs` does for the hub.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Metrics;
use crate::midi::PortCount;

/// Produces every cumulative MIDI count (typically `move || bridges.counts()`).
pub type MidiSource = Arc<dyn Fn() -> Vec<PortCount> + Send + Sync>;

/// The installed source and the totals already exported, by (name, port, result).
#[derive(Default)]
pub(super) struct MidiBridge {
    source: Option<MidiSource>,
    exported: HashMap<(String, String, &'static str), u64>,
}

/// Shared between clones of [`Metrics`].
pub(super) type SharedBridge = Arc<Mutex<MidiBridge>>;

impl Metrics {
    /// Reads MIDI counts from `source` at every scrape.
    pub fn set_midi_source(&self, source: MidiSource) {
        self.lock_midi().source = Some(source);
    }

    pub(super) fn pull_midi(&self) {
        let source = self.lock_midi().source.clone();
        if let Some(source) = source {
            self.sync_midi(&source());
        }
    }

    /// Every series grows by what its cumulative count grew since the last sync; zero counts
    /// are exported too, so a port's series exist from its first connection.
    pub fn sync_midi(&self, counts: &[PortCount]) {
        let mut bridge = self.lock_midi();
        for c in counts {
            let key = (c.name.clone(), c.port.clone(), c.result);
            let before = bridge.exported.get(&key).copied().unwrap_or(0);
            self.midi_messages(&c.name, &c.port, c.result, c.total.saturating_sub(before));
            bridge.exported.insert(key, c.total.max(before));
        }
    }

    fn lock_midi(&self) -> std::sync::MutexGuard<'_, MidiBridge> {
        // A panic while holding the lock leaves at worst one sync unapplied.
        self.midi_bridge.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for MidiBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MidiBridge").field("source", &self.source.is_some()).finish()
    }
}
