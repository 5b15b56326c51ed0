//! A trusted peer that breaks the rules on purpose: rotating onto keys it has no business
//! with, finishing a handshake after its ban, flooding status frames, and relaying OSC as a
//! controller just demoted. The peer is a raw TLS endpoint (see `raw`), the box a real service.

#![allow(clippy::unwrap_used)]

mod common;
mod raw;

use std::time::Duration;

use common::*;
use raw::*;
use vitrine_peer::frame::{Frame, Rotate};
use vitrine_peer::proof::rotation_message;
use vitrine_peer::{Identity, PeerEvent, PeerId, Role, TrustStore};

fn violation_of(peer: PeerId) -> impl Fn(&PeerEvent) -> bool {
    move |e| matches!(e, PeerEvent::Violation { peer: p, .. } if *p == peer)
}

#[tokio::test]
async fn a_rotation_onto_another_entrys_or_this_boxs_key_is_a_violation() {
    let (ia, ib, ic) = (
        Identity::generate().unwrap(),
        Identity::generate().unwrap(),
        Identity::generate().unwrap(),
    );
    let (idb, idc) = (ib.id(), ic.id());
    let a_spki = ia.spki().to_vec();
    let setup = Setup { identity: ia, ..Setup::new("a") };
    let mut a = start(setup.pin(idb, Role::Observer).pin(idc, Role::Controller)).await;
    let before = a.trust();
    for (target, what) in [(ic.spki().to_vec(), "another trust entry"), (a_spki, "own key")] {
        let (mut tls, exporter) = raw_connect(a.svc.local_addr(), &ib).await;
        assert!(matches!(next_frame(&mut tls).await, Some(Frame::Welcome(_))));
        // B's pinned key really vouches for the key: only the key is wrong.
        let signature = ib.sign(&rotation_message(&target, &exporter));
        send(&mut tls, &Frame::Rotate(Rotate { spki: target, signature })).await;
        let v = a.wait("violation", violation_of(idb)).await;
        assert!(matches!(&v, PeerEvent::Violation { what: w, .. } if w.contains(what)), "{v:?}");
        // The trust store is untouched, still parses, and C is still its own entry.
        assert_eq!(a.trust(), before);
        assert!(TrustStore::parse(&a.trust_path(), &before.to_toml()).is_ok());
        assert_eq!(a.svc.bans().iter().filter(|b| b.id == idc).count(), 0);
        // Lift the ban by hand for the next round.
        std::fs::write(a.dir.path().join("peer-bans.toml"), "").unwrap();
        while !a.svc.bans().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_handshake_that_finishes_after_a_ban_gets_no_link() {
    let ib = Identity::generate().unwrap();
    let idb = ib.id();
    let mut a = start(Setup::new("a").pin(idb, Role::Observer)).await;
    let addr = a.svc.local_addr();
    // A second connection passes the certificate checks, then holds back its hello.
    let held = raw_tls(addr, &ib).await;
    let (mut first, _) = raw_connect(addr, &ib).await;
    assert!(matches!(next_frame(&mut first).await, Some(Frame::Welcome(_))));
    // OSC from an observer: banned.
    send(&mut first, &Frame::Osc(osc_packet())).await;
    a.wait("violation", violation_of(idb)).await;
    let (mut second, _) = raw_hello(held).await;
    let mut frames = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, async {
        while let Some(f) = next_frame(&mut second).await {
            let refused = matches!(f, Frame::Refused { .. });
            frames.push(f);
            if refused {
                break;
            }
        }
    })
    .await;
    assert!(
        matches!(frames.last(), Some(Frame::Refused { reason }) if reason.contains("banned")),
        "{frames:?}"
    );
    let e = a.wait("refusal", |e| matches!(e, PeerEvent::HandshakeFailed { .. })).await;
    assert!(
        matches!(&e, PeerEvent::HandshakeFailed { peer: Some(p), reason, .. } if *p == idb && reason.contains("banned")),
        "{e:?}"
    );
    assert!(a.svc.connected().is_empty());
}

#[tokio::test]
async fn a_status_flood_is_a_violation() {
    let ib = Identity::generate().unwrap();
    let idb = ib.id();
    let mut a = start(Setup::new("a").pin(idb, Role::Controller)).await;
    let (mut tls, _) = raw_connect(a.svc.local_addr(), &ib).await;
    assert!(matches!(next_frame(&mut tls).await, Some(Frame::Welcome(_))));
    for _ in 0..50 {
        send(&mut tls, &Frame::Status(vec![b'x'; 1000])).await;
    }
    let v = a.wait("violation", violation_of(idb)).await;
    assert!(matches!(&v, PeerEvent::Violation { what, .. } if what.contains("status")), "{v:?}");
    // At most the burst reached the supervisor.
    let mut delivered = 0;
    while a.status.try_recv().is_ok() {
        delivered += 1;
    }
    assert!((1..=4).contains(&delivered), "{delivered}");
}

#[tokio::test]
async fn osc_from_a_controller_demoted_moments_ago_is_dropped_then_banned() {
    let ib = Identity::generate().unwrap();
    let idb = ib.id();
    let window = Duration::from_secs(3);
    let tune: fn(&mut vitrine_peer::PeerConfig) = |c| c.status_interval = Duration::from_secs(3);
    let mut a = start(Setup { tune, ..Setup::new("a") }.pin(idb, Role::Controller)).await;
    a.svc.set_status(Role::Controller, b"controller".to_vec());
    a.svc.set_status(Role::Observer, b"observer".to_vec());
    let (mut tls, _) = raw_connect(a.svc.local_addr(), &ib).await;
    assert!(matches!(next_frame(&mut tls).await, Some(Frame::Welcome(_))));
    assert_eq!(next_frame(&mut tls).await, Some(Frame::Status(b"controller".to_vec())));
    // Demoted by hand: A tells B at once, without waiting for its status interval.
    let mut store = a.trust();
    store.peers[0].role = Role::Observer;
    store.save(&a.trust_path()).unwrap();
    assert_eq!(next_frame(&mut tls).await, Some(Frame::Status(b"observer".to_vec())));
    // B relayed before it could know: dropped, not banned.
    send(&mut tls, &Frame::Osc(osc_packet())).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while a.svc.osc_dropped() == 0 && a.svc.bans().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the OSC was neither dropped nor banned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(a.svc.bans().is_empty(), "banned for OSC sent before it knew its new role");
    // Once it has had a status interval to learn its role, OSC is a violation.
    tokio::time::sleep(window + Duration::from_millis(500)).await;
    send(&mut tls, &Frame::Osc(osc_packet())).await;
    let v = a.wait("violation", violation_of(idb)).await;
    assert!(matches!(&v, PeerEvent::Violation { what, .. } if what.contains("observer")), "{v:?}");
}
