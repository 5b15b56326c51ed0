//! Peering glue: starts the `vitrine-peer` service from `[peering]`, turns its events into bus
//! events and metrics ([`events`]), hands OSC from controller peers to the OSC hub, tells peers
//! what this box runs and relays OSC to them ([`status`]), and answers the peer verbs of the
//! command line on the peer control socket ([`socket`], [`protocol`]).
//!
//! # Peer control socket
//!
//! `peers.sock` beside the control socket (default `/run/vitrine/peers.sock`), mode 0600. One
//! JSON request line in (at most [`socket::MAX_REQUEST`] bytes), one JSON answer line out:
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

mod events;
mod protocol;
mod socket;
mod status;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use vitrine_peer::{
    Identity, IdentityOptions, IdentitySource, InboundOsc, PeerConfig, PeerId, PeerService, Role,
    SiteKey,
};
use vitrine_policy::{Config, Discovery, PeerRole, PeeringConfig};

pub use protocol::{Dropped, PeerRequest, PeerResponse, PeerRow, ban_row, forgotten_row, request};
pub use socket::socket_path;
pub use status::VisualizationState;

use crate::events::EventBus;
use crate::metrics::Metrics;
use protocol::{PendingRow, rows};
use status::{Outbound, Remote, Reported};

/// Where OSC from controller peers goes: the OSC hub's `inject`, which validates and routes it
/// exactly like a datagram from the peer's address.
pub type OscSink = Arc<dyn Fn(&[u8], SocketAddr) + Send + Sync>;

/// The running peer service and its pumps.
pub struct Peering {
    svc: Arc<PeerService>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Where this box may relay to each linked peer that lets it control its visualizations.
    remote: RwLock<HashMap<PeerId, Remote>>,
    /// The OSC prefixes of every visualization on this box, running or not; `None` until the
    /// daemon has loaded its policies and said so.
    local: RwLock<Option<Vec<String>>>,
    /// The OSC rate and burst this box allows each controller peer (announced to them).
    osc_limit: (u32, u32),
    /// Rate buckets for relaying to each peer, under the limit it announced.
    outbound: Mutex<HashMap<PeerId, Outbound>>,
    relay_dropped: AtomicU64,
    /// When each peer's refused prefixes were last reported.
    reports: Mutex<HashMap<PeerId, Reported>>,
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
    let listener =
        socket::bind(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let peering = Arc::new(Peering {
        svc: Arc::new(svc),
        tasks: Default::default(),
        remote: Default::default(),
        local: Default::default(),
        osc_limit: (config.peering.osc_rate, config.peering.osc_burst),
        outbound: Default::default(),
        relay_dropped: AtomicU64::new(0),
        reports: Default::default(),
    });
    let tasks = vec![
        tokio::spawn(events::pump_events(channels.events, bus.clone(), metrics, peering.clone())),
        tokio::spawn(events::pump_status(channels.status, bus.clone(), peering.clone())),
        tokio::spawn(pump_osc(channels.osc, osc)),
        tokio::spawn(socket::serve_socket(
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
                dropped: Dropped {
                    relay: self.relay_dropped(),
                    status: svc.status_dropped(),
                    osc: svc.osc_dropped(),
                },
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

async fn pump_osc(mut rx: mpsc::Receiver<InboundOsc>, sink: OscSink) {
    while let Some(msg) = rx.recv().await {
        sink(&msg.packet, msg.addr);
    }
}
