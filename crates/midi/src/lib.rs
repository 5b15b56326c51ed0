//! MIDI 1.0 input for vitrine: a byte-stream parser, the policy's filter and rate limit, and
//! the OSC packets validated MIDI becomes; ALSA sequencer input behind the `alsa` feature.
//!
//! Nothing here trusts the device: bytes from a controller go through [`Parser`] (a MIDI 1.0
//! state machine that caps SysEx and never panics), then through the visualization's [`Gate`]
//! (channels, message kinds, SysEx, `max_rate`), and only what passes is encoded — by us — as
//! an OSC message:
//!
//! | MIDI | OSC delivered to the child |
//! |---|---|
//! | channel voice, system common, realtime | `/midi ,m [port, status, data1, data2]` (unused data bytes 0) |
//! | SysEx (only with `sysex = true`, at most 256 bytes) | `/midi/sysex ,b [port, F0 … F7]` |
//!
//! Message kinds of the policy: `note` (8n, 9n), `poly-aftertouch` (An), `cc` (Bn), `program`
//! (Cn), `channel-aftertouch` (Dn), `pitchbend` (En), `clock` (F8 timing clock, F1 time code
//! quarter frame), `transport` (FA start, FB continue, FC stop, F2 song position, F3 song
//! select). Tune request (F6), active sensing (FE) and reset (FF) are never forwarded.
//!
//! ```
//! use std::time::Instant;
//! use vitrine_midi::{Gate, PortStream};
//! # let midi = vitrine_policy::Midi { inputs: vec!["*".into()], channels: vec![1],
//! #     messages: vec![vitrine_policy::MidiMessageKind::Note], sysex: false, max_rate: 1000 };
//! let now = Instant::now();
//! let mut gate = Gate::new(&midi, now);
//! let mut port = PortStream::new(0, &gate);
//! let mut packets = Vec::new();
//! port.feed(&mut gate, &[0x90, 60, 100, 61, 100], now, &mut |m| {
//!     let mut osc = Vec::new();
//!     m.encode_osc(0, &mut osc);
//!     packets.push(osc);
//! });
//! assert_eq!(packets.len(), 2); // the second note used running status
//! ```

#![forbid(unsafe_code)]

#[cfg(feature = "alsa")]
pub mod alsa;
mod gate;
mod glob;
mod message;
mod parser;
mod reason;
mod stream;

pub use gate::Gate;
pub use glob::glob_match;
pub use message::ShortMessage;
pub use parser::{DEFAULT_SYSEX_CAP, Event, Parser};
pub use reason::{Counters, DropReason};
pub use stream::{Accepted, OSC_ADDRESS, OSC_SYSEX_ADDRESS, PortStream};

/// The fuzzing entry: parses arbitrary bytes with SysEx allowed and refused, and checks the
/// invariants every emitted message must hold.
pub fn fuzz_parse(bytes: &[u8]) {
    for allowed in [false, true] {
        let mut parser = Parser::with_sysex(allowed, DEFAULT_SYSEX_CAP);
        parser.feed(bytes, &mut |event| match event {
            Event::Message(m) => {
                assert!(m.status() >= 0x80 && m.data1() < 0x80 && m.data2() < 0x80);
            }
            Event::SysEx(s) => {
                assert!(allowed && s.len() <= DEFAULT_SYSEX_CAP);
                assert!(s.first() == Some(&0xF0) && s.last() == Some(&0xF7));
                assert!(s[1..s.len() - 1].iter().all(|b| *b < 0x80));
            }
            Event::Dropped(_) => {}
        });
    }
}
