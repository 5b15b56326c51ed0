//! The router: from a datagram a controller sent to the outboxes of the visualizations whose
//! parameters it addresses.
//!
//! External address = the visualization's prefix + the parameter's address; the prefix is
//! stripped on delivery. A pattern may reach several parameters of several visualizations,
//! but only addresses the schema knows. Bundles are flattened: a bundle whose timetag is more
//! than [`RouterConfig::future_horizon`] ahead of the wall clock is dropped, every other one
//! (immediate, past or near future) is delivered on arrival — vitrine does not schedule.
//!
//! Feedback: a visualization's replies are validated against its own parameters (exact
//! addresses only), rate-limited by its `max_rate`, given its external prefix and offered to
//! its subscribers: the last [`RouterConfig::subscribers`] distinct senders whose messages
//! reached it within [`RouterConfig::subscriber_ttl`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vitrine_policy::Osc;

use crate::encode::{encode_parts, encode_value};
use crate::outbox::{DEFAULT_CAPACITY, Outbox};
use crate::rate::{Admission, SourceLimits, Sources, TokenBucket};
use crate::validate::validate;
use crate::wire::{self, IMMEDIATELY, Message};
use crate::{Reason, pattern};

/// Limits of a router; the defaults suit an installation box.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    /// Larger datagrams are refused (`[osc] max_packet`).
    pub max_packet: usize,
    pub sources: SourceLimits,
    /// Bundles timed further ahead than this are dropped.
    pub future_horizon: Duration,
    /// Queued messages per visualization.
    pub outbox_capacity: usize,
    /// Feedback goes to at most this many recent senders.
    pub subscribers: usize,
    /// A sender stays subscribed this long after its last delivered message.
    pub subscriber_ttl: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            max_packet: 8192,
            sources: SourceLimits::default(),
            future_horizon: Duration::from_secs(10),
            outbox_capacity: DEFAULT_CAPACITY,
            subscribers: 8,
            subscriber_ttl: Duration::from_secs(60),
        }
    }
}

/// A visualization attached to a router; valid until it is detached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TargetId(pub usize);

/// A source that just got blocked; the caller audits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    pub source: IpAddr,
    pub cooldown: Duration,
}

/// What routing one datagram did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Routed {
    /// Messages queued for delivery (a pattern reaching two visualizations counts twice).
    pub delivered: u32,
    /// Messages refused (each counted under its reason).
    pub rejected: u32,
    /// Set when the whole datagram failed the structural check.
    pub malformed: Option<Reason>,
    pub blocked: Option<Blocked>,
    /// Messages admitted from their source but addressed to no visualization here (counted in
    /// `rejected` too): candidates for a peer box that runs the visualization.
    pub unknown: u32,
}

#[derive(Debug)]
struct Target {
    name: String,
    prefix: String,
    osc: Osc,
    bucket: TokenBucket,
    feedback_bucket: TokenBucket,
    param_buckets: Vec<Option<TokenBucket>>,
    outbox: Outbox,
    forwarded: u64,
    subscribers: Vec<(SocketAddr, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    target: usize,
    param: usize,
}

/// Routes validated messages to visualization outboxes. Synchronous and allocation-free per
/// message once warmed up; the supervisor owns one behind a lock.
#[derive(Debug)]
pub struct Router {
    config: RouterConfig,
    targets: Vec<Option<Target>>,
    exact: HashMap<String, Entry>,
    all: Vec<(String, Entry)>,
    sources: Sources,
    rejected: [u64; Reason::COUNT],
}

/// Per-visualization counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStats {
    pub name: String,
    pub forwarded: u64,
    pub dropped_full: u64,
    pub dropped_coalesced: u64,
    pub queued: usize,
}

impl Router {
    pub fn new(config: RouterConfig) -> Self {
        let sources = Sources::new(config.sources);
        Router {
            config,
            targets: Vec::new(),
            exact: HashMap::new(),
            all: Vec::new(),
            sources,
            rejected: [0; Reason::COUNT],
        }
    }

    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// Attaches a visualization (replacing one of the same name) and returns its id.
    pub fn attach(&mut self, name: &str, osc: &Osc, now: Instant) -> TargetId {
        if let Some(id) = self.find(name) {
            self.detach(id);
        }
        let target = Target {
            name: name.to_owned(),
            prefix: osc.prefix.trim_end_matches('/').to_owned(),
            osc: osc.clone(),
            bucket: TokenBucket::new(osc.max_rate, now),
            feedback_bucket: TokenBucket::new(osc.max_rate, now),
            param_buckets: osc
                .params
                .iter()
                .map(|p| p.max_rate.map(|r| TokenBucket::new(r, now)))
                .collect(),
            outbox: Outbox::new(self.config.outbox_capacity, osc.params.len()),
            forwarded: 0,
            subscribers: Vec::with_capacity(self.config.subscribers),
        };
        let index = match self.targets.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.targets.push(None);
                self.targets.len() - 1
            }
        };
        self.targets[index] = Some(target);
        self.reindex();
        TargetId(index)
    }

    /// Detaches a visualization; its queued messages are discarded.
    pub fn detach(&mut self, id: TargetId) {
        if let Some(slot) = self.targets.get_mut(id.0) {
            *slot = None;
        }
        self.reindex();
    }

    /// The id of the attached visualization called `name`.
    pub fn find(&self, name: &str) -> Option<TargetId> {
        self.targets.iter().position(|t| t.as_ref().is_some_and(|t| t.name == name)).map(TargetId)
    }

    /// The ids of visualizations with queued messages.
    pub fn pending(&self) -> impl Iterator<Item = TargetId> + '_ {
        self.targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.as_ref().is_some_and(|t| !t.outbox.is_empty()))
            .map(|(i, _)| TargetId(i))
    }

    /// Calls `f` with every visualization that has queued messages and its outbox, without
    /// allocating (the delivery path runs this after every datagram).
    pub fn for_each_pending(&mut self, mut f: impl FnMut(TargetId, &mut Outbox)) {
        for (i, target) in self.targets.iter_mut().enumerate() {
            if let Some(t) = target
                && !t.outbox.is_empty()
            {
                f(TargetId(i), &mut t.outbox);
            }
        }
    }

    /// The outbox of a visualization, for the delivery path to drain.
    pub fn outbox(&mut self, id: TargetId) -> Option<&mut Outbox> {
        self.target_mut(id).map(|t| &mut t.outbox)
    }

    /// How many messages were refused for `reason` so far.
    pub fn rejected(&self, reason: Reason) -> u64 {
        self.rejected[reason as usize]
    }

    /// Counts a refusal found outside the router (ingress: allow_from, truncation).
    pub fn count_rejected(&mut self, reason: Reason) {
        self.rejected[reason as usize] += 1;
    }

    /// Counters of every attached visualization.
    pub fn target_stats(&self) -> Vec<TargetStats> {
        self.targets
            .iter()
            .flatten()
            .map(|t| TargetStats {
                name: t.name.clone(),
                forwarded: t.forwarded,
                dropped_full: t.outbox.dropped_full(),
                dropped_coalesced: t.outbox.dropped_coalesced(),
                queued: t.outbox.len(),
            })
            .collect()
    }

    /// Routes one datagram from `from`. Nothing is delivered unless the whole datagram passes
    /// the structural check.
    pub fn route(
        &mut self,
        packet: &[u8],
        from: SocketAddr,
        now: Instant,
        wall: SystemTime,
    ) -> Routed {
        let mut routed = Routed::default();
        let horizon = ntp_time(wall + self.config.future_horizon);
        let max = self.config.max_packet;
        let result = wire::for_each_message(packet, max, &mut |timetag, message| {
            self.route_message(timetag, &message, from, now, horizon, &mut routed);
        });
        if let Err(reason) = result {
            self.count_rejected(reason);
            routed.malformed = Some(reason);
        }
        routed
    }

    fn route_message(
        &mut self,
        timetag: u64,
        message: &Message<'_>,
        from: SocketAddr,
        now: Instant,
        horizon: u64,
        routed: &mut Routed,
    ) {
        if timetag != IMMEDIATELY && timetag > horizon {
            return self.reject(Reason::FutureTimetag, routed);
        }
        match self.sources.admit(from.ip(), now) {
            Admission::Admitted => {}
            Admission::OverRate => return self.reject(Reason::RateSource, routed),
            Admission::Blocked => return self.reject(Reason::SourceBlocked, routed),
            Admission::NewlyBlocked { until } => {
                routed.blocked = Some(self.blocked(from.ip(), until, now));
                return self.reject(Reason::SourceBlocked, routed);
            }
        }
        if !pattern::is_pattern(message.address) {
            match self.exact.get(message.address).copied() {
                Some(entry) => self.deliver(entry, message, from, now, routed),
                None => {
                    routed.unknown += 1;
                    self.reject(Reason::UnknownAddress, routed);
                }
            }
            return;
        }
        let mut matched = false;
        for i in 0..self.all.len() {
            let (address, entry) = &self.all[i];
            if pattern::matches(message.address, address) {
                let entry = *entry;
                matched = true;
                self.deliver(entry, message, from, now, routed);
            }
        }
        if !matched {
            routed.unknown += 1;
            self.reject(Reason::UnknownAddress, routed);
        }
    }

    fn deliver(
        &mut self,
        entry: Entry,
        message: &Message<'_>,
        from: SocketAddr,
        now: Instant,
        routed: &mut Routed,
    ) {
        let Some(target) = self.targets[entry.target].as_mut() else { return };
        let param = &target.osc.params[entry.param];
        let value = match validate(&param.kind, message) {
            Ok(v) => v,
            Err(reason) => return self.reject(reason, routed),
        };
        let over = if !target.bucket.try_take(now) {
            Some(Reason::RateVisualization)
        } else if target.param_buckets[entry.param].as_mut().is_some_and(|b| !b.try_take(now)) {
            target.bucket.refund();
            Some(Reason::RateParam)
        } else {
            None
        };
        if let Some(reason) = over {
            if let Some(Admission::NewlyBlocked { until }) = self.sources.violation(from.ip(), now)
            {
                routed.blocked = Some(self.blocked(from.ip(), until, now));
            }
            return self.reject(reason, routed);
        }
        let coalesce = param.coalesce.then_some(entry.param);
        let address = param.address.as_str();
        target.outbox.push(coalesce, |buf| encode_value(buf, address, &value));
        target.forwarded += 1;
        subscribe(&mut target.subscribers, self.config.subscribers, from, now);
        routed.delivered += 1;
    }

    /// Validates a datagram the visualization `id` sent back and calls `out` with each reply,
    /// re-encoded under the visualization's external prefix. Returns how many were offered.
    pub fn feedback(
        &mut self,
        id: TargetId,
        packet: &[u8],
        now: Instant,
        out: &mut dyn FnMut(&[u8]),
    ) -> Result<u32, Reason> {
        let max = self.config.max_packet;
        let mut buf = Vec::new();
        let mut offered = 0;
        let mut refused = Vec::new();
        let Some(target) = self.targets.get_mut(id.0).and_then(Option::as_mut) else {
            return Ok(0);
        };
        let result = wire::for_each_message(packet, max, &mut |_, message| {
            let Some(param) = target.osc.params.iter().find(|p| p.address == message.address)
            else {
                return refused.push(Reason::UnknownAddress);
            };
            let value = match validate(&param.kind, &message) {
                Ok(v) => v,
                Err(reason) => return refused.push(reason),
            };
            if !target.feedback_bucket.try_take(now) {
                return refused.push(Reason::RateVisualization);
            }
            encode_parts(&mut buf, &[&target.prefix, &param.address], value.as_arg().as_slice());
            out(&buf);
            offered += 1;
        });
        for reason in refused {
            self.count_rejected(reason);
        }
        result.map(|()| offered).inspect_err(|&reason| self.count_rejected(reason))
    }

    /// The senders subscribed to a visualization's feedback.
    pub fn subscribers(&self, id: TargetId, now: Instant) -> Vec<SocketAddr> {
        let ttl = self.config.subscriber_ttl;
        self.target(id)
            .map(|t| {
                t.subscribers
                    .iter()
                    .filter(|(_, seen)| now.saturating_duration_since(*seen) < ttl)
                    .map(|(a, _)| *a)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn blocked(&self, source: IpAddr, until: Instant, now: Instant) -> Blocked {
        Blocked { source, cooldown: until.saturating_duration_since(now) }
    }

    fn reject(&mut self, reason: Reason, routed: &mut Routed) {
        self.rejected[reason as usize] += 1;
        routed.rejected += 1;
    }

    fn target(&self, id: TargetId) -> Option<&Target> {
        self.targets.get(id.0).and_then(Option::as_ref)
    }

    fn target_mut(&mut self, id: TargetId) -> Option<&mut Target> {
        self.targets.get_mut(id.0).and_then(Option::as_mut)
    }

    /// Rebuilds the address index after attach/detach (not on the hot path).
    fn reindex(&mut self) {
        self.exact.clear();
        self.all.clear();
        for (ti, target) in self.targets.iter().enumerate() {
            let Some(target) = target else { continue };
            for (pi, param) in target.osc.params.iter().enumerate() {
                let full = format!("{}{}", target.prefix, param.address);
                let entry = Entry { target: ti, param: pi };
                self.exact.insert(full.clone(), entry);
                self.all.push((full, entry));
            }
        }
    }
}

/// Remembers `from` as a recent sender, keeping at most `max` (the least recent goes).
fn subscribe(list: &mut Vec<(SocketAddr, Instant)>, max: usize, from: SocketAddr, now: Instant) {
    if let Some(entry) = list.iter_mut().find(|(a, _)| *a == from) {
        entry.1 = now;
        return;
    }
    if list.len() >= max {
        let Some(oldest) =
            list.iter().enumerate().min_by_key(|(_, (_, seen))| *seen).map(|(i, _)| i)
        else {
            return;
        };
        list.swap_remove(oldest);
    }
    if max > 0 {
        list.push((from, now));
    }
}

/// Seconds since 1900 in the upper 32 bits, fraction in the lower: OSC's timetag format.
pub fn ntp_time(t: SystemTime) -> u64 {
    const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs().saturating_add(NTP_UNIX_OFFSET);
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}
