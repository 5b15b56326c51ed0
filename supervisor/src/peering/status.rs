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
//! none overlapping the prefix of a visualization on this box (running or not). Refusals are
//! published as `peer_prefix_refused` events (audited, and counted by
//! `vitrine_audit_events_total{kind="peer-prefix-refused"}`) when what a peer announces changes.

use serde::{Deserialize, Serialize};
use vitrine_peer::{PeerId, Role};
use vitrine_policy::{check_osc_prefix, osc_prefixes_overlap};

use super::{Peering, host_name};

/// The most OSC prefixes taken from one peer's status.
pub const MAX_REMOTE_PREFIXES: usize = 64;
/// The most refusals named in one event; the rest are counted.
const MAX_REFUSALS_SHOWN: usize = 8;

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
}

impl Peering {
    /// Replaces the status this box sends its peers: what it runs, and for controllers the OSC
    /// prefixes of what runs. `local_prefixes` are the prefixes of every visualization on this
    /// box, running or not: no peer may claim them.
    pub fn set_status(&self, visualizations: Vec<VisualizationState>, local_prefixes: Vec<String>) {
        *self.local.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(local_prefixes);
        for (role, doc) in documents(self.svc.id(), visualizations) {
            self.svc.set_status(role, serde_json::to_vec(&doc).unwrap_or_default());
        }
    }

    /// Learns from a peer's status where this box may relay OSC to it. Returns a description
    /// of refused prefixes when they differ from the peer's previous status.
    pub(super) fn learn(&self, peer: PeerId, payload: &[u8]) -> Option<String> {
        let announced: Vec<String> = serde_json::from_slice::<StatusDoc>(payload)
            .ok()
            .filter(|doc| doc.you_control)
            .map(|doc| {
                doc.visualizations
                    .into_iter()
                    .filter(|v| v.state == "running")
                    .filter_map(|v| v.osc_prefix)
                    .collect()
            })
            .unwrap_or_default();
        let local = self.local.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let checked = check_prefixes(&announced, local.as_deref().unwrap_or_default());
        let mut remote = self.remote.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = remote.get(&peer).map(|r| r.refused.clone()).unwrap_or_default();
        let report = (checked.refused != before && !checked.refused.is_empty())
            .then(|| describe_refusals(&checked.refused));
        if checked == Remote::default() {
            remote.remove(&peer);
        } else {
            remote.insert(peer, checked);
        }
        report
    }

    pub(super) fn unlearn(&self, peer: &PeerId) {
        self.remote.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(peer);
    }

    /// The linked peers an OSC message to `address` is relayed to: those that announced a
    /// prefix it lies under, unless a visualization on this box has since taken that prefix.
    /// Nothing is relayed before this box knows its own visualizations' prefixes.
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
        remote.iter().filter(|(_, r)| r.prefixes.iter().any(under)).map(|(id, _)| *id).collect()
    }

    /// Relays an OSC message that no visualization here takes to every linked peer that runs
    /// a visualization under its address and lets this box control it. The peer validates it
    /// like local OSC. Bundles and address patterns are not relayed.
    pub fn relay(&self, packet: &[u8]) -> usize {
        let Some(address) = message_address(packet) else { return 0 };
        let mut sent = 0;
        for peer in self.relay_targets(address) {
            match self.svc.send_osc(&peer, packet.to_vec()) {
                Ok(()) => sent += 1,
                Err(e) => tracing::debug!(%peer, error = %e, "OSC not relayed"),
            }
        }
        sent
    }
}

/// This box's status in the version for each role: only controllers learn OSC prefixes, and
/// that they may send OSC here.
pub(super) fn documents(
    me: PeerId,
    visualizations: Vec<VisualizationState>,
) -> [(Role, StatusDoc); 2] {
    let doc = |visualizations, you_control| StatusDoc {
        id: me.to_string(),
        name: host_name(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        visualizations,
        you_control,
    };
    let plain = visualizations
        .iter()
        .map(|v| VisualizationState { osc_prefix: None, ..v.clone() })
        .collect();
    [(Role::Observer, doc(plain, false)), (Role::Controller, doc(visualizations, true))]
}

/// Takes the announced prefixes that may be relayed to; says why each other one is refused.
pub(super) fn check_prefixes(announced: &[String], local: &[String]) -> Remote {
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
        let why = if let Err(e) = check_osc_prefix(p) {
            e
        } else if let Some(l) = overlap(local) {
            format!("overlaps {l}, which a visualization on this box uses")
        } else if let Some(a) = overlap(&out.prefixes) {
            format!("overlaps {a}, announced by the same peer")
        } else {
            out.prefixes.push(p.clone());
            continue;
        };
        let shown: String = p.chars().take(64).flat_map(char::escape_debug).collect();
        out.refused.push(format!("\"{shown}\": {why}"));
    }
    out
}

fn describe_refusals(refused: &[String]) -> String {
    let mut s = format!(
        "OSC prefixes refused: {}",
        refused.iter().take(MAX_REFUSALS_SHOWN).cloned().collect::<Vec<_>>().join("; ")
    );
    if refused.len() > MAX_REFUSALS_SHOWN {
        s.push_str(&format!("; and {} more", refused.len() - MAX_REFUSALS_SHOWN));
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
