//! The peer service end to end on 127.0.0.1: the trust-on-first-connection flows, forget,

#![allow(clippy::unwrap_used)]
//! rotation, role checks and refusals.

mod common;

use common::*;
use vitrine_peer::{Identity, PeerError, PeerEvent, PinVia, Role, Standing};

const SITE: &[u8] = b"the-museum-site-key-2026";

#[tokio::test]
async fn hand_pins_link_and_relay_osc_from_a_controller() {
    let (ia, ib) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let (ida, idb) = (ia.id(), ib.id());
    let mut a = start(Setup { identity: ia, ..Setup::new("a") }.pin(idb, Role::Controller)).await;
    let mut b = start(Setup { identity: ib, ..Setup::new("b") }.pin(ida, Role::Observer)).await;
    assert_eq!(b.svc.connect(a.svc.local_addr()).await.unwrap(), ida);
    a.wait("connected", is_connected(idb)).await;
    b.svc.send_osc(&ida, osc_packet()).unwrap();
    let got = a.recv_osc().await;
    assert_eq!((got.peer, got.name.as_str(), got.packet), (idb, "b", osc_packet()));
    // B gave A only the observer role: OSC from A is a violation that ends the link and bans A.
    a.svc.send_osc(&idb, osc_packet()).unwrap();
    let v = b.wait("violation", |e| matches!(e, PeerEvent::Violation { .. })).await;
    assert!(
        matches!(v, PeerEvent::Violation { peer, ref what, .. } if peer == ida && what.contains("observer"))
    );
    a.wait("disconnect", is_disconnected(idb)).await;
    assert!(b.osc.try_recv().is_err());
    // The ban refuses A's next attempt during the TLS handshake.
    assert_refused(a.svc.connect(b.svc.local_addr()).await);
}

#[tokio::test]
async fn site_key_pins_strangers_as_observers_on_both_sides() {
    let mut a = start(Setup::new("a").site(SITE)).await;
    let mut b = start(Setup::new("b").site(SITE)).await;
    let (ida, idb) = (a.svc.id(), b.svc.id());
    b.svc.connect(a.svc.local_addr()).await.unwrap();
    let pinned = a.wait("pinned", |e| matches!(e, PeerEvent::Pinned { .. })).await;
    assert!(
        matches!(pinned, PeerEvent::Pinned { peer, role: Role::Observer, via: PinVia::SiteKey, .. } if peer == idb)
    );
    b.wait("connected", is_connected(ida)).await;
    let store = a.trust();
    assert!(
        matches!(store.standing(&idb, std::time::SystemTime::now()), Standing::Pinned(e) if e.role == Role::Observer && e.name == "b")
    );
    let store = b.trust();
    let entry = store.peers.iter().find(|e| e.id == ida).unwrap();
    assert_eq!(entry.addresses, vec![a.svc.local_addr().to_string()]);
    assert_eq!(a.svc.peers()[0].connected.map(|c| c.0.ip()), Some("127.0.0.1".parse().unwrap()));
}

#[tokio::test]
async fn wrong_site_key_and_unknown_keys_are_refused() {
    let mut a = start(Setup::new("a").site(SITE)).await;
    let b = start(Setup::new("b").site(b"another-site-key-entirely")).await;
    let err = b.svc.connect(a.svc.local_addr()).await.unwrap_err();
    assert!(err.to_string().contains("site-key proof failed"), "{err}");
    a.wait(
        "refusal",
        |e| matches!(e, PeerEvent::HandshakeFailed { reason, .. } if reason.contains("site-key")),
    )
    .await;
    assert!(a.trust().peers.is_empty() && b.trust().peers.is_empty());
    // Without a site key or an open pairing window, a stranger does not even finish TLS.
    let c = start(Setup::new("c")).await;
    let d = start(Setup::new("d")).await;
    assert_refused(d.svc.connect(c.svc.local_addr()).await);
    assert_refused(c.svc.connect(a.svc.local_addr()).await);
}

#[tokio::test]
async fn human_pairing_with_matching_codes() {
    let mut a = start(Setup::new("a")).await;
    let mut b = start(Setup::new("b")).await;
    let (ida, idb) = (a.svc.id(), b.svc.id());
    a.svc.open_pairing();
    b.svc.open_pairing();
    let dial = b.dial(a.svc.local_addr());
    let code_a = a.pairing_code(idb).await;
    let code_b = b.pairing_code(ida).await;
    assert_eq!(code_a, code_b, "both boxes show the same code");
    assert_eq!(a.svc.pending_pairings()[0].code, code_a);
    a.svc.accept(&idb, code_a, Role::Controller).unwrap();
    b.svc.accept(&ida, code_b, Role::Observer).unwrap();
    assert_eq!(dial.await.unwrap().unwrap(), ida);
    let pinned = a.wait("pinned", |e| matches!(e, PeerEvent::Pinned { .. })).await;
    assert!(
        matches!(pinned, PeerEvent::Pinned { peer, role: Role::Controller, via: PinVia::Pairing, .. } if peer == idb)
    );
    a.wait("connected", is_connected(idb)).await;
    b.svc.send_osc(&ida, osc_packet()).unwrap();
    assert_eq!(a.recv_osc().await.peer, idb);
    let b_view = b.trust();
    assert_eq!(b_view.peers.len(), 1);
    assert_eq!((b_view.peers[0].id, b_view.peers[0].role), (ida, Role::Observer));
}

#[tokio::test]
async fn a_wrong_pairing_code_cancels_the_pairing() {
    let mut a = start(Setup::new("a")).await;
    let mut b = start(Setup::new("b")).await;
    let (ida, idb) = (a.svc.id(), b.svc.id());
    a.svc.open_pairing();
    b.svc.open_pairing();
    let dial = b.dial(a.svc.local_addr());
    let code = a.pairing_code(idb).await;
    b.pairing_code(ida).await;
    let wrong = (code + 1) % 1_000_000;
    assert!(matches!(a.svc.accept(&idb, wrong, Role::Controller), Err(PeerError::WrongCode(_))));
    let err = dial.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(a.trust().peers.is_empty() && b.trust().peers.is_empty());
    // The session is gone: the right code no longer works either.
    assert!(matches!(a.svc.accept(&idb, code, Role::Controller), Err(PeerError::NoPairing(_))));
}

#[tokio::test]
async fn pairing_needs_an_open_window_on_the_accepting_box() {
    let a = start(Setup::new("a")).await;
    let b = start(Setup::new("b")).await;
    b.svc.open_pairing();
    // A is not pairing: B is an unknown key there and TLS fails.
    assert_refused(b.svc.connect(a.svc.local_addr()).await);
}

#[tokio::test]
async fn forget_closes_the_link_and_refuses_reconnects_even_with_the_site_key() {
    let mut a = start(Setup::new("a").site(SITE)).await;
    let mut b = start(Setup::new("b").site(SITE)).await;
    let (ida, idb) = (a.svc.id(), b.svc.id());
    b.svc.connect(a.svc.local_addr()).await.unwrap();
    a.wait("connected", is_connected(idb)).await;
    assert!(a.svc.forget(&idb).unwrap());
    a.wait("disconnected", is_disconnected(idb)).await;
    b.wait("disconnected", is_disconnected(ida)).await;
    assert_eq!(a.trust().standing(&idb, std::time::SystemTime::now()), Standing::Forgotten);
    // B still trusts A and still has the site key; A refuses it all the same.
    assert_refused(b.svc.connect(a.svc.local_addr()).await);
    assert_refused(a.svc.connect(b.svc.local_addr()).await);
    // Only a new human pairing clears the record.
    a.svc.open_pairing();
    b.svc.open_pairing();
    let dial = b.dial(a.svc.local_addr());
    let code = a.pairing_code(idb).await;
    let code_b = b.pairing_code(ida).await;
    a.svc.accept(&idb, code, Role::Observer).unwrap();
    b.svc.accept(&ida, code_b, Role::Observer).unwrap();
    assert_eq!(dial.await.unwrap().unwrap(), ida);
    assert!(matches!(a.trust().standing(&idb, std::time::SystemTime::now()), Standing::Pinned(_)));
}

#[tokio::test]
async fn hand_edits_of_the_trust_store_apply_to_live_links() {
    let (ia, ib) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let (ida, idb) = (ia.id(), ib.id());
    let mut a = start(Setup { identity: ia, ..Setup::new("a") }.pin(idb, Role::Observer)).await;
    let mut b = start(Setup { identity: ib, ..Setup::new("b") }.pin(ida, Role::Observer)).await;
    b.svc.connect(a.svc.local_addr()).await.unwrap();
    a.wait("connected", is_connected(idb)).await;
    // A typo is reported with its position and the old store stays in force.
    let path = a.trust_path();
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, good.replace("role = ", "rol = ")).unwrap();
    let failed =
        a.wait("reload failure", |e| matches!(e, PeerEvent::TrustReloadFailed { .. })).await;
    assert!(
        matches!(failed, PeerEvent::TrustReloadFailed { error } if error.contains("peers.toml:"))
    );
    assert_eq!(a.svc.connected(), vec![idb]);
    // Promoting B to controller by hand lets its OSC through.
    std::fs::write(&path, good.replace("\"observer\"", "\"controller\"")).unwrap();
    a.wait("reload", |e| matches!(e, PeerEvent::TrustReloaded { .. })).await;
    b.svc.send_osc(&ida, osc_packet()).unwrap();
    assert_eq!(a.recv_osc().await.peer, idb);
    // Deleting the pin by hand closes the link at once.
    std::fs::write(&path, "").unwrap();
    a.wait("disconnect", is_disconnected(idb)).await;
    b.wait("disconnect", is_disconnected(ida)).await;
}

#[tokio::test]
async fn rotation_is_accepted_only_when_vouched() {
    let (ia, ib) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let (ida, idb) = (ia.id(), ib.id());
    let mut a = start(Setup { identity: ia, ..Setup::new("a") }.pin(idb, Role::Controller)).await;
    let b = start(Setup { identity: ib, ..Setup::new("b") }.pin(ida, Role::Observer)).await;
    b.svc.connect(a.svc.local_addr()).await.unwrap();
    a.wait("connected", is_connected(idb)).await;
    let report = b.svc.rotate().await.unwrap();
    assert_eq!((report.old, report.vouched.clone(), report.missed.len()), (idb, vec![ida], 0));
    let new = report.new;
    assert_ne!(new, idb);
    assert_eq!(b.svc.id(), new);
    let rotated = a.wait("peer rotated", |e| matches!(e, PeerEvent::PeerRotated { .. })).await;
    assert_eq!(rotated, PeerEvent::PeerRotated { old: idb, new });
    let store = a.trust();
    let entry = store.peers.iter().find(|e| e.id == new).expect("pin moved to the new key");
    assert_eq!((entry.role, entry.previous[0].id), (Role::Controller, idb));
    // The new key connects without any site key or pairing: the old key vouched for it.
    a.wait("disconnect", is_disconnected(idb)).await;
    assert_eq!(b.svc.connect(a.svc.local_addr()).await.unwrap(), ida);
    a.wait("connected with the new key", is_connected(new)).await;
    b.svc.send_osc(&ida, osc_packet()).unwrap();
    assert_eq!(a.recv_osc().await.peer, new);
    // A third box with an unvouched fresh key that claims to be B is a stranger.
    let c = start(Setup::new("b")).await;
    assert_refused(c.svc.connect(a.svc.local_addr()).await);
}

#[tokio::test]
async fn a_rate_limit_violation_bans_across_a_restart_until_lifted() {
    let (ia, ib) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let (ida, idb) = (ia.id(), ib.id());
    // A's key is kept on disk so the restarted A is the same box.
    let keys = tempfile::tempdir().unwrap();
    let opts = vitrine_peer::IdentityOptions {
        dir: keys.path().join("identity"),
        credentials_dir: None,
        machine_id: None,
    };
    ia.save(&opts).unwrap();
    let tune: fn(&mut vitrine_peer::PeerConfig) = |c| {
        c.osc_rate = 1;
        c.osc_burst = 2;
        c.ban = std::time::Duration::from_secs(3600);
    };
    let mut a =
        start(Setup { identity: ia, tune, ..Setup::new("a") }.pin(idb, Role::Controller)).await;
    let b = start(Setup { identity: ib, ..Setup::new("b") }.pin(ida, Role::Observer)).await;
    b.svc.connect(a.svc.local_addr()).await.unwrap();
    a.wait("connected", is_connected(idb)).await;
    // The burst passes, the message after it breaks the limit.
    for _ in 0..3 {
        let _ = b.svc.send_osc(&ida, osc_packet());
    }
    let v = a.wait("violation", |e| matches!(e, PeerEvent::Violation { .. })).await;
    assert!(
        matches!(v, PeerEvent::Violation { peer, ref what, .. } if peer == idb && what.contains("rate limit"))
    );
    a.wait("disconnect", is_disconnected(idb)).await;
    let listed = a.svc.peers();
    assert!(listed[0].banned.as_ref().is_some_and(|b| b.reason.contains("rate limit")));
    // A restart of A keeps the ban: B is refused during the TLS handshake.
    let TestBox { svc, dir, .. } = a;
    std::sync::Arc::into_inner(svc).expect("sole owner").shutdown().await;
    let ia = Identity::load(&opts).unwrap().expect("saved identity");
    let mut a = start_in(Setup { identity: ia, tune, ..Setup::new("a") }, dir).await;
    assert_eq!(a.svc.bans().iter().map(|b| b.id).collect::<Vec<_>>(), vec![idb]);
    assert_refused(b.svc.connect(a.svc.local_addr()).await);
    a.wait("refusal", |e| matches!(e, PeerEvent::HandshakeFailed { reason, .. } if reason.contains(&format!("key {idb} refused: banned")))).await;
    // Deleting the entry by hand lifts the ban.
    std::fs::write(a.dir.path().join("peer-bans.toml"), "").unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    while b.svc.connect(a.svc.local_addr()).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the ban was not lifted");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    a.wait("connected again", is_connected(idb)).await;
    assert!(a.svc.bans().is_empty());
}

/// A TCP forwarder that can be cut: while cut, every byte through it is dropped (as on a dead
/// network path), and a connection that lost bytes never forwards again.
struct Cable {
    addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Cable {
    async fn to(target: std::net::SocketAddr) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(AtomicBool::new(true));
        let flag = open.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(target).await else { continue };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                let dead = std::sync::Arc::new(AtomicBool::new(!flag.load(Ordering::SeqCst)));
                for (mut r, mut w) in [(ri, wo), (ro, wi)]
                    .map(|(r, w)| (Box::new(r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>, w))
                {
                    let (flag, dead) = (flag.clone(), dead.clone());
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = r.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            if !flag.load(Ordering::SeqCst) {
                                dead.store(true, Ordering::SeqCst);
                            }
                            if !dead.load(Ordering::SeqCst) && w.write_all(&buf[..n]).await.is_err()
                            {
                                break;
                            }
                        }
                        // A dead path stays open and silent; a live one passes the close on.
                        if !dead.load(Ordering::SeqCst) {
                            let _ = w.shutdown().await;
                        } else {
                            std::future::pending::<()>().await;
                        }
                    });
                }
            }
        });
        Cable { addr, open }
    }

    fn set(&self, open: bool) {
        self.open.store(open, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn status_is_exchanged_and_a_silent_peer_is_marked_down_and_redialed() {
    use std::time::Duration;
    let (ia, ib) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let (ida, idb) = (ia.id(), ib.id());
    let tune: fn(&mut vitrine_peer::PeerConfig) = |c| {
        c.ping_interval = Duration::from_millis(200);
        c.ping_timeout = Duration::from_millis(1000);
        c.handshake_timeout = Duration::from_millis(1000);
        c.reconnect_min = Duration::from_millis(100);
        c.reconnect_max = Duration::from_millis(400);
        c.status_interval = Duration::from_millis(300);
    };
    let b = start(Setup { identity: ib, tune, ..Setup::new("b") }.pin(ida, Role::Observer)).await;
    // B tells controllers more than observers; A, an observer of B, gets the observer version.
    b.svc.set_status(Role::Observer, br#"{"visualizations":["aurora"]}"#.to_vec());
    b.svc.set_status(Role::Controller, br#"{"visualizations":["aurora"],"osc":true}"#.to_vec());
    let cable = Cable::to(b.svc.local_addr()).await;
    // A knows B only at the cable's address, and dials it by itself.
    let mut a = start(Setup { identity: ia, tune, ..Setup::new("a") }).await;
    let mut store = a.trust();
    store.pin(vitrine_peer::PeerEntry {
        id: idb,
        name: "b".into(),
        role: Role::Controller,
        added: std::time::SystemTime::now(),
        addresses: vec![cable.addr.to_string()],
        previous: vec![],
    });
    store.save(&a.trust_path()).unwrap();
    a.wait("connected", is_connected(idb)).await;
    let status = tokio::time::timeout(PATIENCE, a.status.recv()).await.expect("no status");
    assert_eq!(status.map(|s| s.peer), Some(idb));
    let info = a.svc.peers().into_iter().find(|p| p.id == idb).unwrap();
    assert!(info.connected.is_some() && info.last_seen.is_some() && info.down.is_none());
    assert_eq!(info.status.map(|s| s.1), Some(br#"{"visualizations":["aurora"]}"#.to_vec()));
    // The path goes dead: pings go unanswered, the peer is marked down, redials fail.
    cable.set(false);
    let gone = a.wait("down", is_disconnected(idb)).await;
    assert_eq!(gone, PeerEvent::Disconnected { peer: idb, reason: "no answer to pings".into() });
    a.wait(
        "failed redial",
        |e| matches!(e, PeerEvent::HandshakeFailed { addr, .. } if *addr == cable.addr),
    )
    .await;
    let info = a.svc.peers().into_iter().find(|p| p.id == idb).unwrap();
    assert!(info.connected.is_none());
    assert!(info.down.is_some_and(|(_, why)| why == "no answer to pings"));
    // The path comes back: the next redial links again, and the status is still there.
    cable.set(true);
    a.wait("reconnected", is_connected(idb)).await;
    let info = a.svc.peers().into_iter().find(|p| p.id == idb).unwrap();
    assert!(info.connected.is_some() && info.down.is_none() && info.status.is_some());
}

#[tokio::test]
async fn peering_does_not_start_on_a_ban_file_it_cannot_read() {
    // Starting as if there were no bans would lift them all: refuse, and name the file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("peer-bans.toml")).unwrap();
    let err = start_error(dir.path()).await;
    assert!(err.contains("peer-bans.toml"), "{err}");
}

/// Why a service with a fresh identity does not start on the state directory `dir`.
async fn start_error(dir: &std::path::Path) -> String {
    let cfg = vitrine_peer::PeerConfig::new("a", dir, "127.0.0.1:0".parse().unwrap());
    let ident = Identity::generate().unwrap();
    let err = vitrine_peer::PeerService::start(cfg, ident, vitrine_peer::IdentitySource::Memory)
        .await
        .unwrap_err();
    err.to_string()
}

#[tokio::test]
async fn a_ban_file_that_turns_unreadable_after_a_ban_lifts_nothing() {
    let (ia, ib) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let (ida, idb) = (ia.id(), ib.id());
    let mut a = start(Setup { identity: ia, ..Setup::new("a") }.pin(idb, Role::Observer)).await;
    let b = start(Setup { identity: ib, ..Setup::new("b") }.pin(ida, Role::Controller)).await;
    b.svc.connect(a.svc.local_addr()).await.unwrap();
    a.wait("connected", is_connected(idb)).await;
    // OSC from an observer: banned, and the ban is on disk.
    b.svc.send_osc(&ida, osc_packet()).unwrap();
    a.wait("violation", |e| matches!(e, PeerEvent::Violation { .. })).await;
    b.svc.stop();
    let bans = a.dir.path().join("peer-bans.toml");
    assert!(std::fs::read_to_string(&bans).unwrap().contains(&idb.to_string()));
    // The file turns into something that cannot be read: reported, and the ban holds.
    std::fs::remove_file(&bans).unwrap();
    std::fs::create_dir(&bans).unwrap();
    a.wait("bans kept", |e| matches!(e, PeerEvent::BansKept { .. })).await;
    assert!(a.svc.bans().iter().any(|ban| ban.id == idb));
    assert!(a.svc.peers()[0].banned.is_some());
    // And a restart on that state directory refuses to start rather than start without it.
    let TestBox { svc, dir, .. } = a;
    svc.stop();
    drop(svc);
    let err = start_error(dir.path()).await;
    assert!(err.contains("peer-bans.toml"), "{err}");
}

#[tokio::test]
async fn nothing_is_written_over_a_trust_store_with_a_pending_error() {
    let (ia, ib) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let idb = ib.id();
    let mut a = start(Setup { identity: ia, ..Setup::new("a") }.pin(idb, Role::Observer)).await;
    let broken =
        format!("{}\n[[peer]]\nid = \"oops\"\n", std::fs::read_to_string(a.trust_path()).unwrap());
    std::fs::write(a.trust_path(), &broken).unwrap();
    a.wait("reload refused", |e| matches!(e, PeerEvent::TrustReloadFailed { .. })).await;
    // A change through the API is refused, and the admin's file stays as written.
    let stranger = Identity::generate().unwrap().id();
    let err = a.svc.forget(&stranger).unwrap_err();
    assert!(matches!(err, PeerError::TrustFilePending(_)), "{err}");
    assert_eq!(std::fs::read_to_string(a.trust_path()).unwrap(), broken);
    // The store in force still pins B.
    assert!(matches!(a.svc.peers()[0].role, Role::Observer));
}
