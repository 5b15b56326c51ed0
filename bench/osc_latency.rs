//! OSC added latency: controller → `vitrine osc relay` → receiver, against a direct UDP
//! loopback send → receive between the same two processes, in the same run, at 1 k and
//! 10 k msgs/s. Each message carries its send time (CLOCK_REALTIME, shared by all processes)
//! in an 8-byte blob, which the relay validates against a `blob` parameter and re-encodes.
//!
//! Run: `bench/osc_latency.sh` (builds the release `vitrine` first), or
//! `VITRINE_BIN=target/release/vitrine cargo bench -p vitrine-osc --bench osc_latency`.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vitrine_osc::encode::encode_message;
use vitrine_osc::wire::{self, Arg};

const SECONDS_PER_RUN: u64 = 3;
/// The last part of each gap between sends is spun rather than slept, for accurate pacing.
const SPIN: Duration = Duration::from_micros(60);

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--receive") {
        return receive(args.get(i + 1).and_then(|c| c.parse().ok()).unwrap_or(0));
    }
    let vitrine = vitrine_bin();
    let dir = policy_dir();
    println!("| rate (msg/s) | path | p50 (µs) | p99 (µs) | received |");
    println!("|---|---|---|---|---|");
    for rate in [1000u64, 10_000] {
        let count = rate * SECONDS_PER_RUN;
        let direct = run(rate, count, None);
        let relayed = run(rate, count, Some((&vitrine, &dir)));
        for (name, r) in [("direct", &direct), ("vitrine", &relayed)] {
            println!("| {rate} | {name} | {:.1} | {:.1} | {}/{count} |", r.p50, r.p99, r.received);
        }
        println!(
            "| {rate} | ratio | {:.2}× | {:.2}× | |",
            relayed.p50 / direct.p50,
            relayed.p99 / direct.p99
        );
    }
}

struct Result {
    p50: f64,
    p99: f64,
    received: u64,
}

/// Sends `count` messages at `rate`, directly or through the relay, to a receiver process.
fn run(rate: u64, count: u64, relay: Option<(&Path, &Path)>) -> Result {
    let exe = std::env::current_exe().expect("own path");
    let mut receiver = Command::new(exe)
        .arg("--receive")
        .arg(count.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("receiver");
    let mut lines = BufReader::new(receiver.stdout.take().expect("stdout")).lines();
    let port: u16 = lines
        .next()
        .and_then(|l| l.ok())
        .and_then(|l| l.strip_prefix("port ")?.parse().ok())
        .expect("receiver port");
    let (target, address, relay_child) = match relay {
        Some((vitrine, dir)) => {
            let (child, listen) = start_relay(vitrine, dir, port);
            (listen, "/bench/t", Some(child))
        }
        None => (port, "/bench/t", None),
    };
    send(target, address, rate, count);
    let stats = lines.next().and_then(|l| l.ok()).unwrap_or_default();
    let _ = receiver.wait();
    if let Some(mut c) = relay_child {
        let _ = c.kill();
        let _ = c.wait();
    }
    let v: Vec<f64> = stats.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    Result {
        p50: v.first().copied().unwrap_or(f64::NAN),
        p99: v.get(1).copied().unwrap_or(f64::NAN),
        received: v.get(2).map_or(0, |n| *n as u64),
    }
}

fn start_relay(vitrine: &Path, dir: &Path, to: u16) -> (Child, u16) {
    let listen =
        UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("free port").port();
    let policy = dir.join("policies/latency.toml");
    let child = Command::new(vitrine)
        .args(["osc", "relay", "--listen", &format!("127.0.0.1:{listen}")])
        .arg(format!("{}={to}", policy.display()))
        .stderr(Stdio::piped())
        .spawn()
        .expect("vitrine osc relay");
    // Ready once the relay holds the port.
    while UdpSocket::bind(("127.0.0.1", listen)).is_ok() {
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, listen)
}

/// Paced sends; the deadline of message i is start + i/rate.
fn send(port: u16, address: &str, rate: u64, count: u64) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.connect(("127.0.0.1", port)).expect("connect");
    let mut buf = Vec::new();
    let start = Instant::now();
    for i in 0..count {
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
        let stamp = now_ns().to_be_bytes();
        encode_message(&mut buf, address, &[Arg::Blob(&stamp)]);
        let _ = socket.send(&buf);
    }
    // Tell the receiver we are done (it also stops after a quiet second).
    std::thread::sleep(Duration::from_millis(200));
    encode_message(&mut buf, address, &[Arg::Blob(&[0; 8])]);
    let _ = socket.send(&buf);
}

/// The receiving process: prints its port, then "p50_us p99_us received" when done.
fn receive(expected: u64) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    println!("port {}", socket.local_addr().expect("addr").port());
    socket.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let mut latencies = Vec::with_capacity(expected as usize);
    let mut buf = [0u8; 256];
    while let Ok(n) = socket.recv(&mut buf) {
        let at = now_ns();
        let mut stamp = None;
        let _ = wire::for_each_message(&buf[..n], 256, &mut |_, m| {
            if let Some(Arg::Blob(b)) = m.args().next() {
                stamp = b.try_into().ok().map(u64::from_be_bytes);
            }
        });
        match stamp {
            Some(0) | None => break,
            Some(t) => latencies.push(at.saturating_sub(t) as f64 / 1000.0),
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!("{} {} {}", pick(0.5), pick(0.99), latencies.len());
}

fn vitrine_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VITRINE_BIN") {
        return PathBuf::from(p);
    }
    // target/release/deps/osc_latency-* → target/release/vitrine
    let exe = std::env::current_exe().expect("own path");
    exe.parent().and_then(Path::parent).map(|d| d.join("vitrine")).expect("target dir")
}

/// A policy directory with the shipped presets and seccomp profiles beside it, as the loader
/// expects (`<dir>/policies/x.toml`, `<dir>/presets`, `<dir>/seccomp`).
fn policy_dir() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::temp_dir().join(format!("vitrine-osc-latency-{}", std::process::id()));
    let _ = std::fs::create_dir_all(dir.join("policies"));
    for sub in ["presets", "seccomp"] {
        let _ = std::os::unix::fs::symlink(repo.join("policies").join(sub), dir.join(sub));
    }
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
max_len = 8
"#;
