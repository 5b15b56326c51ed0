//! The OSC hub: UDP ingress, validation and routing through `vitrine-osc`, per-visualization
//! delivery, feedback to controllers, and the OSCQuery description (DESIGN §6).
//!
//! The daemon and `vitrine run` use it the same way:
//! `Hub::start(&config.osc, RouterConfig, events)` once, then `attach(name, &policy.osc,
//! Delivery)` when a visualization's sandbox is up and `detach(name)` when it goes away;
//! `stats()` feeds the metrics exporter, and every source the router blocks is sent on the
//! `events` channel for the audit log.
//!
//! Architecture invariant: ingress never waits for a child. The router runs under one short
//! std mutex; sends are non-blocking and whatever a socket does not take stays in the
//! visualization's bounded outbox for its own delivery thread to finish. Nothing but the
//! ingress thread and the child is woken by a message on its way (no reactor, no hand-off).

mod allow;
mod delivery;
mod foreground;
mod ingress;
mod oscquery;
mod stats;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use vitrine_osc::{Blocked, Reason, Routed, Router, RouterConfig, TargetId};
use vitrine_policy::{NetRule, Osc, OscConfig};

pub use delivery::Delivery;
pub use foreground::Foreground;
// `LatencySnapshot` is only named where a snapshot is built by hand (the metrics tests).
#[allow(unused_imports)]
pub use stats::{LatencySnapshot, StatsSnapshot, VisualizationStats};

use delivery::Out;

/// The router and the endpoints it delivers to, under one lock.
struct State {
    router: Router,
    outs: HashMap<TargetId, Arc<Out>>,
    /// The OSC schema of each attached visualization, for OSCQuery.
    schemas: HashMap<String, Osc>,
}

/// What every task of the hub shares.
struct Shared {
    state: Mutex<State>,
    allow_from: Vec<NetRule>,
    /// Blocking sockets, each read by its own ingress thread.
    listeners: Vec<std::net::UdpSocket>,
    /// Set when the hub stops; the ingress threads check it after every wake-up.
    stopping: AtomicBool,
    ingress: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The delivery threads, finished ones included until the next attach.
    deliveries: Mutex<Vec<std::thread::JoinHandle<()>>>,
    counters: stats::Counters,
    events: mpsc::Sender<Blocked>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Where UDP datagrams with messages for no local visualization go (peer boxes).
    relay: std::sync::OnceLock<Relay>,
}

/// Takes a datagram that came in over UDP from `from` and had messages no visualization here
/// accepts by address. Never called for injected packets, so nothing relayed in is relayed on.
pub type Relay = Arc<dyn Fn(&[u8], SocketAddr) + Send + Sync>;

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the router consistent enough to go on
        // (every update is a counter or a queue operation), so poisoning is not fatal.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Routes one packet and sends what it produced, without ever waiting.
    fn route(&self, packet: &[u8], from: SocketAddr, at: Instant) -> Routed {
        let mut state = self.lock();
        let routed = state.router.route(packet, from, at, SystemTime::now());
        let State { router, outs, .. } = &mut *state;
        router.for_each_pending(|id, outbox| {
            if let Some(out) = outs.get(&id)
                && out.drain(outbox, Some(at), self)
            {
                out.stalled();
            }
        });
        drop(state);
        if let Some(blocked) = routed.blocked {
            self.counters.blocks.fetch_add(1, Ordering::Relaxed);
            // The audit trail must not stall ingress: if the consumer is that far behind, the
            // block still happens and is still counted.
            let _ = self.events.try_send(blocked);
        }
        routed
    }

    /// Sends a feedback message to a controller from a listener of the same address family.
    fn send_reply(&self, bytes: &[u8], to: SocketAddr) {
        let socket = self
            .listeners
            .iter()
            .find(|s| s.local_addr().is_ok_and(|a| a.is_ipv4() == to.is_ipv4()));
        if let Some(socket) = socket {
            // The listeners are blocking sockets; a reply must never wait for buffer space.
            let to = nix::sys::socket::SockaddrStorage::from(to);
            let _ = nix::sys::socket::sendto(
                std::os::fd::AsRawFd::as_raw_fd(socket),
                bytes,
                &to,
                nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            );
        }
    }

    /// Tells the ingress threads to stop and wakes them; returns their handles.
    fn stop_ingress(&self) -> Vec<std::thread::JoinHandle<()>> {
        self.stopping.store(true, Ordering::Release);
        for socket in &self.listeners {
            ingress::wake(socket);
        }
        self.ingress.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect()
    }

    /// Tells every delivery thread to stop; returns their handles.
    fn stop_deliveries(&self) -> Vec<std::thread::JoinHandle<()>> {
        let mut threads = self.deliveries.lock().unwrap_or_else(|e| e.into_inner());
        let mut state = self.lock();
        for (_, out) in state.outs.drain() {
            out.stop();
        }
        threads.drain(..).collect()
    }
}

/// The running OSC hub; cheap to share by reference.
pub struct Hub {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    /// The bound addresses, in `[osc] listen` order (port 0 resolved).
    local_addrs: Vec<SocketAddr>,
    oscquery_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("listen", &self.local_addrs)
            .field("oscquery", &self.oscquery_addr)
            .finish()
    }
}

impl Hub {
    /// Binds every `[osc] listen` address (and `oscquery_listen`) and starts ingress. Must be
    /// called inside the tokio runtime.
    pub async fn start(
        config: &OscConfig,
        router: RouterConfig,
        events: mpsc::Sender<Blocked>,
    ) -> io::Result<Hub> {
        let router = Router::new(RouterConfig { max_packet: config.max_packet, ..router });
        let mut listeners = Vec::new();
        for addr in &config.listen {
            listeners.push(ingress::bind(*addr)?);
        }
        let local_addrs =
            listeners.iter().map(|s| s.local_addr()).collect::<io::Result<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State { router, outs: HashMap::new(), schemas: HashMap::new() }),
            allow_from: config.allow_from.clone(),
            listeners,
            stopping: AtomicBool::new(false),
            ingress: Mutex::new(Vec::new()),
            deliveries: Mutex::new(Vec::new()),
            counters: stats::Counters::default(),
            events,
            tasks: Mutex::new(Vec::new()),
            relay: std::sync::OnceLock::new(),
        });
        let (stop, _) = watch::channel(false);
        let mut tasks = Vec::new();
        for index in 0..shared.listeners.len() {
            match ingress::start(shared.clone(), index) {
                Ok(thread) => shared.ingress.lock().unwrap_or_else(|e| e.into_inner()).push(thread),
                Err(e) => {
                    shared.stop_ingress();
                    return Err(e);
                }
            }
        }
        let oscquery_addr = match config.oscquery_listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr).await?;
                let bound = listener.local_addr()?;
                let osc_port = local_addrs.first().map_or(0, SocketAddr::port);
                tasks.push(tokio::spawn(oscquery::serve(
                    shared.clone(),
                    listener,
                    osc_port,
                    stop.subscribe(),
                )));
                Some(bound)
            }
            None => None,
        };
        shared.tasks.lock().unwrap_or_else(|e| e.into_inner()).extend(tasks);
        Ok(Hub { shared, stop, local_addrs, oscquery_addr })
    }

    /// Sets where datagrams for visualizations this box does not run are offered (once).
    pub fn set_relay(&self, relay: Relay) {
        let _ = self.shared.relay.set(relay);
    }

    /// The OSC prefix of each attached visualization, by name.
    pub fn prefixes(&self) -> HashMap<String, String> {
        let state = self.shared.lock();
        state.schemas.iter().map(|(name, osc)| (name.clone(), osc.prefix.clone())).collect()
    }

    /// The addresses the UDP listeners are bound to.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The address of the OSCQuery listener, when enabled.
    pub fn oscquery_addr(&self) -> Option<SocketAddr> {
        self.oscquery_addr
    }

    /// Starts routing `osc`'s parameters of visualization `name` to `delivery`, replacing a
    /// previous attachment of the same name.
    pub fn attach(&self, name: &str, osc: &Osc, delivery: Delivery) -> io::Result<()> {
        self.detach(name);
        let out = Arc::new(Out::new(delivery)?);
        let mut threads = self.shared.deliveries.lock().unwrap_or_else(|e| e.into_inner());
        let mut state = self.shared.lock();
        let id = state.router.attach(name, osc, Instant::now());
        match delivery::start(self.shared.clone(), id, out.clone()) {
            Ok(thread) => {
                threads.retain(|t| !t.is_finished());
                threads.push(thread);
            }
            Err(e) => {
                state.router.detach(id);
                return Err(e);
            }
        }
        state.outs.insert(id, out);
        state.schemas.insert(name.to_owned(), osc.clone());
        Ok(())
    }

    /// Stops routing to `name`; its queued messages are discarded and its thread ends.
    pub fn detach(&self, name: &str) {
        let mut state = self.shared.lock();
        if let Some(id) = state.router.find(name) {
            state.router.detach(id);
            if let Some(out) = state.outs.remove(&id) {
                out.stop();
            }
        }
        state.schemas.remove(name);
    }

    /// Routes a packet that arrived by another way (a peer link, the MIDI bridge) exactly like
    /// a datagram from `from`, under the same validation and rates.
    pub fn inject(&self, packet: &[u8], from: SocketAddr) -> Routed {
        self.shared.counters.received_injected.fetch_add(1, Ordering::Relaxed);
        self.shared.route(packet, from, Instant::now())
    }

    /// A snapshot of every counter, for the metrics exporter.
    pub fn stats(&self) -> StatsSnapshot {
        let c = &self.shared.counters;
        let state = self.shared.lock();
        let visualizations = state
            .router
            .target_stats()
            .into_iter()
            .map(|t| {
                let out = state.router.find(&t.name).and_then(|id| state.outs.get(&id));
                let load = |f: fn(&stats::OutCounters) -> &std::sync::atomic::AtomicU64| {
                    out.map_or(0, |o| f(&o.counters).load(Ordering::Relaxed))
                };
                VisualizationStats {
                    forwarded: load(|c| &c.sent),
                    dropped: vec![
                        (Reason::OutboxFull.as_str(), t.dropped_full),
                        (Reason::Coalesced.as_str(), t.dropped_coalesced),
                        (Reason::SendFailed.as_str(), load(|c| &c.send_failed)),
                    ],
                    feedback: load(|c| &c.feedback),
                    name: t.name,
                }
            })
            .collect();
        StatsSnapshot {
            received_udp: c.received_udp.load(Ordering::Relaxed),
            received_injected: c.received_injected.load(Ordering::Relaxed),
            rejected: stats::rejected_list(|r| state.router.rejected(r)),
            visualizations,
            latency: c.latency.snapshot(),
            blocks: c.blocks.load(Ordering::Relaxed),
        }
    }

    /// Stops every task of the hub and waits for them to end.
    pub async fn shutdown(self) {
        let mut threads = self.shared.stop_ingress();
        threads.extend(self.shared.stop_deliveries());
        let _ =
            tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| drop(t.join())))
                .await;
        let _ = self.stop.send(true);
        let tasks: Vec<_> =
            self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Drop for Hub {
    /// A hub dropped without [`Hub::shutdown`] still stops its threads (they hold the shared
    /// state, so they would otherwise outlive it).
    fn drop(&mut self) {
        self.shared.stop_ingress();
        self.shared.stop_deliveries();
    }
}

#[cfg(test)]
mod hot_path_tests;
#[cfg(test)]
mod tests;
