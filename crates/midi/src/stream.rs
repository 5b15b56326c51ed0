//! One input port's byte stream from parse to policy decision, and the OSC it becomes.

use std::time::Instant;

use vitrine_osc::Arg;
use vitrine_osc::encode::encode_parts;

use crate::gate::Gate;
use crate::message::ShortMessage;
use crate::parser::{DEFAULT_SYSEX_CAP, Event, Parser};
use crate::reason::Counters;

/// The OSC address validated MIDI is delivered at (one `m` argument).
pub const OSC_ADDRESS: &str = vitrine_policy::MIDI_ADDRESS;
/// The OSC address of allowed SysEx messages: one `b` blob, the port id followed by F0…F7.
pub const OSC_SYSEX_ADDRESS: &str = vitrine_policy::MIDI_SYSEX_ADDRESS;

/// A message that passed parsing and the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted<'a> {
    Message(ShortMessage),
    SysEx(&'a [u8]),
}

impl Accepted<'_> {
    /// Encodes the canonical OSC packet a visualization receives into `out` (cleared first):
    /// `/midi ,m [port status data1 data2]`, or `/midi/sysex ,b [port F0 … F7]`. The port id
    /// leads the blob as it leads the `m` argument, so one typed parameter (`blob`) carries it.
    pub fn encode_osc(&self, port: u8, out: &mut Vec<u8>) {
        self.encode_osc_under("", port, out);
    }

    /// As [`Accepted::encode_osc`], with the address under `prefix` (a visualization's
    /// external `[osc] prefix`), for routing through the OSC router like any other source.
    pub fn encode_osc_under(&self, prefix: &str, port: u8, out: &mut Vec<u8>) {
        match self {
            Accepted::Message(m) => {
                encode_parts(out, &[prefix, OSC_ADDRESS], &[Arg::Midi(m.to_osc_midi(port))])
            }
            Accepted::SysEx(bytes) => {
                let blob: Vec<u8> = std::iter::once(port).chain(bytes.iter().copied()).collect();
                encode_parts(out, &[prefix, OSC_SYSEX_ADDRESS], &[Arg::Blob(&blob)])
            }
        }
    }
}

/// The parser and counters of one input port. The gate is passed in because it is shared by
/// every port of a visualization.
#[derive(Debug, Clone)]
pub struct PortStream {
    id: u8,
    parser: Parser,
    counters: Counters,
}

impl PortStream {
    /// A stream for port `id` (the first byte of every `m` argument), parsing SysEx only when
    /// `gate` allows it.
    pub fn new(id: u8, gate: &Gate) -> Self {
        PortStream {
            id,
            parser: Parser::with_sysex(gate.sysex_allowed(), DEFAULT_SYSEX_CAP),
            counters: Counters::default(),
        }
    }

    pub fn id(&self) -> u8 {
        self.id
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Parses `bytes` and calls `accept` with each message the policy lets through; every
    /// other outcome is counted.
    pub fn feed(
        &mut self,
        gate: &mut Gate,
        bytes: &[u8],
        now: Instant,
        accept: &mut impl FnMut(Accepted<'_>),
    ) {
        let counters = &mut self.counters;
        self.parser.feed(bytes, &mut |event| {
            let (verdict, accepted) = match event {
                Event::Message(m) => (gate.admit(&m, now), Accepted::Message(m)),
                Event::SysEx(b) => (gate.admit_sysex(now), Accepted::SysEx(b)),
                Event::Dropped(reason) => return counters.count_drop(reason),
            };
            match verdict {
                Ok(()) => {
                    counters.accepted += 1;
                    accept(accepted);
                }
                Err(reason) => counters.count_drop(reason),
            }
        });
    }
}
