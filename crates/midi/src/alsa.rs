//! ALSA sequencer input through midir: ports chosen by the policy's name globs, reconnected
//! when a device comes back, every byte through [`PortStream`] and the visualization's [`Gate`].
//!
//! A watcher thread lists the sequencer's readable ports once per poll interval (1 s by
//! default). A matching port that is not connected, or whose sequencer address changed (a
//! device unplugged and plugged back between two polls gets a new client number), is
//! connected; a connected port that vanished is dropped and shows as disconnected until it
//! returns. midir delivers each port's bytes on its own thread; they meet in one mutex because
//! the gate (and so `max_rate`) is shared by every port of the visualization.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use midir::{Ignore, MidiInput, MidiInputConnection};
use vitrine_policy::Midi;

use crate::gate::Gate;
use crate::glob::glob_match;
use crate::reason::Counters;
use crate::stream::{Accepted, PortStream};

/// How often the port list is polled for devices that appeared or vanished.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// At most this many distinct port names get an id (the first byte of the OSC `m` argument).
const MAX_PORTS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum AlsaError {
    #[error("cannot open the ALSA sequencer (is snd-seq loaded and /dev/snd/seq accessible?)")]
    Init(#[source] midir::InitError),
    #[error("cannot start the MIDI port watcher thread")]
    Thread(#[source] std::io::Error),
}

/// What status and metrics show for one input port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStatus {
    /// The port id in the `m` arguments the visualization receives.
    pub id: u8,
    /// `client name:port name`, as matched against the globs.
    pub name: String,
    /// The current sequencer address `client:port`, when connected.
    pub address: Option<String>,
    pub connected: bool,
    /// How many times a connection was made (1 after the first, +1 per reconnect).
    pub connects: u64,
    pub counters: Counters,
}

/// Receives every accepted message with the id of the port it came from. It runs on midir's
/// threads with the input's lock held: it must not block (use `try_send`).
pub type Sink = Box<dyn FnMut(u8, Accepted<'_>) + Send>;

/// The live MIDI input of one visualization. Dropping it stops the watcher and closes every
/// connection.
pub struct AlsaInput {
    shared: Arc<Mutex<Shared>>,
    stop: Option<mpsc::Sender<()>>,
    watcher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AlsaInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlsaInput").field("ports", &self.status()).finish()
    }
}

struct Shared {
    gate: Gate,
    ports: Vec<Port>,
    sink: Sink,
}

struct Port {
    stream: PortStream,
    name: String,
    address: Option<String>,
    connects: u64,
}

impl AlsaInput {
    /// Opens the sequencer as client `client_name`, connects every port matching
    /// `midi.inputs` and keeps watching for ports that come and go.
    pub fn start(client_name: &str, midi: &Midi, sink: Sink) -> Result<Self, AlsaError> {
        AlsaInput::start_with_poll(client_name, midi, sink, DEFAULT_POLL)
    }

    /// As [`AlsaInput::start`], polling the port list every `poll`.
    pub fn start_with_poll(
        client_name: &str,
        midi: &Midi,
        sink: Sink,
        poll: Duration,
    ) -> Result<Self, AlsaError> {
        let scanner = MidiInput::new(client_name).map_err(AlsaError::Init)?;
        let shared = Arc::new(Mutex::new(Shared {
            gate: Gate::new(midi, Instant::now()),
            ports: Vec::new(),
            sink,
        }));
        let mut watcher = Watcher {
            client_name: client_name.to_string(),
            globs: midi.inputs.clone(),
            scanner,
            shared: Arc::clone(&shared),
            connections: Vec::new(),
        };
        // The first scan happens before `start` returns, so ports present now are connected
        // by the time the caller looks.
        watcher.scan();
        let (stop, stopped) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("midi-watch".into())
            .spawn(move || watcher.run(&stopped, poll))
            .map_err(AlsaError::Thread)?;
        Ok(AlsaInput { shared, stop: Some(stop), watcher: Some(handle) })
    }

    /// Every port that ever matched, connected or not, with its counters.
    pub fn status(&self) -> Vec<PortStatus> {
        let shared = lock(&self.shared);
        shared
            .ports
            .iter()
            .map(|p| PortStatus {
                id: p.stream.id(),
                name: p.name.clone(),
                address: p.address.clone(),
                connected: p.address.is_some(),
                connects: p.connects,
                counters: p.stream.counters().clone(),
            })
            .collect()
    }
}

impl Drop for AlsaInput {
    fn drop(&mut self) {
        // Dropping the sender wakes the watcher at once; joining it closes the connections.
        drop(self.stop.take());
        if let Some(handle) = self.watcher.take() {
            let _ = handle.join();
        }
    }
}

/// A poisoned lock only means a sink panicked on another thread; the counters and parser
/// state are still consistent (each byte is handled completely or not at all), so go on.
fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Watcher {
    client_name: String,
    globs: Vec<String>,
    scanner: MidiInput,
    shared: Arc<Mutex<Shared>>,
    /// Open connections by port index in `Shared::ports`.
    connections: Vec<(usize, MidiInputConnection<()>)>,
}

impl Watcher {
    fn run(mut self, stopped: &mpsc::Receiver<()>, poll: Duration) {
        // Nothing is ever sent: the sender being dropped (or a message) means stop.
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(poll) {
            self.scan();
        }
        for (_, connection) in self.connections.drain(..) {
            connection.close();
        }
    }

    /// One pass over the sequencer's readable ports.
    fn scan(&mut self) {
        let present: Vec<(String, String, midir::MidiInputPort)> = self
            .scanner
            .ports()
            .into_iter()
            .filter_map(|p| {
                let full = self.scanner.port_name(&p).ok()?;
                let (name, address) = split_address(&full);
                Some((name.to_string(), address.to_string(), p))
            })
            .filter(|(name, _, _)| self.globs.iter().any(|g| glob_match(g, name)))
            .collect();
        self.drop_vanished(&present);
        for (name, address, port) in &present {
            self.connect(name, address, port);
        }
    }

    /// Closes connections whose port is gone or now lives at another address.
    fn drop_vanished(&mut self, present: &[(String, String, midir::MidiInputPort)]) {
        let mut gone = Vec::new();
        {
            let mut shared = lock(&self.shared);
            let ports = &mut shared.ports;
            let mut i = 0;
            while i < self.connections.len() {
                let port = &mut ports[self.connections[i].0];
                let still = present
                    .iter()
                    .any(|(n, a, _)| *n == port.name && Some(a) == port.address.as_ref());
                if still {
                    i += 1;
                } else {
                    port.address = None;
                    gone.push(self.connections.swap_remove(i).1);
                }
            }
        }
        // Closing joins midir's handler thread, whose callback may be waiting for the lock:
        // close only after the lock is released.
        for connection in gone {
            connection.close();
        }
    }

    fn connect(&mut self, name: &str, address: &str, port: &midir::MidiInputPort) {
        let Some(index) = self.port_index(name) else { return };
        if self.connections.iter().any(|(i, _)| *i == index) {
            return;
        }
        let Ok(mut input) = MidiInput::new(&self.client_name) else { return };
        // Every byte goes to our parser, which applies the policy; midir filters nothing.
        input.ignore(Ignore::None);
        let shared = Arc::clone(&self.shared);
        let callback = move |_stamp: u64, bytes: &[u8], _: &mut ()| {
            let mut guard = lock(&shared);
            let Shared { gate, ports, sink } = &mut *guard;
            let Some(port) = ports.get_mut(index) else { return };
            let id = port.stream.id();
            port.stream.feed(gate, bytes, Instant::now(), &mut |accepted| sink(id, accepted));
        };
        // A port that vanished between the listing and now fails here; the next scan retries.
        if let Ok(connection) = input.connect(port, "vitrine-in", callback, ()) {
            let mut shared = lock(&self.shared);
            let entry = &mut shared.ports[index];
            entry.address = Some(address.to_string());
            entry.connects += 1;
            self.connections.push((index, connection));
        }
    }

    /// The index of `name` in the port table, adding it on first sight.
    fn port_index(&mut self, name: &str) -> Option<usize> {
        let mut shared = lock(&self.shared);
        if let Some(i) = shared.ports.iter().position(|p| p.name == name) {
            return Some(i);
        }
        if shared.ports.len() >= MAX_PORTS {
            return None;
        }
        let id = u8::try_from(shared.ports.len()).ok()?;
        let stream = PortStream::new(id, &shared.gate);
        shared.ports.push(Port { stream, name: name.to_string(), address: None, connects: 0 });
        Some(shared.ports.len() - 1)
    }
}

/// Splits midir's `client:port C:P` into the stable name and the sequencer address, which
/// changes whenever a device is plugged in again.
fn split_address(full: &str) -> (&str, &str) {
    match full.rsplit_once(' ') {
        Some((name, addr))
            if addr.split_once(':').is_some_and(|(c, p)| {
                !c.is_empty()
                    && !p.is_empty()
                    && c.bytes().all(|b| b.is_ascii_digit())
                    && p.bytes().all(|b| b.is_ascii_digit())
            }) =>
        {
            (name, addr)
        }
        _ => (full, ""),
    }
}

/// The names of every readable sequencer port (stable names, without the address), for
/// `vitrine midi ports` and for checking globs.
pub fn list_ports(client_name: &str) -> Result<Vec<(String, String)>, AlsaError> {
    let scanner = MidiInput::new(client_name).map_err(AlsaError::Init)?;
    Ok(scanner
        .ports()
        .iter()
        .filter_map(|p| scanner.port_name(p).ok())
        .map(|full| {
            let (name, address) = split_address(&full);
            (name.to_string(), address.to_string())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::split_address;

    #[test]
    fn addresses_are_split_off_port_names() {
        assert_eq!(
            split_address("Virtual Raw MIDI 0-0:VirMIDI 0-0 16:0"),
            ("Virtual Raw MIDI 0-0:VirMIDI 0-0", "16:0")
        );
        assert_eq!(split_address("odd name"), ("odd name", ""));
        assert_eq!(split_address("x 1:"), ("x 1:", ""));
    }
}
