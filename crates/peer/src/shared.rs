//! State shared by the listener, the dialers, every link and the public API.
//!
//! Locks are plain `std::sync` locks held for short, synchronous sections only (never across an
//! `.await`), because the TLS verifiers that consult the trust store are synchronous.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use rustls::{ClientConfig, ServerConfig};
use tokio::sync::{mpsc, oneshot, watch};

use vitrine_osc::rate::TokenBucket;

use crate::bans::{Ban, Bans, Clock, Reload};
use crate::error::PeerError;
use crate::event::{InboundOsc, PeerEvent, PeerStatus};
use crate::frame::Frame;
use crate::id::PeerId;
use crate::identity::{Identity, IdentityOptions};
use crate::proof::SiteKey;
use crate::state_file::read_state;
use crate::tls::{self, Gate};
use crate::trust::{Role, Standing, TrustStore};

/// Everything the peer service needs to know; see [`PeerConfig::new`] for the defaults.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// This box's name as shown to peers (the host name by default).
    pub name: String,
    /// `state_dir/peers.toml` is the trust store.
    pub trust_path: PathBuf,
    pub listen: SocketAddr,
    /// Advertise and browse `_vitrine._tcp.local.`.
    pub mdns: bool,
    /// `host:port` peers dialed directly (routed networks).
    pub static_peers: Vec<String>,
    /// Trust on first connection for boxes that prove the same key; `None` turns it off.
    pub site_key: Option<SiteKey>,
    /// The role given to peers admitted by the site key. Observer by default: a shared file
    /// copied to many boxes should not by itself let any of them drive the others.
    pub site_key_role: Role,
    /// OSC messages per second a controller may relay, and the burst above it.
    pub osc_rate: u32,
    pub osc_burst: u32,
    /// How long a peer that broke a rule is refused.
    pub ban: Duration,
    /// How long a rotated-away key stays acceptable.
    pub rotation_grace: Duration,
    /// Time allowed for TCP connect, TLS and the hello exchange.
    pub handshake_timeout: Duration,
    /// How long `open_pairing` keeps the window open.
    pub pairing_window: Duration,
    /// Bounds of the delay between failed dials of one address (doubling from min to max).
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// How often a link is pinged, and after how long without any frame it counts as down.
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// How often this box's status document is sent over each link.
    pub status_interval: Duration,
    /// `state_dir/peer-bans.toml`: bans that survive a restart.
    pub bans_path: PathBuf,
}

impl PeerConfig {
    pub fn new(name: impl Into<String>, state_dir: &std::path::Path, listen: SocketAddr) -> Self {
        Self {
            name: name.into(),
            trust_path: state_dir.join("peers.toml"),
            listen,
            mdns: false,
            static_peers: Vec::new(),
            site_key: None,
            site_key_role: Role::Observer,
            osc_rate: 500,
            osc_burst: 1000,
            ban: Duration::from_secs(300),
            rotation_grace: Duration::from_secs(7 * 24 * 3600),
            handshake_timeout: Duration::from_secs(10),
            pairing_window: Duration::from_secs(300),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(45),
            status_interval: Duration::from_secs(10),
            bans_path: state_dir.join("peer-bans.toml"),
        }
    }
}

/// Where the identity came from, which decides whether a rotation can be saved.
#[derive(Debug, Clone)]
pub enum IdentitySource {
    /// `state_dir/identity`; rotations are written back.
    Files(IdentityOptions),
    /// A systemd credential; rotation means provisioning a new credential.
    Credential,
    /// Held in memory only (tests, benchmarks).
    Memory,
}

pub(crate) struct TlsConfigs {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

impl TlsConfigs {
    pub fn build(ident: &Identity, gate: Arc<LateGate>) -> Result<Self, PeerError> {
        let gate: Arc<dyn Gate> = gate;
        Ok(Self {
            server: tls::server_config(ident, gate.clone()).map_err(PeerError::TlsConfig)?,
            client: tls::client_config(ident, gate).map_err(PeerError::TlsConfig)?,
        })
    }
}

/// A live link as the rest of the service sees it.
pub(crate) struct LinkHandle {
    pub serial: u64,
    pub addr: SocketAddr,
    /// Who dialed: decides which of two simultaneous links survives.
    pub dialer: PeerId,
    pub exporter: [u8; 32],
    pub out: mpsc::Sender<Frame>,
    pub close: watch::Sender<Option<String>>,
    pub since: SystemTime,
}

/// A pairing waiting for `accept` on this box.
pub(crate) struct PairSession {
    pub code: u32,
    pub name: String,
    pub addr: SocketAddr,
    pub accept: oneshot::Sender<Role>,
}

#[derive(Default)]
pub(crate) struct Pairing {
    pub open_until: Option<Instant>,
    pub sessions: HashMap<PeerId, PairSession>,
}

/// This box's status document in two versions: observers get what the box runs, controllers
/// also what they may send OSC to. Neither names other peers.
#[derive(Debug, Clone, Default)]
pub(crate) struct StatusDocs {
    pub controller: Vec<u8>,
    pub observer: Vec<u8>,
}

/// What this box last heard from a peer, kept after its link goes down.
#[derive(Debug, Clone, Default)]
pub(crate) struct Heard {
    /// The last frame of any kind.
    pub last_seen: Option<SystemTime>,
    /// The last status document and when it came.
    pub status: Option<(SystemTime, Vec<u8>)>,
    /// Why and when the last link ended, while no new one is up.
    pub down: Option<(SystemTime, String)>,
}

pub(crate) struct TrustState {
    pub store: TrustStore,
    /// The file contents last read or written (`""` for no file), to notice edits by hand.
    pub seen: Option<String>,
    /// The last read error reported, so that a lasting one is reported once.
    pub read_error: Option<String>,
    /// Why the file on disk, as last seen, was not applied (it does not parse).
    pub invalid: Option<String>,
}

pub(crate) struct Shared {
    pub cfg: PeerConfig,
    pub source: IdentitySource,
    pub gate: Arc<LateGate>,
    pub identity: RwLock<Arc<Identity>>,
    pub tls: RwLock<TlsConfigs>,
    pub trust: Mutex<TrustState>,
    /// Bumped whenever the trust store in force changes (a reload, a pin, a forget, a rotation).
    pub trust_changed: watch::Sender<u64>,
    pub links: Mutex<HashMap<PeerId, LinkHandle>>,
    pub bans: Bans,
    /// OSC rate buckets by the current key of each trust entry: a peer's links, one after
    /// the other and under any of its keys, draw from one bucket.
    pub buckets: Mutex<HashMap<PeerId, TokenBucket>>,
    /// This box's status, sent over every link each `status_interval`, by the peer's role.
    pub status: Mutex<StatusDocs>,
    pub heard: Mutex<HashMap<PeerId, Heard>>,
    pub pairing: Mutex<Pairing>,
    pub rotate_acks: Mutex<HashMap<PeerId, oneshot::Sender<()>>>,
    /// Addresses learned from mDNS, by the ID their TXT record claims.
    pub discovered: Mutex<HashMap<PeerId, Vec<SocketAddr>>>,
    pub events: mpsc::UnboundedSender<PeerEvent>,
    pub status_tx: mpsc::Sender<PeerStatus>,
    pub status_dropped: AtomicU64,
    pub osc: mpsc::Sender<InboundOsc>,
    pub osc_dropped: AtomicU64,
    pub next_serial: AtomicU64,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every critical
/// section here leaves the data consistent, so the guard is still valid.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The verifiers' view of the service. It holds a weak reference, set once the service exists,
/// so the configurations it is part of do not keep the service alive.
#[derive(Debug, Default)]
pub(crate) struct LateGate(OnceLock<Weak<Shared>>);

impl LateGate {
    pub fn bind(&self, shared: &Arc<Shared>) {
        let _ = self.0.set(Arc::downgrade(shared));
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("name", &self.cfg.name).finish_non_exhaustive()
    }
}

impl Gate for LateGate {
    fn admit(&self, id: &PeerId) -> Result<(), &'static str> {
        let shared = self.0.get().and_then(Weak::upgrade).ok_or("service not running")?;
        shared.admit(id)
    }
}

impl Shared {
    pub fn me(&self) -> PeerId {
        self.identity().id()
    }

    pub fn identity(&self) -> Arc<Identity> {
        self.identity.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.tls.read().unwrap_or_else(std::sync::PoisonError::into_inner).server.clone()
    }

    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.tls.read().unwrap_or_else(std::sync::PoisonError::into_inner).client.clone()
    }

    /// Builds both TLS configurations for `ident`, gated by this service.
    pub fn tls_for(&self, ident: &Identity) -> Result<TlsConfigs, PeerError> {
        TlsConfigs::build(ident, self.gate.clone())
    }

    pub fn emit(&self, event: PeerEvent) {
        tracing::info!(kind = event.kind(), ?event, "peer event");
        let _ = self.events.send(event);
    }

    /// Hands a peer's status document to the supervisor and keeps it as the peer's last; when
    /// the supervisor does not keep up, the document is dropped and counted.
    pub fn deliver_status(&self, peer: PeerId, payload: Vec<u8>) {
        tracing::debug!(%peer, bytes = payload.len(), "peer status");
        self.heard_from(peer, Some(payload.clone()));
        if self.status_tx.try_send(PeerStatus { peer, payload }).is_err() {
            self.status_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// May `id` finish a TLS handshake with us? Pinned keys may; strangers only while a
    /// trust-on-first-connection flow could admit them (site key configured or pairing open);
    /// forgotten keys only into a human pairing, the one way back.
    pub fn admit(&self, id: &PeerId) -> Result<(), &'static str> {
        if *id == self.me() {
            return Err("own key");
        }
        if self.banned(id) {
            return Err("banned after a violation");
        }
        match self.standing(id) {
            Standing::Pinned(_) | Standing::Previous(_) => Ok(()),
            Standing::Forgotten if self.pairing_open() => Ok(()),
            Standing::Forgotten => Err("forgotten"),
            Standing::Stranger if self.cfg.site_key.is_some() || self.pairing_open() => Ok(()),
            Standing::Stranger => Err("unknown key"),
        }
    }

    /// Every key of the trust entry `id` belongs to, its current key first.
    pub fn keys_of(&self, id: &PeerId) -> Vec<PeerId> {
        lock(&self.trust).store.keys_of(id)
    }

    /// The ban in force on the peer `id` belongs to, under any of its keys.
    pub fn ban_of(&self, id: &PeerId) -> Option<Ban> {
        let keys = self.keys_of(id);
        self.bans.active(&keys, Clock::now())
    }

    pub fn banned(&self, id: &PeerId) -> bool {
        self.ban_of(id).is_some()
    }

    /// Refuses the peer `id` belongs to for the configured cooldown, recording the ban on every
    /// key of its entry (so dropping a previous key never drops its ban), closes its links,
    /// and writes the ban to disk so a restart of the daemon does not lift it. A failed write
    /// is reported; the ban holds in memory and the write is retried.
    pub fn ban(&self, id: PeerId, reason: &str) {
        let keys = self.keys_of(&id);
        let problem = self.bans.ban(&keys, reason, self.cfg.ban, Clock::now());
        if let Some(error) = problem {
            self.emit(PeerEvent::BansKept { error });
        }
        for key in &keys {
            self.close_link(key, reason);
        }
    }

    /// Re-reads the ban file when it changed on disk (an entry deleted by hand lifts a ban).
    /// A file that cannot be read or parsed is reported and the bans in memory stay in force.
    pub fn reload_bans_if_changed(&self) {
        let outcome = self.bans.reload(Clock::now());
        if let Reload::Kept(error) = outcome {
            self.emit(PeerEvent::BansKept { error });
        }
    }

    /// Takes one token from the OSC bucket of the peer `id` belongs to.
    pub fn take_token(&self, id: &PeerId) -> bool {
        let entry = self.keys_of(id).first().copied().unwrap_or(*id);
        let now = Instant::now();
        let (rate, burst) = (self.cfg.osc_rate, self.cfg.osc_burst);
        let mut buckets = lock(&self.buckets);
        buckets
            .entry(entry)
            .or_insert_with(|| TokenBucket::with_burst(rate, burst, now))
            .try_take(now)
    }

    /// Moves what is kept under a peer's old key (its rate bucket, what it last told) to its
    /// new key, so rotating neither refills the bucket nor leaves a stale record behind.
    pub fn rekey(&self, old: &PeerId, new: PeerId) {
        let mut buckets = lock(&self.buckets);
        if let Some(bucket) = buckets.remove(old) {
            buckets.insert(new, bucket);
        }
        drop(buckets);
        let mut heard = lock(&self.heard);
        if let Some(h) = heard.remove(old) {
            heard.insert(new, h);
        }
    }

    /// The status document for a peer of `role`; empty for no role.
    pub fn status_for(&self, role: Option<Role>) -> Vec<u8> {
        let docs = lock(&self.status);
        match role {
            Some(Role::Controller) => docs.controller.clone(),
            Some(Role::Observer) => docs.observer.clone(),
            None => Vec::new(),
        }
    }

    /// Notes that a frame arrived from `id`.
    pub fn heard_from(&self, id: PeerId, status: Option<Vec<u8>>) {
        let now = SystemTime::now();
        let mut heard = lock(&self.heard);
        let h = heard.entry(id).or_default();
        h.last_seen = Some(now);
        h.down = None;
        if let Some(doc) = status {
            h.status = Some((now, doc));
        }
    }

    /// Notes that the link with `id` went down and why.
    pub fn went_down(&self, id: PeerId, reason: &str) {
        lock(&self.heard).entry(id).or_default().down = Some((SystemTime::now(), reason.into()));
    }

    /// How `id` stands in the trust store as last loaded (the reload task picks up edits).
    pub fn standing(&self, id: &PeerId) -> Standing {
        lock(&self.trust).store.standing(id, SystemTime::now())
    }

    pub fn pairing_open(&self) -> bool {
        lock(&self.pairing).open_until.is_some_and(|t| t > Instant::now())
    }

    /// Re-reads `peers.toml` when its contents changed; returns the new store when they did.
    /// An invalid file is reported and the previous store stays in force.
    pub fn reload_trust_if_changed(&self) -> Option<TrustStore> {
        // Read under the lock: a write by `modify_trust` between reading and comparing would
        // otherwise make the older text look like a new edit and undo the write.
        let mut state = lock(&self.trust);
        let text = match read_state(&self.cfg.trust_path) {
            Ok(text) => text.unwrap_or_default(),
            Err(e) => {
                // The store in memory stays in force: reading it as empty would drop every
                // pin and, worse, every forgotten record.
                let error = crate::service::error_chain(&e);
                let new = state.read_error.as_deref() != Some(error.as_str());
                state.read_error = Some(error.clone());
                drop(state);
                if new {
                    self.emit(PeerEvent::TrustReloadFailed { error });
                }
                return None;
            }
        };
        state.read_error = None;
        if state.seen.as_deref() == Some(text.as_str()) {
            return None;
        }
        let parsed = TrustStore::parse(&self.cfg.trust_path, &text);
        state.seen = Some(text);
        state.invalid = parsed.as_ref().err().map(ToString::to_string);
        match parsed {
            Ok(store) => {
                state.store = store.clone();
                drop(state);
                self.trust_changed.send_modify(|n| *n += 1);
                self.emit(PeerEvent::TrustReloaded { peers: store.peers.len() });
                Some(store)
            }
            Err(e) => {
                drop(state);
                self.emit(PeerEvent::TrustReloadFailed { error: e.to_string() });
                None
            }
        }
    }

    /// Applies a change to the trust store and writes it atomically, after picking up any edit
    /// made by hand since the last read. While the file on disk cannot be read or does not
    /// parse, nothing is written over it (the admin's edit would be lost): the change is
    /// refused.
    pub fn modify_trust<R>(&self, f: impl FnOnce(&mut TrustStore) -> R) -> Result<R, PeerError> {
        self.reload_trust_if_changed();
        let mut state = lock(&self.trust);
        if let Some(problem) = state.read_error.as_ref().or(state.invalid.as_ref()) {
            return Err(PeerError::TrustFilePending(problem.clone()));
        }
        let mut store = state.store.clone();
        let r = f(&mut store);
        if store != state.store {
            store.save(&self.cfg.trust_path)?;
            state.seen = Some(store.to_toml());
            state.store = store;
            drop(state);
            self.trust_changed.send_modify(|n| *n += 1);
        }
        Ok(r)
    }

    /// Closes links whose key is no longer trusted (after a reload or a forget), and drops
    /// the rate buckets of entries that are gone.
    pub fn close_untrusted_links(&self) {
        let ids: Vec<PeerId> = lock(&self.links).keys().copied().collect();
        for id in ids {
            if matches!(self.standing(&id), Standing::Forgotten | Standing::Stranger) {
                self.close_link(&id, "no longer trusted");
            }
        }
        let store = lock(&self.trust).store.clone();
        lock(&self.buckets).retain(|id, _| store.peers.iter().any(|e| e.id == *id));
    }

    /// The key of the live link with the peer `id` belongs to, if any.
    pub fn linked_key(&self, id: &PeerId) -> Option<PeerId> {
        let keys = self.keys_of(id);
        let links = lock(&self.links);
        keys.into_iter().find(|k| links.contains_key(k))
    }

    pub fn close_link(&self, id: &PeerId, reason: &str) {
        if let Some(link) = lock(&self.links).get(id) {
            link.close.send_replace(Some(reason.to_owned()));
        }
    }

    /// The role a live peer currently has, read from the trust store at each use so a hand
    /// edit or a forget applies to the next message.
    pub fn role_of(&self, id: &PeerId) -> Option<Role> {
        match self.standing(id) {
            Standing::Pinned(e) | Standing::Previous(e) => Some(e.role),
            _ => None,
        }
    }

    pub fn next_serial(&self) -> u64 {
        self.next_serial.fetch_add(1, Ordering::Relaxed)
    }
}
