//! Validated OSC throughput through the whole supervisor path on one core: datagrams into
//! `vitrine osc relay` (pinned to one CPU), decoded, validated, rate-checked, re-encoded and sent
//! to a receiving socket. For each offered rate it prints what arrived and the CPU time the
//! relay used, and from that the messages one core can validate and forward per second.
//!
//! Senders are 16 sockets on 127.0.0.2…17, so that every source stays inside the default
//! per-source rate (20 k/s) the way many controllers would. One visualization takes at most
//! 100 k/s (the policy's ceiling), so the offered load is split over three visualizations with
//! one parameter each, all delivering to the same receiver.
//!
//! Run: `bench/osc_latency.sh` runs it after the latency benchmark, or
//! `VITRINE_BIN=target/release/vitrine cargo bench -p vitrine-osc --bench osc_relay_throughput`.

#[path = "shared/mod.rs"]
mod shared;

use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use shared::{loadavg, vitrine_bin};
use vitrine_osc::encode::encode_message;
use vitrine_osc::wire::Arg;

const SOURCES: u8 = 16;
const SECONDS: u64 = 2;
const RATES: [u64; 3] = [50_000, 100_000, 200_000];
/// Sends go out in small bursts every tick, so pacing costs no spinning.
const TICK: Duration = Duration::from_micros(500);

fn main() {
    let vitrine = vitrine_bin();
    let dir = policy_dir();
    let cpu = relay_cpu();
    println!("relay pinned to CPU {cpu}; load {}", loadavg());
    println!(
        "| offered (msg/s) | delivered (msg/s) | relay CPU (s) | msgs per relay CPU-second | \
         µs CPU per msg: relay | plain receiver |"
    );
    println!("|---|---|---|---|---|---|");
    for rate in RATES {
        let r = run(rate, &vitrine, &dir, cpu);
        let per_msg = |seconds: f64| seconds * 1e6 / r.delivered.max(1) as f64;
        println!(
            "| {rate} | {:.0} | {:.3} | {:.0} k | {:.2} | {:.2} |",
            r.delivered as f64 / SECONDS as f64,
            r.cpu_seconds,
            r.delivered as f64 / r.cpu_seconds / 1e3,
            per_msg(r.cpu_seconds),
            per_msg(r.receiver_seconds)
        );
    }
}

struct Measured {
    delivered: u64,
    cpu_seconds: f64,
    /// CPU time of the plain receiving thread: what one recv(2) per datagram costs here.
    receiver_seconds: f64,
}

fn run(rate: u64, vitrine: &Path, dir: &Path, cpu: usize) -> Measured {
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    receiver.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let port = receiver.local_addr().expect("addr").port();
    let count = Arc::new(AtomicU64::new(0));
    let counter = {
        let count = count.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            let before = thread_cpu_ns();
            while receiver.recv(&mut buf).is_ok() {
                count.fetch_add(1, Ordering::Relaxed);
            }
            thread_cpu_ns() - before
        })
    };
    let (mut relay, listen) = start_relay(vitrine, dir, port, cpu);
    let before = cpu_ns(relay.id());
    send(listen, rate);
    // The receiver stops after half a second without datagrams.
    let receiver_ns = counter.join().unwrap_or(0);
    let after = cpu_ns(relay.id());
    let _ = relay.kill();
    let _ = relay.wait();
    Measured {
        delivered: count.load(Ordering::Relaxed),
        cpu_seconds: after.saturating_sub(before) as f64 / 1e9,
        receiver_seconds: receiver_ns as f64 / 1e9,
    }
}

/// `rate` messages/s for [`SECONDS`], spread over [`SOURCES`] sockets.
fn send(port: u16, rate: u64) {
    let total = rate * SECONDS;
    let per_source = total / u64::from(SOURCES);
    let start = Arc::new(Barrier::new(usize::from(SOURCES)));
    let threads: Vec<_> = (0..SOURCES)
        .map(|i| {
            let start = start.clone();
            std::thread::spawn(move || {
                let socket = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 2 + i), 0)).expect("bind");
                socket.connect(("127.0.0.1", port)).expect("connect");
                let mut buf = Vec::new();
                start.wait();
                let began = Instant::now();
                for n in 0..per_source {
                    let due =
                        began + Duration::from_nanos(n * 1_000_000_000 * u64::from(SOURCES) / rate);
                    if let Some(wait) = due.checked_duration_since(Instant::now())
                        && wait > TICK
                    {
                        std::thread::sleep(wait);
                    }
                    let value = (n % 1000) as f32 / 50.0;
                    let address = ADDRESSES[(n % ADDRESSES.len() as u64) as usize];
                    encode_message(&mut buf, address, &[Arg::Float(value)]);
                    let _ = socket.send(&buf);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn start_relay(vitrine: &Path, dir: &Path, to: u16, cpu: usize) -> (Child, u16) {
    let listen =
        UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("free port").port();
    let child = Command::new("taskset")
        .arg("-c")
        .arg(cpu.to_string())
        .arg(vitrine)
        .args(["osc", "relay", "--listen", &format!("127.0.0.1:{listen}")])
        .args(
            VISUALIZATIONS
                .map(|v| format!("{}={to}", dir.join(format!("policies/{v}.toml")).display())),
        )
        .stderr(Stdio::null())
        .spawn()
        .expect("taskset vitrine osc relay");
    let mut child = child;
    while UdpSocket::bind(("127.0.0.1", listen)).is_ok() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("vitrine osc relay exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, listen)
}

/// CPU time of every thread of `pid` so far (nanoseconds, from schedstat).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// CPU time of the calling thread so far (nanoseconds).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The last CPU: the relay gets it, senders and receiver share the others.
fn relay_cpu() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(1)
}

fn policy_dir() -> PathBuf {
    let dir = shared::policy_dir("osc-throughput");
    for name in VISUALIZATIONS {
        let policy = POLICY.replace("NAME", name);
        std::fs::write(dir.join(format!("policies/{name}.toml")), policy).expect("write policy");
    }
    dir
}

const VISUALIZATIONS: [&str; 3] = ["a", "b", "c"];
const ADDRESSES: [&str; 3] = ["/a/speed", "/b/speed", "/c/speed"];

const POLICY: &str = r#"
[visualization]
name = "NAME"
command = "/bin/true"

[ipc]
transport = "udp"
port = 9000

[osc]
max_rate = 100000

[[osc.params]]
address = "/speed"
type = "float"
range = [0.0, 10.0]
out_of_range = "clamp"
"#;
