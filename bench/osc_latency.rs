//! OSC added latency: controller → `vitrine osc relay` → receiver, against a direct UDP
//! loopback send → receive between the same two processes, interleaved in the same run, at 1 k
//! and 10 k msgs/s. Each message carries its send time (CLOCK_REALTIME, shared by all
//! processes) and its path in a 16-byte blob, which the relay validates against a `blob`
//! parameter and re-encodes.
//!
//! A third path measures the floor of any relay on this machine: a plain forwarder process
//! (this binary with `--forward`: one blocking recv(2) and one send(2) per datagram, no
//! decoding) in the same place as vitrine. Two hops cost two wake-ups where the direct path
//! costs one, and on a small virtual machine which CPU the kernel picks for each wake-up
//! decides most of the time; the forwarder pays the same two hops, so where the placement is
//! fixed (`split` below) `vitrine / forwarder` is what vitrine itself adds.
//!
//! Two layouts of the processes on the CPUs, both measured:
//! - `shared`: wherever the kernel puts them. The sender is then a process on the same vCPUs,
//!   and each wake-up lands on a vCPU that is running (the woken thread preempts and runs at
//!   once) or on a halted one (about 45 µs to wake on the reference VM), depending on where
//!   the threads ran before. The forwarder shows what any relay pays for that.
//! - `split`: the sender alone on CPU 0; relay, forwarder and receiver on CPU 1. This is how a
//!   controller on the network reaches a box: its datagrams come from a NIC interrupt, never
//!   from a process whose time slice the relay could take.
//!
//! Interleaving: the sender sends at the rate and the paths take turns message by message (each
//! path carries a third of the rate), so all see the same machine state — other work on the
//! box, frequency and idle states — and a stall of the virtual machine's host delays all of
//! them alike instead of filling one path's tail. (Turns of 50 ms each let a single stall of a
//! few milliseconds decide a path's p99: a repeat's p99 ratio then ranged 0.3–4×.) A run is
//! repeated [`REPEATS`] times; each repeat prints its rows and the load average, and the
//! summary gives the range over repeats.
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

/// Messages per path, rate and repeat: this many seconds' worth at the rate (a run sends three
/// times as many, one path after the other).
const SECONDS_PER_PATH: u64 = 3;
const REPEATS: usize = 3;
const RATES: [u64; 2] = [1000, 10_000];
/// The last part of each gap between sends is spun rather than slept, for accurate pacing.
const SPIN: Duration = Duration::from_micros(60);
const DIRECT: u64 = 0;
const RELAYED: u64 = 1;
const FORWARDED: u64 = 2;
const PATHS: [&str; 3] = ["direct", "vitrine", "forwarder"];

/// Where the processes run: `None` lets the kernel choose; `Some((sender, rest))` pins them.
#[derive(Clone, Copy)]
struct Layout {
    name: &'static str,
    cpus: Option<(usize, usize)>,
}

const LAYOUTS: [Layout; 2] =
    [Layout { name: "shared", cpus: None }, Layout { name: "split", cpus: Some((0, 1)) }];

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--receive") {
        return receive();
    }
    if let Some(to) = args.iter().position(|a| a == "--forward").and_then(|i| args.get(i + 1)) {
        return forward(to.parse().expect("--forward PORT"));
    }
    let vitrine = vitrine_bin();
    let dir = policy_dir();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // (layout, rate, p50 ratio, p99 ratio) of vitrine over direct and over the forwarder.
    let mut ratios: Vec<(&str, u64, f64, f64)> = Vec::new();
    let mut over_floor: Vec<(&str, u64, f64, f64)> = Vec::new();
    println!("| repeat | layout | rate (msg/s) | path | p50 (µs) | p99 (µs) | received | load |");
    println!("|---|---|---|---|---|---|---|---|");
    for repeat in 1..=REPEATS {
        for layout in LAYOUTS {
            if layout.cpus.is_some() && cpus < 2 {
                println!("| {repeat} | {} | | skipped: one CPU | | | | |", layout.name);
                continue;
            }
            for rate in RATES {
                let load = loadavg();
                let stats = run(rate, &vitrine, &dir, layout);
                let [direct, relayed, forwarded] = &stats;
                let count = rate * SECONDS_PER_PATH;
                let l = layout.name;
                for (name, r) in PATHS.iter().zip(&stats) {
                    println!(
                        "| {repeat} | {l} | {rate} | {name} | {:.1} | {:.1} | {}/{count} | {load} |",
                        r.p50, r.p99, r.received
                    );
                }
                let ratio = |a: &Stats, b: &Stats| (a.p50 / b.p50, a.p99 / b.p99);
                let [over_direct, floor, over_forwarder] = [
                    ("vitrine / direct", ratio(relayed, direct)),
                    ("forwarder / direct", ratio(forwarded, direct)),
                    ("vitrine / forwarder", ratio(relayed, forwarded)),
                ];
                for (name, (p50, p99)) in [over_direct, floor, over_forwarder] {
                    println!("| {repeat} | {l} | {rate} | {name} | {p50:.2}× | {p99:.2}× | | |");
                }
                ratios.push((l, rate, over_direct.1.0, over_direct.1.1));
                over_floor.push((l, rate, over_forwarder.1.0, over_forwarder.1.1));
            }
        }
    }
    println!();
    println!("| layout | rate (msg/s) | ratio | p50 (range over {REPEATS}) | p99 (range) |");
    println!("|---|---|---|---|---|");
    for layout in LAYOUTS {
        for rate in RATES {
            for (name, table) in
                [("vitrine / direct", &ratios), ("vitrine / forwarder", &over_floor)]
            {
                let rows: Vec<_> =
                    table.iter().filter(|r| r.0 == layout.name && r.1 == rate).collect();
                if rows.is_empty() {
                    continue;
                }
                let range = |v: Vec<f64>| {
                    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = v.iter().copied().fold(0.0, f64::max);
                    format!("{min:.2}–{max:.2}×")
                };
                let p50 = range(rows.iter().map(|r| r.2).collect());
                let p99 = range(rows.iter().map(|r| r.3).collect());
                println!("| {} | {rate} | {name} | {p50} | {p99} |", layout.name);
            }
        }
    }
}

#[derive(Default)]
struct Stats {
    p50: f64,
    p99: f64,
    received: u64,
}

/// One interleaved run at `rate`: a receiver, a relay and a plain forwarder in front of it,
/// and the sender, placed on the CPUs by `layout`.
fn run(rate: u64, vitrine: &Path, dir: &Path, layout: Layout) -> [Stats; 3] {
    let exe = std::env::current_exe().expect("own path");
    let rest = layout.cpus.map(|(_, rest)| rest);
    let mut receiver =
        pinned(rest, &exe).arg("--receive").stdout(Stdio::piped()).spawn().expect("receiver");
    let mut lines = BufReader::new(receiver.stdout.take().expect("stdout")).lines();
    let port = read_port(&mut lines);
    let (mut relay, listen) = start_relay(vitrine, dir, port, rest);
    let mut forwarder = pinned(rest, &exe)
        .args(["--forward", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("forwarder");
    let forward_port =
        read_port(&mut BufReader::new(forwarder.stdout.take().expect("stdout")).lines());
    let sender_cpu = layout.cpus.map(|(sender, _)| sender);
    let ports = [port, listen, forward_port];
    std::thread::scope(|s| {
        s.spawn(|| send(ports, rate, rate * SECONDS_PER_PATH, sender_cpu));
    });
    let mut stats = [Stats::default(), Stats::default(), Stats::default()];
    for line in lines.map_while(Result::ok) {
        let v: Vec<f64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if let [path, p50, p99, received] = v[..] {
            stats[path as usize] = Stats { p50, p99, received: received as u64 };
        }
    }
    let _ = receiver.wait();
    for child in [&mut relay, &mut forwarder] {
        let _ = child.kill();
        let _ = child.wait();
    }
    stats
}

/// The `port N` line a receiver or forwarder prints first.
fn read_port(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> u16 {
    lines
        .next()
        .and_then(|l| l.ok())
        .and_then(|l| l.strip_prefix("port ")?.parse().ok())
        .expect("the child's port")
}

/// `program`, run on `cpu` when there is one (through taskset).
fn pinned(cpu: Option<usize>, program: &Path) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.args(["-c", &cpu.to_string()]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Pins the calling thread to `cpu` (taskset on its thread id).
fn pin_this_thread(cpu: usize) {
    let tid = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    let tid = tid.file_name().and_then(|t| t.to_str()).expect("thread id").to_owned();
    let ok = Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &tid])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "taskset -p -c {cpu} {tid} failed");
}

fn start_relay(vitrine: &Path, dir: &Path, to: u16, cpu: Option<usize>) -> (Child, u16) {
    let listen =
        UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("free port").port();
    let policy = dir.join("policies/latency.toml");
    let child = pinned(cpu, vitrine)
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

/// Paced sends of `count` messages per path, on `cpu` if given; the deadline of message i is
/// start + i/rate, and message i takes path i mod 3.
fn send(ports: [u16; 3], rate: u64, count: u64, cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        pin_this_thread(cpu);
    }
    let sockets = ports.map(|port| {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.connect(("127.0.0.1", port)).expect("connect");
        socket
    });
    let mut buf = Vec::new();
    let start = Instant::now();
    let paths = [DIRECT, RELAYED, FORWARDED];
    for i in 0..paths.len() as u64 * count {
        let path = paths[(i % paths.len() as u64) as usize];
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
    let mut latencies: [Vec<f64>; 3] = Default::default();
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

/// The plain forwarder: prints its port, then sends every datagram on to `to` unchanged until
/// it is killed (or after two quiet seconds).
fn forward(to: u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    println!("port {}", socket.local_addr().expect("addr").port());
    socket.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let mut buf = [0u8; 256];
    while let Ok(n) = socket.recv(&mut buf) {
        let _ = socket.send_to(&buf[..n], ("127.0.0.1", to));
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
