//! The hub for `vitrine run --osc-listen`: one visualization, on a small runtime of its own,
//! beside `run`'s synchronous supervision loop.

use std::io;
use std::net::SocketAddr;

use tokio::runtime::Runtime;
use vitrine_osc::RouterConfig;
use vitrine_policy::{Osc, OscConfig};

use super::{Delivery, Hub};
use crate::launch::IpcEndpoint;

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
    hub: Hub,
}

impl std::fmt::Debug for Foreground {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Foreground").field("hub", &self.hub).finish()
    }
}

impl Foreground {
    /// Listens on `listen` (instead of `[osc] listen`; `allow_from`, `max_packet` and
    /// `oscquery_listen` come from the daemon configuration) and forwards to `ipc`. Sources the
    /// router blocks are reported on stderr. Call it after signals were blocked: the runtime's
    /// threads inherit the mask.
    pub fn start(
        config: &OscConfig,
        listen: SocketAddr,
        name: &str,
        osc: &Osc,
        ipc: Delivery,
    ) -> io::Result<Foreground> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vitrine-osc")
            .enable_all()
            .build()?;
        let config = OscConfig { listen: vec![listen], ..config.clone() };
        let (events, mut blocked) = tokio::sync::mpsc::channel(16);
        let hub = runtime.block_on(Hub::start(&config, RouterConfig::default(), events))?;
        {
            let _entered = runtime.enter();
            hub.attach(name, osc, ipc)?;
        }
        let name = name.to_owned();
        runtime.spawn(async move {
            while let Some(b) = blocked.recv().await {
                eprintln!("vitrine: {name}: OSC source {} blocked for {:?} after repeated rate violations", b.source, b.cooldown);
            }
        });
        for addr in hub.local_addrs() {
            eprintln!("vitrine: OSC for {} on udp {addr}", osc.prefix);
        }
        if let Some(addr) = hub.oscquery_addr() {
            eprintln!("vitrine: OSCQuery on http://{addr}/");
        }
        Ok(Foreground { runtime, hub })
    }

    /// Stops ingress and delivery and waits for the hub's tasks.
    pub fn stop(self) {
        let Foreground { runtime, hub } = self;
        runtime.block_on(hub.shutdown());
    }
}
