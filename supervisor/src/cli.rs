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
