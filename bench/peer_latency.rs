//! Peering costs, measured in one run on loopback:
//! - handshake: TCP connect + TLS 1.3 mutual auth + hello/welcome until the link is up, for a
//!   hand-pinned peer (the common case after the first pairing);
//! - relay: one OSC packet from a controller box to another box's OSC channel, against the same
//!   packet sent as a UDP datagram over loopback (how local OSC reaches the supervisor).
//!
//! Run: `cargo bench -p vitrine-peer --bench peer_latency` (release build, plain main).

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use vitrine_peer::{
    Identity, IdentitySource, PeerChannels, PeerConfig, PeerEntry, PeerService, Role, TrustStore,
};

const HANDSHAKES: usize = 100;
const MESSAGES: usize = 5000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn row(name: &str, mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let (p50, p99) = (percentile(&v, 0.5), percentile(&v, 0.99));
    println!(
        "| {name} | {} | {:.1} µs | {:.1} µs |",
        v.len(),
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    (p50, p99)
}

fn pin(dir: &std::path::Path, id: vitrine_peer::PeerId, role: Role) {
    let path = dir.join("peers.toml");
    let mut s = TrustStore::default();
    s.pin(PeerEntry {
        id,
        name: "bench".into(),
        role,
        added: std::time::SystemTime::now(),
        addresses: vec![],
        previous: vec![],
    });
    s.save(&path).expect("write the trust store");
}

async fn service(dir: &std::path::Path, ident: Identity) -> (PeerService, PeerChannels) {
    let mut cfg = PeerConfig::new("bench", dir, "127.0.0.1:0".parse().expect("addr"));
    cfg.osc_rate = 1_000_000;
    cfg.osc_burst = 1_000_000;
    PeerService::start(cfg, ident, IdentitySource::Memory).await.expect("start")
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let (da, db) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let (ia, ib) = (Identity::generate().expect("key"), Identity::generate().expect("key"));
    let (ida, idb) = (ia.id(), ib.id());
    pin(da.path(), idb, Role::Controller);
    pin(db.path(), ida, Role::Observer);
    let (a, mut ca) = service(da.path(), ia).await;
    let (b, _cb) = service(db.path(), ib).await;

    let mut handshakes = Vec::with_capacity(HANDSHAKES);
    for _ in 0..HANDSHAKES {
        let t = Instant::now();
        b.connect(a.local_addr()).await.expect("handshake");
        handshakes.push(t.elapsed());
        // The next connect replaces this link; wait until A saw it, so links do not pile up.
        while !a.connected().contains(&idb) {
            tokio::task::yield_now().await;
        }
    }
    while !b.connected().contains(&ida) {
        tokio::task::yield_now().await;
    }

    let mut packet = b"/aurora/speed\0\0\0,f\0\0".to_vec();
    packet.extend_from_slice(&1.5f32.to_be_bytes());
    let mut relayed = Vec::with_capacity(MESSAGES);
    for _ in 0..MESSAGES {
        let t = Instant::now();
        b.send_osc(&ida, packet.clone()).expect("send");
        ca.osc.recv().await.expect("relayed packet");
        relayed.push(t.elapsed());
    }

    let rx = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let to = rx.local_addr().expect("addr");
    let recv = tokio::task::spawn_blocking(move || {
        let mut local = Vec::with_capacity(MESSAGES);
        let mut buf = [0u8; 512];
        for _ in 0..MESSAGES {
            let t = Instant::now();
            tx.send_to(&packet, to).expect("send");
            rx.recv_from(&mut buf).expect("recv");
            local.push(t.elapsed());
        }
        local
    });
    let local = recv.await.expect("udp loop");

    println!("| path | samples | p50 | p99 |\n|---|---|---|---|");
    row("peer handshake (TCP + TLS 1.3 mutual + hello/welcome)", handshakes);
    let (l50, l99) = row("local OSC: UDP loopback datagram", local);
    let (r50, r99) = row("relayed OSC: peer frame over TLS", relayed);
    println!(
        "\nadded by relaying: p50 +{:.1} µs, p99 +{:.1} µs",
        (r50.as_secs_f64() - l50.as_secs_f64()) * 1e6,
        (r99.as_secs_f64() - l99.as_secs_f64()) * 1e6
    );
    drop(ca);
    a.shutdown().await;
    b.shutdown().await;
}
