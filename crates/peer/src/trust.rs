//! The trust store, `state_dir/peers.toml`: which peers this box trusts, in which role, and
//! which it was told to forget.
//!
//! The file is meant to be read and edited by people: a `[[peer]]` table is a pin, a
//! `[[forgotten]]` table a standing refusal that discovery and the site key cannot undo (only a
//! new human pairing, or deleting the record by hand, can). Every write goes through a
//! temporary file and a rename, so the daemon never reads half a file.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::id::PeerId;
use crate::identity::{IdentityError, write_private};
pub use crate::state_file::fmt_time;
use crate::state_file::{load_state, parse_error, parse_id, parse_time};

/// What a trusted peer may do on this box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May send OSC to this box's visualizations and read status.
    Controller,
    /// May read status only; OSC from it is a violation.
    Observer,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Controller => "controller",
            Role::Observer => "observer",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "controller" => Ok(Role::Controller),
            "observer" => Ok(Role::Observer),
            _ => Err(format!("unknown role '{s}': use \"controller\" or \"observer\"")),
        }
    }
}

/// A pinned peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerEntry {
    pub id: PeerId,
    pub name: String,
    pub role: Role,
    pub added: SystemTime,
    /// Where to dial it (`host:port`); discovery may find it elsewhere.
    pub addresses: Vec<String>,
    /// Keys the peer rotated away from, still accepted until their grace period ends.
    pub previous: Vec<PreviousKey>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PreviousKey {
    pub id: PeerId,
    pub until: SystemTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Forgotten {
    pub id: PeerId,
    pub at: SystemTime,
}

/// The most keys an entry keeps from earlier rotations.
pub const MAX_PREVIOUS_KEYS: usize = 3;
/// The shortest time between two rotations of one entry.
pub const MIN_ROTATION_INTERVAL: Duration = Duration::from_secs(3600);

/// Why [`TrustStore::rotate`] did not move a pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RotateRefusal {
    #[error("rotation from a key that is not the current pin")]
    NotCurrent,
    #[error("rotation onto this box's own key")]
    OwnKey,
    #[error("rotation onto a key another trust entry holds (or held)")]
    Taken,
    #[error("rotation onto a forgotten key")]
    Forgotten,
    #[error("rotation less than an hour after the previous one")]
    TooSoon,
}

/// How the trust store sees a presented key.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing {
    /// The current pin of this entry.
    Pinned(PeerEntry),
    /// A key this entry rotated away from, inside its grace period.
    Previous(PeerEntry),
    Forgotten,
    Stranger,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{path}:{line}:{col}: error: {message}")]
    Parse { path: PathBuf, line: usize, col: usize, message: String },
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write the trust store")]
    Write(#[source] IdentityError),
}

/// The parsed `peers.toml`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrustStore {
    pub peers: Vec<PeerEntry>,
    pub forgotten: Vec<Forgotten>,
}

impl TrustStore {
    /// Reads the store; a missing file is an empty store, any other read error is an error.
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        load_state(path, Self::parse)
    }

    /// Parses the text of a store; errors name `path:line:col`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, TrustError> {
        let raw: RawStore = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            parse_error(path, text, at, e.message().to_owned())
        })?;
        let at_err = |at: usize, msg: String| parse_error(path, text, at, msg);
        let mut store = TrustStore::default();
        for p in raw.peer {
            let id = parse_id(&p.id).map_err(|m| at_err(p.id.span().start, m))?;
            let added = parse_time(&p.added).map_err(|m| at_err(p.added.span().start, m))?;
            let mut previous = Vec::new();
            for k in &p.previous {
                let pid = parse_id(&k.id).map_err(|m| at_err(k.id.span().start, m))?;
                let until = parse_time(&k.until).map_err(|m| at_err(k.until.span().start, m))?;
                previous.push(PreviousKey { id: pid, until });
            }
            // A key belongs to one entry only, as its current key or as a previous one: two
            // entries sharing a key would be one peer to bans, links and rate limits.
            if store.holds(&id) || previous.iter().any(|k| k.id == id) {
                return Err(at_err(p.id.span().start, format!("peer {id} is pinned twice")));
            }
            for (k, raw) in previous.iter().zip(&p.previous) {
                let again = previous.iter().filter(|o| o.id == k.id).count() > 1;
                if store.holds(&k.id) || again {
                    return Err(at_err(
                        raw.id.span().start,
                        format!("key {} belongs to more than one [[peer]] entry", k.id),
                    ));
                }
            }
            store.peers.push(PeerEntry {
                id,
                name: p.name,
                role: p.role,
                added,
                addresses: p.addresses,
                previous,
            });
        }
        for f in raw.forgotten {
            let id = parse_id(&f.id).map_err(|m| at_err(f.id.span().start, m))?;
            let at = parse_time(&f.at).map_err(|m| at_err(f.at.span().start, m))?;
            if store.peers.iter().any(|e| e.id == id) {
                return Err(at_err(
                    f.id.span().start,
                    format!(
                        "peer {id} is both pinned and forgotten; delete this [[forgotten]] entry to trust it again, or its [[peer]] entry to keep refusing it"
                    ),
                ));
            }
            store.forgotten.push(Forgotten { id, at });
        }
        Ok(store)
    }

    /// Writes the store atomically (temporary file + rename).
    pub fn save(&self, path: &Path) -> Result<(), TrustError> {
        write_private(path, self.to_toml().as_bytes()).map_err(TrustError::Write)
    }

    pub fn to_toml(&self) -> String {
        let raw = OutStore {
            peer: self.peers.iter().map(OutPeer::from).collect(),
            forgotten: self
                .forgotten
                .iter()
                .map(|f| OutForgotten { id: f.id.to_string(), at: fmt_time(f.at) })
                .collect(),
        };
        let body = toml::to_string(&raw).unwrap_or_default();
        format!("{HEADER}{body}")
    }

    /// How `id` stands at `now`.
    pub fn standing(&self, id: &PeerId, now: SystemTime) -> Standing {
        if let Some(e) = self.peers.iter().find(|e| e.id == *id) {
            return Standing::Pinned(e.clone());
        }
        // A forgotten record outranks a previous key still in its grace period.
        if self.forgotten.iter().any(|f| f.id == *id) {
            return Standing::Forgotten;
        }
        if let Some(e) =
            self.peers.iter().find(|e| e.previous.iter().any(|k| k.id == *id && k.until > now))
        {
            return Standing::Previous(e.clone());
        }
        Standing::Stranger
    }

    /// The entry `id` belongs to, as its current key or as any key it rotated away from (in
    /// its grace period or not: the entry is still the same peer).
    pub fn entry_of(&self, id: &PeerId) -> Option<&PeerEntry> {
        self.peers
            .iter()
            .find(|e| e.id == *id)
            .or_else(|| self.peers.iter().find(|e| e.previous.iter().any(|k| k.id == *id)))
    }

    /// Every key of the peer `id` belongs to, its current key first; just `id` for a key no
    /// entry holds. Bans, links and rate limits apply to all of them together.
    pub fn keys_of(&self, id: &PeerId) -> Vec<PeerId> {
        match self.entry_of(id) {
            Some(e) => std::iter::once(e.id).chain(e.previous.iter().map(|k| k.id)).collect(),
            None => vec![*id],
        }
    }

    /// Pins a peer. A human pairing clears a forgotten record; callers on the automatic
    /// (site key) path must check [`Standing::Forgotten`] first. A key another entry rotated
    /// away from (its grace period over) stops being that entry's: a key belongs to one entry.
    pub fn pin(&mut self, entry: PeerEntry) {
        self.forgotten.retain(|f| f.id != entry.id);
        self.peers.retain(|e| e.id != entry.id);
        for e in &mut self.peers {
            e.previous.retain(|k| k.id != entry.id);
        }
        self.peers.push(entry);
    }

    /// Whether `id` is the current or a previous key of any entry.
    pub fn holds(&self, id: &PeerId) -> bool {
        self.entry_of(id).is_some()
    }

    /// Removes the entry `id` belongs to (found by its current or any previous key) and records
    /// every key of it as forgotten; `id` itself is recorded even when no entry holds it.
    /// Returns whether an entry existed.
    pub fn forget(&mut self, id: &PeerId, now: SystemTime) -> bool {
        let keys = self.keys_of(id);
        let before = self.peers.len();
        self.peers.retain(|e| !keys.contains(&e.id));
        for k in keys {
            if !self.forgotten.iter().any(|f| f.id == k) {
                self.forgotten.push(Forgotten { id: k, at: now });
            }
        }
        self.peers.len() != before
    }

    /// Replaces `old` by `new` in its entry, keeping `old` acceptable for `grace`. `me` is
    /// this box's own key. Refused when `old` is not an entry's current key, when `new` is
    /// already known (this box's key, any entry's current or previous key, a forgotten key),
    /// and when the entry rotated less than [`MIN_ROTATION_INTERVAL`] ago. At most
    /// [`MAX_PREVIOUS_KEYS`] previous keys are kept, the oldest dropped first.
    pub fn rotate(
        &mut self,
        old: &PeerId,
        new: PeerId,
        me: &PeerId,
        now: SystemTime,
        grace: Duration,
    ) -> Result<(), RotateRefusal> {
        if new == *me {
            return Err(RotateRefusal::OwnKey);
        }
        if self.holds(&new) {
            return Err(RotateRefusal::Taken);
        }
        if self.forgotten.iter().any(|f| f.id == new) {
            return Err(RotateRefusal::Forgotten);
        }
        let Some(e) = self.peers.iter_mut().find(|e| e.id == *old) else {
            return Err(RotateRefusal::NotCurrent);
        };
        // The newest previous key's grace period began when the entry last rotated.
        let last = e.previous.iter().filter_map(|k| k.until.checked_sub(grace)).max();
        if last.is_some_and(|t| now < t + MIN_ROTATION_INTERVAL) {
            return Err(RotateRefusal::TooSoon);
        }
        e.previous.retain(|k| k.until > now);
        e.previous.push(PreviousKey { id: *old, until: now + grace });
        e.previous.sort_by_key(|k| std::cmp::Reverse(k.until));
        e.previous.truncate(MAX_PREVIOUS_KEYS);
        e.id = new;
        Ok(())
    }

    /// Records an address at which a pinned peer was reached, newest first, a few at most.
    pub fn note_address(&mut self, id: &PeerId, addr: &str) -> bool {
        let Some(e) = self.peers.iter_mut().find(|e| e.id == *id) else { return false };
        if e.addresses.first().is_some_and(|a| a == addr) {
            return false;
        }
        e.addresses.retain(|a| a != addr);
        e.addresses.insert(0, addr.to_owned());
        e.addresses.truncate(4);
        true
    }
}

const HEADER: &str = "\
# vitrine trust store: the peers this box trusts.
# [[peer]] pins a key (id = SHA-256 of its public key); role = \"controller\" may send OSC,
# \"observer\" may read status only. [[forgotten]] refuses a key until a new pairing.
# Edits take effect within seconds; live links of removed peers are closed.

";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default)]
    peer: Vec<RawPeer>,
    #[serde(default)]
    forgotten: Vec<RawForgotten>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    id: Spanned<String>,
    #[serde(default)]
    name: String,
    role: Role,
    added: Spanned<String>,
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    previous: Vec<RawPrevious>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrevious {
    id: Spanned<String>,
    until: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForgotten {
    id: Spanned<String>,
    at: Spanned<String>,
}

#[derive(Serialize)]
struct OutStore {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    peer: Vec<OutPeer>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    forgotten: Vec<OutForgotten>,
}

#[derive(Serialize)]
struct OutPeer {
    id: String,
    name: String,
    role: Role,
    added: String,
    addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    previous: Vec<OutPrevious>,
}

#[derive(Serialize)]
struct OutPrevious {
    id: String,
    until: String,
}

#[derive(Serialize)]
struct OutForgotten {
    id: String,
    at: String,
}

impl From<&PeerEntry> for OutPeer {
    fn from(e: &PeerEntry) -> Self {
        OutPeer {
            id: e.id.to_string(),
            name: e.name.clone(),
            role: e.role,
            added: fmt_time(e.added),
            addresses: e.addresses.clone(),
            previous: e
                .previous
                .iter()
                .map(|k| OutPrevious { id: k.id.to_string(), until: fmt_time(k.until) })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
