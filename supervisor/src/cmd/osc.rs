//! `vitrine osc relay`: the OSC path of the daemon — ingress, validation, routing, rates,
//! OSCQuery — in the foreground, delivering to plain local UDP ports instead of sandboxes.
//!
//! It is for trying a controller against a policy's `[osc]` schema (and for the OSC benchmark)
//! without starting anything: no child is spawned, only datagrams to `127.0.0.1:PORT`.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use vitrine_osc::RouterConfig;
use vitrine_policy::{LoadContext, NetRule, OscConfig, load_policy};

use crate::cli::OscCommand;
use crate::osc::{Delivery, Hub, StatsSnapshot};

pub fn run(cmd: OscCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OscCommand::Relay { listen, oscquery, allow_from, max_packet, targets } => {
            let allow_from =
                allow_from.iter().map(|r| parse_rule(r)).collect::<anyhow::Result<Vec<_>>>()?;
            let config = OscConfig { listen, allow_from, max_packet, oscquery_listen: oscquery };
            let targets =
                targets.iter().map(|t| parse_target(t)).collect::<anyhow::Result<Vec<_>>>()?;
            // One thread does it all: a datagram is received, routed and sent without waking
            // another thread, which keeps the added latency low on a small, busy box.
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(relay(config, targets))
        }
    }
}

/// `PATH=PORT`.
fn parse_target(s: &str) -> anyhow::Result<(PathBuf, u16)> {
    let Some((path, port)) = s.rsplit_once('=') else {
        bail!("target {s:?} is not POLICY=PORT (for example aurora.toml=9001)");
    };
    let port = port.parse().with_context(|| format!("port of target {s:?}"))?;
    Ok((PathBuf::from(path), port))
}

/// `local` or a CIDR such as `10.0.0.0/8`.
fn parse_rule(s: &str) -> anyhow::Result<NetRule> {
    if s == "local" {
        return Ok(NetRule::Local);
    }
    let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
    let addr: std::net::IpAddr =
        addr.parse().with_context(|| format!("--allow-from {s:?}: not `local` or a CIDR"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = if prefix.is_empty() {
        max
    } else {
        prefix.parse().with_context(|| format!("--allow-from {s:?}: prefix"))?
    };
    if prefix > max {
        bail!("--allow-from {s:?}: prefix longer than {max}");
    }
    Ok(NetRule::Cidr { addr, prefix })
}

async fn relay(config: OscConfig, targets: Vec<(PathBuf, u16)>) -> anyhow::Result<ExitCode> {
    let (events, mut blocked) = tokio::sync::mpsc::channel(64);
    let hub = Hub::start(&config, RouterConfig::default(), events)
        .await
        .context("starting the OSC listeners")?;
    // The relay only reads schemas; nothing is executed, so unsigned policies are fine here.
    let ctx = LoadContext { allow_unsigned: true, ..LoadContext::default() };
    for (path, port) in &targets {
        let policy = load_policy(path, &ctx).map_err(|d| anyhow::anyhow!("{d}"))?;
        let name = policy.visualization.name.as_str();
        let socket = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        hub.attach(name, &policy.osc, Delivery::Udp { socket, port: *port })?;
        eprintln!("vitrine: {name}: {}/* -> 127.0.0.1:{port}", policy.osc.prefix);
    }
    for addr in hub.local_addrs() {
        eprintln!("vitrine: OSC on udp {addr}");
    }
    if let Some(addr) = hub.oscquery_addr() {
        eprintln!("vitrine: OSCQuery on http://{addr}/");
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            Some(b) = blocked.recv() => eprintln!("vitrine: OSC source {} blocked for {:?}", b.source, b.cooldown),
        }
    }
    print_summary(&hub.stats());
    hub.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn print_summary(stats: &StatsSnapshot) {
    eprintln!("vitrine: received {} datagrams", stats.received_udp);
    for v in &stats.visualizations {
        let dropped: Vec<String> =
            v.dropped.iter().filter(|(_, n)| *n > 0).map(|(r, n)| format!("{r}={n}")).collect();
        eprintln!("vitrine: {}: forwarded {} dropped [{}]", v.name, v.forwarded, dropped.join(" "));
    }
    let rejected: Vec<String> =
        stats.rejected.iter().filter(|(_, n)| *n > 0).map(|(r, n)| format!("{r}={n}")).collect();
    eprintln!("vitrine: rejected [{}]", rejected.join(" "));
}
