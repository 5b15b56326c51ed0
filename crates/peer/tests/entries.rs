//! A peer that rotated its key is one trust entry with two keys while the grace period lasts:
//! bans, links and the OSC rate bucket apply to the entry, so the key it rotated away from is
//! no way around them (nor is the new key a way around a ban on the old one).

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use tempfile::TempDir;
use vitrine_peer::{Identity, IdentityOptions, PeerConfig, PeerEvent, PeerId, Role};

/// Box A, and box B after it rotated its key with A's blessing; B's old key kept aside.
struct Rotated {
    a: TestBox,
    /// B under its new key.
    b: TestBox,
    /// B's old key, still in A's grace period.
    old: Identity,
    ida: PeerId,
    old_id: PeerId,
    new_id: PeerId,
    _keys: TempDir,
}

/// A pins B as a controller; B sends `osc_before` messages, then rotates.
async fn rotated(tune: fn(&mut PeerConfig), osc_before: usize) -> Rotated {
    let (ia, ib) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let (ida, old_id) = (ia.id(), ib.id());
    let keys = tempfile::tempdir().unwrap();
    let opts =
        IdentityOptions { dir: keys.path().join("b"), credentials_dir: None, machine_id: None };
    ib.save(&opts).unwrap();
    let mut a =
        start(Setup { identity: ia, tune, ..Setup::new("a") }.pin(old_id, Role::Controller)).await;
    let b = start(Setup { identity: ib, ..Setup::new("b") }.pin(ida, Role::Observer)).await;
    b.svc.connect(a.svc.local_addr()).await.unwrap();
    a.wait("connected", is_connected(old_id)).await;
    for _ in 0..osc_before {
        b.svc.send_osc(&ida, osc_packet()).unwrap();
        a.recv_osc().await;
    }
    let report = b.svc.rotate().await.unwrap();
    assert_eq!(report.vouched, [ida]);
    a.wait("peer rotated", |e| matches!(e, PeerEvent::PeerRotated { .. })).await;
    a.wait("disconnect", is_disconnected(old_id)).await;
    // B's service kept its keys in memory: the files still hold the old key.
    let old = Identity::load(&opts).unwrap().unwrap();
    assert_eq!(old.id(), old_id);
    Rotated { a, b, old, ida, old_id, new_id: report.new, _keys: keys }
}

fn is_violation(peer: PeerId) -> impl Fn(&PeerEvent) -> bool {
    move |e| matches!(e, PeerEvent::Violation { peer: p, .. } if *p == peer)
}

fn refused_as_banned(e: &PeerEvent) -> bool {
    matches!(e, PeerEvent::HandshakeFailed { reason, .. } if reason.contains("banned"))
}

/// Nothing refills and the burst is one message: the second message breaks the limit.
fn strict(c: &mut PeerConfig) {
    c.osc_rate = 0;
    c.osc_burst = 1;
    c.ban = std::time::Duration::from_secs(3600);
}

#[tokio::test]
async fn a_ban_under_the_new_key_also_refuses_the_old_key() {
    let Rotated { mut a, b, old, ida, new_id, .. } = rotated(strict, 0).await;
    b.svc.connect(a.svc.local_addr()).await.unwrap();
    a.wait("connected", is_connected(new_id)).await;
    for _ in 0..2 {
        let _ = b.svc.send_osc(&ida, osc_packet());
    }
    a.wait("violation", is_violation(new_id)).await;
    a.wait("disconnect", is_disconnected(new_id)).await;
    // B stops redialing: the refusal below can only be the old key's.
    b.svc.stop();
    // The old key is still inside its grace period, and refused all the same.
    let c = start(Setup { identity: old, ..Setup::new("b") }.pin(ida, Role::Observer)).await;
    assert_refused(c.svc.connect(a.svc.local_addr()).await);
    a.wait("refusal of the old key", refused_as_banned).await;
    let listed = a.svc.peers();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].banned.as_ref().is_some_and(|b| b.id == new_id), "{listed:?}");
    assert!(a.svc.connected().is_empty());
}

#[tokio::test]
async fn a_ban_under_the_old_key_also_refuses_the_new_key() {
    let Rotated { mut a, b, old, ida, old_id, .. } = rotated(strict, 0).await;
    let c = start(Setup { identity: old, ..Setup::new("b") }.pin(ida, Role::Observer)).await;
    c.svc.connect(a.svc.local_addr()).await.unwrap();
    a.wait("connected under the old key", is_connected(old_id)).await;
    for _ in 0..2 {
        let _ = c.svc.send_osc(&ida, osc_packet());
    }
    a.wait("violation", is_violation(old_id)).await;
    a.wait("disconnect", is_disconnected(old_id)).await;
    // The old key stops redialing: the refusal below can only be the new key's.
    c.svc.stop();
    assert_refused(b.svc.connect(a.svc.local_addr()).await);
    a.wait("refusal of the new key", refused_as_banned).await;
    assert!(a.svc.peers()[0].banned.is_some());
}

#[tokio::test]
async fn a_peer_has_one_link_and_one_rate_bucket_whichever_key_it_uses() {
    // Three messages in all, and none ever refills: before the rotation, under the old key,
    // under the new key; the fourth breaks the limit.
    let tune: fn(&mut PeerConfig) = |c| {
        strict(c);
        c.osc_burst = 3;
    };
    let Rotated { mut a, b, old, ida, old_id, new_id, .. } = rotated(tune, 1).await;
    let mut c = start(Setup { identity: old, ..Setup::new("b") }.pin(ida, Role::Observer)).await;
    c.svc.connect(a.svc.local_addr()).await.unwrap();
    a.wait("connected under the old key", is_connected(old_id)).await;
    c.svc.send_osc(&ida, osc_packet()).unwrap();
    assert_eq!(a.recv_osc().await.peer, old_id);
    // A link under the current key replaces the one under the old key.
    b.svc.connect(a.svc.local_addr()).await.unwrap();
    a.wait("connected under the new key", is_connected(new_id)).await;
    c.wait("old link closed", is_disconnected(ida)).await;
    assert_eq!(a.svc.connected(), [new_id]);
    // And while it is up, a link under the old key is turned away.
    let _ = c.svc.connect(a.svc.local_addr()).await;
    c.wait("old link refused", is_disconnected(ida)).await;
    a.wait("refusal reported", |e| matches!(e, PeerEvent::HandshakeFailed { peer: Some(p), reason, .. } if *p == old_id && reason.contains("current key"))).await;
    assert_eq!(a.svc.connected(), [new_id]);
    b.svc.send_osc(&ida, osc_packet()).unwrap();
    assert_eq!(a.recv_osc().await.peer, new_id);
    b.svc.send_osc(&ida, osc_packet()).unwrap();
    let v = a.wait("violation", is_violation(new_id)).await;
    assert!(matches!(v, PeerEvent::Violation { ref what, .. } if what.contains("rate limit")));
}
