//! `vitrine serve [--config PATH]`: the daemon (systemd Type=notify).

use std::path::PathBuf;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use crate::daemon;
use crate::events::EventBus;

pub fn run(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    init_logging();
    let config =
        vitrine_policy::load_config(config.as_deref()).map_err(|d| anyhow::anyhow!("{d}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // Two workers are plenty for a box's handful of visualizations and keep the RSS small.
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let bus = EventBus::new();
        // Companions first, so the audit log and metrics see every event from here on.
        let companions = daemon::companions::Companions::start(&config, &bus).await?;
        let launcher = daemon::real::RealLauncher::new(&config, &bus)?;
        daemon::serve::serve(&config, std::sync::Arc::new(launcher), bus, companions).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// journald when started by systemd with its stdout/stderr on the journal (`$JOURNAL_STREAM`),
/// so that the visualization's name becomes a journal field; else human-readable stderr.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        tracing_subscriber::registry().with(filter).with(journald).init();
        return;
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
}
