//! What boxes tell each other about themselves, and where this box relays OSC.
//!
//! Each link carries this box's status document every `status_interval`, in the version for the
//! peer's role (the service chooses at each send): an observer learns what this box runs (names
//! and states); a controller also learns the OSC prefix of each running visualization and that
//! it may send OSC here (`you_control`). No version names other peers: which boxes may control
//! this one is nobody else's business.
//!
//! A controller's document tells this box where to relay: OSC that no visualization here takes,
//! for an address under a prefix the peer announced, goes to that peer. Announced prefixes are
//! checked like a policy's own `[osc] prefix` (`/a/b`, no pattern characters, so never `/`), at
//! most [`MAX_REMOTE_PREFIXES`] per peer, none overlapping another of the same announcement, and
//! none overlapping the prefix of a visualization on this box (running or not), and none
//! overlapping a prefix another peer announced first (the first claimer keeps it). Refusals are
//! published as `peer_prefix_refused` events (audited, and counted by
//! `vitrine_audit_events_total{kind="peer-prefix-refused"}`) when what a peer announces
//! changes, at most once a minute per peer (the next report counts the changes left out), with
//! fixed reasons and escaped, shortened prefixes.
//!
//! The controller version also carries the OSC rate and burst this box allows each peer; a box
//! relaying to a peer stays under what that peer announced (with a margin), dropping and
//! counting the excess rather than getting itself banned for a burst of local OSC.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vitrine_osc::rate::TokenBucket;
use vitrine_peer::{PeerId, Role};
use vitrine_policy::{check_osc_prefix, osc_prefixes_overlap};

use super::{Peering, host_name};

/// The most OSC prefixes taken from one peer's status.
pub const MAX_REMOTE_PREFIXES: usize = 64;
/// The most refusals named in one event; the rest are counted.
const MAX_REFUSALS_SHOWN: usize = 8;
/// The longest refusal report, in bytes.
const MAX_REPORT: usize = 1024;
/// How often refusals of one peer are reported at most.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);
/// Why an announced prefix that is not a valid OSC prefix is refused (never the parser's
/// words, which quote the peer's text).
const INVALID: &str = "not a valid OSC prefix (/a/b: printable ASCII, no spaces or # * , ? [ ] { }, no empty parts, at most 255 bytes)";

/// The status document boxes send each other (JSON in a status frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    pub id: String,
    pub name: String,
    pub version: String,
    pub visualizations: Vec<VisualizationState>,
    /// The receiving box may send OSC here (it is a controller of this box). Only then does it
    /// relay OSC to this box, and only then does the document carry OSC prefixes.
    #[serde(default)]
    pub you_control: bool,
    /// OSC messages per second the receiving box may relay here, and the burst above it
    /// (controllers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub osc_rate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub osc_burst: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisualizationState {
    pub name: String,
    pub state: String,
    /// The external OSC prefix while the visualization takes OSC (running); controllers only.
    #[serde(default)]
    pub osc_prefix: Option<String>,
}

/// Where this box may relay to one peer, as checked from its last status.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Remote {
    pub prefixes: Vec<String>,
    /// Why announced prefixes were not taken, one line each.
    pub refused: Vec<String>,
    /// The OSC rate and burst the peer allows this box.
    pub limit: Option<(u32, u32)>,
}

/// When refusals of one peer were last reported, and how many changes were left out since.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reported {
    at: Instant,
    suppressed: u32,
}

/// What this box may still relay to one peer: a token bucket under the peer's announced rate.
#[derive(Debug)]
pub(super) struct Outbound {
    limit: (u32, u32),
    bucket: TokenBucket,
}

impl Outbound {
    /// A bucket a tenth below the peer's limit, so that jitter on the way never makes the
    /// peer count more than it allows.
    fn new((rate, burst): (u32, u32), now: Instant) -> Self {
        let under = |n: u32| (n - n / 10).max(1);
        Self {
            limit: (rate, burst),
            bucket: TokenBucket::with_burst(under(rate), under(burst), now),
        }
    }
}

impl Peering {
    /// Replaces the status this box sends its peers: what it runs, and for controllers the OSC
    /// prefixes of what runs. `local_prefixes` are the prefixes of every visualization on this
    /// box, running or not: no peer may claim them.
    pub fn set_status(&self, visualizations: Vec<VisualizationState>, local_prefixes: Vec<String>) {
        self.set_local_prefixes(local_prefixes);
        for (role, doc) in documents(self.svc.id(), visualizations, self.osc_limit) {
            self.svc.set_status(role, serde_json::to_vec(&doc).unwrap_or_default());
        }
    }

    /// Replaces the OSC prefixes of every visualization on this box; the daemon calls it on
    /// each reload, before any new visualization starts, so no peer is relayed a prefix that is
    /// now this box's own.
    pub fn set_local_prefixes(&self, local_prefixes: Vec<String>) {
        *self.local.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(local_prefixes);
    }

    /// Learns from a peer's status where this box may relay OSC to it. Returns a description
    /// of refused prefixes when they differ from the peer's previous status, at most once per
    /// [`REPORT_EVERY`].
    pub(super) fn learn(&self, peer: PeerId, payload: &[u8]) -> Option<String> {
        let doc = serde_json::from_slice::<StatusDoc>(payload).ok().filter(|doc| doc.you_control);
        let limit = doc.as_ref().and_then(|d| d.osc_rate.zip(d.osc_burst));
        let announced: Vec<String> = doc
            .map(|doc| {
                doc.visualizations
                    .into_iter()
                    .filter(|v| v.state == "running")
                    .filter_map(|v| v.osc_prefix)
                    .collect()
            })
            .unwrap_or_default();
        let local = self.local.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut remote = self.remote.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let others: Vec<String> = remote
            .iter()
            .filter(|(id, _)| **id != peer)
            .flat_map(|(_, r)| r.prefixes.iter().cloned())
            .collect();
        let mut checked = check_prefixes(&announced, local.as_deref().unwrap_or_default(), &others);
        checked.limit = limit;
        let before = remote.get(&peer).map(|r| r.refused.clone()).unwrap_or_default();
        let changed = checked.refused != before && !checked.refused.is_empty();
        let report = changed.then(|| describe_refusals(&checked.refused));
        if checked.prefixes.is_empty() && checked.refused.is_empty() {
            remote.remove(&peer);
        } else {
            remote.insert(peer, checked);
        }
        drop(remote);
        self.throttle(peer, report?, Instant::now())
    }

    /// Lets a refusal report of `peer` through at most once per [`REPORT_EVERY`]; the next one
    /// that goes through says how many were held back.
    pub(super) fn throttle(&self, peer: PeerId, report: String, now: Instant) -> Option<String> {
        let mut reports = self.reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match reports.get_mut(&peer) {
            Some(r) if now.duration_since(r.at) < REPORT_EVERY => {
                r.suppressed += 1;
                None
            }
            Some(r) => {
                let held = std::mem::replace(r, Reported { at: now, suppressed: 0 }).suppressed;
                Some(match held {
                    0 => report,
                    n => format!("{report} ({n} earlier change(s) not reported)"),
                })
            }
            None => {
                reports.insert(peer, Reported { at: now, suppressed: 0 });
                Some(report)
            }
        }
    }

    pub(super) fn unlearn(&self, peer: &PeerId) {
        self.remote.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(peer);
        self.outbound.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(peer);
    }

    /// The linked peer an OSC message to `address` is relayed to: the one that announced a
    /// prefix it lies under, unless a visualization on this box has since taken that prefix.
    /// Should two peers' prefixes ever both cover it, it goes to neither. Nothing is relayed
    /// before this box knows its own visualizations' prefixes.
    pub(super) fn relay_targets(&self, address: &str) -> Vec<PeerId> {
        if address.contains(['?', '*', '[', ']', '{', '}']) {
            return Vec::new();
        }
        let local = self.local.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(local) = local.as_ref() else { return Vec::new() };
        let remote = self.remote.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let under = |p: &String| {
            address.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with('/'))
                && !local.iter().any(|l| osc_prefixes_overlap(p, l))
        };
        let targets: Vec<PeerId> = remote
            .iter()
            .filter(|(_, r)| r.prefixes.iter().any(under))
            .map(|(id, _)| *id)
            .collect();
        if targets.len() > 1 { Vec::new() } else { targets }
    }

    /// Relays an OSC message that no visualization here takes to the linked peer that runs
    /// a visualization under its address and lets this box control it, within the rate that
    /// peer allows (the excess is dropped and counted). The peer validates it like local OSC.
    /// Bundles and address patterns are not relayed.
    pub fn relay(&self, packet: &[u8]) -> usize {
        let Some(address) = message_address(packet) else { return 0 };
        let mut sent = 0;
        for peer in self.relay_targets(address) {
            if !self.take_outbound(&peer) {
                self.relay_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match self.svc.send_osc(&peer, packet.to_vec()) {
                Ok(()) => sent += 1,
                Err(e) => tracing::debug!(%peer, error = %e, "OSC not relayed"),
            }
        }
        sent
    }

    /// Takes a token from the bucket for `peer`, sized by what the peer last announced (this
    /// box's own limits until it has).
    fn take_outbound(&self, peer: &PeerId) -> bool {
        let limit = self
            .remote
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(peer)
            .and_then(|r| r.limit)
            .unwrap_or(self.osc_limit);
        let now = Instant::now();
        let mut outbound = self.outbound.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let o = outbound.entry(*peer).or_insert_with(|| Outbound::new(limit, now));
        if o.limit != limit {
            *o = Outbound::new(limit, now);
        }
        o.bucket.try_take(now)
    }

    /// OSC messages not relayed because the target peer's rate would have been exceeded.
    pub fn relay_dropped(&self) -> u64 {
        self.relay_dropped.load(Ordering::Relaxed)
    }
}

/// This box's status in the version for each role: only controllers learn OSC prefixes, and
/// that they may send OSC here.
pub(super) fn documents(
    me: PeerId,
    visualizations: Vec<VisualizationState>,
    (rate, burst): (u32, u32),
) -> [(Role, StatusDoc); 2] {
    let doc = |visualizations, you_control| StatusDoc {
        id: me.to_string(),
        name: host_name(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        visualizations,
        you_control,
        osc_rate: you_control.then_some(rate),
        osc_burst: you_control.then_some(burst),
    };
    let plain = visualizations
        .iter()
        .map(|v| VisualizationState { osc_prefix: None, ..v.clone() })
        .collect();
    [(Role::Observer, doc(plain, false)), (Role::Controller, doc(visualizations, true))]
}

/// Takes the announced prefixes that may be relayed to; says why each other one is refused.
/// `others` are the prefixes other peers hold.
pub(super) fn check_prefixes(announced: &[String], local: &[String], others: &[String]) -> Remote {
    let mut out = Remote::default();
    for (i, p) in announced.iter().enumerate() {
        if i == MAX_REMOTE_PREFIXES {
            let more = announced.len() - i;
            out.refused.push(format!(
                "{more} more prefix(es) beyond the {MAX_REMOTE_PREFIXES} a peer may announce"
            ));
            break;
        }
        let overlap = |set: &[String]| set.iter().find(|o| osc_prefixes_overlap(p, o)).cloned();
        let why = if check_osc_prefix(p).is_err() {
            INVALID.to_owned()
        } else if let Some(l) = overlap(local) {
            format!("overlaps {l}, which a visualization on this box uses")
        } else if let Some(a) = overlap(&out.prefixes) {
            format!("overlaps {a}, announced by the same peer")
        } else if let Some(o) = overlap(others) {
            format!("overlaps {o}, which another peer announced first")
        } else {
            out.prefixes.push(p.clone());
            continue;
        };
        let shown: String = p.chars().take(64).flat_map(char::escape_debug).collect();
        out.refused.push(format!("\"{shown}\": {why}"));
    }
    out
}

/// One line naming the refusals, at most [`MAX_REFUSALS_SHOWN`] of them and [`MAX_REPORT`]
/// bytes in all.
pub(super) fn describe_refusals(refused: &[String]) -> String {
    let mut s = format!(
        "OSC prefixes refused: {}",
        refused.iter().take(MAX_REFUSALS_SHOWN).cloned().collect::<Vec<_>>().join("; ")
    );
    if refused.len() > MAX_REFUSALS_SHOWN {
        s.push_str(&format!("; and {} more", refused.len() - MAX_REFUSALS_SHOWN));
    }
    if s.len() > MAX_REPORT {
        let mut end = MAX_REPORT - 3;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

/// The address of a single OSC message (not a bundle).
pub(super) fn message_address(packet: &[u8]) -> Option<&str> {
    if packet.first() != Some(&b'/') {
        return None;
    }
    let end = packet.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&packet[..end]).ok()
}
