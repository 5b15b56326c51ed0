//! `vitrine policy check|explain|schema`.

use std::process::ExitCode;

use crate::cli::PolicyCommand;

pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Check { .. } | PolicyCommand::Explain { .. } | PolicyCommand::Schema => {
            anyhow::bail!("policy commands are being built")
        }
    }
}
