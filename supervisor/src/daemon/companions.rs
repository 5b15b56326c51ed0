//! The parts of `vitrine serve` that run next to the visualizations: the Prometheus endpoint,
//! the audit log, the OSC hub and peering. They are started before the first policy loads (so they see
//! every event from the start) and stopped after the last visualization has ended.
//!
//! They learn about sandboxes in two ways: lifecycle events from the bus (metrics, audit), and
//! the [`Hooks`] the visualization tasks call with each new sandbox's OSC channel and sandbox
//! report (OSC routing, per-sandbox metrics).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use vitrine_osc::RouterConfig;
use vitrine_policy::{Config, Policy};

use super::launcher::{Hooks, Started};
use crate::audit_log::{self, AuditWriter};
use crate::events::{Event, EventBus};
use crate::metrics::{self, Metrics, VisualizationStats};
use crate::midi::{Bridges, MidiPortStatus};
use crate::osc::{Delivery, Hub};
use crate::peering::{self, Peering};

/// How often the cgroup statistics are copied into the metrics.
const STATS_INTERVAL: Duration = Duration::from_secs(5);

/// The running companions; [`Companions::shutdown`] ends them in order.
#[derive(Debug)]
pub struct Companions {
    pub metrics: Metrics,
    hub: Option<Arc<Hub>>,
    midi: Arc<Bridges>,
    bus: EventBus,
    peering: Option<Arc<Peering>>,
    audit: Option<AuditWriter>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The hooks the visualization tasks call; cheap to clone.
#[derive(Debug, Clone)]
pub struct CompanionHooks {
    metrics: Metrics,
    hub: Option<Arc<Hub>>,
    midi: Arc<Bridges>,
    bus: EventBus,
    peering: Option<Arc<Peering>>,
}

impl Companions {
    /// Starts the metrics endpoint (unless `listen = "off"`), the audit log writer and the OSC
    /// hub (unless `[osc] listen` is empty). A listener that cannot be bound is an error: a box
    /// silently without its metrics or OSC input is worse than one that does not start.
    pub async fn start(config: &Config, bus: &EventBus) -> anyhow::Result<Companions> {
        let metrics = Metrics::new();
        let (stop, stopped) = watch::channel(false);
        let mut tasks =
            vec![tokio::spawn(metrics::follow_events(bus.subscribe(), metrics.clone()))];
        if let Some(addr) = config.metrics.listen {
            let listener = metrics::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?;
            let shutdown = wait_for(stopped.clone());
            tasks.push(tokio::spawn(metrics::serve(listener, metrics.clone(), shutdown)));
            tracing::info!("metrics on http://{addr}/metrics");
        }
        let audit =
            AuditWriter::start(config.audit.path.clone(), metrics.clone()).with_context(|| {
                format!("cannot start the audit log {}", config.audit.path.display())
            })?;
        tasks.push(tokio::spawn(audit_log::follow_events(bus.subscribe(), audit.handle())));
        let hub = start_hub(config, bus, &mut tasks).await?;
        // Every scrape applies what the hub counted since the last one.
        if let Some(hub) = &hub {
            let hub = Arc::clone(hub);
            metrics.set_osc_source(Arc::new(move || hub.stats()));
        }
        let midi = Arc::new(Bridges::default());
        let counts = Arc::clone(&midi);
        metrics.set_midi_source(Arc::new(move || counts.counts()));
        // OSC from controller peers is validated and routed exactly like a local datagram.
        let sink_hub = hub.clone();
        let sink: peering::OscSink = Arc::new(move |packet: &[u8], from| {
            if let Some(hub) = &sink_hub {
                hub.inject(packet, from);
            }
        });
        // Peering that cannot start (an invalid or unreadable peers.toml or ban file, a port in
        // use) stays off, loudly; the visualizations still run. Off is closed: no peer links.
        let peering = match peering::start(config, bus.clone(), Some(metrics.clone()), sink).await {
            Ok(p) => p,
            Err(e) => {
                let message = format!("peering is off: cannot start it: {e:#}");
                tracing::error!("{message}");
                bus.publish(Event::Warning { subject: "peering".into(), message });
                None
            }
        };
        // OSC for a visualization this box does not run goes to the peer that runs it.
        if let (Some(hub), Some(p)) = (&hub, &peering) {
            let p = Arc::downgrade(p);
            hub.set_relay(Arc::new(move |packet: &[u8], _from| {
                if let Some(p) = p.upgrade() {
                    p.relay(packet);
                }
            }));
        }
        let bus = bus.clone();
        Ok(Companions { metrics, hub, midi, bus, peering, audit: Some(audit), stop, tasks })
    }

    /// Copies each running visualization's cgroup statistics into the metrics periodically,
    /// and tells the peers what this box runs.
    pub fn follow_stats<F, Fut>(&mut self, status: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Vec<super::unit::UnitStatus>> + Send,
    {
        let metrics = self.metrics.clone();
        let peering = self.peering.clone();
        let hub = self.hub.clone();
        let mut stopped = self.stop.subscribe();
        self.tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(STATS_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => return,
                }
                let units = status().await;
                if let Some(p) = &peering {
                    let prefixes = hub.as_ref().map(|h| h.prefixes()).unwrap_or_default();
                    p.set_status(
                        units
                            .iter()
                            .map(|u| peering::VisualizationState {
                                name: u.name.clone(),
                                state: u.state.as_str().to_owned(),
                                osc_prefix: prefixes.get(&u.name).cloned(),
                            })
                            .collect(),
                        units.iter().map(|u| u.osc_prefix.clone()).collect(),
                    );
                }
                for unit in units {
                    if let Some(s) = unit.stats {
                        let stats = VisualizationStats {
                            cpu_seconds: s.cpu_seconds,
                            memory_bytes: s.memory_bytes,
                            pids: s.pids,
                            oom_kills: s.oom_kills,
                        };
                        metrics.set_visualization_stats(&unit.name, &stats);
                    }
                }
            }
        }));
    }

    /// Stops the listeners, lets the bus followers catch up, flushes the audit log and waits
    /// for every task. Call it after the last visualization has stopped.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(peering) = self.peering.take() {
            peering.shutdown();
        }
        // The bridges hold the hub: they end first.
        self.midi.stop_all();
        if let Some(hub) = self.hub.take().and_then(|h| Arc::try_unwrap(h).ok()) {
            hub.shutdown().await;
        }
        // The bus lives as long as the process, so its followers never see it close: give them
        // a moment to take the last events (the visualizations' `stopped`), then end them.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
        if let Some(audit) = self.audit.take() {
            // Flushing writes and fsyncs: blocking work.
            let _ = tokio::task::spawn_blocking(move || audit.shutdown()).await;
        }
    }

    pub fn hooks(&self) -> CompanionHooks {
        CompanionHooks {
            metrics: self.metrics.clone(),
            hub: self.hub.clone(),
            midi: Arc::clone(&self.midi),
            bus: self.bus.clone(),
            peering: self.peering.clone(),
        }
    }
}

async fn start_hub(
    config: &Config,
    bus: &EventBus,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<Option<Arc<Hub>>> {
    let (blocked_tx, mut blocked) = mpsc::channel(64);
    // Without listeners the hub still routes what MIDI and peers inject.
    let hub = Hub::start(&config.osc, RouterConfig::default(), blocked_tx)
        .await
        .with_context(|| format!("cannot listen for OSC on {:?}", config.osc.listen))?;
    if config.osc.listen.is_empty() {
        tracing::info!("OSC ingress off ([osc] listen is empty)");
    } else {
        tracing::info!("OSC on {:?}", hub.local_addrs());
    }
    let bus = bus.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(b) = blocked.recv().await {
            let reason = format!("repeated violations; blocked for {}s", b.cooldown.as_secs());
            bus.publish(Event::OscBlock { source: b.source.to_string(), reason });
        }
    }));
    Ok(Some(Arc::new(hub)))
}

impl CompanionHooks {
    /// Reads the policy's `[midi]` inputs into the hub while the sandbox runs. A bridge that
    /// cannot start (no sequencer, a build without ALSA) leaves the visualization running
    /// without MIDI, loudly.
    fn start_midi(&self, policy: &Policy) {
        let name = policy.visualization.name.as_str();
        let (Some(midi), Some(hub)) = (&policy.midi, &self.hub) else {
            self.midi.stop(name);
            return;
        };
        if let Err(e) = self.midi.start(name, &policy.osc.prefix, midi, hub) {
            let message = format!("{}; running without MIDI", e.chain());
            tracing::error!(visualization = name, "{message}");
            self.bus.publish(Event::Warning { subject: name.to_owned(), message });
        }
    }
}

async fn wait_for(mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow() {
        if stopped.changed().await.is_err() {
            return;
        }
    }
}

impl Hooks for CompanionHooks {
    fn started(&self, policy: &Policy, sandbox: &Started, delivery: Option<Delivery>) {
        let name = policy.visualization.name.as_str();
        let abi = sandbox
            .layers
            .iter()
            .find_map(|l| l.strip_prefix("landlock-abi-").and_then(|n| n.parse().ok()))
            .unwrap_or(0);
        self.metrics.set_sandbox(name, abi, &sandbox.layers);
        if let Some(seconds) = sandbox.spawn_seconds {
            self.metrics.observe_spawn(seconds);
        }
        if let (Some(hub), Some(delivery)) = (&self.hub, delivery)
            && let Err(e) = hub.attach(name, &policy.osc, delivery)
        {
            tracing::error!(visualization = name, "cannot route OSC to the sandbox: {e}");
        }
        self.start_midi(policy);
    }

    fn ended(&self, name: &str) {
        self.midi.stop(name);
        if let Some(hub) = &self.hub {
            hub.detach(name);
        }
    }

    fn local_prefixes(&self, prefixes: Vec<String>) {
        if let Some(p) = &self.peering {
            p.set_local_prefixes(prefixes);
        }
    }

    fn midi_ports(&self, name: &str) -> Vec<MidiPortStatus> {
        self.midi.ports(name)
    }

    fn removed(&self, name: &str) {
        self.ended(name);
        self.metrics.remove_visualization(name);
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::path::Path;
    use std::time::{Duration, Instant, SystemTime};

    use vitrine_peer::{Identity, IdentityOptions, PeerEntry, PeerId, Role, TrustStore};
    use vitrine_policy::{Discovery, Osc, OscParam, OutOfRange, ParamKind};

    use super::*;
    use crate::osc::Delivery;
    use crate::peering::VisualizationState;

    const PATIENCE: Duration = Duration::from_secs(30);

    /// A box's configuration with everything under `dir` and on 127.0.0.1.
    fn config(dir: &Path, static_peers: Vec<String>) -> Config {
        let mut c = vitrine_policy::default_config(None);
        c.state_dir = dir.join("state");
        c.control.socket = dir.join("control.sock");
        c.audit.path = dir.join("audit.jsonl");
        c.metrics.listen = None;
        c.osc.listen = vec!["127.0.0.1:0".parse().expect("addr")];
        c.peering.enabled = true;
        c.peering.listen = "127.0.0.1:0".parse().expect("addr");
        c.peering.discovery = Discovery::Static;
        c.peering.static_peers = static_peers;
        c.peering.site_key_file = dir.join("no-site.key");
        c
    }

    /// Creates the box's identity and pins `peer` in its trust store.
    fn prepare(dir: &Path, peer: Option<(PeerId, Role)>) -> PeerId {
        let opts = IdentityOptions {
            dir: dir.join("state/identity"),
            credentials_dir: None,
            machine_id: None,
        };
        let (ident, _) = Identity::load_or_create(&opts).expect("identity");
        if let Some((id, role)) = peer {
            let mut store = TrustStore::default();
            store.pin(PeerEntry {
                id,
                name: "peer".into(),
                role,
                added: SystemTime::now(),
                addresses: vec![],
                previous: vec![],
            });
            store.save(&dir.join("state/peers.toml")).expect("trust store");
        }
        ident.id()
    }

    fn schema() -> Osc {
        let speed = ParamKind::Float { range: Some((0.0, 10.0)), out_of_range: OutOfRange::Clamp };
        Osc {
            prefix: "/aurora".into(),
            max_rate: 1000,
            params: vec![OscParam {
                address: "/speed".into(),
                kind: speed,
                max_rate: None,
                coalesce: false,
            }],
        }
    }

    fn speed(value: f32) -> Vec<u8> {
        let mut p = b"/aurora/speed\0\0\0,f\0\0".to_vec();
        p.extend_from_slice(&value.to_be_bytes());
        p
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn osc_sent_to_one_box_reaches_a_visualization_on_its_peer() {
        let (dir_a, dir_b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
        // B runs the visualization and lets A control it; A knows B as an observer of A.
        let id_a = prepare(dir_a.path(), None);
        let id_b = prepare(dir_b.path(), Some((id_a, Role::Controller)));
        prepare(dir_a.path(), Some((id_b, Role::Observer)));
        let b =
            Companions::start(&config(dir_b.path(), vec![]), &EventBus::new()).await.expect("b");
        let peering_b = b.peering.clone().expect("peering on");
        let b_addr = peering_b.service().local_addr().to_string();
        let a = Companions::start(&config(dir_a.path(), vec![b_addr]), &EventBus::new())
            .await
            .expect("a");
        // The visualization on B: its delivery socket, and what it receives.
        let child = UdpSocket::bind("127.0.0.1:0").expect("child");
        child.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let ours = UdpSocket::bind("127.0.0.1:0").expect("delivery");
        let port = child.local_addr().expect("addr").port();
        let hub_b = b.hub.clone().expect("hub");
        hub_b.attach("aurora", &schema(), Delivery::Udp { socket: ours, port }).expect("attach");
        peering_b.set_status(
            vec![VisualizationState {
                name: "aurora".into(),
                state: "running".into(),
                osc_prefix: Some("/aurora".into()),
            }],
            vec!["/aurora".into()],
        );
        // A runs nothing, and knows it (the stats loop tells it in the daemon).
        a.peering.as_ref().expect("peering on").set_status(vec![], vec![]);
        // A controller sends to box A, which runs no `aurora`: the message reaches B's child,
        // validated there (50.0 is clamped to the range's 10.0) and without B's prefix.
        let controller = UdpSocket::bind("127.0.0.1:0").expect("controller");
        let to_a = a.hub.as_ref().expect("hub").local_addrs()[0];
        let deadline = Instant::now() + PATIENCE;
        let mut buf = [0u8; 256];
        let got = loop {
            assert!(Instant::now() < deadline, "nothing relayed from A to B's visualization");
            controller.send_to(&speed(50.0), to_a).expect("send");
            if let Ok(n) = child.recv(&mut buf) {
                break buf[..n].to_vec();
            }
        };
        let mut want = b"/speed\0\0,f\0\0".to_vec();
        want.extend_from_slice(&10.0f32.to_be_bytes());
        assert_eq!(got, want);
        a.shutdown().await;
        b.shutdown().await;
    }

    #[tokio::test]
    async fn a_trust_store_that_does_not_parse_turns_peering_off_loudly() {
        let dir = tempfile::tempdir().expect("tmp");
        prepare(dir.path(), None);
        std::fs::write(dir.path().join("state/peers.toml"), "[[peer]]\nid = \"oops\"\n")
            .expect("write");
        let bus = EventBus::new();
        let mut events = bus.subscribe();
        let c = Companions::start(&config(dir.path(), vec![]), &bus).await.expect("starts");
        assert!(c.peering.is_none());
        let warned = loop {
            let e =
                tokio::time::timeout(PATIENCE, events.recv()).await.expect("event").expect("bus");
            if let Event::Warning { subject, message } = &e.event {
                break (subject.clone(), message.clone());
            }
        };
        assert_eq!(warned.0, "peering");
        assert!(
            warned.1.contains("peering is off") && warned.1.contains("peers.toml"),
            "{warned:?}"
        );
        c.shutdown().await;
    }
}
