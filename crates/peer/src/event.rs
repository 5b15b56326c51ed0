//! What the peer service reports to the supervisor: every trust decision, link change and
//! violation as a [`PeerEvent`], status documents as [`PeerStatus`], and OSC from controllers
//! as [`InboundOsc`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::id::PeerId;
use crate::trust::Role;

/// How a stranger became trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinVia {
    /// Both sides proved knowledge of the site key.
    SiteKey,
    /// Humans compared and confirmed the short code on both boxes.
    Pairing,
}

/// One event for the audit log, metrics and `vitrine events`.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// A link is up (the handshake succeeded and the peer was welcomed).
    Connected {
        peer: PeerId,
        name: String,
        role: Role,
        addr: SocketAddr,
        dialed: bool,
    },
    /// A connection did not become a link.
    HandshakeFailed {
        peer: Option<PeerId>,
        addr: SocketAddr,
        reason: String,
    },
    /// A pairing is waiting for a human: show this code and run `vitrine peers accept`.
    PairingCode {
        peer: PeerId,
        name: String,
        addr: SocketAddr,
        code: u32,
    },
    /// A new pin was written to the trust store.
    Pinned {
        peer: PeerId,
        name: String,
        role: Role,
        via: PinVia,
    },
    Disconnected {
        peer: PeerId,
        reason: String,
    },
    Forgotten {
        peer: PeerId,
    },
    /// A peer vouched for its new key with its old one; the pin moved.
    PeerRotated {
        old: PeerId,
        new: PeerId,
    },
    /// A peer's vouched rotation was refused without a ban (it came too soon after the last).
    RotationRefused {
        peer: PeerId,
        new: PeerId,
        reason: String,
    },
    /// This box rotated its own key; `vouched` peers confirmed the new pin.
    IdentityRotated {
        old: PeerId,
        new: PeerId,
        vouched: Vec<PeerId>,
    },
    /// A peer broke a rule; it was disconnected and is refused for `banned_for`.
    Violation {
        peer: PeerId,
        what: String,
        banned_for: Duration,
    },
    /// `peers.toml` changed on disk and was applied.
    TrustReloaded {
        peers: usize,
    },
    /// `peers.toml` changed on disk but is invalid or unreadable; the previous contents stay
    /// in force.
    TrustReloadFailed {
        error: String,
    },
    /// `peer-bans.toml` cannot be read, parsed or written; the bans in memory stay in force
    /// (and a ban not yet written is written as soon as possible).
    BansKept {
        error: String,
    },
}

impl PeerEvent {
    /// The `result` label of `vitrine_peer_handshakes_total`, for events that end a handshake.
    pub fn handshake_result(&self) -> Option<&'static str> {
        match self {
            PeerEvent::Connected { .. } => Some("ok"),
            PeerEvent::PairingCode { .. } => Some("pending"),
            PeerEvent::HandshakeFailed { .. } => Some("refused"),
            _ => None,
        }
    }

    /// A stable kind name for audit lines.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerEvent::Connected { .. } => "peer_auth_ok",
            PeerEvent::HandshakeFailed { .. } => "peer_auth_failed",
            PeerEvent::PairingCode { .. } => "peer_pairing",
            PeerEvent::Pinned { .. } => "peer_pinned",
            PeerEvent::Disconnected { .. } => "peer_disconnected",
            PeerEvent::Forgotten { .. } => "peer_forget",
            PeerEvent::PeerRotated { .. } => "peer_rotation",
            PeerEvent::RotationRefused { .. } => "peer_rotation_refused",
            PeerEvent::IdentityRotated { .. } => "identity_rotation",
            PeerEvent::Violation { .. } => "peer_violation",
            PeerEvent::TrustReloaded { .. } => "peer_trust_reloaded",
            PeerEvent::TrustReloadFailed { .. } => "peer_trust_rejected",
            PeerEvent::BansKept { .. } => "peer_bans_kept",
        }
    }
}

/// A status document from a peer (delivered on its own bounded channel: a peer's status is
/// not a security event, and one that floods is dropped rather than queued).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    pub peer: PeerId,
    pub payload: Vec<u8>,
}

/// An OSC packet relayed by a controller peer, still unvalidated: the supervisor runs it
/// through the same validation as local OSC.
#[derive(Debug, Clone)]
pub struct InboundOsc {
    pub peer: PeerId,
    pub name: String,
    /// The peer's address on this link (the source the OSC router rate-limits by).
    pub addr: SocketAddr,
    pub packet: Vec<u8>,
    pub received: Instant,
}
