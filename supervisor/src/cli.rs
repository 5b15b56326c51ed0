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
        /// Benchmarking: start once, then restart N times as the daemon does (verified binary
        /// and filter reused, a sandbox primed after each exit), and print restart-time
        /// percentiles.
        #[arg(long, value_name = "N", hide = true)]
        repeat: Option<u32>,
    },
    /// OSC tools: try controllers against policies' `[osc]` schemas without a sandbox.
    #[command(subcommand)]
    Osc(OscCommand),
    /// MIDI tools: list ALSA input ports, see what a policy's `[midi]` table lets through.
    #[command(subcommand)]
    Midi(crate::midi::MidiCommand),
    /// Peering: the boxes this one trusts; pair with a new box, forget one.
    #[command(subcommand)]
    Peers(crate::cmd::peers::PeersCommand),
    /// This box's peer identity: show it, or rotate its key.
    #[command(subcommand)]
    Identity(crate::cmd::identity::IdentityCommand),
    /// Run the daemon: every visualization of the box, restarted by policy (systemd Type=notify).
    Serve {
        /// The daemon configuration; default /etc/vitrine/vitrine.toml (all defaults if absent).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Show the state of every visualization, or of one.
    Status {
        name: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Start a visualization (also after it failed); waits until it runs or fails.
    Start {
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Stop a visualization: SIGTERM, then its whole cgroup is killed after `stop_timeout`.
    Stop {
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Stop and start a visualization again, clearing its backoff.
    Restart {
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Read the policy directory again: changed visualizations restart, invalid files keep the
    /// running version.
    Reload {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show a visualization's recent output.
    Logs {
        name: String,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show the daemon's recent events.
    Events {
        /// Keep printing new events.
        #[arg(short, long)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
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
    /// Run a program once in a learning sandbox and draft a policy from what it used.
    ///
    /// Same namespaces, masks, limits and user as a real run, but every syscall outside a hot
    /// set is recorded (and allowed) instead of killed; the filesystem is readable, writes go
    /// only to the private /tmp and --allow-write paths, and there is no network. Ends when the
    /// program exits or the duration elapses.
    Learn {
        /// Where to write the draft; default ./NAME.toml (refused if it exists).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace the file at --out if it exists.
        #[arg(long)]
        force: bool,
        /// Stop the program after this long (e.g. 30s, 2m).
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Presets the draft always includes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "system-libs")]
        base: Vec<String>,
        /// A directory or file the program may write while learning (and that the draft may grant).
        #[arg(long, value_name = "PATH")]
        allow_write: Vec<PathBuf>,
        /// The account the program runs as (name or uid, never root).
        #[arg(long, default_value = "nobody")]
        user: String,
        /// The visualization name in the draft; default from the program's file name.
        #[arg(long)]
        name: Option<String>,
        /// KEY=VALUE in the program's environment (repeatable); it is otherwise empty.
        #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env)]
        env: Vec<(String, String)>,
        /// The daemon configuration; default /etc/vitrine/vitrine.toml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The program and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    Ok((k.to_owned(), v.to_owned()))
}

/// `500ms`, `30s`, `2m`, `1h`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("`{s}` is not a duration like 30s"))?;
    let ms = match unit {
        "ms" => n,
        "s" | "" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(format!("`{s}`: unknown unit (use ms, s, m or h)")),
    };
    Ok(std::time::Duration::from_millis(ms))
}

/// How client verbs find the daemon's control socket.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// The control socket; overrides the configuration.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// The daemon configuration whose `[control] socket` to use; default /etc/vitrine/vitrine.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
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
