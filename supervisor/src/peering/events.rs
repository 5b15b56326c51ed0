//! Peer events onto the bus (and so into the audit log, where `vitrine_audit_events_total{kind}`
//! counts them) and into the peer metrics.

use std::sync::Arc;

use tokio::sync::mpsc;
use vitrine_peer::{PeerEvent, PeerStatus};

use super::Peering;
use crate::events::{Event, EventBus};
use crate::metrics::Metrics;

/// The action of the event that reports OSC prefixes a peer announced and this box refused.
pub const PREFIX_REFUSED: &str = "peer_prefix_refused";

/// Publishes every peer event on the bus and keeps the peer metrics current.
pub(super) async fn pump_events(
    mut rx: mpsc::UnboundedReceiver<PeerEvent>,
    bus: EventBus,
    metrics: Option<Metrics>,
    peering: Arc<Peering>,
) {
    while let Some(event) = rx.recv().await {
        match &event {
            PeerEvent::Disconnected { peer, .. } | PeerEvent::Forgotten { peer } => {
                peering.unlearn(peer)
            }
            PeerEvent::PeerRotated { old, .. } => peering.unlearn(old),
            _ => {}
        }
        if let Some(m) = &metrics {
            if let Some(result) = event.handshake_result() {
                m.peer_handshake(result);
            }
            match &event {
                PeerEvent::Connected { peer, .. } => m.set_peer_connected(&peer.to_string(), true),
                PeerEvent::Disconnected { peer, .. } => {
                    m.set_peer_connected(&peer.to_string(), false)
                }
                // The old key's link is gone for good: its series goes too.
                PeerEvent::PeerRotated { old, .. } => m.remove_peer(&old.to_string()),
                _ => {}
            }
        }
        let (peer, detail) = describe(&event);
        bus.publish(Event::Peer { peer, action: event.kind().to_owned(), detail });
    }
}

/// Learns from each peer's status where this box may relay, and publishes refused prefixes.
pub(super) async fn pump_status(
    mut rx: mpsc::Receiver<PeerStatus>,
    bus: EventBus,
    peering: Arc<Peering>,
) {
    while let Some(PeerStatus { peer, payload }) = rx.recv().await {
        if let Some(detail) = peering.learn(peer, &payload) {
            tracing::warn!(%peer, "{detail}");
            let action = PREFIX_REFUSED.to_owned();
            bus.publish(Event::Peer { peer: peer.to_string(), action, detail });
        }
    }
}

/// The subject and a one-line description of a peer event.
pub fn describe(event: &PeerEvent) -> (String, String) {
    use PeerEvent::*;
    match event {
        Connected { peer, name, role, addr, dialed } => {
            let how = if *dialed { "dialed" } else { "accepted" };
            (peer.to_string(), format!("{name} ({role}) at {addr}, {how}"))
        }
        HandshakeFailed { peer, addr, reason } => {
            (peer.map(|p| p.to_string()).unwrap_or_default(), format!("{addr}: {reason}"))
        }
        PairingCode { peer, name, addr, code } => (
            peer.to_string(),
            format!(
                "{name} at {addr} shows code {code:06}; confirm with `vitrine peers accept {peer} --code {code:06}`"
            ),
        ),
        Pinned { peer, name, role, via } => {
            (peer.to_string(), format!("{name} pinned as {role} by {via:?}"))
        }
        Disconnected { peer, reason } => (peer.to_string(), reason.clone()),
        Forgotten { peer } => (peer.to_string(), "pin removed, reconnects refused".into()),
        PeerRotated { old, new } => {
            (old.to_string(), format!("rotated to {new} (old key kept for the grace period)"))
        }
        IdentityRotated { old, new, vouched } => (
            new.to_string(),
            format!("this box rotated from {old}; {} peer(s) vouched", vouched.len()),
        ),
        Violation { peer, what, banned_for } => (
            peer.to_string(),
            format!("{what}; disconnected and refused for {}s", banned_for.as_secs()),
        ),
        RotationRefused { peer, new, reason } => {
            (peer.to_string(), format!("rotation to {new} refused: {reason}"))
        }
        TrustReloaded { peers } => (String::new(), format!("peers.toml reloaded: {peers} peer(s)")),
        TrustReloadFailed { error } => (String::new(), error.clone()),
        BansKept { error } => (String::new(), format!("{error}; the bans in memory stay in force")),
    }
}
