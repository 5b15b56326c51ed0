//! Child-side library: receive validated OSC from the fd vitrine hands a visualization.
//!
//! With `[ipc] transport = "fd"`, vitrine starts the visualization with one end of a
//! SOCK_SEQPACKET socket pair at fd 3 and `VITRINE_OSC_FD=3` in its environment. Every packet
//! on it is one OSC message vitrine validated against the policy's `[[osc.params]]` and
//! re-encoded, with the visualization's prefix already stripped: `/speed` arrives as `/speed`
//! with exactly the declared type (a `float` param always carries one `f`, an `impulse` none).
//!
//! ```no_run
//! let mut osc = vitrine_sdk::Receiver::from_env()?;
//! for message in osc.messages() {
//!     let message = message?;
//!     if message.address == "/speed" {
//!         println!("speed = {:?}", message.args.first().and_then(|a| a.as_f32()));
//!     }
//! }
//! # Ok::<(), vitrine_sdk::Error>(())
//! ```
//!
//! A render loop that must not block uses [`Receiver::try_recv`] once per frame instead.
//! Replies go back with [`Receiver::send`]; vitrine validates them like any other OSC and offers
//! them to the controllers that recently sent to this visualization.

#![forbid(unsafe_code)]

use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv, send};
use vitrine_osc::encode::encode_message;
use vitrine_osc::wire::{self, Arg};

/// The environment variable naming the fd (default 3).
pub const FD_ENV: &str = "VITRINE_OSC_FD";
/// The fd when the variable is absent.
pub const DEFAULT_FD: RawFd = 3;
/// Larger packets are never sent by vitrine; the buffer is sized for any datagram anyway.
const BUFFER: usize = 65536;

/// Why receiving or sending failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{FD_ENV} is not a file descriptor number: {0:?}")]
    BadEnv(String),
    #[error("fd {fd} is not a socket vitrine handed over")]
    NotASocket { fd: RawFd, source: Errno },
    #[error("receiving from the OSC fd failed")]
    Recv(#[source] Errno),
    #[error("sending to the OSC fd failed")]
    Send(#[source] Errno),
    #[error("vitrine sent a packet that does not decode ({0})")]
    Malformed(vitrine_osc::Reason),
}

/// One argument, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    String(String),
    Blob(Vec<u8>),
    Bool(bool),
    Nil,
    Infinitum,
    Time(u64),
    Char(u32),
    /// RGBA.
    Color([u8; 4]),
    /// Port id, status, data1, data2.
    Midi([u8; 4]),
}

impl Value {
    /// The number as f32 (floats, and ints converted), else `None`.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::Float(v) => Some(v),
            Value::Double(v) => Some(v as f32),
            Value::Int(v) => Some(v as f32),
            Value::Long(v) => Some(v as f32),
            _ => None,
        }
    }

    fn from_arg(arg: Arg<'_>) -> Value {
        match arg {
            Arg::Int(v) => Value::Int(v),
            Arg::Long(v) => Value::Long(v),
            Arg::Float(v) => Value::Float(v),
            Arg::Double(v) => Value::Double(v),
            Arg::Str(s) | Arg::Symbol(s) => Value::String(String::from_utf8_lossy(s).into_owned()),
            Arg::Blob(b) => Value::Blob(b.to_vec()),
            Arg::Time(t) => Value::Time(t),
            Arg::True => Value::Bool(true),
            Arg::False => Value::Bool(false),
            Arg::Nil => Value::Nil,
            Arg::Infinitum => Value::Infinitum,
            Arg::Char(c) => Value::Char(c),
            Arg::Color(c) => Value::Color(c),
            Arg::Midi(m) => Value::Midi(m),
        }
    }
}

/// One received message, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub address: String,
    pub args: Vec<Value>,
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.address)?;
        for arg in &self.args {
            match arg {
                Value::Float(v) => write!(f, " f:{v}")?,
                Value::Int(v) => write!(f, " i:{v}")?,
                Value::String(s) => write!(f, " s:{s:?}")?,
                Value::Bool(b) => write!(f, " {}", if *b { "T" } else { "F" })?,
                other => write!(f, " {other:?}")?,
            }
        }
        Ok(())
    }
}

/// The receiving end of vitrine's OSC channel.
#[derive(Debug)]
pub struct Receiver {
    fd: RawFd,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Receiver {
    /// Uses the fd named by `VITRINE_OSC_FD` (default 3) and checks that it is a socket.
    pub fn from_env() -> Result<Receiver, Error> {
        let fd = match std::env::var(FD_ENV) {
            Ok(v) => v.trim().parse().map_err(|_| Error::BadEnv(v))?,
            Err(_) => DEFAULT_FD,
        };
        Receiver::from_raw_fd(fd)
    }

    /// Uses `fd`, which must be the SOCK_SEQPACKET end vitrine handed over. The receiver does
    /// not own it: the fd lives as long as the process.
    pub fn from_raw_fd(fd: RawFd) -> Result<Receiver, Error> {
        // A zero-length peek touches nothing but fails on an fd that is not an open socket.
        match recv(fd, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
            Ok(_) | Err(Errno::EAGAIN) => {}
            Err(source) => return Err(Error::NotASocket { fd, source }),
        }
        Ok(Receiver { fd, buf: vec![0; BUFFER], out: Vec::new() })
    }

    /// Blocks until a message arrives; `Ok(None)` when vitrine closed the channel.
    pub fn recv(&mut self) -> Result<Option<Message>, Error> {
        self.receive(MsgFlags::empty())
    }

    /// Returns a message if one is waiting, without blocking; `Ok(None)` when none is (or the
    /// channel is closed: check [`Receiver::recv`] when that matters).
    pub fn try_recv(&mut self) -> Result<Option<Message>, Error> {
        match self.receive(MsgFlags::MSG_DONTWAIT) {
            Err(Error::Recv(Errno::EAGAIN)) => Ok(None),
            other => other,
        }
    }

    /// A blocking iterator over messages; it ends when vitrine closes the channel.
    pub fn messages(&mut self) -> Messages<'_> {
        Messages { receiver: self }
    }

    /// Sends a reply (feedback) to vitrine, which validates it against this visualization's
    /// parameters and forwards it to subscribed controllers.
    pub fn send(&mut self, address: &str, args: &[Arg<'_>]) -> Result<(), Error> {
        encode_message(&mut self.out, address, args);
        send(self.fd, &self.out, MsgFlags::MSG_NOSIGNAL).map(drop).map_err(Error::Send)
    }

    fn receive(&mut self, flags: MsgFlags) -> Result<Option<Message>, Error> {
        let n = loop {
            match recv(self.fd, &mut self.buf, flags) {
                Err(Errno::EINTR) => continue,
                other => break other.map_err(Error::Recv)?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let mut message = None;
        wire::for_each_message(&self.buf[..n], BUFFER, &mut |_, m| {
            message.get_or_insert_with(|| Message {
                address: m.address.to_owned(),
                args: m.args().map(Value::from_arg).collect(),
            });
        })
        .map_err(Error::Malformed)?;
        Ok(message)
    }
}

/// See [`Receiver::messages`].
#[derive(Debug)]
pub struct Messages<'a> {
    receiver: &'a mut Receiver,
}

impl Iterator for Messages<'_> {
    type Item = Result<Message, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.recv().transpose()
    }
}
