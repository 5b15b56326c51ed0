//! Bans, `state_dir/peer-bans.toml`: peers refused after a violation, kept across restarts of
//! the daemon so a misbehaving peer cannot clear its ban by waiting for one.
//!
//! The file is written by the service and may be edited by hand: deleting an entry (or the
//! file) lifts the ban; the service re-reads the file when it changes.
//!
//! Two clocks are involved on purpose. While the daemon runs, a ban ends at a deadline on the
//! monotonic clock, so setting the wall clock neither lifts nor prolongs it. The file holds wall
//! times (`since`, `until`) for the next start only; a start whose wall clock lies before a
//! ban's `since` (the clock went backwards) serves the ban's whole length again, never more and
//! never nothing.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::id::PeerId;
use crate::identity::write_private;
use crate::shared::lock;
use crate::state_file::{fmt_time, load_state, parse_error, parse_id, parse_time, read_state};
use crate::trust::TrustError;

/// One ban as the file holds it and the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The banned key; a violation bans every key of the peer's trust entry, one record each.
    pub id: PeerId,
    /// When the ban began; absent in files written by hand.
    pub since: Option<SystemTime>,
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
    /// Reads the list; a missing file is an empty list, any other read error is an error.
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        load_state(path, Self::parse)
    }

    /// Parses the text of a ban file; errors name `path:line:col`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, TrustError> {
        let raw: RawBans = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            parse_error(path, text, at, e.message().to_owned())
        })?;
        let at_err = |at: usize, msg: String| parse_error(path, text, at, msg);
        let mut list = BanList::default();
        for b in raw.ban {
            let id = parse_id(&b.id).map_err(|m| at_err(b.id.span().start, m))?;
            let until = parse_time(&b.until).map_err(|m| at_err(b.until.span().start, m))?;
            let since = match &b.since {
                Some(s) => Some(parse_time(s).map_err(|m| at_err(s.span().start, m))?),
                None => None,
            };
            if let (Some(since), Some(raw)) = (since, &b.since)
                && since > until
            {
                return Err(at_err(raw.span().start, "`since` is later than `until`".into()));
            }
            list.bans.push(Ban { id, since, until, reason: b.reason });
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
                    since: b.since.map(fmt_time),
                    until: fmt_time(b.until),
                    reason: &b.reason,
                })
                .collect(),
        };
        format!("{HEADER}{}", toml::to_string(&raw).unwrap_or_default())
    }

    /// The ban in force at `now` on any of `keys` (all keys of one peer), by the wall clock:
    /// for showing the file while no daemon runs.
    pub fn active(&self, keys: &[PeerId], now: SystemTime) -> Option<&Ban> {
        self.bans.iter().filter(|b| keys.contains(&b.id) && b.until > now).max_by_key(|b| b.until)
    }

    /// Drops expired bans; returns whether any was dropped.
    pub fn prune(&mut self, now: SystemTime) -> bool {
        let before = self.bans.len();
        self.bans.retain(|b| b.until > now);
        self.bans.len() != before
    }
}

/// A reading of both clocks at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub wall: SystemTime,
    pub mono: Instant,
}

impl Clock {
    pub fn now() -> Self {
        Self { wall: SystemTime::now(), mono: Instant::now() }
    }
}

/// A ban in force in this process.
#[derive(Debug, Clone)]
struct Held {
    /// The ban as last read from or written to the file.
    filed: Ban,
    length: Duration,
    deadline: Instant,
}

impl Held {
    /// The ban read from the file, with a monotonic deadline, or `None` when it is over.
    /// `cap` bounds bans without a `since` (written by hand).
    fn from_file(ban: Ban, cap: Duration, now: Clock) -> Option<Self> {
        let length = match ban.since {
            Some(since) => ban.until.duration_since(since).unwrap_or_default(),
            None => cap,
        };
        let remaining = match ban.since {
            // The wall clock went backwards since the ban began: serve it whole again.
            Some(since) if now.wall < since => length,
            _ => ban.until.duration_since(now.wall).unwrap_or_default().min(length),
        };
        (!remaining.is_zero()).then(|| Held { filed: ban, length, deadline: now.mono + remaining })
    }

    /// The ban with wall times re-based on the monotonic deadline.
    fn current(&self, now: Clock) -> Ban {
        let until = now.wall + self.deadline.saturating_duration_since(now.mono);
        let since = until.checked_sub(self.length);
        Ban { id: self.filed.id, since, until, reason: self.filed.reason.clone() }
    }
}

/// What a reload of the ban file found.
#[derive(Debug)]
pub(crate) enum Reload {
    Unchanged,
    /// The file changed and now rules (or the bans in memory were written to it).
    Applied,
    /// The bans in memory stay in force; report this (once per distinct error).
    Kept(String),
}

/// The bans in force in this process, shared by the service's tasks and the TLS verifiers.
/// File I/O happens outside the lock on the bans (serialized by a lock of its own), so a
/// handshake never waits for a disk.
#[derive(Debug)]
pub(crate) struct Bans {
    book: Mutex<BanBook>,
    io: Mutex<()>,
    path: PathBuf,
}

impl Bans {
    /// Loads the file. Any read error other than a missing file is an error: starting without
    /// the bans would lift them all.
    pub fn load(path: &Path, cap: Duration, now: Clock) -> Result<Self, TrustError> {
        let book = BanBook::load(path, cap, now)?;
        Ok(Self { book: Mutex::new(book), io: Mutex::default(), path: path.to_owned() })
    }

    /// The ban in force on any of `keys` (all keys of one peer).
    pub fn active(&self, keys: &[PeerId], now: Clock) -> Option<Ban> {
        lock(&self.book).active(keys, now)
    }

    /// Every ban in force.
    pub fn all(&self, now: Clock) -> Vec<Ban> {
        lock(&self.book).all(now)
    }

    /// Records a ban on each of `keys` for `length` (replacing earlier ones on the same keys)
    /// and writes the file, keeping edits made by hand since the last read. The ban is in
    /// force when this returns, whatever the disk does; on a failed write it holds in memory,
    /// the next reloads retry the write, and the problem to report is returned.
    pub fn ban(
        &self,
        keys: &[PeerId],
        reason: &str,
        length: Duration,
        now: Clock,
    ) -> Option<String> {
        match self.sync(now, |book| book.add(keys, reason, length, now)) {
            Reload::Kept(problem) => Some(problem),
            _ => None,
        }
    }

    /// Picks up edits of the file (an entry deleted by hand lifts its ban) and retries a write
    /// that failed. A file that cannot be read or parsed leaves the bans in memory in force.
    pub fn reload(&self, now: Clock) -> Reload {
        self.sync(now, |_| {})
    }

    /// Reads the file, applies it and `change` to the bans, and writes them back when they are
    /// not on disk yet; the disk is touched only outside the lock on the bans.
    fn sync(&self, now: Clock, change: impl FnOnce(&mut BanBook)) -> Reload {
        let _io = lock(&self.io);
        let read = read_state(&self.path);
        let mut book = lock(&self.book);
        let read_outcome = book.absorb(&self.path, read, now);
        change(&mut book);
        let Some(list) = book.pending_write(now) else { return read_outcome };
        drop(book);
        let text = list.to_toml();
        let written = list.save(&self.path).and_then(|()| {
            // What the file now says, to the second: a later reload recognizes these bans as
            // unchanged and keeps their monotonic deadlines.
            BanList::parse(&self.path, &text)
        });
        let write_outcome = lock(&self.book).wrote(text, written);
        match (read_outcome, write_outcome) {
            (Reload::Kept(e), _) | (_, Reload::Kept(e)) => Reload::Kept(e),
            (Reload::Applied, _) | (_, Reload::Applied) => Reload::Applied,
            _ => Reload::Unchanged,
        }
    }
}

/// The bans in force, and what is known about the file; no I/O (see [`Bans`]).
#[derive(Debug)]
struct BanBook {
    held: Vec<Held>,
    /// The file contents last read or written (`""` for no file), to notice edits by hand.
    seen: Option<String>,
    /// A ban is not on disk yet: memory rules, and every reload retries the write.
    unsaved: bool,
    /// The last error reported, so that a lasting problem is reported once.
    reported: Option<String>,
    /// The length given to bans that name no `since`.
    cap: Duration,
}

impl BanBook {
    fn load(path: &Path, cap: Duration, now: Clock) -> Result<Self, TrustError> {
        let text = read_state(path)?.unwrap_or_default();
        let list = BanList::parse(path, &text)?;
        let held = list.bans.into_iter().filter_map(|b| Held::from_file(b, cap, now)).collect();
        Ok(BanBook { held, seen: Some(text), unsaved: false, reported: None, cap })
    }

    /// The ban in force on any of `keys` that lasts longest; of bans that end together (one
    /// violation bans every key), the one on the earliest of `keys`.
    fn active(&self, keys: &[PeerId], now: Clock) -> Option<Ban> {
        let mut best: Option<&Held> = None;
        for key in keys {
            for h in self.held.iter().filter(|h| h.filed.id == *key && h.deadline > now.mono) {
                if best.is_none_or(|b| h.deadline > b.deadline) {
                    best = Some(h);
                }
            }
        }
        best.map(|h| h.current(now))
    }

    fn all(&self, now: Clock) -> Vec<Ban> {
        self.held.iter().filter(|h| h.deadline > now.mono).map(|h| h.current(now)).collect()
    }

    fn add(&mut self, keys: &[PeerId], reason: &str, length: Duration, now: Clock) {
        self.held.retain(|h| !keys.contains(&h.filed.id) && h.deadline > now.mono);
        for &id in keys {
            let filed =
                Ban { id, since: Some(now.wall), until: now.wall + length, reason: reason.into() };
            self.held.push(Held { filed, length, deadline: now.mono + length });
        }
        self.unsaved = true;
    }

    /// The bans to write, when some are not on disk yet.
    fn pending_write(&mut self, now: Clock) -> Option<BanList> {
        if !self.unsaved {
            return None;
        }
        self.held.retain(|h| h.deadline > now.mono);
        Some(BanList { bans: self.held.iter().map(|h| h.current(now)).collect() })
    }

    /// Notes the outcome of writing what [`BanBook::pending_write`] gave (`text`, parsed back).
    fn wrote(&mut self, text: String, written: Result<BanList, TrustError>) -> Reload {
        match written {
            Ok(list) => {
                self.seen = Some(text);
                for (h, b) in self.held.iter_mut().zip(list.bans) {
                    h.filed = b;
                }
                self.unsaved = false;
                self.reported = None;
                Reload::Applied
            }
            Err(e) => self.keep(format!("bans are not saved: {}", crate::service::error_chain(&e))),
        }
    }

    /// Applies what changed in the file since it was last read or written: an entry deleted
    /// by hand lifts its ban. While bans are not on disk yet, only bans added by hand are
    /// taken (memory rules; the pending write keeps them). A file that cannot be read or
    /// parsed changes nothing.
    fn absorb(
        &mut self,
        path: &Path,
        read: Result<Option<String>, TrustError>,
        now: Clock,
    ) -> Reload {
        let text = match read {
            Ok(text) => text.unwrap_or_default(),
            Err(e) => return self.keep(crate::service::error_chain(&e)),
        };
        if self.seen.as_deref() == Some(text.as_str()) {
            if !self.unsaved {
                self.reported = None;
            }
            return Reload::Unchanged;
        }
        let list = match BanList::parse(path, &text) {
            Ok(list) => list,
            Err(e) => return self.keep(e.to_string()),
        };
        self.seen = Some(text);
        if self.unsaved {
            for ban in list.bans {
                if !self.held.iter().any(|h| h.filed.id == ban.id) {
                    self.held.extend(Held::from_file(ban, self.cap, now));
                }
            }
            return Reload::Applied;
        }
        self.reported = None;
        // A ban the file still holds unchanged keeps its monotonic deadline; a new or edited
        // one is read from its wall times.
        let mut held = Vec::new();
        for ban in list.bans {
            match self.held.iter().find(|h| h.filed == ban) {
                Some(h) => held.push(h.clone()),
                None => held.extend(Held::from_file(ban, self.cap, now)),
            }
        }
        held.retain(|h| h.deadline > now.mono);
        self.held = held;
        Reload::Applied
    }

    fn keep(&mut self, error: String) -> Reload {
        if self.reported.as_deref() == Some(error.as_str()) {
            return Reload::Unchanged;
        }
        self.reported = Some(error.clone());
        Reload::Kept(error)
    }
}

const HEADER: &str = "\
# vitrine peer bans: peers refused after a violation, until the given time.
# Written by the daemon; delete an entry to lift a ban (applied within seconds).
# A ban covers every key of the peer's trust entry (its current and previous keys).

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
    #[serde(default)]
    since: Option<Spanned<String>>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    until: String,
    reason: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn id(n: u8) -> PeerId {
        PeerId::from_bytes([n; 32])
    }

    fn at(secs: u64, mono: Instant) -> Clock {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs);
        Clock { wall, mono: mono + Duration::from_secs(secs) }
    }

    #[test]
    fn ban_files_round_trip_and_name_errors() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ban = |n, since, secs, reason: &str| Ban {
            id: id(n),
            since,
            until: now + Duration::from_secs(secs),
            reason: reason.into(),
        };
        let list =
            BanList { bans: vec![ban(1, Some(now), 300, "rate"), ban(2, None, 10, "observer")] };
        let back = BanList::parse(Path::new("bans.toml"), &list.to_toml()).unwrap();
        assert_eq!(back, list);
        assert_eq!(back.active(&[id(9), id(1)], now).map(|b| b.reason.as_str()), Some("rate"));
        let later = now + MIN;
        assert!(back.active(&[id(2)], later).is_none());
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
        let text = format!(
            "[[ban]]\nid = \"{}\"\nsince = \"2026-01-02T00:00:00Z\"\nuntil = \"2026-01-01T00:00:00Z\"\n",
            id(1)
        );
        let err = BanList::parse(Path::new("p"), &text).unwrap_err().to_string();
        assert!(err.starts_with("p:3:") && err.contains("later than"), "{err}");
    }

    #[test]
    fn bans_expire_on_the_monotonic_clock_and_cover_all_given_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bans.toml");
        let mono = Instant::now();
        let book = Bans::load(&path, 5 * MIN, at(0, mono)).unwrap();
        assert_eq!(book.ban(&[id(1)], "rate", 5 * MIN, at(0, mono)), None);
        // The peer's other key is banned too.
        assert!(book.active(&[id(2), id(1)], at(1, mono)).is_some());
        assert!(book.active(&[id(2)], at(1, mono)).is_none());
        // Setting the wall clock a day ahead neither lifts the ban nor changes its deadline.
        let mut jumped = at(60, mono);
        jumped.wall += Duration::from_secs(86_400);
        let shown = book.active(&[id(1)], jumped).unwrap();
        assert_eq!(shown.until, jumped.wall + 4 * MIN);
        // Nor does setting it a year back prolong it.
        let mut back = at(299, mono);
        back.wall -= Duration::from_secs(365 * 86_400);
        assert!(book.active(&[id(1)], back).is_some());
        assert!(book.active(&[id(1)], at(300, mono)).is_none());
    }

    #[test]
    fn a_restart_after_the_clock_went_back_serves_the_whole_ban_never_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bans.toml");
        let mono = Instant::now();
        let book = Bans::load(&path, 5 * MIN, at(0, mono)).unwrap();
        assert_eq!(book.ban(&[id(1)], "rate", 5 * MIN, at(0, mono)), None);
        // A normal restart one minute later: four minutes left.
        let later = at(60, mono);
        let again = Bans::load(&path, 5 * MIN, later).unwrap();
        assert_eq!(again.active(&[id(1)], later).unwrap().until, later.wall + 4 * MIN);
        // A restart with the wall clock a year back: the whole five minutes, not a year.
        let mut back = at(60, mono);
        back.wall -= Duration::from_secs(365 * 86_400);
        let again = Bans::load(&path, 5 * MIN, back).unwrap();
        assert_eq!(again.active(&[id(1)], back).unwrap().until, back.wall + 5 * MIN);
        // A restart after the ban ended: lifted.
        let after = at(301, mono);
        assert!(Bans::load(&path, 5 * MIN, after).unwrap().all(after).is_empty());
        // A hand-written ban without `since` is capped at the configured cooldown.
        let far = fmt_time(at(0, mono).wall + Duration::from_secs(365 * 86_400));
        std::fs::write(&path, format!("[[ban]]\nid = \"{}\"\nuntil = \"{far}\"\n", id(3))).unwrap();
        let book = Bans::load(&path, 5 * MIN, at(0, mono)).unwrap();
        assert_eq!(book.active(&[id(3)], at(0, mono)).unwrap().until, at(0, mono).wall + 5 * MIN);
    }

    #[test]
    fn an_edit_of_another_entry_keeps_a_bans_monotonic_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bans.toml");
        let mono = Instant::now();
        // A wall clock with sub-second precision, as a real one has.
        let mut t0 = at(0, mono);
        t0.wall += Duration::from_millis(437);
        let book = Bans::load(&path, 5 * MIN, t0).unwrap();
        assert_eq!(book.ban(&[id(1)], "rate", 5 * MIN, t0), None);
        // Someone adds a ban by hand, then the wall clock jumps a day ahead.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!(
            "\n[[ban]]\nid = \"{}\"\nuntil = \"{}\"\n",
            id(2),
            fmt_time(t0.wall + MIN)
        ));
        std::fs::write(&path, text).unwrap();
        let mut jumped = at(60, mono);
        jumped.wall += Duration::from_secs(86_400);
        assert!(matches!(book.reload(jumped), Reload::Applied));
        // The first ban still ends four minutes from now by the monotonic clock.
        let until = book.active(&[id(1)], jumped).unwrap().until;
        assert_eq!(until, jumped.wall + 4 * MIN);
        assert!(book.active(&[id(1)], at(299, mono)).is_some());
        assert!(book.active(&[id(1)], at(301, mono)).is_none());
    }

    #[test]
    fn a_ban_keeps_bans_added_by_hand_a_moment_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bans.toml");
        let now = at(0, Instant::now());
        let book = Bans::load(&path, 5 * MIN, now).unwrap();
        assert_eq!(book.ban(&[id(1)], "rate", 5 * MIN, now), None);
        let hand =
            format!("[[ban]]\nid = \"{}\"\nuntil = \"{}\"\n", id(2), fmt_time(now.wall + MIN));
        std::fs::write(&path, format!("{}\n{hand}", std::fs::read_to_string(&path).unwrap()))
            .unwrap();
        // No reload ran in between: the next ban still keeps it.
        assert_eq!(book.ban(&[id(3)], "rate", 5 * MIN, now), None);
        let ids: Vec<PeerId> = BanList::load(&path).unwrap().bans.iter().map(|b| b.id).collect();
        assert!(ids.contains(&id(1)) && ids.contains(&id(2)) && ids.contains(&id(3)), "{ids:?}");
        assert!(book.active(&[id(2)], now).is_some());
    }

    #[test]
    fn unreadable_or_unwritable_files_never_lift_bans() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bans.toml");
        let now = at(0, Instant::now());
        let book = Bans::load(&path, 5 * MIN, now).unwrap();
        assert_eq!(book.ban(&[id(1)], "rate", 5 * MIN, now), None);
        // The file turns into something unreadable: the ban stays, the error is told once.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(matches!(book.reload(now), Reload::Kept(_)));
        assert!(matches!(book.reload(now), Reload::Unchanged));
        assert!(book.active(&[id(1)], now).is_some());
        // Starting on such a file is refused rather than starting without bans.
        assert!(matches!(Bans::load(&path, 5 * MIN, now), Err(TrustError::Read { .. })));

        // A first ban whose write fails stays in force; later reloads retry the write.
        let path = dir.path().join("missing/bans.toml");
        let book = Bans::load(&path, 5 * MIN, now).unwrap();
        assert!(book.ban(&[id(2)], "rate", 5 * MIN, now).is_some());
        assert!(matches!(book.reload(now), Reload::Unchanged));
        assert!(book.active(&[id(2)], now).is_some());
        std::fs::create_dir(dir.path().join("missing")).unwrap();
        assert!(matches!(book.reload(now), Reload::Applied));
        assert_eq!(BanList::load(&path).unwrap().bans[0].id, id(2));
        // Deleting the entry by hand lifts the ban.
        std::fs::write(&path, "").unwrap();
        assert!(matches!(book.reload(now), Reload::Applied));
        assert!(book.active(&[id(2)], now).is_none());
    }
}
