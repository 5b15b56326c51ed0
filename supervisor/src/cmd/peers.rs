//! `vitrine peers list|pair|accept ID --code N|forget ID`.
//!
//! Pairing and accepting need the running daemon (the TLS session lives there). Listing and
//! forgetting also work without it, on `state_dir/peers.toml` directly: the daemon applies a
//! changed file within a second, so an offline forget is never lost.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use vitrine_peer::{BanList, PeerId, Role, TrustStore};

use crate::cli::ConnectArgs;
use crate::peering::{self, PeerRequest, PeerResponse, PeerRow};

#[derive(Debug, Subcommand)]
pub enum PeersCommand {
    /// List the trusted peers (link, last seen, what they run, bans) and forgotten keys.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Open the pairing window on this box (run it on both boxes) and show the codes to compare.
    Pair {
        /// Also dial this box (`host:port`) instead of waiting for discovery or for it to dial.
        addr: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Confirm a pairing once the code is the same on both boxes.
    Accept {
        /// The other box's peer ID, as `vitrine peers pair` shows it.
        id: String,
        /// The six-digit code shown on both boxes.
        #[arg(long)]
        code: String,
        /// What the other box may do here: `observer` (status only) or `controller` (send OSC).
        #[arg(long, default_value = "observer", value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Remove a peer's pin, close its link at once, and refuse it until it is paired again.
    Forget {
        id: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

pub fn run(cmd: PeersCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PeersCommand::List { json, connect } => list(json, &connect),
        PeersCommand::Pair { addr, connect } => pair(addr, &connect),
        PeersCommand::Accept { id, code, role, connect } => accept(&id, &code, role, &connect),
        PeersCommand::Forget { id, connect } => forget(&id, &connect),
    }
}

/// The peer control socket, beside the control socket `connect` designates.
pub fn socket(connect: &ConnectArgs) -> anyhow::Result<PathBuf> {
    if let Some(s) = &connect.socket {
        return Ok(s.with_file_name("peers.sock"));
    }
    let config = load_config(connect)?;
    Ok(peering::socket_path(&config.control))
}

pub fn load_config(connect: &ConnectArgs) -> anyhow::Result<vitrine_policy::Config> {
    vitrine_policy::load_config(connect.config.as_deref()).map_err(|d| anyhow::anyhow!("{d}"))
}

/// Whether a daemon answers on the peer socket.
fn daemon_running(path: &std::path::Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

fn trust_path(connect: &ConnectArgs) -> anyhow::Result<PathBuf> {
    Ok(load_config(connect)?.state_dir.join("peers.toml"))
}

fn list(json: bool, connect: &ConnectArgs) -> anyhow::Result<ExitCode> {
    let path = socket(connect)?;
    let (rows, banned, forgotten, dropped) = if daemon_running(&path) {
        match peering::request(&path, &PeerRequest::List {})? {
            PeerResponse::Peers { peers, banned, forgotten, dropped } => {
                (peers, banned, forgotten, dropped)
            }
            other => anyhow::bail!("unexpected answer: {other:?}"),
        }
    } else {
        let config = load_config(connect)?;
        let trust = config.state_dir.join("peers.toml");
        let store = TrustStore::load(&trust)?;
        let now = std::time::SystemTime::now();
        let mut bans = BanList::load(&config.state_dir.join("peer-bans.toml"))?;
        bans.prune(now);
        if !json {
            eprintln!(
                "(the daemon is not running: showing {} without link state)",
                trust.display()
            );
        }
        let rows = store
            .peers
            .iter()
            .map(|e| PeerRow {
                // A ban on any key of the peer (current or rotated away from) is its ban.
                banned: bans.active(&store.keys_of(&e.id), now).map(peering::ban_row),
                id: e.id.to_string(),
                name: e.name.clone(),
                role: e.role,
                addresses: e.addresses.clone(),
                connected: None,
                last_seen: None,
                down: None,
                status: None,
            })
            .collect();
        let forgotten = store.forgotten.iter().map(peering::forgotten_row).collect();
        let bans = bans.bans.iter().map(peering::ban_row).collect();
        (rows, bans, forgotten, peering::Dropped::default())
    };
    if json {
        let doc = serde_json::json!({
            "peers": rows, "banned": banned, "forgotten": forgotten, "dropped": dropped,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no trusted peers");
    }
    if dropped != peering::Dropped::default() {
        let peering::Dropped { relay, status, osc } = dropped;
        println!(
            "dropped: {relay} relayed OSC over peers' rates, {status} status, {osc} inbound OSC"
        );
    }
    for r in &rows {
        let link = match (&r.connected, &r.down) {
            (Some(addr), _) => format!("up {addr}"),
            (None, Some(why)) => format!("down: {why}"),
            (None, None) => "-".into(),
        };
        println!("{}  {:<16} {:<10} {}", r.id, r.name, r.role.to_string(), link);
        if let Some(seen) = &r.last_seen {
            println!("    last seen {seen}");
        }
        match r.status.as_ref().map(|s| (&s.received, &s.doc)) {
            Some((at, Some(doc))) => {
                let runs: Vec<String> = doc
                    .visualizations
                    .iter()
                    .map(|v| format!("{} ({})", v.name, v.state))
                    .collect();
                let runs = if runs.is_empty() { "nothing".to_owned() } else { runs.join(", ") };
                println!(
                    "    runs {runs}; vitrine {} on {} (status of {at})",
                    doc.version, doc.name
                );
            }
            Some((at, None)) => println!("    sent an unreadable status at {at}"),
            None => {}
        }
        if let Some(b) = &r.banned {
            println!("    banned until {}: {}", b.until, b.reason);
        }
    }
    let pinned: BTreeSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let others: Vec<_> = banned.iter().filter(|b| !pinned.contains(b.id.as_str())).collect();
    if !others.is_empty() {
        println!("\nbanned (not pinned):");
        for b in others {
            println!("{}  until {}: {}", b.id, b.until, b.reason);
        }
    }
    if !forgotten.is_empty() {
        println!("\nforgotten (refused until paired again):");
        for f in &forgotten {
            println!("{}  since {}", f.id, f.at);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn pair(addr: Option<String>, connect: &ConnectArgs) -> anyhow::Result<ExitCode> {
    let path = socket(connect)?;
    let window = match peering::request(&path, &PeerRequest::Pair { addr })? {
        PeerResponse::Pairing { window_secs } => Duration::from_secs(window_secs),
        other => anyhow::bail!("unexpected answer: {other:?}"),
    };
    println!(
        "pairing window open for {}s: run `vitrine peers pair` on the other box too",
        window.as_secs()
    );
    let until = Instant::now() + window;
    let mut shown = BTreeSet::new();
    while Instant::now() < until {
        if let PeerResponse::Pending { pairings } =
            peering::request(&path, &PeerRequest::Pending {})?
        {
            for p in pairings {
                if shown.insert((p.id.clone(), p.code)) {
                    println!(
                        "\n{} ({}) at {}\n  code: {:03} {:03}\n  if the other box shows the same code: vitrine peers accept {} --code {:06} [--role controller]",
                        p.name,
                        p.id,
                        p.addr,
                        p.code / 1000,
                        p.code % 1000,
                        p.id,
                        p.code
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    println!("pairing window closed");
    Ok(ExitCode::SUCCESS)
}

fn accept(id: &str, code: &str, role: Role, connect: &ConnectArgs) -> anyhow::Result<ExitCode> {
    let peer: PeerId = id.parse().with_context(|| format!("`{id}` is not a peer ID"))?;
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let code: u32 = match digits.parse() {
        Ok(n) if digits.len() == 6 => n,
        _ => anyhow::bail!("the code has six digits, as shown by `vitrine peers pair`"),
    };
    let path = socket(connect)?;
    let request = PeerRequest::Accept { id: peer.to_string(), code, role };
    if let PeerResponse::Done { message } = peering::request(&path, &request)? {
        println!("{message}");
    }
    Ok(ExitCode::SUCCESS)
}

fn forget(id: &str, connect: &ConnectArgs) -> anyhow::Result<ExitCode> {
    let peer: PeerId = id.parse().with_context(|| format!("`{id}` is not a peer ID"))?;
    let path = socket(connect)?;
    if daemon_running(&path) {
        if let PeerResponse::Done { message } =
            peering::request(&path, &PeerRequest::Forget { id: peer.to_string() })?
        {
            println!("{message}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let trust = trust_path(connect)?;
    let mut store = TrustStore::load(&trust)?;
    let existed = store.forget(&peer, std::time::SystemTime::now());
    store.save(&trust)?;
    let what = if existed { "forgot" } else { "was not pinned; recorded as forgotten" };
    println!("{peer} {what} in {} (the daemon is not running)", trust.display());
    Ok(ExitCode::SUCCESS)
}
