//! The hub's hot path, end to end through real sockets: no heap allocation per message from
//! recvmsg to the child's socket, and a child that stops reading stalls nothing but itself.

#![allow(clippy::unwrap_used)] // A failing unwrap is a failing test.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, setsockopt, socketpair, sockopt};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use vitrine_osc::RouterConfig;
use vitrine_osc::encode::encode_message;
use vitrine_osc::wire::Arg;
use vitrine_policy::{NetRule, Osc, OscConfig, OscParam, OutOfRange, ParamKind};

use super::{Delivery, Hub};

/// Counts every allocation of this test binary; only the probe below reads it, in a process of
/// its own where nothing else runs.
#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Guards against a hang only; no test depends on how fast anything is.
const HANG_GUARD: Duration = Duration::from_secs(30);
const PROBE: &str = "osc::hot_path_tests::allocation_probe";

fn schema() -> Osc {
    let p = |a: &str, kind| OscParam { address: a.into(), kind, max_rate: None, coalesce: false };
    Osc {
        prefix: "/viz".into(),
        max_rate: 100_000,
        params: vec![
            p(
                "/speed",
                ParamKind::Float { range: Some((0.0, 10.0)), out_of_range: OutOfRange::Clamp },
            ),
            p(
                "/count",
                ParamKind::Int { range: Some((0, 1000)), out_of_range: OutOfRange::Reject },
            ),
        ],
    }
}

async fn hub() -> Hub {
    let config = OscConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        allow_from: vec![NetRule::Local],
        max_packet: 8192,
        oscquery_listen: None,
    };
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    Hub::start(&config, RouterConfig::default(), tx).await.unwrap()
}

fn packet(address: &str, args: &[Arg<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message(&mut out, address, args);
    out
}

/// Runs the probe in a fresh process of this test binary, so that the allocation counter sees
/// the hub's threads and nothing of the tests running beside this one.
#[test]
fn routing_a_message_allocates_nothing() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([PROBE, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the allocation probe failed");
    assert!(stdout.contains("1 passed"), "the probe did not run");
}

/// Controller → ingress thread → decode, validate, route, re-encode → send to the child,
/// one message at a time (each waits for the previous one to arrive), with the counter on.
#[tokio::test(flavor = "current_thread")]
#[ignore = "run by routing_a_message_allocates_nothing in a process of its own"]
async fn allocation_probe() {
    let hub = hub().await;
    let child = UdpSocket::bind("127.0.0.1:0").unwrap();
    child.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let port = child.local_addr().unwrap().port();
    let ours = UdpSocket::bind("127.0.0.1:0").unwrap();
    hub.attach("viz", &schema(), Delivery::Udp { socket: ours, port }).unwrap();
    let controller = UdpSocket::bind("127.0.0.1:0").unwrap();
    controller.connect(hub.local_addrs()[0]).unwrap();
    let messages: Vec<Vec<u8>> = (0..8)
        .flat_map(|i| {
            [
                packet("/viz/speed", &[Arg::Float(i as f32 * 2.0)]),
                packet("/viz/count", &[Arg::Int(i)]),
                packet("/viz/*", &[Arg::Int(i)]),
            ]
        })
        .collect();
    // /viz/* reaches both parameters.
    let arrivals = |m: &[u8]| if m.starts_with(b"/viz/*") { 2 } else { 1 };
    let mut buf = [0u8; 256];
    let mut round_trip = |rounds: usize| {
        for _ in 0..rounds {
            for m in &messages {
                controller.send(m).unwrap();
                for _ in 0..arrivals(m) {
                    child.recv(&mut buf).unwrap();
                }
            }
        }
    };
    // Warm up: the router's tables, the outbox's recycled buffers, thread-locals.
    round_trip(20);
    let region = Region::new(GLOBAL);
    round_trip(200);
    let change = region.change();
    let sent = 200 * messages.len();
    println!(
        "{sent} datagrams: {} allocations, {} reallocations",
        change.allocations, change.reallocations
    );
    assert_eq!((change.allocations, change.reallocations), (0, 0));
    let forwarded = hub.stats().visualizations[0].forwarded;
    assert_eq!(forwarded, 220 * messages.iter().map(|m| arrivals(m)).sum::<usize>() as u64);
    hub.shutdown().await;
}

/// A child that does not read: sends fill its socket, the rest waits in the outbox, and the
/// delivery thread sends it once the child reads again, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_child_gets_its_queue_once_it_reads_again() {
    let hub = hub().await;
    let (ours, theirs) =
        socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).unwrap();
    // The smallest send buffer the kernel allows: a few messages fill it.
    setsockopt(&ours, sockopt::SndBuf, &1).unwrap();
    hub.attach("viz", &schema(), Delivery::Fd(ours)).unwrap();
    let controller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = hub.local_addrs()[0];
    let count = 200;
    for i in 0..count {
        controller.send_to(&packet("/viz/count", &[Arg::Int(i)]), to).unwrap();
    }
    let mut tries = 0;
    while hub.stats().received_udp < count as u64 {
        tries += 1;
        assert!(tries < 3000, "the hub never received the datagrams");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stalled = hub.stats().visualizations[0].forwarded;
    assert!(stalled < count as u64, "the socket took everything: nothing was stalled");
    let theirs = std::os::unix::net::UnixDatagram::from(theirs);
    theirs.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let mut buf = [0u8; 64];
    for i in 0..count {
        let n = theirs.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], packet("/count", &[Arg::Int(i)]).as_slice());
    }
    let stats = hub.stats();
    assert_eq!(stats.visualizations[0].forwarded, count as u64);
    assert!(stats.visualizations[0].dropped.iter().all(|(_, n)| *n == 0));
    hub.shutdown().await;
}
