//! The MIDI bridge (DESIGN §7): ALSA input ports → validated MIDI → OSC packets on a tokio
//! channel, for the OSC hub to route like any other source; and the `vitrine midi` verbs that
//! let a technician see which ports a policy matches and what gets through.
//!
//! midir calls back on its own threads, one per connected port, so nothing here runs on the
//! runtime's workers: the sink encodes the packet and hands it on without waiting — into the
//! OSC hub directly (`serve`, `run`), or into a bounded channel (`vitrine midi monitor`), where
//! a full channel means the reader is behind and the packet is dropped and counted.
//!
//! Builds without the `alsa` feature have no MIDI input; starting a bridge then fails with an
//! error that says so.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
#[cfg(feature = "alsa")]
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use clap::Subcommand;
use tokio::sync::mpsc;
use vitrine_policy::{LoadContext, Midi};

use crate::osc::Hub;

mod bridges;

pub use bridges::{Bridges, MidiPortStatus, PortCount};

/// One OSC packet built from validated MIDI, addressed under the visualization's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MidiPacket {
    /// The input port id (also the first byte of the `m` argument).
    pub port: u8,
    pub osc: Vec<u8>,
}

/// Packets waiting for `vitrine midi monitor` beyond this are dropped (a controller sends far
/// less).
pub const QUEUE: usize = 1024;

/// The source MIDI packets are routed as. No UDP sender can have this address, so the router's
/// per-source limits and blocks for MIDI never mix with those of a real controller, while the
/// visualization's and the parameter's limits apply to both together.
pub const MIDI_SOURCE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Where a bridge hands each encoded packet, with the id of its port; `false` means it was
/// dropped for want of room. It runs on midir's threads and must never block.
type Deliver = Box<dyn FnMut(u8, &[u8]) -> bool + Send>;

/// Straight into the OSC hub, which validates the packet against the visualization's `/midi`
/// parameter and delivers it like any other OSC. `Hub::inject` never waits (a std mutex held
/// for one routing step, non-blocking sends), so midir's thread may call it: there is no hop
/// through the runtime, and no queue of our own to overflow (the hub counts its own drops).
fn into_hub(hub: Arc<Hub>) -> Deliver {
    Box::new(move |_port, osc| {
        hub.inject(osc, MIDI_SOURCE);
        true
    })
}

/// Into a bounded channel, for `vitrine midi monitor`.
fn into_channel(tx: mpsc::Sender<MidiPacket>) -> Deliver {
    Box::new(move |port, osc| tx.try_send(MidiPacket { port, osc: osc.to_vec() }).is_ok())
}

/// The running MIDI input of one visualization. Dropping it closes every port.
#[derive(Debug)]
pub struct MidiBridge {
    #[cfg(feature = "alsa")]
    input: vitrine_midi::alsa::AlsaInput,
    #[cfg(feature = "alsa")]
    queue_full: Arc<QueueFull>,
}

/// Accepted packets dropped because the reader did not take them in time, per port id.
#[cfg(feature = "alsa")]
#[derive(Debug)]
struct QueueFull([AtomicU64; 256]);

#[cfg(feature = "alsa")]
impl QueueFull {
    fn new() -> Arc<QueueFull> {
        Arc::new(QueueFull(std::array::from_fn(|_| AtomicU64::new(0))))
    }

    fn count(&self, port: u8) {
        self.0[usize::from(port)].fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, port: u8) -> u64 {
        self.0[usize::from(port)].load(Ordering::Relaxed)
    }
}

/// One input port of a bridge: its name, connection and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortReport {
    pub id: u8,
    /// `client:port`, as matched against the policy's globs.
    pub name: String,
    /// The sequencer address while connected.
    pub address: Option<String>,
    pub connected: bool,
    /// Connections made by this bridge (1 after the first, +1 per reconnect).
    pub connects: u64,
    pub counters: vitrine_midi::Counters,
    /// Accepted messages dropped because the reader's queue was full (monitor only).
    pub queue_full: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MidiError {
    #[cfg(feature = "alsa")]
    #[error("MIDI input for {name}")]
    Alsa {
        name: String,
        #[source]
        source: vitrine_midi::alsa::AlsaError,
    },
    #[cfg(not(feature = "alsa"))]
    #[error("this build of vitrine has no MIDI input (built without the `alsa` feature)")]
    NoAlsa,
}

impl MidiError {
    /// The message with every source, on one line (for logs and events).
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            out.push_str(": ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }
}

impl MidiBridge {
    /// Connects the ports matching `midi.inputs` for visualization `name`; validated messages
    /// arrive on the returned receiver as OSC packets addressed `<prefix>/midi`.
    pub fn start(
        name: &str,
        prefix: &str,
        midi: &Midi,
    ) -> Result<(MidiBridge, mpsc::Receiver<MidiPacket>), MidiError> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let bridge = start_input(name, prefix, midi, into_channel(tx))?;
        Ok((bridge, rx))
    }

    /// Connects the ports matching `midi.inputs` for visualization `name` and routes every
    /// validated message through `hub`, addressed `<prefix>/midi`, as source [`MIDI_SOURCE`].
    pub fn start_into(
        name: &str,
        prefix: &str,
        midi: &Midi,
        hub: Arc<Hub>,
    ) -> Result<MidiBridge, MidiError> {
        start_input(name, prefix, midi, into_hub(hub))
    }

    /// Per-port names, connection state and counters, for status and metrics
    /// (`vitrine_midi_messages_total`).
    #[cfg(feature = "alsa")]
    pub fn ports(&self) -> Vec<PortReport> {
        self.input
            .status()
            .into_iter()
            .map(|p| PortReport {
                id: p.id,
                queue_full: self.queue_full.get(p.id),
                name: p.name,
                address: p.address,
                connected: p.connected,
                connects: p.connects,
                counters: p.counters,
            })
            .collect()
    }

    /// Builds without ALSA never have a running bridge.
    #[cfg(not(feature = "alsa"))]
    pub fn ports(&self) -> Vec<PortReport> {
        Vec::new()
    }
}

#[cfg(feature = "alsa")]
fn start_input(
    name: &str,
    prefix: &str,
    midi: &Midi,
    mut deliver: Deliver,
) -> Result<MidiBridge, MidiError> {
    let prefix = prefix.to_string();
    let queue_full = QueueFull::new();
    let full = Arc::clone(&queue_full);
    // One buffer, reused: the sink runs for one message at a time under the input's lock.
    let mut osc = Vec::with_capacity(64);
    let sink = Box::new(move |port: u8, accepted: vitrine_midi::Accepted<'_>| {
        accepted.encode_osc_under(&prefix, port, &mut osc);
        if !deliver(port, &osc) {
            full.count(port);
        }
    });
    // The sequencer client is named after the visualization, so `aconnect -l` shows who reads.
    let client = format!("vitrine-{name}");
    let input = vitrine_midi::alsa::AlsaInput::start(&client, midi, sink)
        .map_err(|source| MidiError::Alsa { name: name.to_string(), source })?;
    Ok(MidiBridge { input, queue_full })
}

#[cfg(not(feature = "alsa"))]
fn start_input(
    _name: &str,
    _prefix: &str,
    _midi: &Midi,
    _deliver: Deliver,
) -> Result<MidiBridge, MidiError> {
    Err(MidiError::NoAlsa)
}

/// `vitrine midi …`
#[derive(Debug, Subcommand)]
pub enum MidiCommand {
    /// List the ALSA sequencer ports MIDI can be read from, and which a policy would use.
    Ports {
        /// Mark the ports this policy's `[midi] inputs` globs match.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Read MIDI as a policy's `[midi]` table allows and print every message that would
    /// reach the visualization, then the per-port counters. Nothing is launched.
    Monitor {
        /// The visualization's policy file.
        policy: PathBuf,
        /// Stop after this many accepted messages (default: until Ctrl-C).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
}

pub fn run(cmd: MidiCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MidiCommand::Ports { policy } => ports(policy),
        MidiCommand::Monitor { policy, count } => monitor(policy, count),
    }
}

/// Loads only to read `[midi]`: the binary is never run, so an unsigned policy is fine here.
fn load_midi(path: &Path) -> anyhow::Result<(String, String, Midi)> {
    let ctx = LoadContext { allow_unsigned: true, ..LoadContext::default() };
    let policy = vitrine_policy::load_policy(path, &ctx).map_err(|d| anyhow::anyhow!("{d}"))?;
    let midi = policy.midi.with_context(|| format!("{} has no [midi] table", path.display()))?;
    Ok((policy.visualization.name.to_string(), policy.osc.prefix, midi))
}

#[cfg(feature = "alsa")]
fn ports(policy: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let globs = match &policy {
        Some(p) => load_midi(p)?.2.inputs,
        None => Vec::new(),
    };
    let ports = vitrine_midi::alsa::list_ports("vitrine-ports")?;
    for (name, address) in ports {
        let used = globs.iter().any(|g| vitrine_midi::glob_match(g, &name));
        let mark = if used { "*" } else { " " };
        println!("{mark} {address:<8} {name}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "alsa"))]
fn ports(_policy: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    Err(MidiError::NoAlsa.into())
}

fn monitor(policy: PathBuf, count: Option<u64>) -> anyhow::Result<ExitCode> {
    let (name, prefix, midi) = load_midi(&policy)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let (bridge, mut rx) = MidiBridge::start(&name, &prefix, &midi)?;
        eprintln!("vitrine: reading MIDI for {name}; Ctrl-C to stop");
        let mut seen = 0u64;
        while count.is_none_or(|n| seen < n) {
            let packet = tokio::select! {
                p = rx.recv() => p,
                _ = tokio::signal::ctrl_c() => None,
            };
            let Some(packet) = packet else { break };
            println!("{}", describe(&packet));
            seen += 1;
        }
        report(&bridge);
        Ok(ExitCode::SUCCESS)
    })
}

/// One line per packet: the port, the OSC address and the MIDI bytes in hex.
fn describe(packet: &MidiPacket) -> String {
    let osc = &packet.osc;
    let address_end = osc.iter().position(|b| *b == 0).unwrap_or(osc.len());
    let address = String::from_utf8_lossy(&osc[..address_end]);
    // A `/midi` message ends with its 4-byte `m` argument: port, status, data1, data2.
    let tail = osc.len().saturating_sub(3);
    let bytes: Vec<String> = osc[tail..].iter().map(|b| format!("{b:02x}")).collect();
    format!("port {} {address} {}", packet.port, bytes.join(" "))
}

/// The per-port counters on stderr, one line a port.
fn report(bridge: &MidiBridge) {
    for port in bridge.ports() {
        let c = &port.counters;
        let mut drops: Vec<String> =
            c.drops().filter(|(_, n)| *n > 0).map(|(r, n)| format!("{r}={n}")).collect();
        if port.queue_full > 0 {
            drops.push(format!("queue-full={}", port.queue_full));
        }
        eprintln!(
            "port {} {:?}: connected={} connects={} accepted={} dropped: {}",
            port.id,
            port.name,
            port.connected,
            port.connects,
            c.accepted,
            if drops.is_empty() { "none".to_string() } else { drops.join(" ") }
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use vitrine_osc::RouterConfig;
    use vitrine_policy::{MidiMessageKind, NetRule, Osc, OscConfig, OscParam, ParamKind};

    use super::*;
    use crate::osc::Delivery;

    /// Validated MIDI from a port stream, encoded as a bridge does and handed to the hub as the
    /// bridge's sink does, reaches the visualization's socket as the canonical `/midi` message
    /// (the prefix stripped).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bridge_packets_reach_the_visualization_through_the_hub() {
        let config = OscConfig {
            listen: vec!["127.0.0.1:0".parse().expect("addr")],
            allow_from: vec![NetRule::Local],
            max_packet: 8192,
            oscquery_listen: None,
        };
        let (events, _) = mpsc::channel(4);
        let hub =
            Arc::new(Hub::start(&config, RouterConfig::default(), events).await.expect("hub"));
        let child = std::net::UdpSocket::bind("127.0.0.1:0").expect("child socket");
        child.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let ours = std::net::UdpSocket::bind("127.0.0.1:0").expect("our socket");
        let port = child.local_addr().expect("addr").port();
        let param = OscParam {
            address: "/midi".into(),
            kind: ParamKind::Midi,
            max_rate: None,
            coalesce: false,
        };
        let osc = Osc { prefix: "/viz".into(), max_rate: 100, params: vec![param] };
        hub.attach("viz", &osc, Delivery::Udp { socket: ours, port }).expect("attach");

        let midi = Midi {
            inputs: vec!["*".into()],
            channels: vec![],
            messages: vec![MidiMessageKind::Note],
            sysex: false,
            max_rate: 100,
        };
        let now = Instant::now();
        let mut gate = vitrine_midi::Gate::new(&midi, now);
        let mut stream = vitrine_midi::PortStream::new(2, &gate);
        let mut deliver = into_hub(Arc::clone(&hub));
        stream.feed(&mut gate, &[0x90, 60, 100], now, &mut |a| {
            let mut osc = Vec::new();
            a.encode_osc_under("/viz", 2, &mut osc);
            assert!(deliver(2, &osc));
        });

        let received = tokio::task::spawn_blocking(move || {
            let mut buf = [0u8; 64];
            let n = child.recv(&mut buf).expect("the visualization received the note");
            buf[..n].to_vec()
        })
        .await
        .expect("join");
        let mut expected = Vec::new();
        vitrine_osc::encode::encode_message(
            &mut expected,
            "/midi",
            &[vitrine_osc::Arg::Midi([2, 0x90, 60, 100])],
        );
        assert_eq!(received, expected);
    }

    #[test]
    fn a_packet_is_described_by_port_address_and_midi_bytes() {
        let mut osc = Vec::new();
        vitrine_osc::encode::encode_message(
            &mut osc,
            "/aurora/midi",
            &[vitrine_osc::Arg::Midi([2, 0x90, 0x3c, 0x64])],
        );
        assert_eq!(describe(&MidiPacket { port: 2, osc }), "port 2 /aurora/midi 90 3c 64");
    }
}
