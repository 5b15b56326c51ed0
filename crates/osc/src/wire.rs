//! The structural pre-check and a zero-copy OSC 1.0 decoder.
//!
//! A datagram is walked twice: once to prove its whole structure sound (sizes, alignment,
//! terminated and NUL-padded strings, known type tags, blob and bundle element lengths, bundle
//! depth, nothing left over) and once to hand each message to the caller. Nothing here
//! allocates, recurses deeper than [`MAX_BUNDLE_DEPTH`] or panics on hostile bytes, which is
//! why we do not hand untrusted bytes to a general-purpose decoder: rosc, for instance,
//! recurses once per nested bundle without a limit.
//!
//! Accepted type tags: `i h f d s S b t T F N I c r m`. Arrays (`[` `]`) are valid OSC 1.1 but
//! no parameter type takes one, so they are refused as `unsupported-type-tag` rather than
//! parsed and then thrown away.

use crate::Reason;

/// Bundles may nest this deep (a top-level bundle has depth 1).
pub const MAX_BUNDLE_DEPTH: usize = 4;

/// The timetag meaning "immediately".
pub const IMMEDIATELY: u64 = 1;

const BUNDLE_TAG: &[u8; 8] = b"#bundle\0";

/// One decoded argument, borrowing from the packet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg<'a> {
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    /// `s`: raw bytes (UTF-8 is checked by validation, not here).
    Str(&'a [u8]),
    /// `S`: an alternate string type, treated like `s`.
    Symbol(&'a [u8]),
    Blob(&'a [u8]),
    Time(u64),
    True,
    False,
    Nil,
    Infinitum,
    Char(u32),
    /// `r`: RGBA.
    Color([u8; 4]),
    /// `m`: port id, status, data1, data2.
    Midi([u8; 4]),
}

/// One message of a packet, borrowing from it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The address or address pattern (printable ASCII, starts with `/`).
    pub address: &'a str,
    /// The type tags without the leading `,`.
    pub tags: &'a [u8],
    args: &'a [u8],
}

impl<'a> Message<'a> {
    /// The arguments in order. The structure was checked before a `Message` exists, so the
    /// iterator simply stops if it ever met something it cannot read.
    pub fn args(&self) -> ArgIter<'a> {
        ArgIter { tags: self.tags, reader: Reader { buf: self.args, pos: 0 } }
    }
}

/// Checks the whole structure of `packet` without visiting anything.
pub fn check(packet: &[u8], max_packet: usize) -> Result<(), Reason> {
    for_each_message(packet, max_packet, &mut |_, _| {})
}

/// Checks the whole packet first, then calls `visit(timetag, message)` for every message in
/// order (bundles flattened). `timetag` is the largest timetag of the enclosing bundles, or
/// [`IMMEDIATELY`] for a bare message. Nothing is visited when the check fails.
pub fn for_each_message<'a>(
    packet: &'a [u8],
    max_packet: usize,
    visit: &mut dyn FnMut(u64, Message<'a>),
) -> Result<(), Reason> {
    if packet.len() > max_packet {
        return Err(Reason::Oversized);
    }
    if packet.is_empty() {
        return Err(Reason::Truncated);
    }
    if packet.len() % 4 != 0 {
        return Err(Reason::Misaligned);
    }
    parse_element(packet, 0, IMMEDIATELY, &mut |_, _| {})?;
    parse_element(packet, 0, IMMEDIATELY, visit)
}

/// Parses one packet or bundle element: a message or a bundle at `depth` (0 = top level).
fn parse_element<'a>(
    buf: &'a [u8],
    depth: usize,
    timetag: u64,
    visit: &mut dyn FnMut(u64, Message<'a>),
) -> Result<(), Reason> {
    if buf.first() == Some(&b'#') {
        parse_bundle(buf, depth + 1, timetag, visit)
    } else {
        let message = parse_message(buf)?;
        visit(timetag, message);
        Ok(())
    }
}

fn parse_bundle<'a>(
    buf: &'a [u8],
    depth: usize,
    outer: u64,
    visit: &mut dyn FnMut(u64, Message<'a>),
) -> Result<(), Reason> {
    if depth > MAX_BUNDLE_DEPTH {
        return Err(Reason::BundleTooDeep);
    }
    let mut r = Reader { buf, pos: 0 };
    if r.take(8)? != BUNDLE_TAG {
        return Err(Reason::BadAddress);
    }
    // OSC says an inner bundle's time must not precede the outer one; keeping the largest
    // makes a far-future outer bundle impossible to undercut from inside.
    let tag = r.u64()?;
    let timetag = if outer == IMMEDIATELY { tag } else { tag.max(outer) };
    while r.remaining() > 0 {
        let size = r.u32()? as usize;
        if size % 4 != 0 {
            return Err(Reason::Misaligned);
        }
        if size == 0 {
            return Err(Reason::Truncated);
        }
        if size > r.remaining() {
            return Err(Reason::ElementOverflow);
        }
        let element = r.take(size)?;
        parse_element(element, depth, timetag, visit)?;
    }
    Ok(())
}

fn parse_message(buf: &[u8]) -> Result<Message<'_>, Reason> {
    let mut r = Reader { buf, pos: 0 };
    let address = r.padded_str()?;
    if address.first() != Some(&b'/') || !address.iter().all(|&b| is_address_byte(b)) {
        return Err(Reason::BadAddress);
    }
    let address = std::str::from_utf8(address).map_err(|_| Reason::BadAddress)?;
    if r.remaining() == 0 {
        // OSC 1.0 tolerates a missing type tag string; we do not guess what the sender meant.
        return Err(Reason::BadTypeTag);
    }
    let tags = r.padded_str()?;
    let Some((&b',', tags)) = tags.split_first() else {
        return Err(Reason::BadTypeTag);
    };
    let args = &buf[r.pos..];
    let mut arg_reader = Reader { buf: args, pos: 0 };
    for &tag in tags {
        read_arg(tag, &mut arg_reader)?;
    }
    if arg_reader.remaining() != 0 {
        return Err(Reason::TrailingBytes);
    }
    Ok(Message { address, tags, args })
}

/// Printable ASCII without space and `#` (OSC 1.0 address characters plus pattern syntax,
/// whose `{a,b}` needs the comma).
fn is_address_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b'#'
}

fn read_arg<'a>(tag: u8, r: &mut Reader<'a>) -> Result<Arg<'a>, Reason> {
    Ok(match tag {
        b'i' => Arg::Int(r.u32()? as i32),
        b'h' => Arg::Long(r.u64()? as i64),
        b'f' => Arg::Float(f32::from_bits(r.u32()?)),
        b'd' => Arg::Double(f64::from_bits(r.u64()?)),
        b's' => Arg::Str(r.padded_str()?),
        b'S' => Arg::Symbol(r.padded_str()?),
        b'b' => Arg::Blob(r.blob()?),
        b't' => Arg::Time(r.u64()?),
        b'T' => Arg::True,
        b'F' => Arg::False,
        b'N' => Arg::Nil,
        b'I' => Arg::Infinitum,
        b'c' => Arg::Char(r.u32()?),
        b'r' => Arg::Color(r.u32()?.to_be_bytes()),
        b'm' => Arg::Midi(r.u32()?.to_be_bytes()),
        b'[' | b']' => return Err(Reason::UnsupportedTypeTag),
        _ => return Err(Reason::UnknownTypeTag),
    })
}

/// The arguments of a checked message.
#[derive(Debug, Clone)]
pub struct ArgIter<'a> {
    tags: &'a [u8],
    reader: Reader<'a>,
}

impl<'a> Iterator for ArgIter<'a> {
    type Item = Arg<'a>;

    fn next(&mut self) -> Option<Arg<'a>> {
        let (&tag, rest) = self.tags.split_first()?;
        self.tags = rest;
        match read_arg(tag, &mut self.reader) {
            Ok(arg) => Some(arg),
            Err(_) => {
                self.tags = &[];
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.tags.len()))
    }
}

/// A bounded big-endian reader: every read checks the remaining length first.
#[derive(Debug, Clone)]
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Reason> {
        if n > self.remaining() {
            return Err(Reason::Truncated);
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, Reason> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Reason> {
        let hi = u64::from(self.u32()?);
        let lo = u64::from(self.u32()?);
        Ok((hi << 32) | lo)
    }

    /// An OSC string: bytes up to a NUL, then NUL padding to a multiple of 4.
    fn padded_str(&mut self) -> Result<&'a [u8], Reason> {
        let rest = &self.buf[self.pos..];
        let len = rest.iter().position(|&b| b == 0).ok_or(Reason::UnterminatedString)?;
        let padded = (len + 4) & !3;
        let field = self.take(padded)?;
        if field[len..].iter().any(|&b| b != 0) {
            return Err(Reason::BadPadding);
        }
        Ok(&field[..len])
    }

    fn blob(&mut self) -> Result<&'a [u8], Reason> {
        let len = self.u32()? as usize;
        if len > self.remaining() {
            return Err(Reason::BlobOverflow);
        }
        let padded = (len + 3) & !3;
        if padded > self.remaining() {
            return Err(Reason::BlobOverflow);
        }
        let field = self.take(padded)?;
        if field[len..].iter().any(|&b| b != 0) {
            return Err(Reason::BadPadding);
        }
        Ok(&field[..len])
    }
}
