//! The peer service: a listener, dialers for known and discovered peers, the trust-store
//! watcher, and the API the supervisor and the CLI use.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::{TcpListener, lookup_host};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::bans::{Ban, Bans, Clock};
use crate::discovery::Discovery;
use crate::error::PeerError;
use crate::event::{InboundOsc, PeerEvent, PeerStatus};
use crate::frame::{Frame, Rotate};
use crate::handshake;
use crate::id::PeerId;
use crate::identity::Identity;
use crate::link;
use crate::proof::rotation_message;
use crate::shared::{
    IdentitySource, LateGate, Pairing, PeerConfig, Shared, TlsConfigs, TrustState, lock,
};
use crate::state_file::read_state;
use crate::trust::{Forgotten, Role, Standing, TrustStore};

/// How often the trust store and the bans are re-read and the dialers look for work.
const TICK: Duration = Duration::from_secs(1);
/// Status documents queued for the supervisor before more are dropped.
const STATUS_QUEUE: usize = 64;
/// How long a rotation waits for each peer to confirm the new pin.
const ROTATE_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The receiving ends the supervisor consumes.
#[derive(Debug)]
pub struct PeerChannels {
    pub events: mpsc::UnboundedReceiver<PeerEvent>,
    pub osc: mpsc::Receiver<InboundOsc>,
    /// Peers' status documents; [`PeerService::status_dropped`] counts those that did not fit.
    pub status: mpsc::Receiver<PeerStatus>,
}

/// A trusted peer as `vitrine peers list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    pub id: PeerId,
    pub name: String,
    pub role: Role,
    pub addresses: Vec<String>,
    /// Where the live link goes and since when, when there is one.
    pub connected: Option<(SocketAddr, SystemTime)>,
    /// When the last frame of any kind came from this peer.
    pub last_seen: Option<SystemTime>,
    /// The peer's last status document (what it runs) and when it came.
    pub status: Option<(SystemTime, Vec<u8>)>,
    /// When and why the last link ended, while the peer is down.
    pub down: Option<(SystemTime, String)>,
    /// The ban in force, after a violation.
    pub banned: Option<Ban>,
}

/// A pairing waiting for `vitrine peers accept ID --code N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPairing {
    pub peer: PeerId,
    pub name: String,
    pub addr: SocketAddr,
    pub code: u32,
}

/// The result of rotating this box's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    pub old: PeerId,
    pub new: PeerId,
    /// Peers that re-pinned the new key.
    pub vouched: Vec<PeerId>,
    /// Live peers that did not confirm in time; they will see the new key as a stranger.
    pub missed: Vec<PeerId>,
}

/// A running peer service. Dropping it without [`PeerService::shutdown`] aborts its tasks.
#[derive(Debug)]
pub struct PeerService {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    discovery: Mutex<Option<Discovery>>,
}

impl Drop for PeerService {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl PeerService {
    /// Binds the listener, loads the trust store and starts the background tasks.
    pub async fn start(
        cfg: PeerConfig,
        identity: Identity,
        source: IdentitySource,
    ) -> Result<(Self, PeerChannels), PeerError> {
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| PeerError::Listen { addr: cfg.listen, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| PeerError::Listen { addr: cfg.listen, source })?;
        let seen = read_state(&cfg.trust_path)?.unwrap_or_default();
        let store = TrustStore::parse(&cfg.trust_path, &seen)?;
        // Refusing to start beats starting without the bans (fail closed).
        let now = Clock::now();
        let bans = Bans::load(&cfg.bans_path, cfg.ban, now)?;
        for b in bans.all(now) {
            tracing::info!(peer = %b.id, until = %crate::trust::fmt_time(b.until), reason = %b.reason, "peer still banned");
        }
        let (events_tx, events) = mpsc::unbounded_channel();
        let (osc_tx, osc) = mpsc::channel(1024);
        let (status_tx, status) = mpsc::channel(STATUS_QUEUE);
        let identity = Arc::new(identity);
        let gate = Arc::new(LateGate::default());
        let configs = TlsConfigs::build(&identity, gate.clone())?;
        let shared = Arc::new(Shared {
            cfg,
            source,
            gate: gate.clone(),
            identity: RwLock::new(identity.clone()),
            tls: RwLock::new(configs),
            trust: Mutex::new(TrustState {
                store,
                seen: Some(seen),
                read_error: None,
                invalid: None,
            }),
            trust_changed: watch::Sender::new(0),
            links: Mutex::default(),
            bans,
            buckets: Mutex::default(),
            status: Mutex::default(),
            heard: Mutex::default(),
            pairing: Mutex::new(Pairing::default()),
            rotate_acks: Mutex::default(),
            discovered: Mutex::default(),
            events: events_tx,
            status_tx,
            status_dropped: AtomicU64::new(0),
            osc: osc_tx,
            osc_dropped: AtomicU64::new(0),
            next_serial: AtomicU64::new(0),
        });
        gate.bind(&shared);
        let (stop, stop_rx) = watch::channel(false);
        let discovery =
            if shared.cfg.mdns { Some(Discovery::start(&shared, local_addr)?) } else { None };
        let tasks = vec![
            tokio::spawn(accept_loop(shared.clone(), listener, stop_rx.clone())),
            tokio::spawn(maintain_loop(shared.clone(), stop_rx)),
        ];
        tracing::info!(id = %identity.id(), %local_addr, "peer service listening");
        Ok((
            Self { shared, local_addr, stop, tasks, discovery: Mutex::new(discovery) },
            PeerChannels { events, osc, status },
        ))
    }

    pub fn id(&self) -> PeerId {
        self.shared.me()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Dials `addr` once and runs the link in the background; returns the peer once the link
    /// is up (for a pairing: once both humans confirmed).
    pub async fn connect(&self, addr: SocketAddr) -> Result<PeerId, PeerError> {
        connect_and_run(&self.shared, addr).await
    }

    /// The trust store with the live links, what each peer last told, and bans. A peer's
    /// link, status and ban are found under any of its keys.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let store = lock(&self.shared.trust).store.clone();
        let now = Clock::now();
        store
            .peers
            .iter()
            .map(|e| {
                let keys = store.keys_of(&e.id);
                let linked = self.shared.linked_key(&e.id);
                let heard = lock(&self.shared.heard);
                let h = linked
                    .iter()
                    .chain(&keys)
                    .find_map(|k| heard.get(k))
                    .cloned()
                    .unwrap_or_default();
                drop(heard);
                let links = lock(&self.shared.links);
                let connected = linked.and_then(|k| links.get(&k)).map(|l| (l.addr, l.since));
                drop(links);
                PeerInfo {
                    id: e.id,
                    name: e.name.clone(),
                    role: e.role,
                    addresses: e.addresses.clone(),
                    connected,
                    last_seen: h.last_seen,
                    status: h.status,
                    down: h.down,
                    banned: self.shared.bans.active(&keys, now),
                }
            })
            .collect()
    }

    /// Bans in force (pinned peers or not).
    pub fn bans(&self) -> Vec<Ban> {
        self.shared.bans.all(Clock::now())
    }

    /// Keys refused until a new pairing.
    pub fn forgotten(&self) -> Vec<Forgotten> {
        lock(&self.shared.trust).store.forgotten.clone()
    }

    /// Replaces this box's status document for peers of `role`, which every link sends to
    /// its peer each `status_interval` (and once when it comes up), choosing by the peer's
    /// role at each send. A peer without a role gets nothing.
    pub fn set_status(&self, role: Role, doc: Vec<u8>) {
        let mut docs = lock(&self.shared.status);
        match role {
            Role::Controller => docs.controller = doc,
            Role::Observer => docs.observer = doc,
        }
    }

    /// IDs with a live link.
    pub fn connected(&self) -> Vec<PeerId> {
        lock(&self.shared.links).keys().copied().collect()
    }

    /// Opens the pairing window (`PeerConfig::pairing_window`); strangers may now connect and
    /// get a code. The window closes by itself.
    pub fn open_pairing(&self) {
        let until = Instant::now() + self.shared.cfg.pairing_window;
        lock(&self.shared.pairing).open_until = Some(until);
    }

    /// How long [`PeerService::open_pairing`] keeps the window open.
    pub fn pairing_window(&self) -> Duration {
        self.shared.cfg.pairing_window
    }

    pub fn close_pairing(&self) {
        let mut p = lock(&self.shared.pairing);
        p.open_until = None;
        p.sessions.clear();
    }

    pub fn pending_pairings(&self) -> Vec<PendingPairing> {
        let p = lock(&self.shared.pairing);
        p.sessions
            .iter()
            .map(|(id, s)| PendingPairing {
                peer: *id,
                name: s.name.clone(),
                addr: s.addr,
                code: s.code,
            })
            .collect()
    }

    /// Confirms a pairing with the code shown on both boxes. A wrong code cancels it.
    pub fn accept(&self, peer: &PeerId, code: u32, role: Role) -> Result<(), PeerError> {
        let session =
            lock(&self.shared.pairing).sessions.remove(peer).ok_or(PeerError::NoPairing(*peer))?;
        if session.code != code {
            // Dropping the sender ends the pairing on both boxes.
            return Err(PeerError::WrongCode(*peer));
        }
        let _ = session.accept.send(role);
        Ok(())
    }

    /// Removes the pin, records the refusal, and closes the live link at once.
    pub fn forget(&self, peer: &PeerId) -> Result<bool, PeerError> {
        let keys = self.shared.keys_of(peer);
        let existed = self.shared.modify_trust(|s| s.forget(peer, SystemTime::now()))?;
        for key in &keys {
            self.shared.close_link(key, "forgotten");
        }
        self.shared.emit(PeerEvent::Forgotten { peer: *peer });
        Ok(existed)
    }

    /// Relays an OSC packet to a peer (which accepts it only if it gave us the controller role)
    /// over its link, under whichever of its keys the link runs.
    pub fn send_osc(&self, peer: &PeerId, packet: Vec<u8>) -> Result<(), PeerError> {
        self.send(peer, Frame::Osc(packet))
    }

    fn send(&self, peer: &PeerId, frame: Frame) -> Result<(), PeerError> {
        let key = self.shared.linked_key(peer).ok_or(PeerError::NotConnected(*peer))?;
        let links = lock(&self.shared.links);
        let link = links.get(&key).ok_or(PeerError::NotConnected(*peer))?;
        link.out.try_send(frame).map_err(|_| PeerError::NotConnected(*peer))
    }

    /// Status documents dropped because the supervisor did not keep up.
    pub fn status_dropped(&self) -> u64 {
        self.shared.status_dropped.load(Ordering::Relaxed)
    }

    /// OSC packets dropped because the supervisor did not keep up.
    pub fn osc_dropped(&self) -> u64 {
        self.shared.osc_dropped.load(Ordering::Relaxed)
    }

    /// Replaces this box's key. The old key vouches for the new one over every live link;
    /// then the new identity is saved and every link is re-established with it.
    pub async fn rotate(&self) -> Result<RotationReport, PeerError> {
        if matches!(self.shared.source, IdentitySource::Credential) {
            return Err(PeerError::CredentialIdentity(crate::identity::CREDENTIAL_IDENTITY));
        }
        let old = self.shared.identity();
        let new = Identity::generate()?;
        let mut waiting = Vec::new();
        let links: Vec<_> = lock(&self.shared.links)
            .iter()
            .map(|(id, l)| (*id, l.exporter, l.out.clone()))
            .collect();
        for (peer, exporter, out) in links {
            let signature = old.sign(&rotation_message(new.spki(), &exporter));
            let (tx, rx) = oneshot::channel();
            lock(&self.shared.rotate_acks).insert(peer, tx);
            let frame = Frame::Rotate(Rotate { spki: new.spki().to_vec(), signature });
            if out.send(frame).await.is_ok() {
                waiting.push((peer, rx));
            }
        }
        let mut report =
            RotationReport { old: old.id(), new: new.id(), vouched: vec![], missed: vec![] };
        for (peer, rx) in waiting {
            match tokio::time::timeout(ROTATE_ACK_TIMEOUT, rx).await {
                Ok(Ok(())) => report.vouched.push(peer),
                _ => report.missed.push(peer),
            }
        }
        if let IdentitySource::Files(opts) = &self.shared.source {
            new.save(opts)?;
        }
        let configs = self.shared.tls_for(&new)?;
        *self.shared.identity.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Arc::new(new);
        *self.shared.tls.write().unwrap_or_else(std::sync::PoisonError::into_inner) = configs;
        let ids: Vec<PeerId> = lock(&self.shared.links).keys().copied().collect();
        for id in ids {
            self.shared.close_link(&id, "identity rotated");
        }
        // The advertisement carries the ID; withdraw the old one and announce the new one.
        let mut discovery = lock(&self.discovery);
        if discovery.take().is_some() {
            *discovery = Discovery::start(&self.shared, self.local_addr)
                .inspect_err(|e| tracing::warn!(error = %e, "mDNS advertisement not renewed"))
                .ok();
        }
        drop(discovery);
        self.shared.emit(PeerEvent::IdentityRotated {
            old: report.old,
            new: report.new,
            vouched: report.vouched.clone(),
        });
        Ok(report)
    }

    /// Stops accepting and dialing and closes every link, without waiting (for owners that
    /// share the service, such as the supervisor's control socket).
    pub fn stop(&self) {
        self.stop.send_replace(true);
        lock(&self.discovery).take();
        let ids: Vec<PeerId> = lock(&self.shared.links).keys().copied().collect();
        for id in ids {
            self.shared.close_link(&id, "shutting down");
        }
    }

    /// Stops accepting and dialing, closes every link, and waits for the service's tasks.
    pub async fn shutdown(mut self) {
        self.stop();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

async fn connect_and_run(shared: &Arc<Shared>, addr: SocketAddr) -> Result<PeerId, PeerError> {
    match handshake::dial(shared, addr).await {
        Ok(est) => {
            let peer = est.session.peer;
            let _ = shared.modify_trust(|s| s.note_address(&peer, &addr.to_string()));
            if link::start(shared.clone(), est).await {
                Ok(peer)
            } else {
                Err(PeerError::Refused { addr, reason: "already connected".into() })
            }
        }
        Err(e) => {
            shared.emit(PeerEvent::HandshakeFailed { peer: None, addr, reason: error_chain(&e) });
            Err(e)
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok((tcp, addr)) => {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        match handshake::accept(&shared, tcp, addr).await {
                            Ok(est) => {
                                link::start(shared, est).await;
                            }
                            Err(e) => shared.emit(PeerEvent::HandshakeFailed { peer: None, addr, reason: error_chain(&e) }),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Where to dial, and how patiently.
struct Target {
    next: Instant,
    backoff: Duration,
    busy: bool,
}

/// Re-reads the trust store and keeps links to every reachable trusted peer.
async fn maintain_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let targets: Arc<Mutex<HashMap<SocketAddr, Target>>> = Arc::default();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        if shared.reload_trust_if_changed().is_some() {
            shared.close_untrusted_links();
        }
        shared.reload_bans_if_changed();
        let (min, max) = (shared.cfg.reconnect_min, shared.cfg.reconnect_max);
        for addr in wanted_addresses(&shared).await {
            let mut t = lock(&targets);
            let entry =
                t.entry(addr).or_insert(Target { next: Instant::now(), backoff: min, busy: false });
            if entry.busy || entry.next > Instant::now() {
                continue;
            }
            entry.busy = true;
            drop(t);
            let (shared, targets) = (shared.clone(), targets.clone());
            tokio::spawn(async move {
                let ok = connect_and_run(&shared, addr).await.is_ok();
                let mut t = lock(&targets);
                if let Some(e) = t.get_mut(&addr) {
                    e.busy = false;
                    e.backoff = if ok { min } else { (e.backoff * 2).min(max) };
                    e.next = Instant::now() + e.backoff;
                }
            });
        }
    }
}

/// Addresses worth dialing now: static peers and pinned peers' addresses that have no live
/// link, and discovered peers this box may admit. Of two discovered boxes only the one with
/// the smaller ID dials, so they do not race.
async fn wanted_addresses(shared: &Arc<Shared>) -> Vec<SocketAddr> {
    let me = shared.me();
    // A peer linked under any of its keys counts as connected.
    let linked: Vec<PeerId> = lock(&shared.links).keys().copied().collect();
    let connected: Vec<PeerId> = linked.iter().flat_map(|k| shared.keys_of(k)).collect();
    let connected_addrs: Vec<SocketAddr> = lock(&shared.links).values().map(|l| l.addr).collect();
    let mut out = Vec::new();
    for spec in &shared.cfg.static_peers {
        if let Ok(addrs) = lookup_host(spec.as_str()).await {
            out.extend(addrs.take(1).filter(|a| !connected_addrs.contains(a)));
        }
    }
    let store = lock(&shared.trust).store.clone();
    let discovered = lock(&shared.discovered).clone();
    for e in store.peers.iter().filter(|e| !connected.contains(&e.id) && !shared.banned(&e.id)) {
        if let Some(a) = e.addresses.iter().find_map(|a| a.parse::<SocketAddr>().ok()) {
            out.push(a);
        }
    }
    for (id, addrs) in discovered {
        let admissible = match store.standing(&id, SystemTime::now()) {
            Standing::Pinned(_) | Standing::Previous(_) => true,
            Standing::Stranger => shared.cfg.site_key.is_some() || shared.pairing_open(),
            Standing::Forgotten => false,
        };
        if admissible && me < id && !connected.contains(&id) && !shared.banned(&id) {
            out.extend(addrs.first().copied());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The error with its sources, for events and logs.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}
