//! The small cryptographic statements exchanged inside a TLS session: site-key proofs, the
//! pairing commitment and short code, and key-rotation statements.
//!
//! Each statement is bound to the session's TLS exporter and to both peer IDs, so it cannot be
//! replayed on another connection or relayed by a man in the middle (whose two TLS sessions have
//! different exporters).

use std::path::{Path, PathBuf};

use ring::{digest, hmac, rand::SecureRandom};

use crate::id::PeerId;
use crate::identity::{IdentityError, check_private_mode};

/// The RFC 5705/8446 exporter label of this protocol.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-vitrine/1";
/// Shortest accepted site key, in bytes.
pub const MIN_SITE_KEY: usize = 16;

/// Which end of the TLS connection made a statement; proofs of the two ends differ so one
/// cannot be reflected back as the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Dialer,
    Acceptor,
}

/// A secret shared by the boxes of one site, granting trust on first connection.
#[derive(Clone)]
pub struct SiteKey(Vec<u8>);

impl std::fmt::Debug for SiteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SiteKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SiteKeyError {
    #[error("cannot read the site key")]
    Access(#[source] IdentityError),
    #[error(
        "the site key in {0} is shorter than {MIN_SITE_KEY} bytes; create one with `head -c 32 /dev/urandom | base64 > FILE && chmod 600 FILE` and copy it to every box of the site"
    )]
    TooShort(PathBuf),
}

impl SiteKey {
    /// Reads a site key file (surrounding whitespace ignored); it must be private (0600).
    pub fn load(path: &Path) -> Result<Self, SiteKeyError> {
        check_private_mode(path).map_err(SiteKeyError::Access)?;
        let bytes = std::fs::read(path).map_err(|source| {
            SiteKeyError::Access(IdentityError::Io { path: path.to_owned(), source })
        })?;
        Self::from_bytes(bytes.trim_ascii()).ok_or_else(|| SiteKeyError::TooShort(path.to_owned()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        (bytes.len() >= MIN_SITE_KEY).then(|| Self(bytes.to_vec()))
    }
}

/// HMAC-SHA256(site_key, label ‖ exporter ‖ dialer ID ‖ acceptor ID).
pub fn site_proof(
    key: &SiteKey,
    side: Side,
    exporter: &[u8; 32],
    dialer: &PeerId,
    acceptor: &PeerId,
) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, &key.0);
    let tag = hmac::sign(&k, &site_message(side, exporter, dialer, acceptor));
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Constant-time check of a site proof.
pub fn verify_site_proof(
    key: &SiteKey,
    side: Side,
    exporter: &[u8; 32],
    dialer: &PeerId,
    acceptor: &PeerId,
    proof: &[u8; 32],
) -> bool {
    let k = hmac::Key::new(hmac::HMAC_SHA256, &key.0);
    hmac::verify(&k, &site_message(side, exporter, dialer, acceptor), proof).is_ok()
}

fn site_message(side: Side, exporter: &[u8; 32], dialer: &PeerId, acceptor: &PeerId) -> Vec<u8> {
    let label: &[u8] = match side {
        Side::Dialer => b"vitrine site-key dialer v1\0",
        Side::Acceptor => b"vitrine site-key acceptor v1\0",
    };
    [label, exporter, dialer.as_bytes(), acceptor.as_bytes()].concat()
}

/// A fresh 32-byte nonce from the system RNG.
pub fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    // The system RNG only fails when the kernel has none; an all-zero nonce then still yields
    // a code, and pairing fails safely when the codes disagree.
    let _ = ring::rand::SystemRandom::new().fill(&mut n);
    n
}

/// The dialer's commitment to its pairing nonce, sent before it sees the acceptor's nonce.
pub fn commit(nonce: &[u8; 32]) -> [u8; 32] {
    sha256(&[b"vitrine pair commit v1\0", &nonce[..]])
}

/// The six-digit short authentication string both humans compare.
///
/// The dialer committed to its nonce before the acceptor revealed its own, so neither side (nor
/// a man in the middle playing both) can choose nonces that make two sessions show one code.
pub fn short_code(
    dialer_nonce: &[u8; 32],
    acceptor_nonce: &[u8; 32],
    exporter: &[u8; 32],
    dialer: &PeerId,
    acceptor: &PeerId,
) -> u32 {
    let h = sha256(&[
        b"vitrine pair code v1\0",
        dialer_nonce,
        acceptor_nonce,
        exporter,
        dialer.as_bytes(),
        acceptor.as_bytes(),
    ]);
    u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % 1_000_000
}

/// What the old key signs to vouch for the new one: label ‖ new SPKI ‖ session exporter.
pub fn rotation_message(new_spki: &[u8], exporter: &[u8; 32]) -> Vec<u8> {
    [&b"vitrine key rotation v1\0"[..], new_spki, exporter].concat()
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn proofs_bind_side_session_and_ids() {
        let key = SiteKey::from_bytes(b"0123456789abcdef").unwrap();
        let (a, b) = (PeerId::from_bytes([1; 32]), PeerId::from_bytes([2; 32]));
        let ex = [5u8; 32];
        let p = site_proof(&key, Side::Dialer, &ex, &a, &b);
        assert!(verify_site_proof(&key, Side::Dialer, &ex, &a, &b, &p));
        assert!(!verify_site_proof(&key, Side::Acceptor, &ex, &a, &b, &p));
        assert!(!verify_site_proof(&key, Side::Dialer, &[6; 32], &a, &b, &p));
        assert!(!verify_site_proof(&key, Side::Dialer, &ex, &b, &a, &p));
        let other = SiteKey::from_bytes(b"0123456789abcdeX").unwrap();
        assert!(!verify_site_proof(&other, Side::Dialer, &ex, &a, &b, &p));
    }

    #[test]
    fn codes_have_six_digits_and_depend_on_everything() {
        let (a, b) = (PeerId::from_bytes([1; 32]), PeerId::from_bytes([2; 32]));
        let c = short_code(&[1; 32], &[2; 32], &[3; 32], &a, &b);
        assert!(c < 1_000_000);
        assert_ne!(c, short_code(&[1; 32], &[2; 32], &[4; 32], &a, &b));
        assert_ne!(c, short_code(&[9; 32], &[2; 32], &[3; 32], &a, &b));
        assert_ne!(commit(&[1; 32]), commit(&[2; 32]));
    }

    #[test]
    fn site_key_file_must_be_private_and_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.key");
        std::fs::write(&path, "c2VjcmV0LXNpdGUta2V5LW9mLXRoZS1tdXNldW0K\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(SiteKey::load(&path).unwrap_err().to_string().contains("site key"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(SiteKey::load(&path).is_ok());
        std::fs::write(&path, "short\n").unwrap();
        assert!(matches!(SiteKey::load(&path), Err(SiteKeyError::TooShort(_))));
    }
}
