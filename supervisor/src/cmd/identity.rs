//! `vitrine identity show|rotate`.

use std::process::ExitCode;

use clap::Subcommand;
use vitrine_peer::{Identity, IdentityOptions};

use crate::cli::ConnectArgs;
use crate::cmd::peers::{load_config, socket};
use crate::peering::{self, PeerRequest, PeerResponse};

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Show this box's peer ID (the SHA-256 of its public key).
    Show {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Replace this box's key; the old key vouches for the new one to every connected peer.
    Rotate {
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

pub fn run(cmd: IdentityCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        IdentityCommand::Show { json, connect } => show(json, &connect),
        IdentityCommand::Rotate { connect } => rotate(&connect),
    }
}

fn show(json: bool, connect: &ConnectArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(connect)?;
    let opts = IdentityOptions::for_state_dir(&config.state_dir);
    let Some(ident) = Identity::load(&opts)? else {
        anyhow::bail!(
            "no identity in {} yet; `vitrine serve` creates one when [peering] is enabled",
            opts.dir.display()
        );
    };
    let source = if Identity::from_credential(&opts) {
        "systemd credential vitrine-identity".to_owned()
    } else {
        opts.dir.join("key.pem").display().to_string()
    };
    if json {
        let v = serde_json::json!({ "id": ident.id().to_string(), "key": source });
        println!("{v}");
    } else {
        println!("{}", ident.id());
        println!("key: {source}");
    }
    Ok(ExitCode::SUCCESS)
}

fn rotate(connect: &ConnectArgs) -> anyhow::Result<ExitCode> {
    let path = socket(connect)?;
    let answer = peering::request(&path, &PeerRequest::Rotate {}).map_err(|e| {
        e.context(
            "rotation needs the running daemon, so the old key can vouch for the new one over live links; \
             without it, removing the identity directory creates an unvouched key that every peer must pair with again",
        )
    })?;
    let PeerResponse::Rotated { old, new, vouched, missed } = answer else {
        anyhow::bail!("unexpected answer: {answer:?}");
    };
    println!("rotated {old}\n     to {new}");
    println!("{} peer(s) re-pinned the new key", vouched.len());
    for m in &missed {
        println!("no confirmation from {m}: it will refuse this box until paired again");
    }
    Ok(if missed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
