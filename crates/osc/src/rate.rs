//! Token buckets and the per-source table that turns repeated violations into a block.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A token bucket that holds at most one second of its rate (at least one token).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling `rate` tokens per second.
    pub fn new(rate: u32, now: Instant) -> Self {
        Self::with_burst(rate, rate, now)
    }

    /// A full bucket refilling `rate` tokens per second and holding at most `burst` (at least
    /// one), for callers that allow a burst other than one second's worth.
    pub fn with_burst(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket { rate: f64::from(rate), burst, tokens: burst, last: now }
    }

    /// Takes one token when there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Puts back a token taken by a message that was refused by a later check, so a refusal
    /// by the visualization or parameter bucket does not also cost the source.
    pub fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }
}

/// Per-source limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLimits {
    /// Messages per second one source IP may send, all visualizations together.
    pub rate: u32,
    /// Rate violations per second a source may commit before it is blocked; it may commit
    /// this many in a burst.
    pub violations: u32,
    /// How long a blocked source stays blocked.
    pub cooldown: Duration,
    /// At most this many sources are tracked; idle ones are forgotten first.
    pub max_sources: usize,
}

impl Default for SourceLimits {
    fn default() -> Self {
        // One controller sweeping a bank of high-resolution faders stays well below this; a
        // flood does not, and is blocked within a fraction of a second.
        SourceLimits {
            rate: 20_000,
            violations: 1000,
            cooldown: Duration::from_secs(30),
            max_sources: 1024,
        }
    }
}

/// What a source's check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Over the source's rate (this message is dropped).
    OverRate,
    /// Blocked for a cooldown (this message is dropped).
    Blocked,
    /// This violation started a block: the caller reports it (audit, events).
    NewlyBlocked {
        until: Instant,
    },
}

#[derive(Debug)]
struct Source {
    bucket: TokenBucket,
    strikes: TokenBucket,
    blocked_until: Option<Instant>,
    last_seen: Instant,
}

/// The rate state of every sender IP.
#[derive(Debug)]
pub struct Sources {
    limits: SourceLimits,
    table: HashMap<IpAddr, Source>,
}

impl Sources {
    pub fn new(limits: SourceLimits) -> Self {
        Sources { limits, table: HashMap::new() }
    }

    /// Checks one message from `ip` against its bucket and block.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Admission {
        if !self.table.contains_key(&ip) {
            self.make_room(now);
        }
        let limits = self.limits;
        let source = self.table.entry(ip).or_insert_with(|| Source {
            bucket: TokenBucket::new(limits.rate, now),
            strikes: TokenBucket::new(limits.violations, now),
            blocked_until: None,
            last_seen: now,
        });
        source.last_seen = now;
        if let Some(until) = source.blocked_until {
            if now < until {
                return Admission::Blocked;
            }
            source.blocked_until = None;
            source.strikes = TokenBucket::new(limits.violations, now);
        }
        if source.bucket.try_take(now) {
            return Admission::Admitted;
        }
        Self::strike(source, limits, now).unwrap_or(Admission::OverRate)
    }

    /// Records a violation by `ip` found after admission (visualization or parameter rate).
    /// Returns `NewlyBlocked` when it exhausted the source's patience.
    pub fn violation(&mut self, ip: IpAddr, now: Instant) -> Option<Admission> {
        let limits = self.limits;
        let source = self.table.get_mut(&ip)?;
        source.bucket.refund();
        Self::strike(source, limits, now)
    }

    fn strike(source: &mut Source, limits: SourceLimits, now: Instant) -> Option<Admission> {
        if source.strikes.try_take(now) {
            return None;
        }
        let until = now + limits.cooldown;
        source.blocked_until = Some(until);
        Some(Admission::NewlyBlocked { until })
    }

    /// Keeps the table bounded: forget sources idle for a cooldown, then the oldest.
    fn make_room(&mut self, now: Instant) {
        if self.table.len() < self.limits.max_sources {
            return;
        }
        let cooldown = self.limits.cooldown;
        self.table.retain(|_, s| {
            s.blocked_until.is_some_and(|u| u > now)
                || now.saturating_duration_since(s.last_seen) < cooldown
        });
        while self.table.len() >= self.limits.max_sources {
            let oldest = self
                .table
                .iter()
                .filter(|(_, s)| s.blocked_until.is_none())
                .min_by_key(|(_, s)| s.last_seen);
            let Some((&ip, _)) =
                oldest.or_else(|| self.table.iter().min_by_key(|(_, s)| s.last_seen))
            else {
                return;
            };
            self.table.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_burst_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::with_burst(10, 3, t0);
        assert!((0..3).all(|_| b.try_take(t0)));
        assert!(!b.try_take(t0));
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        assert!(!b.try_take(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn bucket_refills_with_time() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, t0);
        for _ in 0..10 {
            assert!(b.try_take(t0));
        }
        assert!(!b.try_take(t0));
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        assert!(!b.try_take(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn repeated_violations_block_then_cooldown_ends() {
        let limits = SourceLimits {
            rate: 2,
            violations: 3,
            cooldown: Duration::from_secs(5),
            max_sources: 8,
        };
        let mut s = Sources::new(limits);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let t0 = Instant::now();
        assert_eq!(s.admit(ip, t0), Admission::Admitted);
        assert_eq!(s.admit(ip, t0), Admission::Admitted);
        for _ in 0..3 {
            assert_eq!(s.admit(ip, t0), Admission::OverRate);
        }
        assert_eq!(s.admit(ip, t0), Admission::NewlyBlocked { until: t0 + Duration::from_secs(5) });
        assert_eq!(s.admit(ip, t0 + Duration::from_secs(4)), Admission::Blocked);
        assert_eq!(s.admit(ip, t0 + Duration::from_secs(5)), Admission::Admitted);
        let other: IpAddr = [10, 0, 0, 2].into();
        assert_eq!(s.admit(other, t0), Admission::Admitted, "blocks are per source");
    }

    #[test]
    fn table_stays_bounded() {
        let limits = SourceLimits { max_sources: 4, ..SourceLimits::default() };
        let mut s = Sources::new(limits);
        let t0 = Instant::now();
        for i in 0..100u8 {
            s.admit([10, 0, 1, i].into(), t0);
        }
        assert!(s.table.len() <= 4);
    }
}
