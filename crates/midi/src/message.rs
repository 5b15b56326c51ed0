//! A complete, well-formed MIDI message as the parser emits it, and its classification.

use vitrine_policy::MidiMessageKind;

/// A MIDI message of at most three bytes: channel voice, system common or realtime.
///
/// Only the parser builds these, so `status` always has its top bit set and the data bytes
/// never do; unused data bytes are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShortMessage {
    status: u8,
    data: [u8; 2],
}

impl ShortMessage {
    pub(crate) fn new(status: u8, data: [u8; 2]) -> Self {
        debug_assert!(status & 0x80 != 0 && data[0] < 0x80 && data[1] < 0x80);
        ShortMessage { status, data }
    }

    pub fn status(&self) -> u8 {
        self.status
    }

    pub fn data1(&self) -> u8 {
        self.data[0]
    }

    pub fn data2(&self) -> u8 {
        self.data[1]
    }

    /// The channel, 1–16, of a channel voice message; `None` for system messages.
    pub fn channel(&self) -> Option<u8> {
        (self.status < 0xF0).then_some((self.status & 0x0F) + 1)
    }

    /// The policy's name for this message, or `None` for system messages no policy can ask
    /// for (tune request, active sensing, system reset).
    pub fn kind(&self) -> Option<MidiMessageKind> {
        use MidiMessageKind::*;
        Some(match self.status {
            0x80..=0x9F => Note,
            0xA0..=0xAF => PolyAftertouch,
            0xB0..=0xBF => Cc,
            0xC0..=0xCF => Program,
            0xD0..=0xDF => ChannelAftertouch,
            0xE0..=0xEF => Pitchbend,
            // Timing: the 24-per-quarter-note clock and MIDI time code quarter frames.
            0xF8 | 0xF1 => Clock,
            // Start, continue, stop, song position pointer and song select.
            0xFA | 0xFB | 0xFC | 0xF2 | 0xF3 => Transport,
            _ => return None,
        })
    }

    /// The OSC `m` argument: port id, status, data1, data2.
    pub fn to_osc_midi(&self, port: u8) -> [u8; 4] {
        [port, self.status, self.data[0], self.data[1]]
    }
}

/// How many data bytes follow `status`, for every status byte that starts a short message;
/// `None` for SysEx start/end and undefined status bytes.
pub(crate) fn data_len(status: u8) -> Option<usize> {
    match status {
        0x80..=0xBF | 0xE0..=0xEF => Some(2),
        0xC0..=0xDF => Some(1),
        0xF1 | 0xF3 => Some(1),
        0xF2 => Some(2),
        0xF6 | 0xF8 | 0xFA | 0xFB | 0xFC | 0xFE | 0xFF => Some(0),
        _ => None,
    }
}
