//! `vitrine policy check|explain|schema|learn` (learning lives in `crate::learn`).
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
        PolicyCommand::Learn {
            out,
            force,
            duration,
            base,
            allow_write,
            user,
            name,
            env,
            config,
            command,
        } => crate::learn::run(crate::learn::LearnArgs {
            out,
            force,
            duration,
            base,
            allow_write,
            user,
            name,
            env,
            config,
            command,
        }),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failing unwrap is a failing test.
mod tests {
    use super::*;

    fn repo(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
    }

    /// A configuration that allows nothing special, so the host's /etc/vitrine does not matter.
    fn config() -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "allow_unsigned = false\n").unwrap();
        f
    }

    #[test]
    fn check_passes_the_shipped_examples() {
        let c = config();
        let code = check(&[repo("policies/examples")], Some(c.path()));
        assert_eq!(code, ExitCode::SUCCESS);
        let code = check(&[repo("policies/examples/oscdump.toml")], Some(c.path()));
        assert_eq!(code, ExitCode::SUCCESS);
    }

    #[test]
    fn check_fails_on_any_error() {
        let c = config();
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[visualization]\nname = \"x\"\n").unwrap();
        let examples = repo("policies/examples");
        assert_eq!(check(&[examples.clone(), bad], Some(c.path())), ExitCode::from(1));
        assert_eq!(check(&[dir.path().join("missing.toml")], Some(c.path())), ExitCode::from(1));
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(check(&[empty.path().to_path_buf()], Some(c.path())), ExitCode::from(1));
        // A broken configuration is itself an error.
        std::fs::write(c.path(), "allow_unsigned = \"yes\"\n").unwrap();
        assert_eq!(check(&[examples], Some(c.path())), ExitCode::from(1));
    }
}
