//! One module per verb of the command line.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub(crate) mod audit;
mod osc;
mod policy;

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Policy(cmd) => policy::run(cmd),
        Command::Osc(cmd) => osc::run(cmd),
        Command::Audit(cmd) => audit::run(cmd),
    }
}
