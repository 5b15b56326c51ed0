//! vitrine: a process-isolating supervisor for installation boxes.
//!
//! This file only parses the command line and hands each verb to its module under `cmd/`;
//! `anyhow` lives here, at the edge, and every library below returns typed errors.

#![forbid(unsafe_code)]

mod audit_log;
mod cli;
mod cmd;
mod control;
mod daemon;
mod events;
mod launch;
mod learn;
mod metrics;
mod midi;
mod osc;
mod peering;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    if vitrine_sandbox::trace::enable_from_env() {
        vitrine_sandbox::trace::stamp("supervisor", "main");
    }
    let cli = cli::Cli::parse();
    vitrine_sandbox::trace::stamp("supervisor", "arguments");
    match cmd::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("vitrine: error: {err:#}");
            ExitCode::from(1)
        }
    }
}
