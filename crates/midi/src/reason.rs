//! Why a byte or message did not reach a visualization, and the counters kept per reason.

/// The reason a message (or a stray byte) was dropped. `as_str` is the `result` label of
/// `vitrine_midi_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A message was cut short by a new status byte before all its data bytes arrived.
    Truncated,
    /// A data byte arrived with no status byte (and no running status) to belong to.
    StrayData,
    /// An undefined status byte (F4, F5, F9, FD) or an end-of-SysEx with no SysEx open.
    Undefined,
    /// A SysEx message while the policy does not allow SysEx.
    SysexRefused,
    /// A SysEx message longer than the cap.
    SysexOverflow,
    /// A system message no policy can ask for: tune request, active sensing, system reset.
    Ignored,
    /// A channel message on a channel the policy does not list.
    Channel,
    /// A message kind the policy does not list.
    Kind,
    /// Over the policy's `max_rate`.
    Rate,
}

impl DropReason {
    pub const ALL: [DropReason; 9] = [
        DropReason::Truncated,
        DropReason::StrayData,
        DropReason::Undefined,
        DropReason::SysexRefused,
        DropReason::SysexOverflow,
        DropReason::Ignored,
        DropReason::Channel,
        DropReason::Kind,
        DropReason::Rate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::StrayData => "stray-data",
            DropReason::Undefined => "undefined",
            DropReason::SysexRefused => "sysex-refused",
            DropReason::SysexOverflow => "sysex-overflow",
            DropReason::Ignored => "ignored",
            DropReason::Channel => "channel",
            DropReason::Kind => "kind",
            DropReason::Rate => "rate",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Accepted and dropped counts of one input port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub accepted: u64,
    dropped: [u64; DropReason::ALL.len()],
}

impl Counters {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    pub fn count_drop(&mut self, reason: DropReason) {
        self.dropped[reason.index()] += 1;
    }

    /// Every reason with its count, including zeros, so exported series exist from the start.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.dropped[r.index()]))
    }

    /// Adds `other` into `self` (totals over ports).
    pub fn add(&mut self, other: &Counters) {
        self.accepted += other.accepted;
        for (a, b) in self.dropped.iter_mut().zip(other.dropped) {
            *a += b;
        }
    }
}
