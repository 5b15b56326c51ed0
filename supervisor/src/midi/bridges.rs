//! The MIDI bridges of `vitrine serve` and `vitrine run`: one per visualization with a `[midi]`
//! table, started when its sandbox runs and stopped when it ends, each routing into the OSC
//! hub under [`MIDI_SOURCE`](super::MIDI_SOURCE).
//!
//! A bridge's port counters start at zero; what a stopped bridge counted is kept here, so the
//! counters `vitrine status` shows and the metrics export stay cumulative over restarts and
//! reloads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use vitrine_midi::Counters;
use vitrine_policy::Midi;

use super::{MidiBridge, MidiError, PortReport};
use crate::osc::Hub;

/// One input port of a visualization, as `vitrine status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MidiPortStatus {
    /// The ALSA port name (`client:port`) the policy's globs matched.
    pub port: String,
    /// The sequencer address while connected.
    pub address: Option<String>,
    pub connected: bool,
    /// Connections made since the daemon started (a reconnect adds one).
    pub connects: u64,
    /// Messages that passed the policy, since the daemon started.
    pub accepted: u64,
    /// Dropped messages by reason (the `result` label of the metric), non-zero ones only.
    pub dropped: BTreeMap<String, u64>,
}

/// A cumulative count for `vitrine_midi_messages_total{name,port,result}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortCount {
    pub name: String,
    pub port: String,
    pub result: &'static str,
    pub total: u64,
}

/// Every bridge of the process; cheap to share.
#[derive(Debug, Default)]
pub struct Bridges {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    running: HashMap<String, Running>,
    /// What stopped bridges counted, per visualization and port name.
    past: HashMap<(String, String), Tally>,
}

#[derive(Debug)]
struct Running {
    prefix: String,
    midi: Midi,
    bridge: MidiBridge,
}

/// The counters of one port, summed over the bridges that read it.
#[derive(Debug, Clone, Default)]
struct Tally {
    counters: Counters,
    queue_full: u64,
    connects: u64,
}

impl Tally {
    fn add(&mut self, port: &PortReport) {
        self.counters.add(&port.counters);
        self.queue_full += port.queue_full;
        self.connects += port.connects;
    }
}

impl Bridges {
    /// Makes sure `name` reads MIDI as `midi` says, delivering to the hub under `prefix`. A
    /// bridge already running with the same table and prefix is kept (its ports stay
    /// connected); one with another is replaced. Opening the sequencer and the first port scan
    /// take milliseconds, so this runs inline.
    pub fn start(
        &self,
        name: &str,
        prefix: &str,
        midi: &Midi,
        hub: &Arc<Hub>,
    ) -> Result<(), MidiError> {
        let mut state = self.lock();
        if state.running.get(name).is_some_and(|r| r.prefix == prefix && r.midi == *midi) {
            return Ok(());
        }
        drop(state.stop(name));
        let bridge = MidiBridge::start_into(name, prefix, midi, Arc::clone(hub))?;
        let running = Running { prefix: prefix.to_owned(), midi: midi.clone(), bridge };
        state.running.insert(name.to_owned(), running);
        Ok(())
    }

    /// Closes the ports of `name`, keeping what they counted.
    pub fn stop(&self, name: &str) {
        let running = self.lock().stop(name);
        drop(running);
    }

    /// Stops every bridge; afterwards nothing of them holds the hub any more.
    pub fn stop_all(&self) {
        let names: Vec<String> = self.lock().running.keys().cloned().collect();
        for name in names {
            self.stop(&name);
        }
    }

    /// The ports of `name` (connected or not) with cumulative counters, in port-name order.
    pub fn ports(&self, name: &str) -> Vec<MidiPortStatus> {
        let state = self.lock();
        let mut out: BTreeMap<String, MidiPortStatus> = BTreeMap::new();
        for ((viz, port), tally) in &state.past {
            if viz == name {
                out.insert(port.clone(), status_of(port, tally, None));
            }
        }
        if let Some(running) = state.running.get(name) {
            for live in running.bridge.ports() {
                let mut tally = state.past.get(&(name.to_owned(), live.name.clone())).cloned();
                let tally = tally.get_or_insert_with(Tally::default);
                tally.add(&live);
                out.insert(live.name.clone(), status_of(&live.name, tally, Some(&live)));
            }
        }
        out.into_values().collect()
    }

    /// Every cumulative count, for the metrics at scrape time: `accepted`, each drop reason and
    /// `queue-full`, per visualization and port.
    pub fn counts(&self) -> Vec<PortCount> {
        let state = self.lock();
        let mut tallies = state.past.clone();
        for (name, running) in &state.running {
            for live in running.bridge.ports() {
                tallies.entry((name.clone(), live.name.clone())).or_default().add(&live);
            }
        }
        let mut out = Vec::new();
        for ((name, port), t) in tallies {
            let mut push = |result, total| {
                out.push(PortCount { name: name.clone(), port: port.clone(), result, total });
            };
            push("accepted", t.counters.accepted);
            for (reason, n) in t.counters.drops() {
                push(reason.as_str(), n);
            }
            push("queue-full", t.queue_full);
        }
        out
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a map insert or removal: a panic elsewhere leaves it consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Removes `name`'s bridge, folding its counters into `past`; the caller drops it
    /// outside the lock (dropping joins the port watcher and midir's threads).
    fn stop(&mut self, name: &str) -> Option<Running> {
        let running = self.running.remove(name)?;
        for port in running.bridge.ports() {
            self.past.entry((name.to_owned(), port.name.clone())).or_default().add(&port);
        }
        Some(running)
    }
}

fn status_of(port: &str, tally: &Tally, live: Option<&PortReport>) -> MidiPortStatus {
    let mut dropped: BTreeMap<String, u64> = tally
        .counters
        .drops()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| (r.as_str().to_owned(), n))
        .collect();
    if tally.queue_full > 0 {
        dropped.insert("queue-full".to_owned(), tally.queue_full);
    }
    MidiPortStatus {
        port: port.to_owned(),
        address: live.and_then(|l| l.address.clone()),
        connected: live.is_some_and(|l| l.connected),
        connects: tally.connects,
        accepted: tally.counters.accepted,
        dropped,
    }
}

impl std::fmt::Display for MidiPortStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match (&self.address, self.connected) {
            (Some(a), true) => format!("connected {a}"),
            _ => "disconnected".to_owned(),
        };
        let dropped: Vec<String> = self.dropped.iter().map(|(r, n)| format!("{r}={n}")).collect();
        let dropped = if dropped.is_empty() { "none".to_owned() } else { dropped.join(" ") };
        write!(
            f,
            "{:?} {state}, connects {}, accepted {}, dropped {dropped}",
            self.port, self.connects, self.accepted
        )
    }
}
