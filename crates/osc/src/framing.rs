//! Stream framing for OSC packets: SLIP (RFC 1055, double-END as OSC 1.1 specifies) and a
//! big-endian u32 length prefix. Both decoders cap the frame size before buffering, so a
//! hostile stream costs at most `max` bytes of memory.

const END: u8 = 0xC0;
const ESC: u8 = 0xDB;
const ESC_END: u8 = 0xDC;
const ESC_ESC: u8 = 0xDD;

/// A framing error; the decoder resynchronizes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame longer than {max} bytes")]
    TooLong { max: usize },
    #[error("SLIP escape followed by an invalid byte")]
    BadEscape,
}

/// Appends `packet` SLIP-encoded (END, escaped bytes, END) to `out`.
pub fn slip_encode(packet: &[u8], out: &mut Vec<u8>) {
    out.push(END);
    for &b in packet {
        match b {
            END => out.extend_from_slice(&[ESC, ESC_END]),
            ESC => out.extend_from_slice(&[ESC, ESC_ESC]),
            b => out.push(b),
        }
    }
    out.push(END);
}

/// An incremental SLIP decoder.
#[derive(Debug)]
pub struct SlipDecoder {
    max: usize,
    buf: Vec<u8>,
    escaped: bool,
    /// Skipping the rest of a bad frame until the next END.
    skipping: bool,
}

impl SlipDecoder {
    pub fn new(max: usize) -> Self {
        SlipDecoder { max, buf: Vec::new(), escaped: false, skipping: false }
    }

    /// Feeds bytes; calls `frame` for every complete non-empty frame. Returns the first error
    /// met (the bad frame is skipped and decoding goes on).
    pub fn feed(&mut self, bytes: &[u8], frame: &mut dyn FnMut(&[u8])) -> Result<(), FrameError> {
        let mut first_error = None;
        for &b in bytes {
            if let Err(e) = self.byte(b, frame) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn byte(&mut self, b: u8, frame: &mut dyn FnMut(&[u8])) -> Result<(), FrameError> {
        if b == END {
            if !self.skipping && !self.escaped && !self.buf.is_empty() {
                frame(&self.buf);
            }
            self.reset();
            return Ok(());
        }
        if self.skipping {
            return Ok(());
        }
        let decoded = if self.escaped {
            self.escaped = false;
            match b {
                ESC_END => END,
                ESC_ESC => ESC,
                _ => return self.fail(FrameError::BadEscape),
            }
        } else if b == ESC {
            self.escaped = true;
            return Ok(());
        } else {
            b
        };
        if self.buf.len() >= self.max {
            return self.fail(FrameError::TooLong { max: self.max });
        }
        self.buf.push(decoded);
        Ok(())
    }

    fn fail(&mut self, e: FrameError) -> Result<(), FrameError> {
        self.reset();
        self.skipping = true;
        Err(e)
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.escaped = false;
        self.skipping = false;
    }
}

/// Appends `packet` with a big-endian u32 length prefix to `out`.
pub fn length_encode(packet: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(packet.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(packet);
}

/// An incremental length-prefix decoder. A length above `max` is an error the stream cannot
/// recover from (there is no resynchronization point), so the caller closes it.
#[derive(Debug)]
pub struct LengthDecoder {
    max: usize,
    buf: Vec<u8>,
}

impl LengthDecoder {
    pub fn new(max: usize) -> Self {
        LengthDecoder { max, buf: Vec::new() }
    }

    /// Feeds bytes; calls `frame` for every complete frame.
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        frame: &mut dyn FnMut(&[u8]),
    ) -> Result<(), FrameError> {
        while !bytes.is_empty() {
            let want = self.wanted()?;
            let take = (want - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() == want && want > 4 {
                frame(&self.buf[4..]);
                self.buf.clear();
            } else if self.buf.len() == 4 && self.wanted()? == 4 {
                // A zero-length frame carries nothing.
                self.buf.clear();
            }
        }
        Ok(())
    }

    /// Bytes of the current frame including its prefix (4 while the prefix is incomplete).
    fn wanted(&self) -> Result<usize, FrameError> {
        if self.buf.len() < 4 {
            return Ok(4);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > self.max {
            return Err(FrameError::TooLong { max: self.max });
        }
        Ok(4 + len)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failing unwrap is a failing test.
mod tests {
    use super::*;

    fn frames_slip(d: &mut SlipDecoder, bytes: &[u8]) -> (Vec<Vec<u8>>, Result<(), FrameError>) {
        let mut out = Vec::new();
        let r = d.feed(bytes, &mut |f| out.push(f.to_vec()));
        (out, r)
    }

    #[test]
    fn slip_round_trip_with_escapes_split_anywhere() {
        let packets: [&[u8]; 3] = [b"/a\0\0,\0\0\0", &[END, ESC, 1, END], &[ESC_END, ESC_ESC]];
        let mut wire = Vec::new();
        for p in packets {
            slip_encode(p, &mut wire);
        }
        for split in 0..wire.len() {
            let mut d = SlipDecoder::new(64);
            let (mut a, ra) = frames_slip(&mut d, &wire[..split]);
            let (b, rb) = frames_slip(&mut d, &wire[split..]);
            a.extend(b);
            assert_eq!((ra, rb), (Ok(()), Ok(())));
            assert_eq!(a, packets.iter().map(|p| p.to_vec()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn slip_caps_and_resynchronizes() {
        let mut d = SlipDecoder::new(4);
        let (f, r) = frames_slip(&mut d, &[END, 1, 2, 3, 4, 5, END, 9, END]);
        assert_eq!(r, Err(FrameError::TooLong { max: 4 }));
        assert_eq!(f, vec![vec![9]]);
        let (f, r) = frames_slip(&mut d, &[ESC, 7, 8, END, 6, END]);
        assert_eq!(r, Err(FrameError::BadEscape));
        assert_eq!(f, vec![vec![6]]);
    }

    #[test]
    fn length_round_trip_and_cap() {
        let mut wire = Vec::new();
        length_encode(b"abcd", &mut wire);
        length_encode(b"", &mut wire);
        length_encode(b"xy", &mut wire);
        for split in 0..wire.len() {
            let mut d = LengthDecoder::new(16);
            let mut out = Vec::new();
            d.feed(&wire[..split], &mut |f| out.push(f.to_vec())).unwrap();
            d.feed(&wire[split..], &mut |f| out.push(f.to_vec())).unwrap();
            assert_eq!(out, vec![b"abcd".to_vec(), b"xy".to_vec()]);
        }
        let mut d = LengthDecoder::new(3);
        let r = d.feed(&[0, 0, 0, 4, 1, 2, 3, 4], &mut |_| {});
        assert_eq!(r, Err(FrameError::TooLong { max: 3 }));
    }
}
