//! The policy side: which messages a visualization accepts, and how many per second.

use std::time::Instant;

use vitrine_osc::rate::TokenBucket;
use vitrine_policy::{Midi, MidiMessageKind};

use crate::message::ShortMessage;
use crate::reason::DropReason;

/// A visualization's `[midi]` table turned into constant-time checks plus its rate bucket.
///
/// One gate serves every input port of a visualization, so `max_rate` holds for all ports
/// together, as `[osc] max_rate` does for all OSC sources.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Bit `n` set: channel `n + 1` is allowed.
    channels: u16,
    /// Bit `kind_bit(k)` set: kind `k` is allowed.
    kinds: u16,
    sysex: bool,
    bucket: TokenBucket,
}

impl Gate {
    pub fn new(midi: &Midi, now: Instant) -> Self {
        let channels = if midi.channels.is_empty() {
            u16::MAX
        } else {
            midi.channels
                .iter()
                .filter(|c| (1..=16).contains(*c))
                .fold(0, |acc, c| acc | 1 << (c - 1))
        };
        let kinds = midi.messages.iter().fold(0, |acc, k| acc | 1 << kind_bit(*k));
        Gate { channels, kinds, sysex: midi.sysex, bucket: TokenBucket::new(midi.max_rate, now) }
    }

    /// Whether the policy lets SysEx through (the parser is configured from this).
    pub fn sysex_allowed(&self) -> bool {
        self.sysex
    }

    /// Checks a parsed message against the policy, then takes a token for it.
    pub fn admit(&mut self, message: &ShortMessage, now: Instant) -> Result<(), DropReason> {
        let kind = message.kind().ok_or(DropReason::Ignored)?;
        if self.kinds & (1 << kind_bit(kind)) == 0 {
            return Err(DropReason::Kind);
        }
        if let Some(channel) = message.channel()
            && self.channels & (1 << (channel - 1)) == 0
        {
            return Err(DropReason::Channel);
        }
        self.take(now)
    }

    /// Admits a complete SysEx message (the parser refuses them already when not allowed).
    pub fn admit_sysex(&mut self, now: Instant) -> Result<(), DropReason> {
        if !self.sysex {
            return Err(DropReason::SysexRefused);
        }
        self.take(now)
    }

    fn take(&mut self, now: Instant) -> Result<(), DropReason> {
        if self.bucket.try_take(now) { Ok(()) } else { Err(DropReason::Rate) }
    }
}

fn kind_bit(kind: MidiMessageKind) -> u16 {
    use MidiMessageKind::*;
    match kind {
        Note => 0,
        PolyAftertouch => 1,
        Cc => 2,
        Program => 3,
        ChannelAftertouch => 4,
        Pitchbend => 5,
        Clock => 6,
        Transport => 7,
    }
}
