//! Hash-chained JSON-lines audit log writer and verifier.
//!
//! Each line of the log is one JSON object `{ts, seq, kind, subject, detail, prev, hash}` where
//! `hash = sha256(prev ‖ canonical line without hash)`; [`record`] defines the canonical form
//! byte for byte. [`AuditLog`] appends records (whole lines, never a partial one) and keeps the
//! last `seq` and `hash` in a head file beside the log; [`verify`] names the first line that was
//! edited, removed, inserted or reordered, and a cut-off tail.
//!
//! The library is synchronous and does blocking file I/O; async callers run it in
//! `spawn_blocking` or on a dedicated thread.

#![forbid(unsafe_code)]

pub mod head;
pub mod kinds;
pub mod record;
mod verify;
mod writer;

use std::io;
use std::path::PathBuf;

pub use head::Head;
pub use record::{GENESIS, Hash, Record};
pub use verify::{Notice, Problem, ProblemKind, Report, verify, verify_bytes};
pub use writer::{Appended, AuditLog, CHAIN_RESTART, Resumed};

/// Why the audit log could not be opened or written. Every variant leaves the writer usable.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open audit log {path}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot append to the audit log")]
    Write(#[source] io::Error),
    #[error("the disk took only {written} of {len} bytes; the partial line was removed")]
    ShortWrite { written: usize, len: usize },
    #[error("cannot sync the audit log; the record was removed")]
    Sync(#[source] io::Error),
    #[error("record seq {seq} is written but the head file {path} could not be replaced")]
    HeadNotUpdated { seq: u64, path: PathBuf },
    #[error("an audit record of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("the audit log is not open")]
    Closed,
}

impl AuditError {
    /// `true` when the record did reach the log despite the error.
    pub fn record_written(&self) -> bool {
        matches!(self, AuditError::HeadNotUpdated { .. })
    }
}
