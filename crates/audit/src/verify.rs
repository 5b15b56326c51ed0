//! The verifier: walks a log and names the first line that breaks the chain.
//!
//! Each line is first checked on its own (well-formed, hash matches content, canonical bytes),
//! then against its predecessor (`prev` equals the previous line's `hash`, `seq` is one more).
//! A broken link is classified with the help of an index of every line's `seq`, `prev` and
//! `hash`, so the report can say *removed*, *inserted* or *reordered* instead of only "broken".
//! Finally the end of the log is compared with the head file to detect a cut-off tail.
//!
//! What this proves: any edit, deletion, insertion or reordering made without recomputing the
//! hashes of every later line (and the head file) is found. A writer with full write access who
//! recomputes the whole chain is not detectable from the file alone; ship the head (seq, hash)
//! off the box — it is logged at every start and exported as a metric — to close that gap.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::AuditError;
use crate::head::{self, Head};
use crate::record::{GENESIS, Hash, LineError, Record, parse_line};
use crate::writer::CHAIN_RESTART;

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Lines read (the trailing newline does not start another line).
    pub lines: u64,
    /// The last record of an intact chain.
    pub last: Option<Head>,
    /// The first problem found; `None` when the log is intact.
    pub problem: Option<Problem>,
    /// Things that are not tampering but an operator should know (chain restarts, a missing or
    /// lagging head file).
    pub notices: Vec<Notice>,
}

impl Report {
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// The first line where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// 1-based line number; for a truncated tail, the line after the last one.
    pub line: u64,
    /// The `seq` that line carries, when it could be read.
    pub seq: Option<u64>,
    pub kind: ProblemKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// Not a record at all (invalid JSON, missing fields, partial line).
    Malformed,
    /// The content was changed (the hash does not match, or a rewritten hash does not match
    /// what the next line recorded).
    Edited,
    /// Records are missing before this line.
    Removed,
    /// This line does not belong in the chain.
    Inserted,
    /// This line belongs elsewhere in the chain.
    Reordered,
    /// Records are missing at the end (compared with the head file).
    Truncated,
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProblemKind::Malformed => "malformed",
            ProblemKind::Edited => "edited",
            ProblemKind::Removed => "removed",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Truncated => "truncated",
        })
    }
}

/// Something worth reporting that does not break the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub line: Option<u64>,
    pub seq: Option<u64>,
    pub message: String,
}

/// Verifies the log at `path` against itself and its head file (`<path>.head`).
pub fn verify(path: &Path) -> Result<Report, AuditError> {
    let bytes =
        fs::read(path).map_err(|source| AuditError::Open { path: path.to_owned(), source })?;
    let head_path = head::head_path(path);
    let head = head::read(&head_path);
    Ok(verify_bytes(&bytes, head))
}

/// One line's parse result, kept for classifying broken links.
struct Entry {
    parsed: Result<Record, LineError>,
}

/// The verifier on bytes already read; `head` is the head file's content.
pub fn verify_bytes(bytes: &[u8], head: std::io::Result<Option<Head>>) -> Report {
    let mut body = bytes;
    let mut partial = false;
    if let Some(stripped) = body.strip_suffix(b"\n") {
        body = stripped;
    } else if !body.is_empty() {
        partial = true;
    }
    let entries: Vec<Entry> = if body.is_empty() {
        Vec::new()
    } else {
        body.split(|&b| b == b'\n').map(|line| Entry { parsed: parse_line(line) }).collect()
    };
    let mut report =
        Report { lines: entries.len() as u64, last: None, problem: None, notices: Vec::new() };
    if let Some(problem) = walk(&entries, partial, &mut report) {
        report.problem = Some(problem);
        return report;
    }
    report.problem = check_head(head, &entries, &mut report);
    report
}

/// Walks the chain; returns the first problem.
fn walk(entries: &[Entry], partial: bool, report: &mut Report) -> Option<Problem> {
    // The first line with each hash: a later copy must not hide the original.
    let mut by_hash: HashMap<Hash, usize> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        if let Ok(r) = &entry.parsed {
            by_hash.entry(r.hash).or_insert(i);
        }
    }
    let mut prev: Option<&Record> = None;
    for (i, entry) in entries.iter().enumerate() {
        let line = i as u64 + 1;
        let record = match &entry.parsed {
            Ok(r) => r,
            Err(e) => return Some(line_problem(line, e, partial && i + 1 == entries.len())),
        };
        if let Some(problem) = check_link(entries, &by_hash, i, prev, record, report) {
            return Some(problem);
        }
        prev = Some(record);
        report.last = Some(Head { seq: record.seq, hash: record.hash });
    }
    None
}

fn line_problem(line: u64, error: &LineError, last_and_partial: bool) -> Problem {
    let (kind, seq) = match error {
        LineError::Malformed(_) => (ProblemKind::Malformed, None),
        LineError::HashMismatch { seq } | LineError::NotCanonical { seq } => {
            (ProblemKind::Edited, Some(*seq))
        }
    };
    let mut message = format!("line {line}: {error}");
    if last_and_partial {
        message.push_str(" (the file ends in a partial line without a newline)");
    }
    Problem { line, seq, kind, message }
}

/// Checks that `record` (line `i + 1`) follows `prev`; classifies the break when it does not.
fn check_link(
    entries: &[Entry],
    by_hash: &HashMap<Hash, usize>,
    i: usize,
    prev: Option<&Record>,
    record: &Record,
    report: &mut Report,
) -> Option<Problem> {
    let line = i as u64 + 1;
    let (want_prev, want_seq) = prev.map_or((GENESIS, 1), |p| (p.hash, p.seq + 1));
    let restart = record.kind == CHAIN_RESTART;
    if restart {
        let reason = record.detail.get("reason").and_then(|r| r.as_str()).unwrap_or("unknown");
        report.notices.push(Notice {
            line: Some(line),
            seq: Some(record.seq),
            message: format!("line {line}: the writer restarted the chain: {reason}"),
        });
    }
    let linked = record.prev == want_prev && record.seq == want_seq;
    // A log may begin with a chain-restart that continues a rotated-away file.
    if linked || (prev.is_none() && restart) {
        return None;
    }
    let seq = Some(record.seq);
    let problem = |kind, message: String| Some(Problem { line, seq, kind, message });
    if let Some(&first) = by_hash.get(&record.hash).filter(|&&first| first < i) {
        return problem(
            ProblemKind::Inserted,
            format!("line {line}: a copy of line {} was inserted", first + 1),
        );
    }
    if record.prev == want_prev {
        return problem(
            ProblemKind::Edited,
            format!(
                "line {line}: seq is {} but must be {want_seq} (the line was rewritten)",
                record.seq
            ),
        );
    }
    if let Some(&j) = by_hash.get(&record.prev) {
        return classify_known_prev(entries, i, j, record);
    }
    if record.seq > want_seq {
        let missing = record.seq - want_seq;
        return problem(
            ProblemKind::Removed,
            format!(
                "line {line}: seq jumps from {} to {}: {missing} record(s) removed before this line",
                want_seq - 1,
                record.seq
            ),
        );
    }
    if record.seq == want_seq {
        return match prev {
            Some(p) => Some(Problem {
                line: line - 1,
                seq: Some(p.seq),
                kind: ProblemKind::Edited,
                message: format!(
                    "line {}: the record was rewritten (its hash is not the one line {line} recorded)",
                    line - 1
                ),
            }),
            None => problem(
                ProblemKind::Edited,
                format!(
                    "line {line}: the first record does not start a chain (prev was rewritten)"
                ),
            ),
        };
    }
    problem(
        ProblemKind::Inserted,
        format!(
            "line {line}: seq {} goes back after seq {}: the line was inserted",
            record.seq,
            want_seq - 1
        ),
    )
}

/// `record` (line `i + 1`) links to line `j + 1`, which is not its predecessor.
fn classify_known_prev(entries: &[Entry], i: usize, j: usize, record: &Record) -> Option<Problem> {
    let line = i as u64 + 1;
    if j < i {
        // It links back past its predecessors: the lines in between do not belong here.
        let first = j + 1;
        let seq = entries[first].parsed.as_ref().ok().map(|r| r.seq);
        let count = i - first;
        return Some(Problem {
            line: first as u64 + 1,
            seq,
            kind: ProblemKind::Inserted,
            message: format!(
                "line {}: {count} line(s) inserted (line {line} links to line {})",
                first + 1,
                j + 1
            ),
        });
    }
    Some(Problem {
        line,
        seq: Some(record.seq),
        kind: ProblemKind::Reordered,
        message: format!(
            "line {line}: seq {} belongs after line {} (lines were reordered)",
            record.seq,
            j + 1
        ),
    })
}

/// Compares the end of an intact chain with the head file.
fn check_head(
    head: std::io::Result<Option<Head>>,
    entries: &[Entry],
    report: &mut Report,
) -> Option<Problem> {
    let after_last = entries.len() as u64 + 1;
    let head = match head {
        Ok(Some(h)) => h,
        Ok(None) => {
            report.notices.push(Notice {
                line: None,
                seq: None,
                message: "no head file: records cut off the end could not be detected".into(),
            });
            return None;
        }
        Err(e) => {
            return Some(Problem {
                line: after_last,
                seq: None,
                kind: ProblemKind::Truncated,
                message: format!("the head file is unreadable ({e}): the end cannot be checked"),
            });
        }
    };
    let last = report.last.unwrap_or(Head { seq: 0, hash: GENESIS });
    if head == last {
        return None;
    }
    if head.seq < last.seq {
        // The writer syncs a line before it replaces the head, and keeps writing records when
        // the head cannot be replaced (a full disk): then the head names an earlier record of
        // this same chain. That is a lag, not an edit, as long as the record it names is here.
        let named = entries.iter().position(|e| {
            e.parsed.as_ref().is_ok_and(|r| r.seq == head.seq && r.hash == head.hash)
        });
        if let Some(index) = named {
            report.notices.push(Notice {
                line: Some(index as u64 + 1),
                seq: Some(head.seq),
                message: format!(
                    "the head file names line {} and lags {} record(s) behind the log (interrupted or failed head update)",
                    index + 1,
                    last.seq - head.seq
                ),
            });
            return None;
        }
    }
    if head.seq > last.seq {
        return Some(Problem {
            line: after_last,
            seq: None,
            kind: ProblemKind::Truncated,
            message: format!(
                "the log ends at seq {} but its head file names {head}: {} record(s) cut off the end",
                last.seq,
                head.seq - last.seq
            ),
        });
    }
    Some(Problem {
        line: entries.len() as u64,
        seq: Some(last.seq),
        kind: ProblemKind::Edited,
        message: format!(
            "line {}: the log ends at seq {} but its head file names {head}",
            entries.len(),
            last.seq
        ),
    })
}
