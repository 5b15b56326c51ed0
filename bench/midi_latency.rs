//! MIDI added latency: a note written into an ALSA raw MIDI port, read through vitrine
//! (`vitrine run`: midir → parser and gate → OSC hub → UDP into the sandbox) by a sandboxed
//! receiver, against the same receiver reading the port's sequencer twin directly with midir.
//! Both receivers stamp each message with CLOCK_REALTIME when it arrives (shared by every
//! process; the sandbox has no time namespace) and print it; the harness stamps each write.
//!
//! Needs an ALSA virtual MIDI port, so it runs in the VM lane: `bench/midi_latency.sh`.
//! Direct use: `VITRINE_BIN=target/release/vitrine midi_latency [RAW_DEVICE] [PORT_GLOB]`
//! (defaults `/dev/snd/midiC0D0` and `Virtual Raw MIDI*`), as root.

use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Notes per path; paced so that neither path ever queues.
const COUNT: usize = 400;
const GAP: Duration = Duration::from_millis(10);
/// A message not seen by then is counted as lost (generous: the VM may be emulated).
const PATIENCE: Duration = Duration::from_secs(2);
const UDP_PORT: u16 = 9000;

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.first().map(String::as_str) {
        Some("--receive-udp") => receive_udp(),
        Some("--receive-direct") => receive_direct(args.get(1).map_or("*", String::as_str)),
        _ => harness(&args),
    }
}

/// The sandboxed receiver: validated OSC `/midi ,m` datagrams on 127.0.0.1:9000.
fn receive_udp() {
    let socket = UdpSocket::bind(("127.0.0.1", UDP_PORT)).expect("bind the OSC port");
    println!("ready");
    let mut buf = [0u8; 256];
    loop {
        let Ok(n) = socket.recv(&mut buf) else { continue };
        let at = now_ns();
        // The packet ends with the `m` argument: port, status, data1, data2.
        if n >= 4 {
            print_arrival(buf[n - 2], buf[n - 1], at);
        }
    }
}

/// The direct receiver: the same port, through midir, in this process.
fn receive_direct(glob: &str) {
    let mut input = midir::MidiInput::new("midi-latency-direct").expect("open the sequencer");
    input.ignore(midir::Ignore::None);
    let port = input
        .ports()
        .into_iter()
        .find(|p| input.port_name(p).is_ok_and(|n| vitrine_midi::glob_match(glob, &n)))
        .expect("a port matching the glob");
    let _connection = input
        .connect(
            &port,
            "in",
            |_, bytes, _| {
                let at = now_ns();
                if bytes.len() == 3 {
                    print_arrival(bytes[1], bytes[2], at);
                }
            },
            (),
        )
        .expect("connect");
    println!("ready");
    loop {
        std::thread::park();
    }
}

fn print_arrival(d1: u8, d2: u8, at: u64) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{d1} {d2} {at}");
    let _ = out.flush();
}

fn harness(args: &[String]) {
    let device = PathBuf::from(args.first().map_or("/dev/snd/midiC0D0", String::as_str));
    let glob = args.get(1).map_or("Virtual Raw MIDI*", String::as_str).to_owned();
    let vitrine = std::env::var_os("VITRINE_BIN").map(PathBuf::from).expect("set VITRINE_BIN");
    let me = std::env::current_exe().expect("own path");

    let mut direct = Command::new(&me);
    direct.args(["--receive-direct", &glob]);
    let direct = measure(&mut direct, &device, None);
    let dir = box_dir(&me, &glob);
    let mut through = Command::new(&vitrine);
    through
        .arg("run")
        .arg(dir.join("policies/bench.toml"))
        .arg("--config")
        .arg(dir.join("vitrine.toml"));
    // vitrine says on stderr once the MIDI bridge is connected.
    let relayed = measure(&mut through, &device, Some("vitrine: MIDI for"));
    let _ = std::fs::remove_dir_all(&dir);

    println!("| path | p50 (µs) | p90 (µs) | p99 (µs) | received |");
    println!("|---|---|---|---|---|");
    for (name, r) in [("direct (midir in the reader)", &direct), ("through vitrine", &relayed)] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {}/{COUNT} |",
            r.p50, r.p90, r.p99, r.received
        );
    }
    println!(
        "| ratio vitrine/direct | {:.2}× | {:.2}× | {:.2}× | |",
        relayed.p50 / direct.p50,
        relayed.p90 / direct.p90,
        relayed.p99 / direct.p99
    );
    println!("added latency (p50): {:.0} µs", relayed.p50 - direct.p50);
}

struct Stats {
    p50: f64,
    p90: f64,
    p99: f64,
    received: usize,
}

/// Starts `cmd`, waits for it to be ready, writes COUNT notes into `device` one at a time and
/// collects each arrival.
fn measure(cmd: &mut Command, device: &Path, ready_on_stderr: Option<&str>) -> Stats {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let (tx, rx) = mpsc::channel::<(u8, u8, u64)>();
    let (ready_tx, ready) = mpsc::channel::<()>();
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let stdout_ready = ready_on_stderr.is_none().then(|| ready_tx.clone());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let f: Vec<&str> = line.split(' ').collect();
            match (f.as_slice(), &stdout_ready) {
                (["ready"], Some(r)) => {
                    let _ = r.send(());
                }
                ([a, b, c], _) => {
                    if let (Ok(a), Ok(b), Ok(c)) = (a.parse(), b.parse(), c.parse()) {
                        let _ = tx.send((a, b, c));
                    }
                }
                _ => {}
            }
        }
    });
    watch_stderr(
        child.stderr.take().expect("stderr"),
        ready_on_stderr.map(str::to_owned),
        ready_tx,
    );
    ready.recv_timeout(Duration::from_secs(120)).expect("the receiver became ready");
    // The sandboxed receiver binds its socket right after exec; give either path a moment.
    std::thread::sleep(Duration::from_millis(500));

    let mut raw =
        std::fs::OpenOptions::new().write(true).open(device).expect("open the raw MIDI device");
    let mut latencies = Vec::with_capacity(COUNT);
    for i in 0..COUNT {
        let (d1, d2) = ((i % 128) as u8, (1 + (i / 128) % 127) as u8);
        let sent = now_ns();
        raw.write_all(&[0x90, d1, d2]).expect("write a note");
        let deadline = std::time::Instant::now() + PATIENCE;
        while let Ok((a, b, at)) =
            rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            if (a, b) == (d1, d2) {
                latencies.push(at.saturating_sub(sent) as f64 / 1e3);
                break;
            }
        }
        std::thread::sleep(GAP);
    }
    stop(&mut child);
    latencies.sort_by(f64::total_cmp);
    let pct = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Stats { p50: pct(50), p90: pct(90), p99: pct(99), received: latencies.len() }
}

/// Passes the child's stderr through (prefixed) and signals `ready` on the first line holding
/// `marker`.
fn watch_stderr(stderr: ChildStderr, marker: Option<String>, ready: mpsc::Sender<()>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("  | {line}");
            if marker.as_deref().is_some_and(|m| line.contains(m)) {
                let _ = ready.send(());
            }
        }
    });
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// A daemon configuration and a policy whose visualization is this binary in `--receive-udp`
/// mode, pinned by its sha256, reading MIDI from ports matching `glob`.
fn box_dir(me: &Path, glob: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vitrine-midi-bench-{}", std::process::id()));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::create_dir_all(dir.join("policies")).expect("mkdir");
    std::fs::create_dir_all(dir.join("state")).expect("mkdir");
    let sha = Command::new("sha256sum").arg(me).output().expect("sha256sum").stdout;
    let sha = String::from_utf8_lossy(&sha).split(' ').next().unwrap_or_default().to_owned();
    let policy = format!(
        r#"[visualization]
name = "bench"
command = "{me}"
args = ["--receive-udp"]

[verify]
sha256 = "{sha}"

[sandbox]
user = "nobody"
landlock = "best-effort"

[filesystem]
presets = ["{repo}/policies/presets/system-libs.toml"]

[syscalls]
profile = "{repo}/policies/seccomp/default.json"

[ipc]
transport = "udp"
port = {UDP_PORT}

[osc]
max_rate = 100000

[midi]
inputs = ["{glob}"]
max_rate = 100000
"#,
        me = me.display(),
        repo = repo.display(),
    );
    std::fs::write(dir.join("policies/bench.toml"), policy).expect("write the policy");
    let config =
        format!("policies = \"{d}/policies\"\nstate_dir = \"{d}/state\"\n", d = dir.display());
    std::fs::write(dir.join("vitrine.toml"), config).expect("write the configuration");
    dir
}
