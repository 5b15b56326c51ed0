//! One module per verb of the command line.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub(crate) mod audit;
mod osc;
mod policy;
mod run;

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Policy(cmd) => policy::run(cmd),
        Command::Run { policy, osc_listen: _, config, repeat } => {
            run::run(run::RunArgs { policy, config, repeat })
        }
        Command::Osc(cmd) => osc::run(cmd),
        Command::Audit(cmd) => audit::run(cmd),
    }
}
