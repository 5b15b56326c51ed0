//! The hub for `vitrine run`, with `--osc-listen` and/or a policy with `[midi]`: one
//! visualization, on a small runtime of its own, beside `run`'s synchronous supervision loop.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::runtime::Runtime;
use vitrine_osc::RouterConfig;
use vitrine_policy::{Midi, Osc, OscConfig};

use super::{Delivery, Hub};
use crate::launch::IpcEndpoint;
use crate::midi::Bridges;

impl From<IpcEndpoint> for Delivery {
    fn from(ipc: IpcEndpoint) -> Delivery {
        match ipc {
            IpcEndpoint::Udp { socket, port } => Delivery::Udp { socket, port },
            IpcEndpoint::Fd(fd) => Delivery::Fd(fd),
        }
    }
}

/// A running hub serving one visualization; [`Foreground::stop`] ends it.
pub struct Foreground {
    runtime: Runtime,
    hub: Arc<Hub>,
    name: String,
    midi: Bridges,
}

impl std::fmt::Debug for Foreground {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Foreground").field("hub", &self.hub).finish()
    }
}

impl Foreground {
    /// Listens on `listen` (instead of `[osc] listen`; `allow_from`, `max_packet` and
    /// `oscquery_listen` come from the daemon configuration), reads the `midi` inputs, and
    /// forwards both to `ipc`. Sources the router blocks are reported on stderr. Call it after
    /// signals were blocked: the runtime's threads inherit the mask.
    pub fn start(
        config: &OscConfig,
        listen: Option<SocketAddr>,
        name: &str,
        osc: &Osc,
        midi: Option<&Midi>,
        ipc: Delivery,
    ) -> io::Result<Foreground> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vitrine-osc")
            .enable_all()
            .build()?;
        let config = match listen {
            Some(listen) => OscConfig { listen: vec![listen], ..config.clone() },
            None => OscConfig { listen: Vec::new(), oscquery_listen: None, ..config.clone() },
        };
        let (events, mut blocked) = tokio::sync::mpsc::channel(16);
        let hub =
            Arc::new(runtime.block_on(Hub::start(&config, RouterConfig::default(), events))?);
        let bridges = Bridges::default();
        {
            let _entered = runtime.enter();
            hub.attach(name, osc, ipc)?;
            // As in the daemon, a visualization whose MIDI input cannot start runs without it,
            // loudly.
            match midi.map(|m| (m, bridges.start(name, &osc.prefix, m, &hub))) {
                Some((midi, Ok(()))) => {
                    for port in bridges.ports(name) {
                        eprintln!("vitrine: {name}: midi {port}");
                    }
                    eprintln!("vitrine: MIDI for {name} from ports matching {:?}", midi.inputs);
                }
                Some((_, Err(e))) => {
                    eprintln!("vitrine: {name}: warning: {}; running without MIDI", e.chain());
                }
                None => {}
            }
        }
        let name = name.to_owned();
        let blocked_name = name.clone();
        runtime.spawn(async move {
            while let Some(b) = blocked.recv().await {
                eprintln!("vitrine: {blocked_name}: OSC source {} blocked for {:?} after repeated rate violations", b.source, b.cooldown);
            }
        });
        for addr in hub.local_addrs() {
            eprintln!("vitrine: OSC for {} on udp {addr}", osc.prefix);
        }
        if let Some(addr) = hub.oscquery_addr() {
            eprintln!("vitrine: OSCQuery on http://{addr}/");
        }
        Ok(Foreground { runtime, hub, name, midi: bridges })
    }

    /// Stops MIDI input, ingress and delivery and waits for the hub's tasks. What each MIDI
    /// port counted is printed on stderr.
    pub fn stop(self) {
        let Foreground { runtime, hub, name, midi } = self;
        for port in midi.ports(&name) {
            eprintln!("vitrine: {name}: midi {port}");
        }
        midi.stop_all();
        if let Ok(hub) = Arc::try_unwrap(hub) {
            runtime.block_on(hub.shutdown());
        }
    }
}
