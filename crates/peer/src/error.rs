//! Errors of the peer service.

use std::net::SocketAddr;

use crate::frame::FrameError;
use crate::id::PeerId;
use crate::identity::IdentityError;
use crate::trust::TrustError;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot listen on {addr}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot connect to {addr}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("TLS handshake with {addr} failed")]
    Tls { addr: SocketAddr, source: std::io::Error },
    #[error("{addr} did not finish the {stage} in time")]
    Timeout { addr: SocketAddr, stage: &'static str },
    #[error("{addr} refused the link: {reason}")]
    RefusedByPeer { addr: SocketAddr, reason: String },
    #[error("link with {addr} refused here: {reason}")]
    Refused { addr: SocketAddr, reason: String },
    #[error("protocol error with {addr}: {reason}")]
    Protocol { addr: SocketAddr, reason: String },
    #[error("invalid frame from {addr}")]
    Frame { addr: SocketAddr, source: FrameError },
    #[error("the connection to {addr} broke")]
    Io { addr: SocketAddr, source: std::io::Error },
    #[error("invalid TLS setup")]
    TlsConfig(#[source] rustls::Error),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("no live link with peer {0}")]
    NotConnected(PeerId),
    #[error("no pairing with {0} is waiting; run `vitrine peers pair` on both boxes first")]
    NoPairing(PeerId),
    #[error(
        "the code does not match the one shown for {0}; the pairing was cancelled, start again with `vitrine peers pair`"
    )]
    WrongCode(PeerId),
    #[error("{0} is not a trusted peer")]
    Unknown(PeerId),
    #[error(
        "this box's identity comes from the systemd credential {0}; rotate it by provisioning a new credential"
    )]
    CredentialIdentity(&'static str),
    #[error(
        "peers.toml on disk cannot be read or is invalid ({0}); fix it first: the trust store in force is not written over it"
    )]
    TrustFilePending(String),
    #[error("mDNS discovery failed")]
    Mdns(#[source] mdns_sd::Error),
    #[error("the peer service has stopped")]
    Stopped,
}
