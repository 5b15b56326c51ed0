//! The encoder of the canonical packets children receive.
//!
//! Children never see bytes a sender wrote: every delivered message is built here from a
//! validated value, into a buffer the caller reuses, so the hot path does not allocate once
//! the buffers have grown to the usual message size.

use crate::wire::Arg;

/// A validated value as a child receives it; the type follows the parameter's declared type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Float(f32),
    Int(i32),
    Bool(bool),
    Str(&'a str),
    /// An impulse carries no argument.
    Impulse,
    Blob(&'a [u8]),
    Color([u8; 4]),
    Midi([u8; 4]),
}

impl<'a> Value<'a> {
    /// The value as an OSC argument (`None` for an impulse).
    pub fn as_arg(&self) -> Option<Arg<'a>> {
        Some(match *self {
            Value::Float(v) => Arg::Float(v),
            Value::Int(v) => Arg::Int(v),
            Value::Bool(true) => Arg::True,
            Value::Bool(false) => Arg::False,
            Value::Str(s) => Arg::Str(s.as_bytes()),
            Value::Impulse => return None,
            Value::Blob(b) => Arg::Blob(b),
            Value::Color(c) => Arg::Color(c),
            Value::Midi(m) => Arg::Midi(m),
        })
    }
}

/// Writes the message `address` with `value` into `out` (cleared first).
pub fn encode_value(out: &mut Vec<u8>, address: &str, value: &Value<'_>) {
    encode_parts(out, &[address], value.as_arg().as_slice());
}

/// Writes a message whose address is the concatenation of `address_parts` (for example a
/// prefix and a parameter address) into `out` (cleared first).
pub fn encode_parts(out: &mut Vec<u8>, address_parts: &[&str], args: &[Arg<'_>]) {
    out.clear();
    for part in address_parts {
        out.extend_from_slice(part.as_bytes());
    }
    pad_string(out);
    out.push(b',');
    for arg in args {
        out.push(tag_of(arg));
    }
    pad_string(out);
    for arg in args {
        write_arg(out, arg);
    }
}

/// Writes a message with arbitrary arguments (tests, the SDK's replies, benchmarks).
pub fn encode_message(out: &mut Vec<u8>, address: &str, args: &[Arg<'_>]) {
    encode_parts(out, &[address], args);
}

/// Writes a bundle header; append elements with [`push_bundle_element`].
pub fn begin_bundle(out: &mut Vec<u8>, timetag: u64) {
    out.clear();
    out.extend_from_slice(b"#bundle\0");
    out.extend_from_slice(&timetag.to_be_bytes());
}

/// Appends one element (an encoded message or bundle) to a bundle started with [`begin_bundle`].
pub fn push_bundle_element(out: &mut Vec<u8>, element: &[u8]) {
    let len = u32::try_from(element.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(element);
}

/// Terminates the string just written with a NUL and pads to a multiple of 4.
fn pad_string(out: &mut Vec<u8>) {
    out.push(0);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

fn tag_of(arg: &Arg<'_>) -> u8 {
    match arg {
        Arg::Int(_) => b'i',
        Arg::Long(_) => b'h',
        Arg::Float(_) => b'f',
        Arg::Double(_) => b'd',
        Arg::Str(_) => b's',
        Arg::Symbol(_) => b'S',
        Arg::Blob(_) => b'b',
        Arg::Time(_) => b't',
        Arg::True => b'T',
        Arg::False => b'F',
        Arg::Nil => b'N',
        Arg::Infinitum => b'I',
        Arg::Char(_) => b'c',
        Arg::Color(_) => b'r',
        Arg::Midi(_) => b'm',
    }
}

fn write_arg(out: &mut Vec<u8>, arg: &Arg<'_>) {
    match *arg {
        Arg::Int(v) => out.extend_from_slice(&v.to_be_bytes()),
        Arg::Long(v) => out.extend_from_slice(&v.to_be_bytes()),
        Arg::Float(v) => out.extend_from_slice(&v.to_be_bytes()),
        Arg::Double(v) => out.extend_from_slice(&v.to_be_bytes()),
        Arg::Str(s) | Arg::Symbol(s) => {
            out.extend_from_slice(s);
            pad_string(out);
        }
        Arg::Blob(b) => {
            let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(b);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        }
        Arg::Time(v) => out.extend_from_slice(&v.to_be_bytes()),
        Arg::True | Arg::False | Arg::Nil | Arg::Infinitum => {}
        Arg::Char(v) => out.extend_from_slice(&v.to_be_bytes()),
        Arg::Color(c) | Arg::Midi(c) => out.extend_from_slice(&c),
    }
}
