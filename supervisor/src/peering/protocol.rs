//! The peer control socket's protocol: one JSON request line in, one JSON answer line out
//! (see the module documentation of [`super`]), and the command line's side of it.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use vitrine_peer::trust::fmt_time;
use vitrine_peer::{PeerService, Role};

use super::status::StatusDoc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PeerRequest {
    // Unit-like requests are empty struct variants so that unknown keys are refused for them too.
    List {},
    Identity {},
    /// Opens the pairing window; with `addr`, also dials that box.
    Pair {
        #[serde(default)]
        addr: Option<String>,
    },
    Pending {},
    Accept {
        id: String,
        code: u32,
        role: Role,
    },
    Forget {
        id: String,
    },
    Rotate {},
}

impl PeerRequest {
    pub fn verb(&self) -> &'static str {
        match self {
            PeerRequest::List {} => "peers-list",
            PeerRequest::Identity {} => "identity-show",
            PeerRequest::Pair { .. } => "peers-pair",
            PeerRequest::Pending {} => "peers-pending",
            PeerRequest::Accept { .. } => "peers-accept",
            PeerRequest::Forget { .. } => "peers-forget",
            PeerRequest::Rotate {} => "identity-rotate",
        }
    }

    pub(super) fn mutates(&self) -> bool {
        !matches!(self, PeerRequest::List {} | PeerRequest::Identity {} | PeerRequest::Pending {})
    }

    pub(super) fn target(&self) -> Option<String> {
        match self {
            PeerRequest::Accept { id, .. } | PeerRequest::Forget { id } => Some(id.clone()),
            PeerRequest::Pair { addr } => addr.clone(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerRow {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub addresses: Vec<String>,
    /// The address of the live link, if any.
    pub connected: Option<String>,
    /// When the last frame came from this peer (RFC 3339), since the daemon started.
    #[serde(default)]
    pub last_seen: Option<String>,
    /// Why the last link ended, while the peer is down.
    #[serde(default)]
    pub down: Option<String>,
    #[serde(default)]
    pub banned: Option<BanRow>,
    /// What the peer last said it runs.
    #[serde(default)]
    pub status: Option<PeerStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BanRow {
    pub id: String,
    pub until: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgottenRow {
    pub id: String,
    pub at: String,
}

/// A peer's last status as `vitrine peers list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// When it arrived (RFC 3339).
    pub received: String,
    /// The document, or `None` when it was not a valid one.
    pub doc: Option<StatusDoc>,
}

/// Counts of what peering dropped rather than queue without bound or get this box banned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// OSC not relayed: the target peer's announced rate would have been exceeded.
    pub relay: u64,
    /// Status documents from peers that the supervisor did not take in time.
    pub status: u64,
    /// OSC from controller peers that the supervisor did not take in time, or that came from a
    /// peer demoted moments before (it could not know yet).
    pub osc: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingRow {
    pub id: String,
    pub name: String,
    pub addr: String,
    pub code: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum PeerResponse {
    Peers {
        peers: Vec<PeerRow>,
        #[serde(default)]
        banned: Vec<BanRow>,
        #[serde(default)]
        forgotten: Vec<ForgottenRow>,
        /// What peering dropped since the daemon started.
        #[serde(default)]
        dropped: Dropped,
    },
    Identity {
        id: String,
        listen: String,
    },
    Pairing {
        window_secs: u64,
    },
    Pending {
        pairings: Vec<PendingRow>,
    },
    Done {
        message: String,
    },
    Rotated {
        old: String,
        new: String,
        vouched: Vec<String>,
        missed: Vec<String>,
    },
    Error {
        message: String,
    },
}

pub(super) fn rows(svc: &PeerService) -> Vec<PeerRow> {
    svc.peers()
        .into_iter()
        .map(|p| PeerRow {
            id: p.id.to_string(),
            name: p.name,
            role: p.role,
            addresses: p.addresses,
            connected: p.connected.map(|(a, _)| a.to_string()),
            last_seen: p.last_seen.map(fmt_time),
            down: p.down.map(|(at, why)| format!("{why} (since {})", fmt_time(at))),
            banned: p.banned.as_ref().map(ban_row),
            status: p.status.map(|(at, doc)| PeerStatus {
                received: fmt_time(at),
                doc: serde_json::from_slice(&doc).ok(),
            }),
        })
        .collect()
}

pub fn ban_row(b: &vitrine_peer::Ban) -> BanRow {
    BanRow { id: b.id.to_string(), until: fmt_time(b.until), reason: b.reason.clone() }
}

pub fn forgotten_row(f: &vitrine_peer::trust::Forgotten) -> ForgottenRow {
    ForgottenRow { id: f.id.to_string(), at: fmt_time(f.at) }
}

/// The CLI side: one request, one answer.
pub fn request(path: &std::path::Path, request: &PeerRequest) -> anyhow::Result<PeerResponse> {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path).with_context(|| {
        format!(
            "cannot connect to {} (is `vitrine serve` running with [peering] enabled?)",
            path.display()
        )
    })?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut answer = String::new();
    std::io::BufReader::new(stream).read_line(&mut answer)?;
    match serde_json::from_str(&answer).with_context(|| format!("unexpected answer: {answer}"))? {
        PeerResponse::Error { message } => anyhow::bail!("{message}"),
        r => Ok(r),
    }
}
