//! `vitrine policy check|explain|schema`.
//!
//! `check` prints `PATH: ok` for every valid policy on stdout and every diagnostic on stderr,
//! and exits 1 when anything was wrong, so that it can gate a deployment script.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use vitrine_policy::{Diagnostics, LoadContext, load_config, load_policy, load_policy_dir};

use crate::cli::PolicyCommand;

pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Check { paths, config } => Ok(check(&paths, config.as_deref())),
        PolicyCommand::Explain { path, json } => explain(&path, json),
        PolicyCommand::Schema => {
            let schema = serde_json::to_string_pretty(&vitrine_policy::schema())
                .context("serializing the schema")?;
            println!("{schema}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The load context from the daemon configuration; a broken configuration is itself reported.
fn context(config: Option<&Path>) -> Result<LoadContext, Diagnostics> {
    load_config(config).map(|c| LoadContext::from_config(&c))
}

fn check(paths: &[PathBuf], config: Option<&Path>) -> ExitCode {
    let ctx = match context(config) {
        Ok(ctx) => ctx,
        Err(diags) => {
            eprintln!("{diags}");
            return ExitCode::from(1);
        }
    };
    let mut failed = false;
    for path in paths {
        let (valid, diags) = if path.is_dir() {
            load_policy_dir(path, &ctx)
        } else {
            match load_policy(path, &ctx) {
                Ok(p) => (vec![p], Diagnostics::default()),
                Err(d) => (Vec::new(), d),
            }
        };
        for p in &valid {
            println!("{}: ok", p.source.display());
        }
        if !diags.is_empty() {
            eprintln!("{diags}");
            failed = true;
        }
        if path.is_dir() && valid.is_empty() && diags.is_empty() {
            eprintln!("{}: error: no *.toml policy files in this directory", path.display());
            failed = true;
        }
    }
    if failed { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

fn explain(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let ctx = context(None);
    let policy = match ctx.and_then(|ctx| load_policy(path, &ctx)) {
        Ok(p) => p,
        Err(diags) => {
            eprintln!("{diags}");
            return Ok(ExitCode::from(1));
        }
    };
    let explanation = vitrine_policy::explain(&policy);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&explanation).context("serializing the explanation")?
        );
    } else {
        print!("{explanation}");
    }
    Ok(ExitCode::SUCCESS)
}
