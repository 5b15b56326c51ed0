//! Helpers shared by the peer service tests: boxes on 127.0.0.1 with their own state dirs.

#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, SystemTime};

use tempfile::TempDir;
use tokio::sync::mpsc;
use vitrine_peer::{
    Identity, IdentitySource, InboundOsc, PeerChannels, PeerConfig, PeerEntry, PeerEvent, PeerId,
    PeerService, PeerStatus, Role, SiteKey, TrustStore,
};

/// A hang guard for waits on events; the tests assert on what happens, never on how fast.
pub const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct TestBox {
    pub svc: std::sync::Arc<PeerService>,
    pub events: mpsc::UnboundedReceiver<PeerEvent>,
    pub osc: mpsc::Receiver<InboundOsc>,
    pub status: mpsc::Receiver<PeerStatus>,
    pub dir: TempDir,
}

#[derive(Debug)]
pub struct Setup<'a> {
    pub name: &'a str,
    pub identity: Identity,
    pub site_key: Option<&'a [u8]>,
    pub pins: Vec<(PeerId, Role)>,
    /// Changes to the service configuration beyond the defaults below.
    pub tune: fn(&mut PeerConfig),
}

impl<'a> Setup<'a> {
    pub fn new(name: &'a str) -> Self {
        Self {
            name,
            identity: Identity::generate().unwrap(),
            site_key: None,
            pins: vec![],
            tune: |_| {},
        }
    }
    pub fn site(mut self, key: &'a [u8]) -> Self {
        self.site_key = Some(key);
        self
    }
    pub fn pin(mut self, id: PeerId, role: Role) -> Self {
        self.pins.push((id, role));
        self
    }
}

pub fn write_pins(path: &Path, pins: &[(PeerId, Role)]) {
    let mut store = TrustStore::load(path).unwrap();
    for (id, role) in pins {
        store.pin(PeerEntry {
            id: *id,
            name: "hand-pinned".into(),
            role: *role,
            added: SystemTime::now(),
            addresses: vec![],
            previous: vec![],
        });
    }
    store.save(path).unwrap();
}

pub async fn start(setup: Setup<'_>) -> TestBox {
    start_in(setup, tempfile::tempdir().unwrap()).await
}

/// Starts a box on an existing state directory (a restart of the daemon).
pub async fn start_in(setup: Setup<'_>, dir: TempDir) -> TestBox {
    let mut cfg = PeerConfig::new(setup.name, dir.path(), "127.0.0.1:0".parse().unwrap());
    cfg.site_key = setup.site_key.map(|k| SiteKey::from_bytes(k).unwrap());
    cfg.handshake_timeout = Duration::from_secs(10);
    cfg.pairing_window = Duration::from_secs(60);
    (setup.tune)(&mut cfg);
    write_pins(&cfg.trust_path, &setup.pins);
    let (svc, PeerChannels { events, osc, status }) =
        PeerService::start(cfg, setup.identity, IdentitySource::Memory).await.unwrap();
    TestBox { svc: std::sync::Arc::new(svc), events, osc, status, dir }
}

impl TestBox {
    pub fn trust_path(&self) -> std::path::PathBuf {
        self.dir.path().join("peers.toml")
    }

    pub fn trust(&self) -> TrustStore {
        TrustStore::load(&self.trust_path()).unwrap()
    }

    /// Waits for the first event matching `pred`, skipping others.
    pub async fn wait(&mut self, what: &str, pred: impl Fn(&PeerEvent) -> bool) -> PeerEvent {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) if pred(&e) => return e,
                Ok(Some(_)) => {}
                Ok(None) => panic!("event channel closed while waiting for {what}"),
                Err(_) => panic!("no {what} event"),
            }
        }
    }

    /// Dials `addr` in the background (a pairing only finishes once humans confirmed).
    pub fn dial(
        &self,
        addr: std::net::SocketAddr,
    ) -> tokio::task::JoinHandle<Result<PeerId, vitrine_peer::PeerError>> {
        let svc = self.svc.clone();
        tokio::spawn(async move { svc.connect(addr).await })
    }

    /// The code of the first pairing event.
    pub async fn pairing_code(&mut self, peer: PeerId) -> u32 {
        match self
            .wait(
                "pairing code",
                |e| matches!(e, PeerEvent::PairingCode { peer: p, .. } if *p == peer),
            )
            .await
        {
            PeerEvent::PairingCode { code, .. } => code,
            _ => unreachable!(),
        }
    }

    pub async fn recv_osc(&mut self) -> InboundOsc {
        tokio::time::timeout(PATIENCE, self.osc.recv()).await.expect("no OSC relayed").unwrap()
    }
}

pub fn is_connected(peer: PeerId) -> impl Fn(&PeerEvent) -> bool {
    move |e| matches!(e, PeerEvent::Connected { peer: p, .. } if *p == peer)
}

pub fn is_disconnected(peer: PeerId) -> impl Fn(&PeerEvent) -> bool {
    move |e| matches!(e, PeerEvent::Disconnected { peer: p, .. } if *p == peer)
}

/// A minimal OSC message `/aurora/speed ,f 1.5`.
pub fn osc_packet() -> Vec<u8> {
    let mut p = b"/aurora/speed\0\0\0,f\0\0".to_vec();
    p.extend_from_slice(&1.5f32.to_be_bytes());
    p
}

/// Asserts that a dial was refused. In TLS 1.3 the client finishes its handshake before the
/// server checks the client certificate, so the dialer sees the server's alert either as a
/// handshake error or as the first read failing.
pub fn assert_refused(r: Result<PeerId, vitrine_peer::PeerError>) {
    use vitrine_peer::PeerError::*;
    match r {
        Err(Tls { .. } | Io { .. } | RefusedByPeer { .. }) => {}
        Err(Protocol { reason, .. }) if reason.contains("closed") => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
}
