//! The state files the service keeps and people may edit (`peers.toml`, `peer-bans.toml`):
//! reading them without ever taking a failure for an empty file, and the value parsers and
//! file:line:col errors they share.

use std::path::Path;
use std::time::SystemTime;

use toml::Spanned;

use crate::id::PeerId;
use crate::trust::TrustError;

/// Reads a state file the service keeps and people may edit: `None` when it does not exist.
/// Any other failure is an error, never an empty file: reading a trust store or a ban list
/// as empty would drop pins, forgotten records or bans.
pub(crate) fn read_state(path: &Path) -> Result<Option<String>, TrustError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TrustError::Read { path: path.to_owned(), source }),
    }
}

/// Reads and parses a state file; a missing file is the default value.
pub(crate) fn load_state<T: Default>(
    path: &Path,
    parse: impl FnOnce(&Path, &str) -> Result<T, TrustError>,
) -> Result<T, TrustError> {
    match read_state(path)? {
        Some(text) => parse(path, &text),
        None => Ok(T::default()),
    }
}

pub fn fmt_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(crate) fn parse_time(s: &Spanned<String>) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(s.get_ref())
        .map_err(|e| format!("'{}' is not a time like 2026-01-31T12:00:00Z ({e})", s.get_ref()))
}

pub(crate) fn parse_id(s: &Spanned<String>) -> Result<PeerId, String> {
    s.get_ref().parse::<PeerId>().map_err(|e| format!("invalid peer id: {e}"))
}

pub(crate) fn parse_error(path: &Path, text: &str, at: usize, message: String) -> TrustError {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    TrustError::Parse { path: path.to_owned(), line, col, message }
}
