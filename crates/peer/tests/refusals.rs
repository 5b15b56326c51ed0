//! Connections that must not become links: TLS 1.2, no client certificate, a resumed session
//! after forget, a man in the middle relaying site-key proofs. The attackers here are raw
//! rustls endpoints, not `PeerService`s, so they can do what a well-behaved box never would.

#![allow(clippy::unwrap_used)]

mod common;
mod raw;

use std::sync::{Arc, Mutex};

use common::*;
use raw::*;
use rustls::ServerConfig;
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Resumption, Tls13ClientSessionValue,
};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use vitrine_peer::frame::{Frame, Hello, PROTOCOL_VERSION};
use vitrine_peer::proof::EXPORTER_LABEL;
use vitrine_peer::{Identity, PeerEvent, Role};

const SITE: &[u8] = b"the-museum-site-key-2026";

fn failed(e: &PeerEvent, needle: &str) -> bool {
    matches!(e, PeerEvent::HandshakeFailed { reason, .. } if reason.contains(needle))
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let mut a = start(Setup::new("a").site(SITE)).await;
    let tcp = TcpStream::connect(a.svc.local_addr()).await.unwrap();
    let name = ServerName::IpAddress(a.svc.local_addr().ip().into());
    // In TLS 1.3 the client's side completes before the server has judged the client.
    if let Ok(mut tls) = TlsConnector::from(Arc::new(client(None))).connect(name, tcp).await {
        assert!(
            read_frame(&mut tls).await.is_err(),
            "no frame may reach a client without a certificate"
        );
    }
    let e = a.wait("refusal", |e| matches!(e, PeerEvent::HandshakeFailed { .. })).await;
    assert!(failed(&e, "certificate") || failed(&e, "Certificate"), "{e:?}");
    assert!(a.trust().peers.is_empty());
}

/// Records every ticket the server hands out (there must be none).
#[derive(Debug)]
struct TicketSpy {
    inner: ClientSessionMemoryCache,
    tickets: Mutex<usize>,
}

impl ClientSessionStore for TicketSpy {
    fn set_kx_hint(&self, n: ServerName<'static>, g: rustls::NamedGroup) {
        self.inner.set_kx_hint(n, g)
    }
    fn kx_hint(&self, n: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(n)
    }
    fn set_tls12_session(
        &self,
        n: ServerName<'static>,
        v: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(n, v)
    }
    fn tls12_session(&self, n: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(n)
    }
    fn remove_tls12_session(&self, n: &ServerName<'static>) {
        self.inner.remove_tls12_session(n)
    }
    fn insert_tls13_ticket(&self, n: ServerName<'static>, v: Tls13ClientSessionValue) {
        *self.tickets.lock().unwrap() += 1;
        self.inner.insert_tls13_ticket(n, v)
    }
    fn take_tls13_ticket(&self, n: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(n)
    }
}

#[tokio::test]
async fn no_tickets_are_issued_and_a_forgotten_key_cannot_resume() {
    let ib = Identity::generate().unwrap();
    let idb = ib.id();
    let mut a = start(Setup::new("a").pin(idb, Role::Controller)).await;
    let spy =
        Arc::new(TicketSpy { inner: ClientSessionMemoryCache::new(8), tickets: Mutex::new(0) });
    let mut cfg = client(Some(&ib));
    cfg.resumption = Resumption::store(spy.clone());
    let cfg = Arc::new(cfg);
    let addr = a.svc.local_addr();
    let name = ServerName::IpAddress(addr.ip().into());
    // A well-behaved first session, pinned by hand: hello, welcome.
    let mut tls = TlsConnector::from(cfg.clone())
        .connect(name.clone(), TcpStream::connect(addr).await.unwrap())
        .await
        .unwrap();
    let hello = Frame::Hello(Hello {
        version: PROTOCOL_VERSION,
        name: "b".into(),
        site_proof: None,
        pair_commit: None,
    });
    tls.write_all(&hello.encode().unwrap()).await.unwrap();
    assert!(matches!(read_frame(&mut tls).await.unwrap(), Frame::Welcome(_)));
    a.wait("connected", is_connected(idb)).await;
    assert_eq!(*spy.tickets.lock().unwrap(), 0, "the server issued a session ticket");
    // Forget closes the live session and a second session (resumption on) is refused.
    a.svc.forget(&idb).unwrap();
    a.wait("disconnected", is_disconnected(idb)).await;
    let again =
        TlsConnector::from(cfg).connect(name, TcpStream::connect(addr).await.unwrap()).await;
    if let Ok(mut tls) = again {
        assert_eq!(tls.get_ref().1.handshake_kind(), Some(rustls::HandshakeKind::Full));
        let _ = tls.write_all(&hello.encode().unwrap()).await;
        assert!(read_frame(&mut tls).await.is_err());
    }
    a.wait("refusal", |e| failed(e, "certificate")).await;
}

#[tokio::test]
async fn a_man_in_the_middle_cannot_relay_a_site_key_proof() {
    let mut a = start(Setup::new("a").site(SITE)).await;
    let b = start(Setup::new("b").site(SITE)).await;
    // M holds its own key and sits where B believes A is.
    let m = Identity::generate().unwrap();
    let p = provider();
    let mut server = ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(Arc::new(AnyCert(p)))
        .with_single_cert(vec![m.cert()], m.private_key())
        .unwrap();
    server.alpn_protocols = vec![b"vitrine/1".to_vec()];
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let m_addr = listener.local_addr().unwrap();
    let dial = b.dial(m_addr);
    let (tcp, _) = listener.accept().await.unwrap();
    let mut from_b = TlsAcceptor::from(Arc::new(server)).accept(tcp).await.unwrap();
    let Frame::Hello(hello_b) = read_frame(&mut from_b).await.unwrap() else {
        panic!("no hello from B")
    };
    assert!(hello_b.site_proof.is_some());
    // M replays B's genuine proof to A on its own session.
    let a_addr = a.svc.local_addr();
    let mut to_a = TlsConnector::from(Arc::new(client(Some(&m))))
        .connect(
            ServerName::IpAddress(a_addr.ip().into()),
            TcpStream::connect(a_addr).await.unwrap(),
        )
        .await
        .unwrap();
    let mut ekm = [0u8; 32];
    to_a.get_ref().1.export_keying_material(&mut ekm, EXPORTER_LABEL, None).unwrap();
    to_a.write_all(&Frame::Hello(hello_b).encode().unwrap()).await.unwrap();
    match read_frame(&mut to_a).await {
        Ok(Frame::Refused { reason }) => {
            assert!(reason.contains("site-key proof failed"), "{reason}")
        }
        other => panic!("A let the relayed proof through: {other:?}"),
    }
    a.wait("refusal", |e| failed(e, "site-key")).await;
    assert!(a.trust().peers.is_empty());
    // B, for its part, refuses M's welcome: M cannot produce the acceptor's proof.
    let welcome = Frame::Welcome(vitrine_peer::frame::Welcome {
        name: "a".into(),
        site_proof: Some([0; 32]),
    });
    from_b.write_all(&welcome.encode().unwrap()).await.unwrap();
    let err = dial.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("site-key proof failed"), "{err}");
    assert!(b.trust().peers.is_empty());
}

#[tokio::test]
async fn openssl_tls12_and_certificateless_clients_are_refused() {
    if std::process::Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipped: openssl is not installed (Debian package openssl)");
        return;
    }
    let mut a = start(Setup::new("a").site(SITE)).await;
    let target = a.svc.local_addr().to_string();
    let run = |args: &'static [&'static str], target: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("openssl")
                .args(["s_client", "-connect", &target, "-alpn", "vitrine/1"])
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        })
    };
    let out = run(&["-tls1_2"], target.clone()).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() || text.contains("Cipher is (NONE)"),
        "TLS 1.2 was accepted:\n{text}"
    );
    // openssl prints a "Protocol" line even for a failed handshake; no cipher means no session.
    assert!(text.contains("Cipher is (NONE)"), "{text}");
    a.wait("TLS 1.2 refusal", |e| matches!(e, PeerEvent::HandshakeFailed { .. })).await;
    let _ = run(&["-tls1_3"], target).await.unwrap();
    let e = a.wait("certificate refusal", |e| matches!(e, PeerEvent::HandshakeFailed { .. })).await;
    assert!(failed(&e, "ertificate"), "{e:?}");
}

/// A rotation signature made from (old key, new key, this session's exporter).
type Forgery = fn(&Identity, &Identity, &[u8; 32]) -> Vec<u8>;

#[tokio::test]
async fn a_rotation_not_vouched_by_the_pinned_key_is_refused_and_banned() {
    use vitrine_peer::frame::Rotate;
    use vitrine_peer::proof::rotation_message;
    let ib = Identity::generate().unwrap();
    let idb = ib.id();
    let hello = Frame::Hello(Hello {
        version: PROTOCOL_VERSION,
        name: "b".into(),
        site_proof: None,
        pair_commit: None,
    });
    let new = Identity::generate().unwrap();
    // Two statements B's old key never made: the new key vouching for itself in this session,
    // and the old key's signature from another session (a replay).
    let forgeries: [Forgery; 2] = [
        |_, new, exporter| new.sign(&rotation_message(new.spki(), exporter)),
        |old, new, _| old.sign(&rotation_message(new.spki(), &[7; 32])),
    ];
    for forge in forgeries {
        let mut a = start(Setup::new("a").pin(idb, Role::Controller)).await;
        let addr = a.svc.local_addr();
        let connector = TlsConnector::from(Arc::new(client(Some(&ib))));
        let name = ServerName::IpAddress(addr.ip().into());
        let mut tls =
            connector.connect(name, TcpStream::connect(addr).await.unwrap()).await.unwrap();
        tls.write_all(&hello.encode().unwrap()).await.unwrap();
        assert!(matches!(read_frame(&mut tls).await.unwrap(), Frame::Welcome(_)));
        let mut exporter = [0u8; 32];
        tls.get_ref().1.export_keying_material(&mut exporter, EXPORTER_LABEL, None).unwrap();
        let rotate = Frame::Rotate(Rotate {
            spki: new.spki().to_vec(),
            signature: forge(&ib, &new, &exporter),
        });
        tls.write_all(&rotate.encode().unwrap()).await.unwrap();
        let v = a.wait("violation", |e| matches!(e, PeerEvent::Violation { .. })).await;
        assert!(
            matches!(v, PeerEvent::Violation { peer, ref what, .. } if peer == idb && what.contains("bad signature")),
            "{v:?}"
        );
        // The pin did not move, and the new key is a stranger.
        let store = a.trust();
        assert!(store.peers.iter().any(|e| e.id == idb && e.previous.is_empty()));
        assert_eq!(
            store.standing(&new.id(), std::time::SystemTime::now()),
            vitrine_peer::Standing::Stranger
        );
        assert!(a.svc.bans().iter().any(|b| b.id == idb));
    }
}
