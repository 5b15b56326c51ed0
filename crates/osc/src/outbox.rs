//! The bounded, non-blocking queue of encoded messages waiting for one visualization.
//!
//! When the child lags, a message of a `coalesce` parameter replaces the queued message of the
//! same parameter in place (the child only ever needs the latest value); any other message
//! makes room by dropping the oldest queued message. Every drop is counted by reason. Buffers
//! are recycled, so a warmed-up outbox does not allocate.

use std::collections::VecDeque;

use crate::Reason;

/// Queued messages per visualization by default.
pub const DEFAULT_CAPACITY: usize = 256;

#[derive(Debug)]
struct Slot {
    /// The parameter index when it coalesces.
    coalesce: Option<usize>,
    bytes: Vec<u8>,
}

/// A visualization's outbox.
#[derive(Debug)]
pub struct Outbox {
    capacity: usize,
    queue: VecDeque<Slot>,
    /// Sequence number of `queue[0]`.
    head_seq: u64,
    /// For each coalescing parameter, the sequence number of its queued message.
    queued: Vec<Option<u64>>,
    free: Vec<Vec<u8>>,
    dropped_full: u64,
    dropped_coalesced: u64,
}

impl Outbox {
    /// An outbox for `params` parameters holding at most `capacity` (≥ 1) messages.
    pub fn new(capacity: usize, params: usize) -> Self {
        Outbox {
            capacity: capacity.max(1),
            queue: VecDeque::with_capacity(capacity.max(1)),
            head_seq: 0,
            queued: vec![None; params],
            free: Vec::new(),
            dropped_full: 0,
            dropped_coalesced: 0,
        }
    }

    /// Queues a message built by `fill` into a recycled buffer. `coalesce` is the parameter's
    /// index when that parameter coalesces. Returns the reason of the drop it caused, if any.
    pub fn push(
        &mut self,
        coalesce: Option<usize>,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Option<Reason> {
        if let Some(seq) = coalesce.and_then(|p| self.queued.get(p).copied().flatten()) {
            let index = usize::try_from(seq - self.head_seq).unwrap_or(usize::MAX);
            if let Some(slot) = self.queue.get_mut(index) {
                fill(&mut slot.bytes);
                self.dropped_coalesced += 1;
                return Some(Reason::Coalesced);
            }
        }
        let mut dropped = None;
        if self.queue.len() >= self.capacity {
            self.pop_front();
            self.dropped_full += 1;
            dropped = Some(Reason::OutboxFull);
        }
        let mut bytes = self.free.pop().unwrap_or_default();
        fill(&mut bytes);
        let seq = self.head_seq + self.queue.len() as u64;
        if let Some(p) = coalesce
            && let Some(q) = self.queued.get_mut(p)
        {
            *q = Some(seq);
        }
        self.queue.push_back(Slot { coalesce, bytes });
        dropped
    }

    /// The oldest queued message.
    pub fn front(&self) -> Option<&[u8]> {
        self.queue.front().map(|s| s.bytes.as_slice())
    }

    /// Removes the oldest queued message (after it was sent or could never be sent).
    pub fn pop_front(&mut self) {
        let Some(slot) = self.queue.pop_front() else { return };
        if let Some(q) = slot.coalesce.and_then(|p| self.queued.get_mut(p))
            && *q == Some(self.head_seq)
        {
            *q = None;
        }
        self.head_seq += 1;
        if self.free.len() < self.capacity {
            self.free.push(slot.bytes);
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Messages dropped to make room (oldest first).
    pub fn dropped_full(&self) -> u64 {
        self.dropped_full
    }

    /// Queued values replaced by a newer value of the same coalescing parameter.
    pub fn dropped_coalesced(&self) -> u64 {
        self.dropped_coalesced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(o: &mut Outbox) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(b) = o.front() {
            out.push(b.to_vec());
            o.pop_front();
        }
        out
    }

    #[test]
    fn full_outbox_drops_oldest() {
        let mut o = Outbox::new(2, 1);
        assert_eq!(o.push(None, |b| *b = vec![1]), None);
        assert_eq!(o.push(None, |b| *b = vec![2]), None);
        assert_eq!(o.push(None, |b| *b = vec![3]), Some(Reason::OutboxFull));
        assert_eq!(drain(&mut o), vec![vec![2], vec![3]]);
        assert_eq!(o.dropped_full(), 1);
    }

    #[test]
    fn coalescing_keeps_latest_in_place() {
        let mut o = Outbox::new(8, 2);
        o.push(Some(0), |b| *b = vec![10]);
        o.push(None, |b| *b = vec![20]);
        assert_eq!(o.push(Some(0), |b| *b = vec![11]), Some(Reason::Coalesced));
        o.push(Some(1), |b| *b = vec![30]);
        assert_eq!(drain(&mut o), vec![vec![11], vec![20], vec![30]]);
        // After the queued value left, a new value queues again instead of replacing.
        assert_eq!(o.push(Some(0), |b| *b = vec![12]), None);
        assert_eq!(drain(&mut o), vec![vec![12]]);
        assert_eq!(o.dropped_coalesced(), 1);
    }

    #[test]
    fn coalesced_slot_dropped_as_oldest_is_forgotten() {
        let mut o = Outbox::new(1, 1);
        o.push(Some(0), |b| *b = vec![1]);
        assert_eq!(o.push(None, |b| *b = vec![2]), Some(Reason::OutboxFull));
        assert_eq!(o.push(Some(0), |b| *b = vec![3]), Some(Reason::OutboxFull));
        assert_eq!(drain(&mut o), vec![vec![3]]);
    }
}
