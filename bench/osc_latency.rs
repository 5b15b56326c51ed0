//! OSC added latency: controller → `vitrine osc relay` → receiver, against a direct UDP
//! loopback send → receive between the same two processes, interleaved in the same run, at 1 k
//! and 10 k msgs/s. Each message carries its send time (CLOCK_REALTIME, shared by all
//! processes) and its path in a 16-byte blob, which the relay validates against a `blob`
//! parameter and re-encodes.
//!
//! Interleaving: the sender alternates the path every [`BLOCK`] (each path at the full rate
//! while it sends), so both see the same machine state — other work on the box, frequency and
//! idle states — within a twentieth of a second. A run is repeated [`REPEATS`] times; each
//! repeat prints its rows and the load average, and the summary gives the range over repeats.
//!
//! Run: `bench/osc_latency.sh` (builds the release `vitrine` first), or
//! `VITRINE_BIN=target/release/vitrine cargo bench -p vitrine-osc --bench osc_latency`.

#[path = "shared/mod.rs"]
mod shared;

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shared::{loadavg, vitrine_bin};
use vitrine_osc::encode::encode_message;
use vitrine_osc::wire::{self, Arg};

/// Seconds of sending per path, rate and repeat.
const SECONDS_PER_PATH: u64 = 3;
const REPEATS: usize = 3;
const RATES: [u64; 2] = [1000, 10_000];
/// How long the sender stays on one path before switching to the other.
const BLOCK: Duration = Duration::from_millis(50);
/// The last part of each gap between sends is spun rather than slept, for accurate pacing.
const SPIN: Duration = Duration::from_micros(60);
const DIRECT: u64 = 0;
const RELAYED: u64 = 1;

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--receive") {
        return receive();
    }
    let vitrine = vitrine_bin();
    let dir = policy_dir();
    let mut ratios: Vec<(u64, f64, f64)> = Vec::new();
    println!("| repeat | rate (msg/s) | path | p50 (µs) | p99 (µs) | received | load |");
    println!("|---|---|---|---|---|---|---|");
    for repeat in 1..=REPEATS {
        for rate in RATES {
            let load = loadavg();
            let [direct, relayed] = run(rate, &vitrine, &dir);
            let count = rate * SECONDS_PER_PATH;
            for (name, r) in [("direct", &direct), ("vitrine", &relayed)] {
                println!(
                    "| {repeat} | {rate} | {name} | {:.1} | {:.1} | {}/{count} | {load} |",
                    r.p50, r.p99, r.received
                );
            }
            let (p50, p99) = (relayed.p50 / direct.p50, relayed.p99 / direct.p99);
            println!("| {repeat} | {rate} | ratio | {p50:.2}× | {p99:.2}× | | |");
            ratios.push((rate, p50, p99));
        }
    }
    println!();
    println!("| rate (msg/s) | p50 ratio (range over {REPEATS}) | p99 ratio (range) |");
    println!("|---|---|---|");
    for rate in RATES {
        let of = |pick: fn(&(u64, f64, f64)) -> f64| {
            let v: Vec<f64> = ratios.iter().filter(|r| r.0 == rate).map(pick).collect();
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(0.0, f64::max);
            format!("{min:.2}–{max:.2}×")
        };
        println!("| {rate} | {} | {} |", of(|r| r.1), of(|r| r.2));
    }
}

#[derive(Default)]
struct Stats {
    p50: f64,
    p99: f64,
    received: u64,
}

/// One interleaved run at `rate`: a receiver, a relay in front of it, and the sender.
fn run(rate: u64, vitrine: &Path, dir: &Path) -> [Stats; 2] {
    let exe = std::env::current_exe().expect("own path");
    let mut receiver =
        Command::new(exe).arg("--receive").stdout(Stdio::piped()).spawn().expect("receiver");
    let mut lines = BufReader::new(receiver.stdout.take().expect("stdout")).lines();
    let port: u16 = lines
        .next()
        .and_then(|l| l.ok())
        .and_then(|l| l.strip_prefix("port ")?.parse().ok())
        .expect("receiver port");
    let (mut relay, listen) = start_relay(vitrine, dir, port);
    send([port, listen], rate, rate * SECONDS_PER_PATH);
    let mut stats = [Stats::default(), Stats::default()];
    for line in lines.map_while(Result::ok) {
        let v: Vec<f64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if let [path, p50, p99, received] = v[..] {
            stats[path as usize] = Stats { p50, p99, received: received as u64 };
        }
    }
    let _ = receiver.wait();
    let _ = relay.kill();
    let _ = relay.wait();
    stats
}

fn start_relay(vitrine: &Path, dir: &Path, to: u16) -> (Child, u16) {
    let listen =
        UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("free port").port();
    let policy = dir.join("policies/latency.toml");
    let child = Command::new(vitrine)
        .args(["osc", "relay", "--listen", &format!("127.0.0.1:{listen}")])
        .arg(format!("{}={to}", policy.display()))
        .stderr(Stdio::null())
        .spawn()
        .expect("vitrine osc relay");
    // Ready once the relay holds the port.
    while UdpSocket::bind(("127.0.0.1", listen)).is_ok() {
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, listen)
}

/// Paced sends of `count` messages per path; the deadline of message i is start + i/rate, and
/// the path changes every [`BLOCK`].
fn send(ports: [u16; 2], rate: u64, count: u64) {
    let sockets = ports.map(|port| {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.connect(("127.0.0.1", port)).expect("connect");
        socket
    });
    let per_block = (rate * BLOCK.as_millis() as u64 / 1000).max(1);
    let mut buf = Vec::new();
    let start = Instant::now();
    for i in 0..2 * count {
        let path = if (i / per_block) % 2 == 0 { DIRECT } else { RELAYED };
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        // Sleep most of the gap and spin only the last stretch: a sender spinning a whole core
        // would steal the CPU the relay and the receiver need on a small box.
        if let Some(gap) =
            due.checked_duration_since(Instant::now()).and_then(|g| g.checked_sub(SPIN))
        {
            std::thread::sleep(gap);
        }
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        let blob = stamp(now_ns(), path);
        encode_message(&mut buf, "/bench/t", &[Arg::Blob(&blob)]);
        let _ = sockets[path as usize].send(&buf);
    }
    // Tell the receiver we are done (it also stops after two quiet seconds).
    std::thread::sleep(Duration::from_millis(200));
    encode_message(&mut buf, "/bench/t", &[Arg::Blob(&stamp(0, DIRECT))]);
    let _ = sockets[DIRECT as usize].send(&buf);
}

fn stamp(ns: u64, path: u64) -> [u8; 16] {
    let mut blob = [0; 16];
    blob[..8].copy_from_slice(&ns.to_be_bytes());
    blob[8..].copy_from_slice(&path.to_be_bytes());
    blob
}

/// The receiving process: prints its port, then "path p50_us p99_us received" for each path.
fn receive() {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    println!("port {}", socket.local_addr().expect("addr").port());
    socket.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let mut latencies: [Vec<f64>; 2] = Default::default();
    let mut buf = [0u8; 256];
    while let Ok(n) = socket.recv(&mut buf) {
        let at = now_ns();
        let mut blob = None;
        let _ = wire::for_each_message(&buf[..n], 256, &mut |_, m| {
            if let Some(Arg::Blob(b)) = m.args().next() {
                blob = <[u8; 16]>::try_from(b).ok();
            }
        });
        let Some(blob) = blob else { break };
        let sent = u64::from_be_bytes(blob[..8].try_into().expect("8 bytes"));
        let path = u64::from_be_bytes(blob[8..].try_into().expect("8 bytes"));
        if sent == 0 {
            break;
        }
        if let Some(v) = latencies.get_mut(path as usize) {
            v.push(at.saturating_sub(sent) as f64 / 1000.0);
        }
    }
    for (path, mut v) in latencies.into_iter().enumerate() {
        v.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN)
        };
        println!("{path} {} {} {}", pick(0.5), pick(0.99), v.len());
    }
}

fn policy_dir() -> PathBuf {
    let dir = shared::policy_dir("osc-latency");
    std::fs::write(dir.join("policies/latency.toml"), POLICY).expect("write policy");
    dir
}

const POLICY: &str = r#"
[visualization]
name = "latency"
command = "/bin/true"

[ipc]
transport = "udp"
port = 9000

[osc]
prefix = "/bench"
max_rate = 100000

[[osc.params]]
address = "/t"
type = "blob"
max_len = 16
"#;
