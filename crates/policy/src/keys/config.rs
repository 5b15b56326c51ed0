//! The daemon configuration file's keys (`/etc/vitrine/vitrine.toml`), in the same form as the
//! policy keys beside them.

use super::{Section, Ty, key};

pub(crate) static CONFIG_OSC: Section = Section {
    name: "osc",
    doc: "OSC ingress.",
    keys: &[
        key("listen", Ty::Addrs, Some("[\"0.0.0.0:9000\"]"), "UDP addresses to receive OSC on."),
        key(
            "allow_from",
            Ty::NetRules,
            Some("[\"local\"]"),
            "Accepted senders: \"local\" (loopback, RFC 1918, link-local, ULA) or CIDRs.",
        ),
        key(
            "max_packet",
            Ty::Int { min: 64, max: 65_507 },
            Some("8192"),
            "Largest accepted datagram in bytes.",
        ),
        key("oscquery_listen", Ty::Addr, None, "OSCQuery HTTP listener (read-only); default: off."),
    ],
};

pub(crate) static CONFIG_CONTROL: Section = Section {
    name: "control",
    doc: "The control socket.",
    keys: &[
        key(
            "socket",
            Ty::Path,
            Some("\"/run/vitrine/control.sock\""),
            "Path of the Unix control socket.",
        ),
        key("admin_group", Ty::Str, Some("\"vitrine-admin\""), "Members may do everything."),
        key(
            "operator_group",
            Ty::Str,
            Some("\"vitrine\""),
            "Members may start, stop, restart and read status.",
        ),
    ],
};

pub(crate) static CONFIG_METRICS: Section = Section {
    name: "metrics",
    doc: "Prometheus metrics.",
    keys: &[key(
        "listen",
        Ty::AddrOrOff,
        Some("\"127.0.0.1:10049\""),
        "HTTP listener for /metrics, or \"off\".",
    )],
};

pub(crate) const DISCOVERY: &[&str] = &["mdns", "static"];
pub(crate) const PEER_ROLES: &[&str] = &["controller", "observer"];

pub(crate) static CONFIG_PEERING: Section = Section {
    name: "peering",
    doc: "Peering with other vitrine boxes.",
    keys: &[
        key("enabled", Ty::Bool, Some("false"), "Peer with other boxes."),
        key("listen", Ty::Addr, Some("\"0.0.0.0:7447\""), "TLS listener."),
        key("discovery", Ty::Enum(DISCOVERY), Some("\"mdns\""), "mdns or static."),
        key("static_peers", Ty::Strings, Some("[]"), "HOST:PORT of peers on routed networks."),
        key(
            "site_key_file",
            Ty::Path,
            Some("\"/etc/vitrine/site.key\""),
            "Shared site key for trust on first connection.",
        ),
        key(
            "site_key_role",
            Ty::Enum(PEER_ROLES),
            Some("\"observer\""),
            "Role of peers admitted by the site key.",
        ),
        key(
            "osc_rate",
            Ty::Int { min: 1, max: 100_000 },
            Some("500"),
            "OSC messages per second one controller peer may relay.",
        ),
        key(
            "osc_burst",
            Ty::Int { min: 1, max: 1_000_000 },
            Some("1000"),
            "Messages a controller peer may relay at once above osc_rate.",
        ),
        key("ban_cooldown", Ty::Duration, Some("\"5m\""), "How long a violating peer is refused."),
        key(
            "rotation_grace",
            Ty::Duration,
            Some("\"7d\""),
            "How long a peer's rotated-away key stays accepted.",
        ),
        key(
            "pairing_window",
            Ty::Duration,
            Some("\"5m\""),
            "How long a pairing window stays open.",
        ),
        key("reconnect_min", Ty::Duration, Some("\"1s\""), "First delay after a failed dial."),
        key("reconnect_max", Ty::Duration, Some("\"60s\""), "Longest delay between dials."),
        key(
            "handshake_timeout",
            Ty::Duration,
            Some("\"10s\""),
            "Time for TCP connect, TLS and hello.",
        ),
        key("ping_interval", Ty::Duration, Some("\"15s\""), "How often links are pinged."),
        key(
            "ping_timeout",
            Ty::Duration,
            Some("\"45s\""),
            "Silence after which a peer is down and redialed.",
        ),
        key(
            "status_interval",
            Ty::Duration,
            Some("\"10s\""),
            "How often this box's status goes to each peer.",
        ),
    ],
};

pub(crate) static CONFIG_AUDIT: Section = Section {
    name: "audit",
    doc: "The hash-chained audit log.",
    keys: &[key("path", Ty::Path, Some("\"/var/log/vitrine/audit.jsonl\""), "The audit log file.")],
};

/// The daemon configuration file.
pub(crate) static CONFIG: Section = Section {
    name: "",
    doc: "The daemon configuration.",
    keys: &[
        key(
            "policies",
            Ty::Path,
            Some("\"/etc/vitrine/policies\""),
            "Directory whose *.toml files are the visualizations.",
        ),
        key(
            "state_dir",
            Ty::Path,
            Some("\"/var/lib/vitrine\""),
            "Identity, trust store and runtime state.",
        ),
        key(
            "allow_unsigned",
            Ty::Bool,
            Some("false"),
            "Accept policies without sha256 or minisign verification.",
        ),
        key("osc", Ty::Table(&CONFIG_OSC), None, CONFIG_OSC.doc),
        key("control", Ty::Table(&CONFIG_CONTROL), None, CONFIG_CONTROL.doc),
        key("metrics", Ty::Table(&CONFIG_METRICS), None, CONFIG_METRICS.doc),
        key("peering", Ty::Table(&CONFIG_PEERING), None, CONFIG_PEERING.doc),
        key("audit", Ty::Table(&CONFIG_AUDIT), None, CONFIG_AUDIT.doc),
    ],
};
