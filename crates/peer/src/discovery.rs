//! mDNS discovery: advertise `_vitrine._tcp.local.` with the peer ID in TXT, and note where
//! other boxes are. Discovery is only a hint: a record claiming an ID proves nothing, and the
//! TLS pin decides whether a link comes up.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::task::JoinHandle;

use crate::error::PeerError;
use crate::id::PeerId;
use crate::shared::{Shared, lock};

/// The DNS-SD service type (`_vitrine` is 7 bytes, within the 15-byte limit of RFC 6763).
pub const SERVICE_TYPE: &str = "_vitrine._tcp.local.";

/// The running advertisement and browser; dropping it withdraws the advertisement.
pub(crate) struct Discovery {
    daemon: ServiceDaemon,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Discovery")
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.task.abort();
        let _ = self.daemon.shutdown();
    }
}

impl Discovery {
    pub fn start(shared: &Arc<Shared>, local: SocketAddr) -> Result<Self, PeerError> {
        let daemon = ServiceDaemon::new().map_err(PeerError::Mdns)?;
        let id = shared.me();
        let instance = format!("vitrine-{}", id.short().to_lowercase());
        let host = format!("{instance}.local.");
        let id_text = id.to_string();
        let props = [("id", id_text.as_str()), ("v", "1")];
        let info = ServiceInfo::new(SERVICE_TYPE, &instance, &host, (), local.port(), &props[..])
            .map_err(PeerError::Mdns)?
            .enable_addr_auto();
        daemon.register(info).map_err(PeerError::Mdns)?;
        let rx = daemon.browse(SERVICE_TYPE).map_err(PeerError::Mdns)?;
        let task = tokio::spawn(browse(Arc::downgrade(shared), rx));
        Ok(Self { daemon, task })
    }
}

async fn browse(shared: Weak<Shared>, rx: mdns_sd::Receiver<ServiceEvent>) {
    while let Ok(event) = rx.recv_async().await {
        let Some(shared) = shared.upgrade() else { break };
        if let ServiceEvent::ServiceResolved(info) = event {
            let Some(id) = info.get_property_val_str("id").and_then(|s| s.parse::<PeerId>().ok())
            else {
                continue;
            };
            if id == shared.me() || info.get_property_val_str("v") != Some("1") {
                continue;
            }
            let port = info.get_port();
            let mut addrs: Vec<SocketAddr> = info
                .get_addresses_v4()
                .into_iter()
                .map(|ip| SocketAddr::new(IpAddr::V4(ip), port))
                .collect();
            addrs.sort();
            tracing::debug!(peer = %id, ?addrs, "discovered by mDNS");
            lock(&shared.discovered).insert(id, addrs);
        }
    }
}
