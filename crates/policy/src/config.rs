//! The daemon configuration (`/etc/vitrine/vitrine.toml`): every key optional.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeValue;

use crate::diag::{Bad, Diagnostics, Report};
use crate::keys;
use crate::model::*;
use crate::policy::parse_toml;
use crate::source::read_text;
use crate::values;
use crate::walk::{Fields, Val, array, boolean, checked, integer, list, one_of};

pub const DEFAULT_CONFIG: &str = "/etc/vitrine/vitrine.toml";

/// Loads the daemon configuration. `None` reads the default path, where a missing file means
/// "all defaults"; an explicitly named file must exist.
pub fn load_config(path: Option<&Path>) -> Result<Config, Diagnostics> {
    let (path, explicit) = match path {
        Some(p) => (p, true),
        None => (Path::new(DEFAULT_CONFIG), false),
    };
    if !explicit && !path.exists() && path.symlink_metadata().is_err() {
        return Ok(defaults(None));
    }
    let text = read_text(path)?;
    parse_config(path, &text)
}

/// Parses a configuration from its text.
pub fn parse_config(path: &Path, text: &str) -> Result<Config, Diagnostics> {
    let mut r = Report::new(path, text);
    let config = parse_toml(&mut r, text).and_then(|root| build(&mut r, root.get_ref()));
    let diags = r.finish();
    match config {
        Some(c) if diags.is_empty() => Ok(c),
        _ => Err(Diagnostics(diags)),
    }
}

/// Every default of the configuration reference.
pub fn defaults(source: Option<PathBuf>) -> Config {
    Config {
        source,
        policies: "/etc/vitrine/policies".into(),
        state_dir: "/var/lib/vitrine".into(),
        allow_unsigned: false,
        osc: OscConfig {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 9000))],
            allow_from: vec![NetRule::Local],
            max_packet: 8192,
            oscquery_listen: None,
        },
        control: ControlConfig {
            socket: "/run/vitrine/control.sock".into(),
            admin_group: "vitrine-admin".into(),
            operator_group: "vitrine".into(),
        },
        metrics: MetricsConfig { listen: Some(SocketAddr::from(([127, 0, 0, 1], 10049))) },
        peering: PeeringConfig {
            enabled: false,
            listen: SocketAddr::from(([0, 0, 0, 0], 7447)),
            discovery: Discovery::Mdns,
            static_peers: Vec::new(),
            site_key_file: "/etc/vitrine/site.key".into(),
            site_key_role: PeerRole::Observer,
            osc_rate: 500,
            osc_burst: 1000,
            ban_cooldown: Duration::from_secs(300),
            rotation_grace: Duration::from_secs(7 * 86_400),
            pairing_window: Duration::from_secs(300),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(45),
            status_interval: Duration::from_secs(10),
        },
        audit: AuditConfig { path: "/var/log/vitrine/audit.jsonl".into() },
    }
}

fn build(r: &mut Report<'_>, root: &toml::de::DeTable<'_>) -> Option<Config> {
    let d = defaults(Some(r.path().to_path_buf()));
    let mut top = Fields::open(r, &keys::CONFIG, Some(root), 0..0);
    let policies = top.get(r, "policies", path).or(d.policies);
    let state_dir = top.get(r, "state_dir", path).or(d.state_dir);
    let allow_unsigned = top.get(r, "allow_unsigned", boolean).or(false);
    let osc = top.sub(r, "osc").and_then(|f| osc(r, f, d.osc));
    let control = top.sub(r, "control").and_then(|f| control(r, f, d.control));
    let metrics = top.sub(r, "metrics").and_then(|mut f| {
        let listen = f.get(r, "listen", addr_or_off).or(d.metrics.listen);
        f.finish();
        Some(MetricsConfig { listen: listen? })
    });
    let peering = top.sub(r, "peering").and_then(|f| peering(r, f, d.peering));
    let audit = top.sub(r, "audit").and_then(|mut f| {
        let p = f.get(r, "path", path).or(d.audit.path);
        f.finish();
        Some(AuditConfig { path: p? })
    });
    top.finish();
    Some(Config {
        source: d.source,
        policies: policies?,
        state_dir: state_dir?,
        allow_unsigned: allow_unsigned?,
        osc: osc?,
        control: control?,
        metrics: metrics?,
        peering: peering?,
        audit: audit?,
    })
}

fn path(r: &mut Report<'_>, v: &Val<'_>) -> Option<PathBuf> {
    checked(r, v, values::abs_path).map(|p| p.0)
}

fn addr(r: &mut Report<'_>, v: &Val<'_>) -> Option<SocketAddr> {
    checked(r, v, socket_addr)
}

fn socket_addr(s: &str) -> Result<SocketAddr, Bad> {
    s.parse().map_err(|_| {
        Bad::new(format!("invalid socket address \"{s}\""))
            .hint("write IP:PORT, e.g. \"0.0.0.0:9000\" or \"[::1]:9000\"")
    })
}

fn addr_or_off(r: &mut Report<'_>, v: &Val<'_>) -> Option<Option<SocketAddr>> {
    match v.get_ref() {
        DeValue::String(s) if s == "off" => Some(None),
        _ => addr(r, v).map(Some),
    }
}

fn osc(r: &mut Report<'_>, mut f: Fields<'_, '_>, d: OscConfig) -> Option<OscConfig> {
    let listen = f.get(r, "listen", |r, v| list(r, v, addr)).or(d.listen);
    let allow_from = f
        .get(r, "allow_from", |r, v| list(r, v, |r, v| checked(r, v, values::net_rule)))
        .or(d.allow_from);
    let max_packet = f.get(r, "max_packet", |r, v| integer(r, v, 64, 65_507)).or(8192);
    let oscquery = f.get(r, "oscquery_listen", addr).optional();
    f.finish();
    Some(OscConfig {
        listen: listen?,
        allow_from: allow_from?,
        max_packet: max_packet? as usize,
        oscquery_listen: oscquery?,
    })
}

fn control(r: &mut Report<'_>, mut f: Fields<'_, '_>, d: ControlConfig) -> Option<ControlConfig> {
    let socket = f.get(r, "socket", path).or(d.socket);
    let admin = f.get(r, "admin_group", |r, v| checked(r, v, group)).or(d.admin_group);
    let operator = f.get(r, "operator_group", |r, v| checked(r, v, group)).or(d.operator_group);
    f.finish();
    Some(ControlConfig { socket: socket?, admin_group: admin?, operator_group: operator? })
}

fn group(s: &str) -> Result<String, Bad> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(s.to_string()) } else { Err(Bad::new(format!("invalid group name \"{s}\""))) }
}

fn peering(r: &mut Report<'_>, mut f: Fields<'_, '_>, d: PeeringConfig) -> Option<PeeringConfig> {
    let dur = |r: &mut Report<'_>, v: &Val<'_>| checked(r, v, values::config_duration);
    let enabled = f.get(r, "enabled", boolean).or(false);
    let listen = f.get(r, "listen", addr).or(d.listen);
    let discovery = f.get(r, "discovery", |r, v| one_of(r, v, keys::DISCOVERY)).or("mdns");
    let peers = f.get(r, "static_peers", |r, v| array(r, v, |r, v| checked(r, v, host_port)));
    let site_key = f.get(r, "site_key_file", path).or(d.site_key_file);
    let role = f.get(r, "site_key_role", |r, v| one_of(r, v, keys::PEER_ROLES)).or("observer");
    let osc_rate = f.get(r, "osc_rate", |r, v| integer(r, v, 1, 100_000)).or(d.osc_rate.into());
    let osc_burst =
        f.get(r, "osc_burst", |r, v| integer(r, v, 1, 1_000_000)).or(d.osc_burst.into());
    let ban = f.get(r, "ban_cooldown", dur).or(d.ban_cooldown);
    let grace = f.get(r, "rotation_grace", dur).or(d.rotation_grace);
    let window = f.get(r, "pairing_window", dur).or(d.pairing_window);
    let rmin = f.get(r, "reconnect_min", dur);
    let rmax = f.get(r, "reconnect_max", dur);
    let handshake = f.get(r, "handshake_timeout", dur).or(d.handshake_timeout);
    let ping = f.get(r, "ping_interval", dur);
    let ping_timeout = f.get(r, "ping_timeout", dur);
    let status = f.get(r, "status_interval", dur).or(d.status_interval);
    let table_at = f.at();
    f.finish();
    let at = rmax.span().or(rmin.span()).unwrap_or(table_at.clone());
    let (reconnect_min, reconnect_max) = (rmin.or(d.reconnect_min), rmax.or(d.reconnect_max));
    if let (Some(lo), Some(hi)) = (reconnect_min, reconnect_max) {
        if lo > hi {
            r.error(at, "reconnect_max must not be shorter than reconnect_min");
        }
    }
    let at = ping_timeout.span().or(ping.span()).unwrap_or(table_at.clone());
    let (ping_interval, ping_timeout_v) =
        (ping.or(d.ping_interval), ping_timeout.or(d.ping_timeout));
    if let (Some(every), Some(dead)) = (ping_interval, ping_timeout_v) {
        if dead <= every {
            r.error(at, "ping_timeout must be longer than ping_interval (a peer misses a ping before it is down)");
        }
    }
    Some(PeeringConfig {
        enabled: enabled?,
        listen: listen?,
        discovery: if discovery? == "static" { Discovery::Static } else { Discovery::Mdns },
        static_peers: peers.or(Vec::new())?.into_iter().map(|(p, _)| p).collect(),
        site_key_file: site_key?,
        site_key_role: if role? == "controller" {
            PeerRole::Controller
        } else {
            PeerRole::Observer
        },
        osc_rate: u32::try_from(osc_rate?).ok()?,
        osc_burst: u32::try_from(osc_burst?).ok()?,
        ban_cooldown: ban?,
        rotation_grace: grace?,
        pairing_window: window?,
        reconnect_min: reconnect_min?,
        reconnect_max: reconnect_max?,
        handshake_timeout: handshake?,
        ping_interval: ping_interval?,
        ping_timeout: ping_timeout_v?,
        status_interval: status?,
    })
}

/// `HOST:PORT` where HOST is an IP address (IPv6 in brackets) or a DNS name.
fn host_port(s: &str) -> Result<String, Bad> {
    let bad = || {
        Bad::new(format!("invalid peer address \"{s}\""))
            .hint("write HOST:PORT, e.g. \"box-2.local:7447\" or \"10.0.0.2:7447\"")
    };
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(s.to_string());
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    match port.parse::<u16>() {
        Ok(p) if p > 0 && host_ok => Ok(s.to_string()),
        _ => Err(bad()),
    }
}
