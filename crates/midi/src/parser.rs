//! The MIDI 1.0 byte-stream state machine.
//!
//! Bytes may arrive in any split (one per read from a raw MIDI port, or whole messages from the
//! ALSA sequencer); the parser keeps the partial message between calls. It follows the MIDI 1.0
//! specification: running status for channel voice messages, realtime bytes (F8–FF) allowed
//! anywhere, even between the data bytes of another message or inside SysEx, without disturbing
//! it; system common messages cancel running status; any status byte other than realtime ends
//! an open SysEx. It never allocates beyond the SysEx cap and never panics.

use crate::message::{ShortMessage, data_len};
use crate::reason::DropReason;

/// SysEx messages longer than this (F0 and F7 included) are dropped unless configured otherwise.
pub const DEFAULT_SYSEX_CAP: usize = vitrine_policy::MIDI_SYSEX_CAP;

const SYSEX_START: u8 = 0xF0;
const SYSEX_END: u8 = 0xF7;

/// What the parser found in the bytes it was fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    Message(ShortMessage),
    /// A complete SysEx message, F0 and F7 included (only when SysEx is allowed).
    SysEx(&'a [u8]),
    Dropped(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sysex {
    Closed,
    /// Bytes are collected into the buffer.
    Collecting,
    /// Bytes are skipped until the SysEx ends; the reason is reported then.
    Skipping(DropReason),
}

/// A parser for one byte stream (one input port: running status is per stream).
#[derive(Debug, Clone)]
pub struct Parser {
    /// The status of the message being assembled, or the running status between messages.
    status: Option<u8>,
    data: [u8; 2],
    have: usize,
    sysex: Sysex,
    sysex_allowed: bool,
    sysex_cap: usize,
    buf: Vec<u8>,
}

impl Parser {
    /// A parser that refuses SysEx (the policy default).
    pub fn new() -> Self {
        Parser::with_sysex(false, DEFAULT_SYSEX_CAP)
    }

    /// A parser that collects SysEx messages of at most `cap` bytes when `allowed`.
    pub fn with_sysex(allowed: bool, cap: usize) -> Self {
        Parser {
            status: None,
            data: [0; 2],
            have: 0,
            sysex: Sysex::Closed,
            sysex_allowed: allowed,
            // F0 and F7 alone take two bytes; a smaller cap could never pass anything.
            sysex_cap: cap.max(2),
            buf: Vec::new(),
        }
    }

    /// Feeds `bytes`, calling `event` for every message completed and every drop.
    pub fn feed(&mut self, bytes: &[u8], event: &mut impl FnMut(Event<'_>)) {
        for &b in bytes {
            self.byte(b, event);
        }
    }

    fn byte(&mut self, b: u8, event: &mut impl FnMut(Event<'_>)) {
        if b < 0x80 {
            self.data_byte(b, event);
        } else if b >= 0xF8 {
            realtime(b, event);
        } else {
            self.status_byte(b, event);
        }
    }

    fn data_byte(&mut self, b: u8, event: &mut impl FnMut(Event<'_>)) {
        match self.sysex {
            Sysex::Collecting => return self.sysex_push(b),
            Sysex::Skipping(_) => return,
            Sysex::Closed => {}
        }
        let Some(status) = self.status else {
            return event(Event::Dropped(DropReason::StrayData));
        };
        let want = data_len(status).unwrap_or(0);
        // `have` is below the message's length (at most 2) whenever a status is set.
        if let Some(slot) = self.data.get_mut(self.have) {
            *slot = b;
        }
        self.have += 1;
        if self.have < want {
            return;
        }
        let message = ShortMessage::new(status, self.data);
        self.have = 0;
        self.data = [0; 2];
        // Only channel voice messages leave a running status behind.
        if status >= 0xF0 {
            self.status = None;
        }
        event(Event::Message(message));
    }

    fn status_byte(&mut self, b: u8, event: &mut impl FnMut(Event<'_>)) {
        if self.sysex != Sysex::Closed {
            self.end_sysex(b == SYSEX_END, event);
            if b == SYSEX_END {
                return;
            }
            // Any other status byte cut the SysEx short and now starts something new.
        }
        if self.pending() {
            event(Event::Dropped(DropReason::Truncated));
        }
        self.have = 0;
        self.data = [0; 2];
        self.status = None;
        match b {
            SYSEX_START => self.start_sysex(),
            SYSEX_END | 0xF4 | 0xF5 => event(Event::Dropped(DropReason::Undefined)),
            0xF6 => event(Event::Message(ShortMessage::new(b, [0; 2]))),
            _ => self.status = Some(b),
        }
    }

    /// Whether a message has started and is missing data bytes (a running status alone with no
    /// data yet is not pending: nothing was lost).
    fn pending(&self) -> bool {
        match self.status {
            Some(s) if s >= 0xF0 => true,
            Some(_) => self.have > 0,
            None => false,
        }
    }

    fn start_sysex(&mut self) {
        if self.sysex_allowed {
            self.buf.clear();
            self.buf.push(SYSEX_START);
            self.sysex = Sysex::Collecting;
        } else {
            self.sysex = Sysex::Skipping(DropReason::SysexRefused);
        }
    }

    fn sysex_push(&mut self, b: u8) {
        // Keep one byte of the cap for the closing F7.
        if self.buf.len() + 1 < self.sysex_cap {
            self.buf.push(b);
        } else {
            self.buf.clear();
            self.sysex = Sysex::Skipping(DropReason::SysexOverflow);
        }
    }

    /// Closes the open SysEx: with F7 a collected message is complete, with any other status
    /// byte it was cut short.
    fn end_sysex(&mut self, proper_end: bool, event: &mut impl FnMut(Event<'_>)) {
        let state = std::mem::replace(&mut self.sysex, Sysex::Closed);
        match state {
            Sysex::Collecting if proper_end => {
                self.buf.push(SYSEX_END);
                event(Event::SysEx(&self.buf));
            }
            Sysex::Collecting => event(Event::Dropped(DropReason::Truncated)),
            Sysex::Skipping(reason) => event(Event::Dropped(reason)),
            Sysex::Closed => {}
        }
        self.buf.clear();
    }
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new()
    }
}

/// Realtime bytes are complete messages of one byte; they do not touch any other state.
fn realtime(b: u8, event: &mut impl FnMut(Event<'_>)) {
    match b {
        0xF9 | 0xFD => event(Event::Dropped(DropReason::Undefined)),
        _ => event(Event::Message(ShortMessage::new(b, [0; 2]))),
    }
}
