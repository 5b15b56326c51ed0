//! The head file: the last `seq` and `hash` written, kept beside the log as `<log>.head`.
//!
//! The log alone cannot show that records were cut off its end: a shorter chain is still a
//! valid chain. The head file is rewritten after every record, atomically (write a temporary
//! file, fsync it, rename it over the old one, fsync the directory), so it always names a
//! record the log once ended with.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::record::Hash;

/// The last record the writer completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    #[serde(with = "hex_hash")]
    pub hash: Hash,
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seq {} (hash {})", self.seq, &hex::encode(self.hash)[..12])
    }
}

/// `<log path>.head`, e.g. `/var/log/vitrine/audit.jsonl.head`.
pub fn head_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".head");
    PathBuf::from(name)
}

/// Reads the head file: `Ok(None)` when it does not exist, `Err` when it cannot be read or
/// does not parse.
pub fn read(path: &Path) -> io::Result<Option<Head>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if bytes.len() > 4096 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "head file is too large"));
    }
    serde_json::from_slice(&bytes).map(Some).map_err(io::Error::other)
}

/// Replaces the head file atomically.
pub fn write(path: &Path, head: &Head) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut body = serde_json::to_vec(head).map_err(io::Error::other)?;
    body.push(b'\n');
    let result = (|| {
        let mut file =
            OpenOptions::new().write(true).create(true).truncate(true).mode(0o640).open(&tmp)?;
        file.write_all(&body)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(path)
    })();
    if result.is_err() {
        // A half-written temporary file must not linger and hold the space we lack.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes a rename durable: the directory entry lives in the parent directory.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}
