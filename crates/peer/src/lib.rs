//! Peering between vitrine boxes: identity, trust store, mutual TLS 1.3, pairing, frames and
//! mDNS discovery.
//!
//! Boxes trust each other explicitly. Each box has an Ed25519 identity ([`Identity`]); a peer
//! is known by the SHA-256 of its public key ([`PeerId`]) and trusted only when pinned in
//! `peers.toml` ([`TrustStore`]). A stranger becomes trusted only by proving the site key or by
//! a human pairing with a short code; discovery never grants trust. The supervisor runs a
//! [`PeerService`] and consumes its [`PeerChannels`]: events for audit and metrics, and OSC
//! from controller peers to validate like local OSC.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bans;
mod discovery;
mod error;
mod event;
pub mod frame;
mod handshake;
mod id;
pub mod identity;
mod link;
pub mod proof;
mod service;
mod shared;
mod state_file;
pub mod tls;
pub mod trust;

pub use bans::{Ban, BanList};
pub use discovery::SERVICE_TYPE;
pub use error::PeerError;
pub use event::{InboundOsc, PeerEvent, PeerStatus, PinVia};
pub use id::{ParseIdError, PeerId};
pub use identity::{Identity, IdentityError, IdentityOptions};
pub use proof::SiteKey;
pub use service::{PeerChannels, PeerInfo, PeerService, PendingPairing, RotationReport};
pub use shared::{IdentitySource, PeerConfig};
pub use trust::{
    MAX_PREVIOUS_KEYS, MIN_ROTATION_INTERVAL, PeerEntry, Role, RotateRefusal, Standing, TrustError,
    TrustStore,
};
