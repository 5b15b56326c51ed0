//! The peer wire format: `u32` big-endian length, one type byte, a typed payload.
//!
//! Everything here reads bytes from a peer that may be hostile or broken. The length is checked
//! against [`MAX_FRAME`] before any buffer is sized, every field is read through a bounded
//! [`Reader`], and the decoder returns errors instead of panicking (fuzz target `peer_frame`).

/// The largest frame body (type byte + payload). OSC packets larger than this are not relayed.
pub const MAX_FRAME: usize = 64 * 1024;
/// Longest box name carried in hello/welcome.
pub const MAX_NAME: usize = 64;
/// Longest refusal reason.
pub const MAX_REASON: usize = 256;
/// Longest SPKI accepted in a rotation statement (Ed25519 needs 44 bytes).
pub const MAX_SPKI: usize = 512;
/// The wire protocol version carried in `Hello`.
pub const PROTOCOL_VERSION: u8 = 1;

/// One message between two peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame from the dialing side.
    Hello(Hello),
    /// The accepting side admits the link.
    Welcome(Welcome),
    /// The accepting side waits for a human pairing decision.
    Pending(Pending),
    /// The link is refused; the connection closes after this frame.
    Refused {
        reason: String,
    },
    /// The dialing side opens its pairing commitment.
    PairReveal {
        nonce: [u8; 32],
    },
    /// A human confirmed the short code on the sending side.
    PairConfirm,
    /// A raw OSC packet, validated by the receiver like any local OSC.
    Osc(Vec<u8>),
    /// An opaque status document (UTF-8 JSON by convention).
    Status(Vec<u8>),
    /// The sender's old key vouches for its new key.
    Rotate(Rotate),
    /// The receiver has re-pinned the sender.
    RotateAck,
    Ping(u64),
    Pong(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u8,
    pub name: String,
    /// HMAC proof of the site key (see `proof::site_proof`), when this box has one.
    pub site_proof: Option<[u8; 32]>,
    /// SHA-256 commitment to a pairing nonce, when this box is in a pairing window.
    pub pair_commit: Option<[u8; 32]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub name: String,
    pub site_proof: Option<[u8; 32]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub name: String,
    pub pair_nonce: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotate {
    /// The new key's SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// Old key's Ed25519 signature over the rotation statement (see `proof::rotation_message`).
    pub signature: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is larger than the limit of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("empty frame")]
    Empty,
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("frame ends inside a field")]
    Truncated,
    #[error("{0} bytes after the end of the frame")]
    Trailing(usize),
    #[error("field too long: {0}")]
    FieldTooLong(&'static str),
    #[error("text field is not UTF-8")]
    NotUtf8,
    #[error("invalid flag byte {0}")]
    BadFlag(u8),
}

const T_HELLO: u8 = 1;
const T_WELCOME: u8 = 2;
const T_PENDING: u8 = 3;
const T_REFUSED: u8 = 4;
const T_PAIR_REVEAL: u8 = 5;
const T_PAIR_CONFIRM: u8 = 6;
const T_OSC: u8 = 7;
const T_STATUS: u8 = 8;
const T_ROTATE: u8 = 9;
const T_ROTATE_ACK: u8 = 10;
const T_PING: u8 = 11;
const T_PONG: u8 = 12;

impl Frame {
    /// The frame with its length prefix, ready to write. Oversized frames are an error, so a
    /// sender never emits what a receiver must reject.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = vec![0u8; 4];
        self.encode_body(&mut out)?;
        let len = out.len() - 4;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        let len32 = u32::try_from(len).map_err(|_| FrameError::TooLarge(len))?;
        out[..4].copy_from_slice(&len32.to_be_bytes());
        Ok(out)
    }

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        match self {
            Frame::Hello(h) => {
                out.push(T_HELLO);
                out.push(h.version);
                put_str(out, &h.name, MAX_NAME, "name")?;
                put_opt(out, h.site_proof.as_ref());
                put_opt(out, h.pair_commit.as_ref());
            }
            Frame::Welcome(w) => {
                out.push(T_WELCOME);
                put_str(out, &w.name, MAX_NAME, "name")?;
                put_opt(out, w.site_proof.as_ref());
            }
            Frame::Pending(p) => {
                out.push(T_PENDING);
                put_str(out, &p.name, MAX_NAME, "name")?;
                out.extend_from_slice(&p.pair_nonce);
            }
            Frame::Refused { reason } => {
                out.push(T_REFUSED);
                put_str(out, reason, MAX_REASON, "reason")?;
            }
            Frame::PairReveal { nonce } => {
                out.push(T_PAIR_REVEAL);
                out.extend_from_slice(nonce);
            }
            Frame::PairConfirm => out.push(T_PAIR_CONFIRM),
            Frame::Osc(p) => {
                out.push(T_OSC);
                out.extend_from_slice(p);
            }
            Frame::Status(s) => {
                out.push(T_STATUS);
                out.extend_from_slice(s);
            }
            Frame::Rotate(r) => {
                out.push(T_ROTATE);
                put_bytes(out, &r.spki, MAX_SPKI, "spki")?;
                put_bytes(out, &r.signature, 64, "signature")?;
            }
            Frame::RotateAck => out.push(T_ROTATE_ACK),
            Frame::Ping(n) => {
                out.push(T_PING);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Frame::Pong(n) => {
                out.push(T_PONG);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        Ok(())
    }

    /// Parses one frame body (without the length prefix).
    pub fn parse(body: &[u8]) -> Result<Frame, FrameError> {
        if body.len() > MAX_FRAME {
            return Err(FrameError::TooLarge(body.len()));
        }
        let (&kind, rest) = body.split_first().ok_or(FrameError::Empty)?;
        let mut r = Reader(rest);
        let frame = match kind {
            T_HELLO => Frame::Hello(Hello {
                version: r.u8()?,
                name: r.str(MAX_NAME, "name")?,
                site_proof: r.opt32()?,
                pair_commit: r.opt32()?,
            }),
            T_WELCOME => {
                Frame::Welcome(Welcome { name: r.str(MAX_NAME, "name")?, site_proof: r.opt32()? })
            }
            T_PENDING => {
                Frame::Pending(Pending { name: r.str(MAX_NAME, "name")?, pair_nonce: r.arr32()? })
            }
            T_REFUSED => Frame::Refused { reason: r.str(MAX_REASON, "reason")? },
            T_PAIR_REVEAL => Frame::PairReveal { nonce: r.arr32()? },
            T_PAIR_CONFIRM => Frame::PairConfirm,
            T_OSC => Frame::Osc(r.rest()),
            T_STATUS => Frame::Status(r.rest()),
            T_ROTATE => Frame::Rotate(Rotate {
                spki: r.bytes(MAX_SPKI, "spki")?,
                signature: r.bytes(64, "signature")?,
            }),
            T_ROTATE_ACK => Frame::RotateAck,
            T_PING => Frame::Ping(r.u64()?),
            T_PONG => Frame::Pong(r.u64()?),
            other => return Err(FrameError::UnknownType(other)),
        };
        if !r.0.is_empty() {
            return Err(FrameError::Trailing(r.0.len()));
        }
        Ok(frame)
    }

    /// Decodes the first frame of `buf`: `Ok(None)` when more bytes are needed, else the frame
    /// and how many bytes it used. The length is checked before waiting for the body.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        let Some(len) = frame_len(buf)? else { return Ok(None) };
        let Some(body) = buf.get(4..4 + len) else { return Ok(None) };
        Ok(Some((Frame::parse(body)?, 4 + len)))
    }

    /// A short name for logs and violation reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "hello",
            Frame::Welcome(_) => "welcome",
            Frame::Pending(_) => "pending",
            Frame::Refused { .. } => "refused",
            Frame::PairReveal { .. } => "pair-reveal",
            Frame::PairConfirm => "pair-confirm",
            Frame::Osc(_) => "osc",
            Frame::Status(_) => "status",
            Frame::Rotate(_) => "rotate",
            Frame::RotateAck => "rotate-ack",
            Frame::Ping(_) => "ping",
            Frame::Pong(_) => "pong",
        }
    }
}

/// The body length announced by a 4-byte prefix, refused when above [`MAX_FRAME`].
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..4) else { return Ok(None) };
    let mut b = [0u8; 4];
    b.copy_from_slice(prefix);
    let len = usize::try_from(u32::from_be_bytes(b)).unwrap_or(usize::MAX);
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok(Some(len))
}

/// Decodes every frame in `data` until the first error; the body of the `peer_frame` fuzz target.
pub fn fuzz_decode(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((frame, used))) = Frame::decode(rest) {
        // Every frame that decodes must encode back to the same bytes.
        if let Ok(again) = frame.encode() {
            assert_eq!(&again[..], &rest[..used], "re-encoding changed a {} frame", frame.kind());
        }
        rest = &rest[used..];
    }
}

fn put_str(out: &mut Vec<u8>, s: &str, max: usize, what: &'static str) -> Result<(), FrameError> {
    put_bytes(out, s.as_bytes(), max, what)
}

fn put_bytes(
    out: &mut Vec<u8>,
    b: &[u8],
    max: usize,
    what: &'static str,
) -> Result<(), FrameError> {
    let len = u16::try_from(b.len()).map_err(|_| FrameError::FieldTooLong(what))?;
    if b.len() > max {
        return Err(FrameError::FieldTooLong(what));
    }
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

fn put_opt(out: &mut Vec<u8>, v: Option<&[u8; 32]>) {
    match v {
        Some(a) => {
            out.push(1);
            out.extend_from_slice(a);
        }
        None => out.push(0),
    }
}

/// A cursor that only ever hands out bytes that exist.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    fn arr32(&mut self) -> Result<[u8; 32], FrameError> {
        let mut b = [0u8; 32];
        b.copy_from_slice(self.take(32)?);
        Ok(b)
    }

    fn opt32(&mut self) -> Result<Option<[u8; 32]>, FrameError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.arr32()?)),
            f => Err(FrameError::BadFlag(f)),
        }
    }

    fn bytes(&mut self, max: usize, what: &'static str) -> Result<Vec<u8>, FrameError> {
        let mut b = [0u8; 2];
        b.copy_from_slice(self.take(2)?);
        let len = usize::from(u16::from_be_bytes(b));
        if len > max {
            return Err(FrameError::FieldTooLong(what));
        }
        Ok(self.take(len)?.to_vec())
    }

    fn str(&mut self, max: usize, what: &'static str) -> Result<String, FrameError> {
        String::from_utf8(self.bytes(max, what)?).map_err(|_| FrameError::NotUtf8)
    }

    fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Frame> {
        vec![
            Frame::Hello(Hello {
                version: 1,
                name: "box-a".into(),
                site_proof: Some([7; 32]),
                pair_commit: None,
            }),
            Frame::Welcome(Welcome { name: "b".into(), site_proof: None }),
            Frame::Pending(Pending { name: "c".into(), pair_nonce: [3; 32] }),
            Frame::Refused { reason: "forgotten".into() },
            Frame::PairReveal { nonce: [9; 32] },
            Frame::PairConfirm,
            Frame::Osc(b"/a\0\0,f\0\0\0\0\0\0".to_vec()),
            Frame::Status(b"{}".to_vec()),
            Frame::Rotate(Rotate { spki: vec![1; 44], signature: vec![2; 64] }),
            Frame::RotateAck,
            Frame::Ping(42),
            Frame::Pong(u64::MAX),
        ]
    }

    #[test]
    fn every_frame_round_trips_and_streams() {
        let mut stream = Vec::new();
        for f in all() {
            let bytes = f.encode().unwrap();
            assert_eq!(Frame::decode(&bytes).unwrap(), Some((f.clone(), bytes.len())));
            // Any strict prefix asks for more bytes rather than failing or guessing.
            for cut in 0..bytes.len() {
                assert_eq!(Frame::decode(&bytes[..cut]).unwrap(), None, "{}", f.kind());
            }
            stream.extend_from_slice(&bytes);
        }
        fuzz_decode(&stream);
    }

    #[test]
    fn oversized_frames_are_refused_before_the_body_arrives() {
        let prefix = u32::try_from(MAX_FRAME + 1).unwrap().to_be_bytes();
        assert_eq!(Frame::decode(&prefix), Err(FrameError::TooLarge(MAX_FRAME + 1)));
        assert_eq!(Frame::decode(&[0xff; 4]), Err(FrameError::TooLarge(u32::MAX as usize)));
        let big = Frame::Osc(vec![0; MAX_FRAME]);
        assert_eq!(big.encode(), Err(FrameError::TooLarge(MAX_FRAME + 1)));
        assert!(Frame::Osc(vec![0; MAX_FRAME - 1]).encode().is_ok());
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert_eq!(Frame::parse(&[]), Err(FrameError::Empty));
        assert_eq!(Frame::parse(&[200]), Err(FrameError::UnknownType(200)));
        assert_eq!(Frame::parse(&[T_PING, 0, 0]), Err(FrameError::Truncated));
        assert_eq!(Frame::parse(&[T_PAIR_CONFIRM, 1]), Err(FrameError::Trailing(1)));
        assert_eq!(Frame::parse(&[T_WELCOME, 0, 0, 2]), Err(FrameError::BadFlag(2)));
        assert_eq!(Frame::parse(&[T_REFUSED, 0, 1, 0xff]), Err(FrameError::NotUtf8));
        assert_eq!(Frame::parse(&[T_REFUSED, 0xff, 0xff]), Err(FrameError::FieldTooLong("reason")));
    }
}
