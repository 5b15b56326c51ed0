//! From a TCP connection to a link: TLS, the pin re-check, and the hello exchange that ends in
//! `Welcome`, `Pending` (pairing) or `Refused`.
//!
//! The TLS verifiers already refused forgotten, banned and (outside a trust-on-first-connection
//! flow) unknown keys. The exchange here decides what a stranger becomes: pinned by a site-key
//! proof, pinned by a human pairing, or refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use crate::error::PeerError;
use crate::event::{PeerEvent, PinVia};
use crate::frame::{Frame, Hello, PROTOCOL_VERSION, Pending, Welcome, frame_len};
use crate::id::PeerId;
use crate::proof::{self, EXPORTER_LABEL, Side};
use crate::shared::{PairSession, Shared, lock};
use crate::tls::{ALPN, cert_spki, server_name};
use crate::trust::{PeerEntry, Role, Standing};

pub(crate) type Stream = TlsStream<TcpStream>;

/// What the TLS session established about the other end.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub peer: PeerId,
    pub spki: Vec<u8>,
    pub exporter: [u8; 32],
    pub addr: SocketAddr,
}

/// Both directions of a connection: frames decoded by a reader task, and the write half.
pub(crate) struct Pipe {
    pub frames: mpsc::Receiver<Result<Frame, PeerError>>,
    pub writer: WriteHalf<Stream>,
    reader: JoinHandle<()>,
    pub addr: SocketAddr,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // The reader owns the read half; stopping it is what closes the socket.
        self.reader.abort();
    }
}

impl Pipe {
    fn new(stream: Stream, addr: SocketAddr) -> Self {
        let (r, writer) = tokio::io::split(stream);
        let (tx, frames) = mpsc::channel(64);
        let reader = tokio::spawn(read_frames(r, addr, tx));
        Self { frames, writer, reader, addr }
    }

    pub async fn send(&mut self, frame: &Frame) -> Result<(), PeerError> {
        let addr = self.addr;
        let bytes = frame.encode().map_err(|source| PeerError::Frame { addr, source })?;
        self.writer.write_all(&bytes).await.map_err(|source| PeerError::Io { addr, source })?;
        self.writer.flush().await.map_err(|source| PeerError::Io { addr, source })
    }

    pub async fn recv(
        &mut self,
        within: Duration,
        stage: &'static str,
    ) -> Result<Frame, PeerError> {
        let addr = self.addr;
        match timeout(within, self.frames.recv()).await {
            Err(_) => Err(PeerError::Timeout { addr, stage }),
            Ok(None) => Err(PeerError::Protocol {
                addr,
                reason: format!("connection closed during the {stage}"),
            }),
            Ok(Some(r)) => r,
        }
    }

    /// Tells the other side why, then returns the matching local error.
    async fn refuse(&mut self, reason: &str) -> PeerError {
        let _ = self.send(&Frame::Refused { reason: reason.to_owned() }).await;
        let _ = self.writer.shutdown().await;
        PeerError::Refused { addr: self.addr, reason: reason.to_owned() }
    }
}

async fn read_frames(
    mut r: ReadHalf<Stream>,
    addr: SocketAddr,
    tx: mpsc::Sender<Result<Frame, PeerError>>,
) {
    loop {
        let res = read_one(&mut r, addr).await;
        let stop = res.is_err();
        if tx.send(res).await.is_err() || stop {
            break;
        }
    }
}

async fn read_one(r: &mut ReadHalf<Stream>, addr: SocketAddr) -> Result<Frame, PeerError> {
    let io = |source| PeerError::Io { addr, source };
    let bad = |source| PeerError::Frame { addr, source };
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix).await.map_err(io)?;
    // The length is capped before the buffer is sized.
    let len = frame_len(&prefix).map_err(bad)?.unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(io)?;
    Frame::parse(&body).map_err(bad)
}

/// A link ready to run.
pub(crate) struct Established {
    pub session: Session,
    pub name: String,
    pub role: Role,
    pub dialed: bool,
    pub pipe: Pipe,
}

fn session_of<D>(
    conn: &rustls::ConnectionCommon<D>,
    addr: SocketAddr,
) -> Result<Session, PeerError> {
    let protocol = |reason: &str| PeerError::Protocol { addr, reason: reason.to_owned() };
    if conn.alpn_protocol() != Some(ALPN) {
        return Err(protocol("the peer did not negotiate ALPN vitrine/1"));
    }
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| protocol("no peer certificate"))?;
    let spki = cert_spki(cert).map_err(|_| protocol("unparsable peer certificate"))?;
    let exporter = conn
        .export_keying_material([0u8; 32], EXPORTER_LABEL, None)
        .map_err(|_| protocol("no TLS exporter"))?;
    Ok(Session { peer: PeerId::from_spki(&spki), spki, exporter, addr })
}

/// Dials `addr` and runs the dialer's side of the exchange.
pub(crate) async fn dial(shared: &Arc<Shared>, addr: SocketAddr) -> Result<Established, PeerError> {
    let t = shared.cfg.handshake_timeout;
    let tcp = timeout(t, TcpStream::connect(addr))
        .await
        .map_err(|_| PeerError::Timeout { addr, stage: "TCP connect" })?
        .map_err(|source| PeerError::Connect { addr, source })?;
    let _ = tcp.set_nodelay(true);
    let tls =
        timeout(t, TlsConnector::from(shared.client_config()).connect(server_name(addr), tcp))
            .await
            .map_err(|_| PeerError::Timeout { addr, stage: "TLS handshake" })?
            .map_err(|source| PeerError::Tls { addr, source })?;
    let session = session_of(tls.get_ref().1, addr)?;
    let pipe = Pipe::new(TlsStream::Client(tls), addr);
    dialer_exchange(shared, session, pipe).await
}

/// Runs the accepting side on a fresh TCP connection.
pub(crate) async fn accept(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    addr: SocketAddr,
) -> Result<Established, PeerError> {
    let t = shared.cfg.handshake_timeout;
    let _ = tcp.set_nodelay(true);
    let tls = timeout(t, TlsAcceptor::from(shared.server_config()).accept(tcp))
        .await
        .map_err(|_| PeerError::Timeout { addr, stage: "TLS handshake" })?
        .map_err(|source| PeerError::Tls { addr, source })?;
    let session = session_of(tls.get_ref().1, addr)?;
    let pipe = Pipe::new(TlsStream::Server(tls), addr);
    acceptor_exchange(shared, session, pipe).await
}

async fn dialer_exchange(
    shared: &Arc<Shared>,
    s: Session,
    mut p: Pipe,
) -> Result<Established, PeerError> {
    let me = shared.me();
    // The store may have changed between the verifier's check and now.
    if let Err(reason) = shared.admit(&s.peer) {
        return Err(p.refuse(reason).await);
    }
    let standing = shared.standing(&s.peer);
    let nonce = shared.pairing_open().then(proof::nonce);
    let hello = Hello {
        version: PROTOCOL_VERSION,
        name: shared.cfg.name.clone(),
        site_proof: shared
            .cfg
            .site_key
            .as_ref()
            .map(|k| proof::site_proof(k, Side::Dialer, &s.exporter, &me, &s.peer)),
        pair_commit: nonce.as_ref().map(proof::commit),
    };
    p.send(&Frame::Hello(hello)).await?;
    let t = shared.cfg.handshake_timeout;
    let (name, role) = match p.recv(t, "hello exchange").await? {
        Frame::Welcome(w) => match standing {
            Standing::Pinned(e) | Standing::Previous(e) => (w.name, e.role),
            _ => {
                let role = admit_by_site_key(
                    shared,
                    &s,
                    Side::Acceptor,
                    me,
                    s.peer,
                    w.site_proof,
                    &w.name,
                    &mut p,
                )
                .await?;
                (w.name, role)
            }
        },
        Frame::Pending(pending) => {
            let Some(nonce) = nonce else {
                return Err(p.refuse("pairing was not requested").await);
            };
            p.send(&Frame::PairReveal { nonce }).await?;
            let code = proof::short_code(&nonce, &pending.pair_nonce, &s.exporter, &me, &s.peer);
            let role = pair_wait(shared, &s, &pending.name, code, &mut p).await?;
            pin(shared, &s, &pending.name, role, Some(s.addr), PinVia::Pairing)?;
            match p.recv(t, "welcome after pairing").await? {
                Frame::Welcome(w) => (w.name, role),
                other => return Err(unexpected(&mut p, &other).await),
            }
        }
        Frame::Refused { reason } => return Err(PeerError::RefusedByPeer { addr: s.addr, reason }),
        other => return Err(unexpected(&mut p, &other).await),
    };
    Ok(Established { session: s, name, role, dialed: true, pipe: p })
}

async fn acceptor_exchange(
    shared: &Arc<Shared>,
    s: Session,
    mut p: Pipe,
) -> Result<Established, PeerError> {
    let me = shared.me();
    if let Err(reason) = shared.admit(&s.peer) {
        return Err(p.refuse(reason).await);
    }
    let t = shared.cfg.handshake_timeout;
    let hello = match p.recv(t, "hello exchange").await? {
        Frame::Hello(h) => h,
        other => return Err(unexpected(&mut p, &other).await),
    };
    if hello.version != PROTOCOL_VERSION {
        return Err(p.refuse("unsupported protocol version").await);
    }
    let role = match (hello.pair_commit, shared.standing(&s.peer)) {
        (Some(commitment), _) if shared.pairing_open() => {
            let nonce = proof::nonce();
            p.send(&Frame::Pending(Pending { name: shared.cfg.name.clone(), pair_nonce: nonce }))
                .await?;
            let dialer_nonce = match p.recv(t, "pairing reveal").await? {
                Frame::PairReveal { nonce } => nonce,
                other => return Err(unexpected(&mut p, &other).await),
            };
            if proof::commit(&dialer_nonce) != commitment {
                return Err(p.refuse("pairing commitment does not match").await);
            }
            let code = proof::short_code(&dialer_nonce, &nonce, &s.exporter, &s.peer, &me);
            let role = pair_wait(shared, &s, &hello.name, code, &mut p).await?;
            pin(shared, &s, &hello.name, role, None, PinVia::Pairing)?;
            role
        }
        (_, Standing::Pinned(e) | Standing::Previous(e)) => e.role,
        _ => {
            admit_by_site_key(
                shared,
                &s,
                Side::Dialer,
                s.peer,
                me,
                hello.site_proof,
                &hello.name,
                &mut p,
            )
            .await?
        }
    };
    let site_proof = shared
        .cfg
        .site_key
        .as_ref()
        .map(|k| proof::site_proof(k, Side::Acceptor, &s.exporter, &s.peer, &me));
    p.send(&Frame::Welcome(Welcome { name: shared.cfg.name.clone(), site_proof })).await?;
    Ok(Established { session: s, name: hello.name, role, dialed: false, pipe: p })
}

/// Pins a stranger that proved the site key (the proof of `prover`'s side).
#[allow(clippy::too_many_arguments)]
async fn admit_by_site_key(
    shared: &Arc<Shared>,
    s: &Session,
    prover: Side,
    dialer: PeerId,
    acceptor: PeerId,
    site_proof: Option<[u8; 32]>,
    name: &str,
    p: &mut Pipe,
) -> Result<Role, PeerError> {
    let Some(key) = &shared.cfg.site_key else {
        return Err(p.refuse("unknown peer").await);
    };
    let Some(site_proof) = site_proof else {
        return Err(p.refuse("unknown peer without a site-key proof").await);
    };
    if !proof::verify_site_proof(key, prover, &s.exporter, &dialer, &acceptor, &site_proof) {
        return Err(p.refuse("site-key proof failed (different site key?)").await);
    }
    let role = shared.cfg.site_key_role;
    let addr = (prover == Side::Acceptor).then_some(s.addr);
    match pin(shared, s, name, role, addr, PinVia::SiteKey) {
        Ok(()) => Ok(role),
        Err(PeerError::Refused { reason, .. }) => Err(p.refuse(&reason).await),
        Err(e) => Err(e),
    }
}

/// Writes a new pin. The site-key path never overrides a forgotten record; a pairing does.
fn pin(
    shared: &Shared,
    s: &Session,
    name: &str,
    role: Role,
    addr: Option<SocketAddr>,
    via: PinVia,
) -> Result<(), PeerError> {
    let entry = PeerEntry {
        id: s.peer,
        name: name.to_owned(),
        role,
        added: SystemTime::now(),
        addresses: addr.map(|a| a.to_string()).into_iter().collect(),
        previous: Vec::new(),
    };
    let pinned = shared.modify_trust(|store| {
        if via == PinVia::SiteKey
            && store.standing(&s.peer, SystemTime::now()) == Standing::Forgotten
        {
            return false;
        }
        store.pin(entry);
        true
    })?;
    if !pinned {
        return Err(PeerError::Refused { addr: s.addr, reason: "forgotten".into() });
    }
    shared.emit(PeerEvent::Pinned { peer: s.peer, name: name.to_owned(), role, via });
    Ok(())
}

/// Waits until a human on this box accepted the code and the other box confirmed too.
async fn pair_wait(
    shared: &Arc<Shared>,
    s: &Session,
    name: &str,
    code: u32,
    p: &mut Pipe,
) -> Result<Role, PeerError> {
    let (tx, mut rx) = oneshot::channel();
    let deadline = {
        let mut pairing = lock(&shared.pairing);
        pairing
            .sessions
            .insert(s.peer, PairSession { code, name: name.to_owned(), addr: s.addr, accept: tx });
        pairing.open_until.unwrap_or_else(Instant::now)
    };
    shared.emit(PeerEvent::PairingCode { peer: s.peer, name: name.to_owned(), addr: s.addr, code });
    let result = confirm_both(&mut rx, p, deadline.into()).await;
    lock(&shared.pairing).sessions.remove(&s.peer);
    match result {
        Ok(role) => Ok(role),
        Err(reason) => Err(p.refuse(&reason).await),
    }
}

async fn confirm_both(
    rx: &mut oneshot::Receiver<Role>,
    p: &mut Pipe,
    deadline: tokio::time::Instant,
) -> Result<Role, String> {
    let mut local: Option<Role> = None;
    let mut remote = false;
    loop {
        if let (Some(role), true) = (local, remote) {
            return Ok(role);
        }
        tokio::select! {
            r = &mut *rx, if local.is_none() => match r {
                Ok(role) => {
                    p.send(&Frame::PairConfirm).await.map_err(|e| e.to_string())?;
                    local = Some(role);
                }
                Err(_) => return Err("pairing not confirmed on this box (wrong code or cancelled)".into()),
            },
            f = p.frames.recv() => match f {
                Some(Ok(Frame::PairConfirm)) => remote = true,
                Some(Ok(Frame::Refused { reason })) => return Err(format!("the other box refused: {reason}")),
                Some(Ok(other)) => return Err(format!("unexpected {} frame during pairing", other.kind())),
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("connection closed during pairing".into()),
            },
            () = tokio::time::sleep_until(deadline) => return Err("the pairing window closed".into()),
        }
    }
}

async fn unexpected(p: &mut Pipe, frame: &Frame) -> PeerError {
    let reason = format!("unexpected {} frame", frame.kind());
    p.refuse(&reason).await;
    PeerError::Protocol { addr: p.addr, reason }
}
