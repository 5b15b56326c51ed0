//! Bans, `state_dir/peer-bans.toml`: peers refused after a violation until a time, kept across
//! restarts of the daemon so a misbehaving peer cannot clear its ban by waiting for one.
//!
//! The file is written by the service and may be edited by hand: deleting an entry lifts the
//! ban (the service re-reads the file when it changes). Expired entries are dropped at the next
//! write.

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::id::PeerId;
use crate::identity::write_private;
use crate::trust::{TrustError, fmt_time, parse_error, parse_id, parse_time};

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub id: PeerId,
    pub until: SystemTime,
    /// The violation that caused it.
    pub reason: String,
}

/// The parsed ban file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BanList {
    pub bans: Vec<Ban>,
}

impl BanList {
    /// Reads the list; a missing file is an empty list.
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(TrustError::Read { path: path.to_owned(), source }),
        }
    }

    /// Parses the text of a ban file; errors name `path:line:col`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, TrustError> {
        let raw: RawBans = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            parse_error(path, text, at, e.message().to_owned())
        })?;
        let mut list = BanList::default();
        for b in raw.ban {
            let id = parse_id(&b.id).map_err(|m| parse_error(path, text, b.id.span().start, m))?;
            let until = parse_time(&b.until)
                .map_err(|m| parse_error(path, text, b.until.span().start, m))?;
            list.bans.push(Ban { id, until, reason: b.reason });
        }
        Ok(list)
    }

    pub fn save(&self, path: &Path) -> Result<(), TrustError> {
        write_private(path, self.to_toml().as_bytes()).map_err(TrustError::Write)
    }

    pub fn to_toml(&self) -> String {
        let raw = OutBans {
            ban: self
                .bans
                .iter()
                .map(|b| OutBan {
                    id: b.id.to_string(),
                    until: fmt_time(b.until),
                    reason: &b.reason,
                })
                .collect(),
        };
        format!("{HEADER}{}", toml::to_string(&raw).unwrap_or_default())
    }

    /// The ban on `id` in force at `now`, if any.
    pub fn active(&self, id: &PeerId, now: SystemTime) -> Option<&Ban> {
        self.bans.iter().filter(|b| b.id == *id && b.until > now).max_by_key(|b| b.until)
    }

    /// Records a ban (replacing an earlier one on the same key) and drops expired ones.
    pub fn ban(&mut self, ban: Ban, now: SystemTime) {
        self.bans.retain(|b| b.id != ban.id && b.until > now);
        self.bans.push(ban);
    }

    /// Drops expired bans; returns whether any was dropped.
    pub fn prune(&mut self, now: SystemTime) -> bool {
        let before = self.bans.len();
        self.bans.retain(|b| b.until > now);
        self.bans.len() != before
    }
}

const HEADER: &str = "\
# vitrine peer bans: peers refused after a violation, until the given time.
# Written by the daemon; delete an entry to lift a ban (applied within seconds).

";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBans {
    #[serde(default)]
    ban: Vec<RawBan>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBan {
    id: Spanned<String>,
    until: Spanned<String>,
    #[serde(default)]
    reason: String,
}

#[derive(Serialize)]
struct OutBans<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ban: Vec<OutBan<'a>>,
}

#[derive(Serialize)]
struct OutBan<'a> {
    id: String,
    until: String,
    reason: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bans_round_trip_expire_and_name_errors() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (a, b) = (PeerId::from_bytes([1; 32]), PeerId::from_bytes([2; 32]));
        let mut list = BanList::default();
        list.ban(Ban { id: a, until: now + Duration::from_secs(300), reason: "rate".into() }, now);
        list.ban(
            Ban { id: b, until: now + Duration::from_secs(10), reason: "observer".into() },
            now,
        );
        let back = BanList::parse(Path::new("bans.toml"), &list.to_toml()).unwrap();
        assert_eq!(back, list);
        assert_eq!(back.active(&a, now).map(|b| b.reason.as_str()), Some("rate"));
        let later = now + Duration::from_secs(60);
        assert!(back.active(&b, later).is_none());
        let mut pruned = back.clone();
        assert!(pruned.prune(later));
        assert_eq!(pruned.bans.len(), 1);
        let err = BanList::parse(
            Path::new("p"),
            "[[ban]]\nid = \"x\"\nuntil = \"2026-01-01T00:00:00Z\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("p:2:6: error: invalid peer id"), "{err}");
    }
}
