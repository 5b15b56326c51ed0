//! The append-only writer.
//!
//! Every record becomes one complete line in memory first and reaches the file through a single
//! `write(2)` on an `O_APPEND` descriptor, so a reader never sees a line interleaved with
//! another. When the kernel takes only part of the line (a short write on a nearly full disk) or
//! refuses it (`ENOSPC`, `EIO`), the file is truncated back to its length before the attempt:
//! the log on disk is always a valid prefix of the chain.
//!
//! Durability: after each line the log is `fdatasync`ed, then the head file is replaced
//! atomically. Audit records are rare (security decisions, not traffic), so three syncs per
//! record are cheap, and a record the caller was told is written survives a power cut.
//!
//! Failures are values: the caller counts and logs them, and the writer stays usable. After an
//! error the descriptor is dropped and the next append reopens the path, checking that the file
//! still ends where the chain does; if it does not, a `chain-restart` record says so.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::AuditError;
use crate::head::{self, Head};
use crate::record::{GENESIS, Hash, MAX_LINE, Record, now_rfc3339, parse_line};

/// The kind of the record a writer appends when the log and its head file disagree.
pub const CHAIN_RESTART: &str = "chain-restart";

/// A hash-chained audit log opened for appending.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    head_path: PathBuf,
    file: Option<File>,
    last: Head,
    /// The head file lags behind `last` (its last rewrite failed); retried on every append.
    head_stale: bool,
}

/// What the writer found when it opened (or reopened) the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// The record the chain continues from (`None` for a fresh log).
    pub from: Option<Head>,
    /// `Some(reason)` when a `chain-restart` record was written.
    pub restart: Option<String>,
}

/// A record that reached the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub hash: Hash,
}

impl AuditLog {
    /// Opens (creating it, mode 0640) the log at `path` and resumes its chain. When the last
    /// line and the head file disagree, a `chain-restart` record describing both is appended
    /// before anything else.
    pub fn open(path: impl AsRef<Path>) -> Result<(AuditLog, Resumed), AuditError> {
        let path = path.as_ref().to_path_buf();
        let head_path = head::head_path(&path);
        let expected = head::read(&head_path);
        let mut log = AuditLog {
            path,
            head_path,
            file: None,
            last: Head { seq: 0, hash: GENESIS },
            head_stale: false,
        };
        let resumed = log.resume(expected)?;
        Ok((log, resumed))
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last record written (seq 0 and the genesis hash for an empty chain).
    pub fn last(&self) -> Head {
        self.last
    }

    /// Appends one record. On `Err` nothing of it is in the file, except for
    /// [`AuditError::HeadNotUpdated`], which means the record is written but the head file
    /// could not be replaced (it is retried with the next append).
    pub fn append(
        &mut self,
        kind: &str,
        subject: &str,
        detail: Value,
    ) -> Result<Appended, AuditError> {
        self.append_batch([(kind, subject, detail)])
    }

    /// Appends several records with one `write` and one round of syncs (group commit): the
    /// cost of durability is paid once per batch instead of once per record. All or nothing:
    /// on `Err` none of them is in the file (except for [`AuditError::HeadNotUpdated`], where
    /// all are). Returns the last record written; an empty batch writes nothing and returns the
    /// current head.
    pub fn append_batch<'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a str, &'a str, Value)>,
    ) -> Result<Appended, AuditError> {
        if self.file.is_none() {
            self.resume(Ok(Some(self.last)))?;
        }
        let mut batch: Vec<Record> = Vec::new();
        for (kind, subject, detail) in records {
            let prev = batch.last().map_or(self.last, |r| Head { seq: r.seq, hash: r.hash });
            batch.push(Record::new(now_rfc3339(), prev.seq + 1, kind, subject, detail, prev.hash));
        }
        self.write_records(&batch)?;
        Ok(Appended { seq: self.last.seq, hash: self.last.hash })
    }

    /// Closes the descriptor and opens the path again (after log rotation renamed the file).
    /// The chain continues across files; a rotated-away log makes the new file start with a
    /// `chain-restart` record that names the last record of the old one.
    pub fn reopen(&mut self) -> Result<Resumed, AuditError> {
        self.file = None;
        self.resume(Ok(Some(self.last)))
    }

    fn resume(&mut self, expected: io::Result<Option<Head>>) -> Result<Resumed, AuditError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(&self.path)
            .map_err(|source| AuditError::Open { path: self.path.clone(), source })?;
        let tail = read_tail(&mut file)
            .map_err(|source| AuditError::Open { path: self.path.clone(), source })?;
        let restart = restart_reason(&expected, &tail);
        self.last = match (&tail.last, &expected) {
            (TailRecord::Record(head), _) => *head,
            // An empty log whose head file names a record: the log was rotated away or
            // emptied. Continue from the head so the chain spans both files.
            (TailRecord::Empty, Ok(Some(head))) => *head,
            _ => Head { seq: 0, hash: GENESIS },
        };
        self.file = Some(file);
        if let Some(reason) = &restart {
            let detail = restart_detail(reason, &expected, &tail);
            let record = Record::new(
                now_rfc3339(),
                self.last.seq + 1,
                CHAIN_RESTART,
                "audit",
                detail,
                self.last.hash,
            );
            self.write_records(std::slice::from_ref(&record))?;
        }
        let from = (self.last.seq > 0).then_some(self.last);
        Ok(Resumed { from, restart })
    }

    fn write_records(&mut self, records: &[Record]) -> Result<(), AuditError> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        let mut lines = String::new();
        for record in records {
            let line = record.line();
            if line.len() > MAX_LINE {
                return Err(AuditError::TooLarge { len: line.len(), max: MAX_LINE });
            }
            lines.push_str(&line);
        }
        if self.head_stale {
            self.write_head(self.last);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(AuditError::Closed);
        };
        if let Err(err) = append_line(file, lines.as_bytes()) {
            // Whatever happened, the next append starts from a fresh look at the file.
            self.file = None;
            return Err(err);
        }
        self.last = Head { seq: last.seq, hash: last.hash };
        if !self.write_head(self.last) {
            return Err(AuditError::HeadNotUpdated { seq: last.seq, path: self.head_path.clone() });
        }
        Ok(())
    }

    /// Returns whether the head file now names `head`.
    fn write_head(&mut self, head: Head) -> bool {
        self.head_stale = head::write(&self.head_path, &head).is_err();
        !self.head_stale
    }
}

/// One `write(2)` of whole lines, then `fdatasync`; on any failure the file is cut back to its
/// previous length so it never ends in a partial line.
fn append_line(file: &mut File, line: &[u8]) -> Result<(), AuditError> {
    let before = file.metadata().map_err(AuditError::Write)?.len();
    let outcome = match file.write(line) {
        Ok(n) if n == line.len() => file.sync_data().map_err(AuditError::Sync),
        Ok(n) => Err(AuditError::ShortWrite { written: n, len: line.len() }),
        Err(e) => Err(AuditError::Write(e)),
    };
    if outcome.is_err() {
        // Shrinking a file needs no new blocks, so this succeeds even on a full disk. If it
        // fails anyway, the reopen on the next append discards the partial line.
        let _ = file.set_len(before).and_then(|()| file.sync_data());
    }
    outcome
}

/// What the end of the log holds.
#[derive(Debug)]
enum TailRecord {
    Empty,
    Record(Head),
    /// The last line is not a valid record; the string says why.
    Invalid(String),
}

#[derive(Debug)]
struct Tail {
    last: TailRecord,
    /// Bytes after the last newline, removed at open (a write torn by a crash).
    discarded: u64,
}

/// Reads the last line of the log, first cutting off a trailing partial line.
fn read_tail(file: &mut File) -> io::Result<Tail> {
    let len = file.metadata()?.len();
    let window = len.min(2 * MAX_LINE as u64);
    file.seek(SeekFrom::Start(len - window))?;
    let mut buf = Vec::with_capacity(window as usize);
    Read::by_ref(file).take(window).read_to_end(&mut buf)?;
    let keep = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let discarded = (buf.len() - keep) as u64;
    if discarded > 0 {
        file.set_len(len - discarded)?;
        file.sync_data()?;
    }
    buf.truncate(keep);
    if buf.is_empty() {
        let last = if len - discarded == 0 {
            TailRecord::Empty
        } else {
            TailRecord::Invalid(format!("the last line is longer than {MAX_LINE} bytes"))
        };
        return Ok(Tail { last, discarded });
    }
    buf.pop();
    let start = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let last = match parse_line(&buf[start..]) {
        Ok(r) => TailRecord::Record(Head { seq: r.seq, hash: r.hash }),
        Err(e) => TailRecord::Invalid(e.to_string()),
    };
    Ok(Tail { last, discarded })
}

/// Why the log's end and the head file disagree, if they do.
fn restart_reason(expected: &io::Result<Option<Head>>, tail: &Tail) -> Option<String> {
    let reason = match (expected, &tail.last) {
        (_, TailRecord::Invalid(why)) => format!("the last line of the log is invalid: {why}"),
        (Err(e), _) => format!("the head file is unreadable: {e}"),
        (Ok(None), TailRecord::Empty) => return None,
        (Ok(None), TailRecord::Record(_)) => "the head file is missing".to_owned(),
        (Ok(Some(h)), TailRecord::Empty) => format!("the log is empty but its head names {h}"),
        (Ok(Some(h)), TailRecord::Record(t)) if h == t => {
            if tail.discarded == 0 {
                return None;
            }
            format!("{} bytes of a partial line were discarded", tail.discarded)
        }
        (Ok(Some(h)), TailRecord::Record(t)) => {
            format!("the log ends at {t} but its head names {h}")
        }
    };
    Some(reason)
}

fn restart_detail(reason: &str, expected: &io::Result<Option<Head>>, tail: &Tail) -> Value {
    let head = match expected {
        Ok(Some(h)) => json!({"seq": h.seq, "hash": hex::encode(h.hash)}),
        _ => Value::Null,
    };
    let log = match &tail.last {
        TailRecord::Record(t) => json!({"seq": t.seq, "hash": hex::encode(t.hash)}),
        _ => Value::Null,
    };
    json!({"reason": reason, "head": head, "log": log, "discarded_bytes": tail.discarded})
}
