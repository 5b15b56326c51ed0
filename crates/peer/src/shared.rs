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

use crate::error::PeerError;
use crate::event::{InboundOsc, PeerEvent};
use crate::frame::Frame;
use crate::id::PeerId;
use crate::identity::{Identity, IdentityOptions};
use crate::proof::SiteKey;
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

pub(crate) struct TrustState {
    pub store: TrustStore,
    /// The file contents last read or written, to notice edits by hand.
    pub seen: Option<String>,
}

pub(crate) struct Shared {
    pub cfg: PeerConfig,
    pub source: IdentitySource,
    pub gate: Arc<LateGate>,
    pub identity: RwLock<Arc<Identity>>,
    pub tls: RwLock<TlsConfigs>,
    pub trust: Mutex<TrustState>,
    pub links: Mutex<HashMap<PeerId, LinkHandle>>,
    pub bans: Mutex<HashMap<PeerId, Instant>>,
    pub pairing: Mutex<Pairing>,
    pub rotate_acks: Mutex<HashMap<PeerId, oneshot::Sender<()>>>,
    /// Addresses learned from mDNS, by the ID their TXT record claims.
    pub discovered: Mutex<HashMap<PeerId, Vec<SocketAddr>>>,
    pub events: mpsc::UnboundedSender<PeerEvent>,
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

    pub fn banned(&self, id: &PeerId) -> bool {
        let mut bans = lock(&self.bans);
        let now = Instant::now();
        bans.retain(|_, until| *until > now);
        bans.contains_key(id)
    }

    pub fn ban(&self, id: PeerId) {
        lock(&self.bans).insert(id, Instant::now() + self.cfg.ban);
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
        let text = std::fs::read_to_string(&self.cfg.trust_path).unwrap_or_default();
        let mut state = lock(&self.trust);
        if state.seen.as_deref() == Some(text.as_str()) {
            return None;
        }
        let parsed = TrustStore::parse(&self.cfg.trust_path, &text);
        state.seen = Some(text);
        match parsed {
            Ok(store) => {
                state.store = store.clone();
                drop(state);
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
    /// made by hand since the last read.
    pub fn modify_trust<R>(&self, f: impl FnOnce(&mut TrustStore) -> R) -> Result<R, PeerError> {
        self.reload_trust_if_changed();
        let mut state = lock(&self.trust);
        let mut store = state.store.clone();
        let r = f(&mut store);
        if store != state.store {
            store.save(&self.cfg.trust_path)?;
            state.seen = Some(store.to_toml());
            state.store = store;
        }
        Ok(r)
    }

    /// Closes links whose key is no longer trusted (after a reload or a forget).
    pub fn close_untrusted_links(&self) {
        let ids: Vec<PeerId> = lock(&self.links).keys().copied().collect();
        for id in ids {
            if matches!(self.standing(&id), Standing::Forgotten | Standing::Stranger) {
                self.close_link(&id, "no longer trusted");
            }
        }
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
