//! One audit record: its canonical form, its hash and its line.
//!
//! The canonical form of a record is the JSON object
//! `{"ts":…,"seq":…,"kind":…,"subject":…,"detail":…,"prev":…}` with exactly these keys in
//! exactly this order, no whitespace anywhere, strings escaped as `serde_json` escapes them, and
//! every object inside `detail` written with its keys sorted by their UTF-8 bytes. We render it
//! ourselves instead of trusting a map's iteration order, so that a feature flag elsewhere in the
//! dependency graph (such as `serde_json/preserve_order`) can never change a hash.
//!
//! `hash = hex(sha256(prev ‖ canonical))`, where `prev` is the previous record's `hash` as its 64
//! ASCII hex digits (64 zeros for the first record of a chain). The stored line is the canonical
//! form with `,"hash":"<hash>"` inserted before the closing brace, followed by `\n`.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The `prev` of the first record of a chain.
pub const GENESIS: Hash = [0; 32];

/// The largest line the writer produces and the verifier accepts, newline included. Audit
/// records are small; the cap keeps a hostile or corrupted file from exhausting memory.
pub const MAX_LINE: usize = 64 * 1024;

/// A parsed, self-consistent record (its `hash` matches its content).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub ts: String,
    pub seq: u64,
    pub kind: String,
    pub subject: String,
    pub detail: Value,
    pub prev: Hash,
    pub hash: Hash,
}

impl Record {
    /// Builds the record that follows `prev` and computes its hash.
    pub fn new(ts: String, seq: u64, kind: &str, subject: &str, detail: Value, prev: Hash) -> Self {
        let mut record = Record {
            ts,
            seq,
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            detail,
            prev,
            hash: [0; 32],
        };
        record.hash = chain_hash(&record.prev, &record.canonical());
        record
    }

    /// The canonical form defined at the top of this module.
    pub fn canonical(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("{\"ts\":");
        push_json_str(&mut out, &self.ts);
        out.push_str(",\"seq\":");
        out.push_str(&self.seq.to_string());
        out.push_str(",\"kind\":");
        push_json_str(&mut out, &self.kind);
        out.push_str(",\"subject\":");
        push_json_str(&mut out, &self.subject);
        out.push_str(",\"detail\":");
        push_canonical(&mut out, &self.detail);
        out.push_str(",\"prev\":\"");
        out.push_str(&hex::encode(self.prev));
        out.push_str("\"}");
        out
    }

    /// The line as stored in the log, newline included.
    pub fn line(&self) -> String {
        let mut line = self.canonical();
        line.pop();
        line.push_str(",\"hash\":\"");
        line.push_str(&hex::encode(self.hash));
        line.push_str("\"}\n");
        line
    }
}

/// `sha256(prev_hex ‖ canonical)`.
pub fn chain_hash(prev: &Hash, canonical: &str) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(hex::encode(prev).as_bytes());
    hasher.update(canonical.as_bytes());
    hasher.finalize().into()
}

/// Why a line is not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// Not a JSON object with the seven fields of the right types.
    Malformed(String),
    /// Well-formed, but `hash` does not match the content: the line was edited.
    HashMismatch { seq: u64 },
    /// The hash matches, but the bytes are not the canonical rendering (reformatted, or a key
    /// was duplicated).
    NotCanonical { seq: u64 },
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::Malformed(why) => write!(f, "not an audit record: {why}"),
            LineError::HashMismatch { .. } => {
                f.write_str("its hash does not match its content (the line was edited)")
            }
            LineError::NotCanonical { .. } => {
                f.write_str("it is not in canonical form (the line was rewritten)")
            }
        }
    }
}

/// Parses one line (without its newline) and checks it against its own hash.
pub fn parse_line(line: &[u8]) -> Result<Record, LineError> {
    if line.len() >= MAX_LINE {
        return Err(LineError::Malformed(format!("longer than {MAX_LINE} bytes")));
    }
    let value: Value =
        serde_json::from_slice(line).map_err(|e| LineError::Malformed(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(LineError::Malformed("not a JSON object".into()));
    };
    const KEYS: [&str; 7] = ["ts", "seq", "kind", "subject", "detail", "prev", "hash"];
    if let Some(extra) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(LineError::Malformed(format!("unknown field `{extra}`")));
    }
    let text = |key: &str| match map.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(LineError::Malformed(format!("field `{key}` missing or not a string"))),
    };
    let seq = map
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or_else(|| LineError::Malformed("field `seq` missing or not an integer".into()))?;
    let detail = map
        .get("detail")
        .cloned()
        .ok_or_else(|| LineError::Malformed("field `detail` missing".into()))?;
    let digest = |key: &str| -> Result<Hash, LineError> {
        let s = text(key)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out)
            .map_err(|_| LineError::Malformed(format!("field `{key}` is not 64 hex digits")))?;
        Ok(out)
    };
    let record = Record {
        ts: text("ts")?,
        seq,
        kind: text("kind")?,
        subject: text("subject")?,
        detail,
        prev: digest("prev")?,
        hash: digest("hash")?,
    };
    if chain_hash(&record.prev, &record.canonical()) != record.hash {
        return Err(LineError::HashMismatch { seq });
    }
    let rendered = record.line();
    if rendered.as_bytes()[..rendered.len() - 1] != *line {
        return Err(LineError::NotCanonical { seq });
    }
    Ok(record)
}

fn push_json_str(out: &mut String, s: &str) {
    // Serializing a &str to JSON cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn push_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_canonical(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, key);
                out.push(':');
                push_canonical(out, &map[key]);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The current time as RFC 3339 UTC with milliseconds, e.g. `2026-11-23T05:57:23.123Z`.
pub fn now_rfc3339() -> String {
    let since =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_millis())
}

/// Formats seconds since the epoch (UTC) without a date library: civil-from-days after
/// Howard Hinnant's algorithm.
pub fn rfc3339(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_795_413_443, 999), "2026-11-23T05:57:23.999Z");
    }

    #[test]
    fn canonical_sorts_detail_keys_at_every_depth() {
        let r = Record::new(
            "t".into(),
            1,
            "k",
            "s",
            json!({"b": 1, "a": {"z": [1, {"y": 2, "x": 3}], "c": null}}),
            GENESIS,
        );
        let c = r.canonical();
        assert!(c.contains(r#""detail":{"a":{"c":null,"z":[1,{"x":3,"y":2}]},"b":1}"#), "{c}");
        assert!(c.starts_with(r#"{"ts":"t","seq":1,"kind":"k","subject":"s","#));
    }

    #[test]
    fn a_line_parses_back_to_the_same_record() {
        let r = Record::new("t".into(), 7, "oom", "aurora\n\"x\"", json!({"uid": 0}), [3; 32]);
        let line = r.line();
        assert!(line.ends_with("\"}\n"));
        assert_eq!(parse_line(&line.as_bytes()[..line.len() - 1]), Ok(r));
    }

    #[test]
    fn edits_and_reformatting_are_refused() {
        let r = Record::new("t".into(), 2, "oom", "aurora", json!({"a": 1}), GENESIS);
        let line = r.line();
        let line = line.trim_end();
        let edited = line.replace("aurora", "borealis");
        assert_eq!(parse_line(edited.as_bytes()), Err(LineError::HashMismatch { seq: 2 }));
        let spaced = line.replace(r#""seq":2"#, r#""seq": 2"#);
        assert_eq!(parse_line(spaced.as_bytes()), Err(LineError::NotCanonical { seq: 2 }));
        assert!(matches!(parse_line(b"{}"), Err(LineError::Malformed(_))));
        assert!(matches!(parse_line(b"not json"), Err(LineError::Malformed(_))));
    }
}
