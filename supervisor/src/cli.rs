//! The command line of DESIGN §5, as clap derive types. Verbs, flags and exit codes are a
//! contract: add, never rename.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A process-isolating supervisor for installation boxes.
#[derive(Debug, Parser)]
#[command(name = "vitrine", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate, explain and describe policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run one visualization in the foreground, fully sandboxed; exit code = the child's, or
    /// 128+signal.
    Run {
        /// The visualization's policy file.
        policy: PathBuf,
        /// Accept OSC for this visualization on ADDR (e.g. 127.0.0.1:9000).
        #[arg(long, value_name = "ADDR")]
        osc_listen: Option<String>,
        /// The daemon configuration (for `allow_unsigned`); default /etc/vitrine/vitrine.toml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Benchmarking: run N times, reusing the verified binary and the filter, and print
        /// spawn-time percentiles.
        #[arg(long, value_name = "N", hide = true)]
        repeat: Option<u32>,
    },
    /// OSC tools: try controllers against policies' `[osc]` schemas without a sandbox.
    #[command(subcommand)]
    Osc(OscCommand),
    /// MIDI tools: list ALSA input ports, see what a policy's `[midi]` table lets through.
    #[command(subcommand)]
    Midi(crate::midi::MidiCommand),
    /// The hash-chained audit log: check that no record was edited, removed, inserted or
    /// reordered.
    #[command(subcommand)]
    Audit(crate::cmd::audit::AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files or directories; exit 0 when all are valid, 1 otherwise.
    Check {
        /// Policy files, or directories whose *.toml files are policies.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The daemon configuration (for `allow_unsigned`); default /etc/vitrine/vitrine.toml.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Show the effective sandbox of a policy and its exposure score.
    Explain {
        path: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the policy format (for editors such as taplo).
    Schema,
}

#[derive(Debug, Subcommand)]
pub enum OscCommand {
    /// Validate and route OSC exactly like the daemon, but deliver to local UDP ports instead
    /// of sandboxed visualizations (nothing is started).
    Relay {
        /// UDP address to listen on (repeatable).
        #[arg(long, required = true)]
        listen: Vec<std::net::SocketAddr>,
        /// Serve the OSCQuery description of the policies on this TCP address.
        #[arg(long)]
        oscquery: Option<std::net::SocketAddr>,
        /// Allowed senders: `local` or a CIDR such as 10.0.0.0/8 (repeatable).
        #[arg(long = "allow-from", default_value = "local")]
        allow_from: Vec<String>,
        /// Larger datagrams are refused.
        #[arg(long, default_value_t = 8192)]
        max_packet: usize,
        /// POLICY=PORT: the policy's parameters are delivered to 127.0.0.1:PORT.
        #[arg(required = true)]
        targets: Vec<String>,
    },
}
