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
        Command::Run { policy, osc_listen, config, repeat } => {
            let osc_listen = osc_listen
                .map(|a| a.parse())
                .transpose()
                .map_err(|e| anyhow::anyhow!("--osc-listen: {e}"))?;
            run::run(run::RunArgs { policy, osc_listen, config, repeat })
        }
        Command::Osc(cmd) => osc::run(cmd),
        Command::Midi(cmd) => crate::midi::run(cmd),
        Command::Audit(cmd) => audit::run(cmd),
    }
}
