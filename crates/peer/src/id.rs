//! Peer IDs: the SHA-256 of a peer's SubjectPublicKeyInfo, shown as base32 groups.
//!
//! The ID names a key, not a host: addresses and discovery records are hints, and the only thing
//! a peer can prove is possession of the private key behind its SPKI.

use std::fmt;
use std::str::FromStr;

use ring::digest;

/// RFC 4648 base32 alphabet (no padding); upper case letters and digits 2–7 avoid 0/O and 1/I.
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// 256 bits in 5-bit symbols: 52 symbols, the last one carrying a single bit.
const SYMBOLS: usize = 52;
const GROUP: usize = 4;

/// A peer's identity: SHA-256 over the DER SubjectPublicKeyInfo of its key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId([u8; 32]);

impl PeerId {
    /// The ID of the key described by `spki_der`.
    pub fn from_spki(spki_der: &[u8]) -> Self {
        let d = digest::digest(&digest::SHA256, spki_der);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first group only, for log lines and mDNS instance names.
    pub fn short(&self) -> String {
        self.to_string()[..GROUP].to_owned()
    }

    fn symbols(&self) -> [u8; SYMBOLS] {
        let mut out = [0u8; SYMBOLS];
        for (i, slot) in out.iter_mut().enumerate() {
            let bit = i * 5;
            let mut v = 0u8;
            for k in 0..5 {
                let b = bit + k;
                let set = b < 256 && (self.0[b / 8] >> (7 - b % 8)) & 1 == 1;
                v = (v << 1) | u8::from(set);
            }
            *slot = ALPHABET[usize::from(v)];
        }
        out
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, chunk) in self.symbols().chunks(GROUP).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            for &c in chunk {
                write!(f, "{}", char::from(c))?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

/// Why a string is not a peer ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    #[error("a peer ID has 52 base32 characters (A-Z, 2-7), in groups separated by '-'; found {0}")]
    Length(usize),
    #[error("'{0}' is not a base32 character (A-Z, 2-7)")]
    Character(char),
    #[error("the last character does not encode a valid ID (a typo?)")]
    Trailing,
}

impl FromStr for PeerId {
    type Err = ParseIdError;

    /// Accepts upper or lower case, with or without dashes and spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bits: Vec<u8> = Vec::with_capacity(SYMBOLS * 5);
        let mut count = 0usize;
        for c in s.chars().filter(|c| *c != '-' && !c.is_whitespace()) {
            count += 1;
            if count > SYMBOLS {
                continue;
            }
            let up = c.to_ascii_uppercase();
            let v = ALPHABET
                .iter()
                .position(|&a| char::from(a) == up)
                .ok_or(ParseIdError::Character(c))?;
            for k in (0..5).rev() {
                bits.push(u8::try_from((v >> k) & 1).unwrap_or(0));
            }
        }
        if count != SYMBOLS {
            return Err(ParseIdError::Length(count));
        }
        // The final symbol carries one bit; the four padding bits must be zero so that every
        // ID has exactly one spelling.
        if bits[256..].iter().any(|&b| b != 0) {
            return Err(ParseIdError::Trailing);
        }
        let mut out = [0u8; 32];
        for (i, bit) in bits[..256].iter().enumerate() {
            out[i / 8] |= bit << (7 - i % 8);
        }
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_groups() {
        let id = PeerId::from_spki(b"some key");
        let s = id.to_string();
        assert_eq!(s.len(), SYMBOLS + SYMBOLS / GROUP - 1);
        assert_eq!(s.split('-').count(), 13);
        assert_eq!(s.parse::<PeerId>(), Ok(id));
        assert_eq!(s.to_lowercase().replace('-', "").parse::<PeerId>(), Ok(id));
        assert_eq!(id.short(), s[..4]);
    }

    #[test]
    fn rejects_bad_spellings() {
        let s = PeerId::from_bytes([0xff; 32]).to_string();
        assert_eq!(s[..s.len() - 1].parse::<PeerId>(), Err(ParseIdError::Length(51)));
        assert!(matches!(s.replace('7', "1").parse::<PeerId>(), Err(ParseIdError::Character('1'))));
        // The last symbol of an all-ones ID is 'Q' (1 followed by four zero bits); 'R' sets a
        // padding bit.
        assert!(s.ends_with('Q'));
        let bad = format!("{}R", &s[..s.len() - 1]);
        assert_eq!(bad.parse::<PeerId>(), Err(ParseIdError::Trailing));
    }
}
