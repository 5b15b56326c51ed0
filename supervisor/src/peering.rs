//! Peering glue: starts the `vitrine-peer` service from `[peering]`, turns its events into bus
//! events and metrics, hands OSC from controller peers to the OSC hub, and answers the peer
//! verbs of the command line on the peer control socket.
//!
//! # Peer control socket
//!
//! `peers.sock` beside the control socket (default `/run/vitrine/peers.sock`), mode 0600. One
//! JSON request line in (at most [`MAX_REQUEST`] bytes), one JSON answer line out:
//! ```text
//! {"verb":"list"}                 {"type":"peers","peers":[{"id":..,"name":..,"role":..,"addresses":[..],"connected":"10.0.0.2:7447","last_seen":..,"down":..,"banned":..,"status":{..}}],"banned":[..],"forgotten":[..]}
//! {"verb":"identity"}             {"type":"identity","id":"ABCD-…","listen":"0.0.0.0:7447"}
//! {"verb":"pair","addr":null}     {"type":"pairing","window_secs":300}
//! {"verb":"pending"}              {"type":"pending","pairings":[{"id":..,"name":..,"addr":..,"code":123456}]}
//! {"verb":"accept","id":..,"code":123456,"role":"observer"}   {"type":"done","message":..}
//! {"verb":"forget","id":..}       {"type":"done","message":..}
//! {"verb":"rotate"}               {"type":"rotated","old":..,"new":..,"vouched":[..],"missed":[..]}
//! any failure                     {"type":"error","message":..}
//! ```
//! The caller's role comes from `SO_PEERCRED` as on the control socket: reading (`list`,
//! `identity`, `pending`) needs the operator role, changing trust needs the admin role, and
//! every change or refusal is published as a `control-action` event for the audit log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use vitrine_peer::trust::fmt_time;
use vitrine_peer::{
    Identity, IdentityOptions, IdentitySource, InboundOsc, PeerConfig, PeerEvent, PeerId,
    PeerService, Role, SiteKey,
};
use vitrine_policy::{Config, ControlConfig, Discovery, PeerRole, PeeringConfig};

use crate::control::auth;
use crate::events::{Event, EventBus};
use crate::metrics::Metrics;

/// The largest request line accepted on the peer socket.
pub const MAX_REQUEST: usize = 4096;

/// Where the peer control socket lives: beside the control socket.
pub fn socket_path(control: &ControlConfig) -> PathBuf {
    control.socket.with_file_name("peers.sock")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PeerRequest {
    // Unit-like requests are empty struct variants so that unknown keys are refused for them too.
    List {},
    Identity {},
    /// Opens the pairing window; with `addr`, also dials that box.
    Pair {
        #[serde(default)]
        addr: Option<String>,
    },
    Pending {},
    Accept {
        id: String,
        code: u32,
        role: Role,
    },
    Forget {
        id: String,
    },
    Rotate {},
}

impl PeerRequest {
    pub fn verb(&self) -> &'static str {
        match self {
            PeerRequest::List {} => "peers-list",
            PeerRequest::Identity {} => "identity-show",
            PeerRequest::Pair { .. } => "peers-pair",
            PeerRequest::Pending {} => "peers-pending",
            PeerRequest::Accept { .. } => "peers-accept",
            PeerRequest::Forget { .. } => "peers-forget",
            PeerRequest::Rotate {} => "identity-rotate",
        }
    }

    fn mutates(&self) -> bool {
        !matches!(self, PeerRequest::List {} | PeerRequest::Identity {} | PeerRequest::Pending {})
    }

    fn target(&self) -> Option<String> {
        match self {
            PeerRequest::Accept { id, .. } | PeerRequest::Forget { id } => Some(id.clone()),
            PeerRequest::Pair { addr } => addr.clone(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerRow {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub addresses: Vec<String>,
    /// The address of the live link, if any.
    pub connected: Option<String>,
    /// When the last frame came from this peer (RFC 3339), since the daemon started.
    #[serde(default)]
    pub last_seen: Option<String>,
    /// Why the last link ended, while the peer is down.
    #[serde(default)]
    pub down: Option<String>,
    #[serde(default)]
    pub banned: Option<BanRow>,
    /// What the peer last said it runs.
    #[serde(default)]
    pub status: Option<PeerStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BanRow {
    pub id: String,
    pub until: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgottenRow {
    pub id: String,
    pub at: String,
}

/// The status document boxes send each other every `status_interval` (JSON in a status frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    pub id: String,
    pub name: String,
    pub version: String,
    pub visualizations: Vec<VisualizationState>,
    /// Peers that may send OSC here: a box relays OSC for these visualizations only when it
    /// finds itself in this list.
    #[serde(default)]
    pub controllers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisualizationState {
    pub name: String,
    pub state: String,
    /// The external OSC prefix while the visualization takes OSC (running).
    #[serde(default)]
    pub osc_prefix: Option<String>,
}

/// A peer's last status as `vitrine peers list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// When it arrived (RFC 3339).
    pub received: String,
    /// The document, or `None` when it was not a valid one.
    pub doc: Option<StatusDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingRow {
    pub id: String,
    pub name: String,
    pub addr: String,
    pub code: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum PeerResponse {
    Peers {
        peers: Vec<PeerRow>,
        #[serde(default)]
        banned: Vec<BanRow>,
        #[serde(default)]
        forgotten: Vec<ForgottenRow>,
    },
    Identity {
        id: String,
        listen: String,
    },
    Pairing {
        window_secs: u64,
    },
    Pending {
        pairings: Vec<PendingRow>,
    },
    Done {
        message: String,
    },
    Rotated {
        old: String,
        new: String,
        vouched: Vec<String>,
        missed: Vec<String>,
    },
    Error {
        message: String,
    },
}

/// Where OSC from controller peers goes: the OSC hub's `inject`, which validates and routes it
/// exactly like a datagram from the peer's address.
pub type OscSink = Arc<dyn Fn(&[u8], SocketAddr) + Send + Sync>;

/// The running peer service and its pumps.
pub struct Peering {
    svc: Arc<PeerService>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// OSC prefixes of the visualizations linked peers run and let this box control.
    remote: std::sync::RwLock<HashMap<PeerId, Vec<String>>>,
}

impl std::fmt::Debug for Peering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peering").field("id", &self.svc.id()).finish_non_exhaustive()
    }
}

/// Starts peering when `[peering] enabled`; `None` otherwise.
pub async fn start(
    config: &Config,
    bus: EventBus,
    metrics: Option<Metrics>,
    osc: OscSink,
) -> anyhow::Result<Option<Arc<Peering>>> {
    if !config.peering.enabled {
        return Ok(None);
    }
    let opts = IdentityOptions::for_state_dir(&config.state_dir);
    let source = if Identity::from_credential(&opts) {
        IdentitySource::Credential
    } else {
        IdentitySource::Files(opts.clone())
    };
    let (identity, created) = {
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || Identity::load_or_create(&opts)).await??
    };
    if created {
        tracing::info!(id = %identity.id(), dir = %opts.dir.display(), "generated a new peer identity");
    }
    let mut cfg = PeerConfig::new(host_name(), &config.state_dir, config.peering.listen);
    cfg.mdns = config.peering.discovery == Discovery::Mdns;
    cfg.static_peers = config.peering.static_peers.clone();
    cfg.site_key = site_key(&config.peering.site_key_file, opts.credentials_dir.as_deref())?;
    apply_tunables(&mut cfg, &config.peering);
    let (svc, channels) = PeerService::start(cfg, identity, source).await?;
    let path = socket_path(&config.control);
    let listener = bind(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let peering = Arc::new(Peering {
        svc: Arc::new(svc),
        tasks: Default::default(),
        remote: Default::default(),
    });
    let tasks = vec![
        tokio::spawn(pump_events(channels.events, bus.clone(), metrics, peering.clone())),
        tokio::spawn(pump_osc(channels.osc, osc)),
        tokio::spawn(serve_socket(
            listener,
            peering.clone(),
            bus,
            Arc::new(config.control.clone()),
        )),
    ];
    *peering.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = tasks;
    Ok(Some(peering))
}

/// Copies the `[peering]` tunables into the service configuration.
fn apply_tunables(cfg: &mut PeerConfig, p: &PeeringConfig) {
    cfg.site_key_role = match p.site_key_role {
        PeerRole::Controller => Role::Controller,
        PeerRole::Observer => Role::Observer,
    };
    cfg.osc_rate = p.osc_rate;
    cfg.osc_burst = p.osc_burst;
    cfg.ban = p.ban_cooldown;
    cfg.rotation_grace = p.rotation_grace;
    cfg.pairing_window = p.pairing_window;
    cfg.reconnect_min = p.reconnect_min;
    cfg.reconnect_max = p.reconnect_max;
    cfg.handshake_timeout = p.handshake_timeout;
    cfg.ping_interval = p.ping_interval;
    cfg.ping_timeout = p.ping_timeout;
    cfg.status_interval = p.status_interval;
}

/// The site key from the systemd credential, else the configured file; missing means the
/// site-key flow is off (pairing and hand pins still work).
fn site_key(
    file: &std::path::Path,
    creds: Option<&std::path::Path>,
) -> anyhow::Result<Option<SiteKey>> {
    let cred = creds.map(|c| c.join(vitrine_peer::identity::CREDENTIAL_SITE_KEY));
    let path = match cred.filter(|p| p.exists()) {
        Some(p) => p,
        None if file.exists() => file.to_owned(),
        None => {
            tracing::info!(path = %file.display(), "no site key: strangers can only join by pairing");
            return Ok(None);
        }
    };
    Ok(Some(SiteKey::load(&path)?))
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "vitrine".to_owned())
}

impl Peering {
    #[cfg(test)]
    pub fn service(&self) -> &Arc<PeerService> {
        &self.svc
    }

    /// Answers one request of the peer control socket.
    pub async fn handle(&self, request: PeerRequest) -> PeerResponse {
        match self.try_handle(request).await {
            Ok(r) => r,
            Err(e) => PeerResponse::Error { message: format!("{e:#}") },
        }
    }

    async fn try_handle(&self, request: PeerRequest) -> anyhow::Result<PeerResponse> {
        let svc = &self.svc;
        Ok(match request {
            PeerRequest::List {} => PeerResponse::Peers {
                peers: rows(svc),
                banned: svc.bans().iter().map(ban_row).collect(),
                forgotten: svc.forgotten().iter().map(forgotten_row).collect(),
            },
            PeerRequest::Identity {} => PeerResponse::Identity {
                id: svc.id().to_string(),
                listen: svc.local_addr().to_string(),
            },
            PeerRequest::Pair { addr } => {
                svc.open_pairing();
                if let Some(addr) = addr {
                    let target: SocketAddr = tokio::net::lookup_host(addr.as_str())
                        .await?
                        .next()
                        .with_context(|| format!("{addr} does not resolve"))?;
                    let svc = svc.clone();
                    // The dial finishes only once both humans confirmed; it runs on its own.
                    tokio::spawn(async move {
                        if let Err(e) = svc.connect(target).await {
                            tracing::warn!(%target, error = %e, "pairing dial failed");
                        }
                    });
                }
                PeerResponse::Pairing { window_secs: svc.pairing_window().as_secs() }
            }
            PeerRequest::Pending {} => PeerResponse::Pending {
                pairings: svc
                    .pending_pairings()
                    .into_iter()
                    .map(|p| PendingRow {
                        id: p.peer.to_string(),
                        name: p.name,
                        addr: p.addr.to_string(),
                        code: p.code,
                    })
                    .collect(),
            },
            PeerRequest::Accept { id, code, role } => {
                let peer: PeerId = id.parse()?;
                svc.accept(&peer, code, role)?;
                PeerResponse::Done { message: format!("accepted {peer} as {role}") }
            }
            PeerRequest::Forget { id } => {
                let peer: PeerId = id.parse()?;
                let existed = svc.forget(&peer)?;
                let what = if existed { "forgot" } else { "was not pinned; recorded as forgotten" };
                PeerResponse::Done { message: format!("{peer} {what}") }
            }
            PeerRequest::Rotate {} => {
                let r = svc.rotate().await?;
                let ids = |v: &[PeerId]| v.iter().map(ToString::to_string).collect();
                PeerResponse::Rotated {
                    old: r.old.to_string(),
                    new: r.new.to_string(),
                    vouched: ids(&r.vouched),
                    missed: ids(&r.missed),
                }
            }
        })
    }

    /// Closes every link, stops listening and dialing, and ends the pumps and the socket.
    pub fn shutdown(&self) {
        self.svc.stop();
        for t in self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            t.abort();
        }
    }
}

fn rows(svc: &PeerService) -> Vec<PeerRow> {
    svc.peers()
        .into_iter()
        .map(|p| PeerRow {
            id: p.id.to_string(),
            name: p.name,
            role: p.role,
            addresses: p.addresses,
            connected: p.connected.map(|(a, _)| a.to_string()),
            last_seen: p.last_seen.map(fmt_time),
            down: p.down.map(|(at, why)| format!("{why} (since {})", fmt_time(at))),
            banned: p.banned.as_ref().map(ban_row),
            status: p.status.map(|(at, doc)| PeerStatus {
                received: fmt_time(at),
                doc: serde_json::from_slice(&doc).ok(),
            }),
        })
        .collect()
}

pub fn ban_row(b: &vitrine_peer::Ban) -> BanRow {
    BanRow { id: b.id.to_string(), until: fmt_time(b.until), reason: b.reason.clone() }
}

pub fn forgotten_row(f: &vitrine_peer::trust::Forgotten) -> ForgottenRow {
    ForgottenRow { id: f.id.to_string(), at: fmt_time(f.at) }
}

impl Peering {
    /// Replaces the status this box sends its peers: its identity, version, what it runs, and
    /// which peers may control it.
    pub fn set_status(&self, visualizations: Vec<VisualizationState>) {
        let controllers = self
            .svc
            .peers()
            .into_iter()
            .filter(|p| p.role == Role::Controller)
            .map(|p| p.id.to_string())
            .collect();
        let doc = StatusDoc {
            id: self.svc.id().to_string(),
            name: host_name(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            visualizations,
            controllers,
        };
        self.svc.set_status(serde_json::to_vec(&doc).unwrap_or_default());
    }

    /// Learns from a peer's status which of its visualizations this box may send OSC to.
    fn learn(&self, peer: PeerId, payload: &[u8]) {
        let me = self.svc.id().to_string();
        let prefixes = serde_json::from_slice::<StatusDoc>(payload)
            .ok()
            .filter(|doc| doc.controllers.contains(&me))
            .map(|doc| {
                doc.visualizations
                    .into_iter()
                    .filter(|v| v.state == "running")
                    .filter_map(|v| v.osc_prefix)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut remote = self.remote.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if prefixes.is_empty() {
            remote.remove(&peer);
        } else {
            remote.insert(peer, prefixes);
        }
    }

    fn unlearn(&self, peer: &PeerId) {
        self.remote.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(peer);
    }

    /// Relays an OSC message that no visualization here takes to every linked peer that runs
    /// a visualization under its address and lets this box control it. The peer validates it
    /// like local OSC. Bundles and address patterns are not relayed.
    pub fn relay(&self, packet: &[u8]) -> usize {
        let Some(address) = message_address(packet) else { return 0 };
        if address.contains(['?', '*', '[', ']', '{', '}']) {
            return 0;
        }
        let remote = self.remote.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut sent = 0;
        for (peer, prefixes) in remote.iter() {
            let under = |p: &String| {
                let p = p.trim_end_matches('/');
                address.strip_prefix(p).is_some_and(|rest| rest.starts_with('/'))
            };
            if prefixes.iter().any(under) {
                match self.svc.send_osc(peer, packet.to_vec()) {
                    Ok(()) => sent += 1,
                    Err(e) => tracing::debug!(%peer, error = %e, "OSC not relayed"),
                }
            }
        }
        sent
    }
}

/// The address of a single OSC message (not a bundle).
fn message_address(packet: &[u8]) -> Option<&str> {
    if packet.first() != Some(&b'/') {
        return None;
    }
    let end = packet.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&packet[..end]).ok()
}

/// Publishes every peer event on the bus and keeps the peer metrics current.
async fn pump_events(
    mut rx: mpsc::UnboundedReceiver<PeerEvent>,
    bus: EventBus,
    metrics: Option<Metrics>,
    peering: Arc<Peering>,
) {
    while let Some(event) = rx.recv().await {
        match &event {
            PeerEvent::Status { peer, payload } => peering.learn(*peer, payload),
            PeerEvent::Disconnected { peer, .. } | PeerEvent::Forgotten { peer } => {
                peering.unlearn(peer)
            }
            _ => {}
        }
        if let Some(m) = &metrics {
            if let Some(result) = event.handshake_result() {
                m.peer_handshake(result);
            }
            match &event {
                PeerEvent::Connected { peer, .. } => m.set_peer_connected(&peer.to_string(), true),
                PeerEvent::Disconnected { peer, .. } => {
                    m.set_peer_connected(&peer.to_string(), false)
                }
                _ => {}
            }
        }
        if matches!(event, PeerEvent::Status { .. }) {
            continue;
        }
        let (peer, detail) = describe(&event);
        bus.publish(Event::Peer { peer, action: event.kind().to_owned(), detail });
    }
}

/// The subject and a one-line description of a peer event.
pub fn describe(event: &PeerEvent) -> (String, String) {
    use PeerEvent::*;
    match event {
        Connected { peer, name, role, addr, dialed } => {
            let how = if *dialed { "dialed" } else { "accepted" };
            (peer.to_string(), format!("{name} ({role}) at {addr}, {how}"))
        }
        HandshakeFailed { peer, addr, reason } => {
            (peer.map(|p| p.to_string()).unwrap_or_default(), format!("{addr}: {reason}"))
        }
        PairingCode { peer, name, addr, code } => (
            peer.to_string(),
            format!(
                "{name} at {addr} shows code {code:06}; confirm with `vitrine peers accept {peer} --code {code:06}`"
            ),
        ),
        Pinned { peer, name, role, via } => {
            (peer.to_string(), format!("{name} pinned as {role} by {via:?}"))
        }
        Disconnected { peer, reason } => (peer.to_string(), reason.clone()),
        Forgotten { peer } => (peer.to_string(), "pin removed, reconnects refused".into()),
        PeerRotated { old, new } => {
            (old.to_string(), format!("rotated to {new} (old key kept for the grace period)"))
        }
        IdentityRotated { old, new, vouched } => (
            new.to_string(),
            format!("this box rotated from {old}; {} peer(s) vouched", vouched.len()),
        ),
        Violation { peer, what, banned_for } => (
            peer.to_string(),
            format!("{what}; disconnected and refused for {}s", banned_for.as_secs()),
        ),
        Status { peer, payload } => {
            (peer.to_string(), format!("status of {} bytes", payload.len()))
        }
        TrustReloaded { peers } => (String::new(), format!("peers.toml reloaded: {peers} peer(s)")),
        TrustReloadFailed { error } => (String::new(), error.clone()),
    }
}

async fn pump_osc(mut rx: mpsc::Receiver<InboundOsc>, sink: OscSink) {
    while let Some(msg) = rx.recv().await {
        sink(&msg.packet, msg.addr);
    }
}

fn bind(path: &std::path::Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn serve_socket(
    listener: UnixListener,
    peering: Arc<Peering>,
    bus: EventBus,
    control: Arc<ControlConfig>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (peering, bus, control) = (peering.clone(), bus.clone(), control.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(stream, &peering, &bus, control).await {
                tracing::debug!("peer control connection ended: {e}");
            }
        });
    }
}

async fn connection(
    stream: UnixStream,
    peering: &Peering,
    bus: &EventBus,
    control: Arc<ControlConfig>,
) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let (uid, gid) = (cred.uid(), cred.gid());
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST as u64);
    let read =
        tokio::time::timeout(crate::control::REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line))
            .await;
    let response = match (read, serde_json::from_slice::<PeerRequest>(&line)) {
        (Ok(Ok(_)), Ok(request)) => {
            let role = tokio::task::spawn_blocking(move || auth::role_of(uid, gid, &control))
                .await
                .unwrap_or(auth::Role::Refused);
            let allowed = match role {
                auth::Role::Admin => true,
                auth::Role::Operator => !request.mutates(),
                auth::Role::Refused => false,
            };
            if request.mutates() || !allowed {
                bus.publish(Event::ControlAction {
                    uid,
                    verb: request.verb().to_owned(),
                    target: request.target(),
                    allowed,
                });
            }
            if allowed {
                peering.handle(request).await
            } else {
                PeerResponse::Error {
                    message: format!(
                        "permission denied: `{}` needs the admin role",
                        request.verb()
                    ),
                }
            }
        }
        (Ok(Ok(_)), Err(e)) => PeerResponse::Error { message: format!("invalid request: {e}") },
        _ => PeerResponse::Error { message: "no request".into() },
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_default();
    out.push(b'\n');
    write.write_all(&out).await
}

/// The CLI side: one request, one answer.
pub fn request(path: &std::path::Path, request: &PeerRequest) -> anyhow::Result<PeerResponse> {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path).with_context(|| {
        format!(
            "cannot connect to {} (is `vitrine serve` running with [peering] enabled?)",
            path.display()
        )
    })?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut answer = String::new();
    std::io::BufReader::new(stream).read_line(&mut answer)?;
    match serde_json::from_str(&answer).with_context(|| format!("unexpected answer: {answer}"))? {
        PeerResponse::Error { message } => anyhow::bail!("{message}"),
        r => Ok(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daemon configuration with peering on, everything under `dir`, nothing on the network
    /// but 127.0.0.1.
    fn config(dir: &std::path::Path) -> Config {
        let mut c = vitrine_policy::default_config(None);
        c.state_dir = dir.join("state");
        c.control.socket = dir.join("control.sock");
        c.peering.enabled = true;
        c.peering.listen = "127.0.0.1:0".parse().expect("addr");
        c.peering.discovery = Discovery::Static;
        c.peering.site_key_file = dir.join("no-site.key");
        c
    }

    #[tokio::test]
    async fn the_peer_socket_answers_the_cli_and_audits_changes() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = config(dir.path());
        let bus = EventBus::new();
        let mut events = bus.subscribe();
        let sink: OscSink = Arc::new(|_, _| {});
        let peering = start(&cfg, bus, None, sink).await.expect("start").expect("enabled");
        let path = socket_path(&cfg.control);
        let ask = |r: PeerRequest| {
            let path = path.clone();
            tokio::task::spawn_blocking(move || request(&path, &r))
        };
        let Ok(PeerResponse::Identity { id, .. }) =
            ask(PeerRequest::Identity {}).await.expect("join")
        else {
            panic!("no identity answer");
        };
        assert_eq!(id, peering.service().id().to_string());
        assert!(cfg.state_dir.join("identity/key.pem").exists());
        let pairing = ask(PeerRequest::Pair { addr: None }).await.expect("join").expect("pair");
        assert_eq!(pairing, PeerResponse::Pairing { window_secs: 300 });
        let stranger = vitrine_peer::Identity::generate().expect("key").id();
        let bad =
            ask(PeerRequest::Accept { id: stranger.to_string(), code: 1, role: Role::Observer });
        let err = bad.await.expect("join").expect_err("no such pairing");
        assert!(err.to_string().contains("no pairing"), "{err}");
        let done = ask(PeerRequest::Forget { id: stranger.to_string() }).await.expect("join");
        assert!(matches!(done, Ok(PeerResponse::Done { .. })), "{done:?}");
        let Ok(PeerResponse::Peers { peers, forgotten, .. }) =
            ask(PeerRequest::List {}).await.expect("join")
        else {
            panic!("no list answer");
        };
        assert!(peers.is_empty());
        assert_eq!(
            forgotten.iter().map(|f| f.id.clone()).collect::<Vec<_>>(),
            [stranger.to_string()]
        );
        // The forget is audited (control action by uid 0) and reported as a peer event.
        let mut saw_action = false;
        let mut saw_forget = false;
        while !(saw_action && saw_forget) {
            let e = tokio::time::timeout(std::time::Duration::from_secs(30), events.recv())
                .await
                .expect("events")
                .expect("bus");
            match &e.event {
                Event::ControlAction { verb, allowed: true, .. } if verb == "peers-forget" => {
                    saw_action = true
                }
                Event::Peer { action, peer, .. } if action == "peer_forget" => {
                    saw_forget = *peer == stranger.to_string()
                }
                _ => {}
            }
        }
        // A peer's status decides what this box relays to it: only running visualizations,
        // only when the peer lists this box among its controllers.
        let doc = |controllers: Vec<String>| {
            let v = |name: &str, state: &str| VisualizationState {
                name: name.into(),
                state: state.into(),
                osc_prefix: Some(format!("/{name}")),
            };
            let doc = StatusDoc {
                id: stranger.to_string(),
                name: "b".into(),
                version: "0".into(),
                visualizations: vec![v("aurora", "running"), v("mist", "stopped")],
                controllers,
            };
            serde_json::to_vec(&doc).expect("serializes")
        };
        let remote = |p: &Peering| p.remote.read().expect("lock").get(&stranger).cloned();
        peering.learn(stranger, &doc(vec![]));
        assert_eq!(remote(&peering), None);
        peering.learn(stranger, &doc(vec![peering.service().id().to_string()]));
        assert_eq!(remote(&peering), Some(vec!["/aurora".to_string()]));
        peering.unlearn(&stranger);
        assert_eq!(remote(&peering), None);
        assert_eq!(message_address(b"/aurora/speed\0\0\0,f\0\0"), Some("/aurora/speed"));
        assert_eq!(message_address(b"#bundle\0"), None);
        peering.shutdown();
    }

    #[test]
    fn requests_and_answers_have_the_documented_shape() {
        let r: PeerRequest =
            serde_json::from_str(r#"{"verb":"accept","id":"X","code":42,"role":"controller"}"#)
                .expect("an accept request parses");
        assert_eq!(r, PeerRequest::Accept { id: "X".into(), code: 42, role: Role::Controller });
        assert!(serde_json::from_str::<PeerRequest>(r#"{"verb":"list","extra":1}"#).is_err());
        assert_eq!(
            serde_json::to_string(&PeerRequest::List {}).expect("serializes"),
            r#"{"verb":"list"}"#
        );
        assert_eq!(
            serde_json::from_str::<PeerRequest>(r#"{"verb":"rotate"}"#).ok(),
            Some(PeerRequest::Rotate {})
        );
        let json = serde_json::to_string(&PeerResponse::Pairing { window_secs: 300 })
            .expect("a response serializes");
        assert_eq!(json, r#"{"type":"pairing","window_secs":300}"#);
        assert!(PeerRequest::Rotate {}.mutates() && !PeerRequest::List {}.mutates());
    }
}
