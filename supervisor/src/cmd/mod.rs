//! One module per verb of the command line.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub(crate) mod audit;
mod ctl;
mod events;
pub(crate) mod identity;
mod logs;
mod osc;
pub(crate) mod peers;
mod policy;
mod run;
mod serve;
mod status;

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Policy(cmd) => policy::run(cmd),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Run { policy, osc_listen, config, repeat } => {
            let osc_listen = osc_listen
                .map(|a| a.parse())
                .transpose()
                .map_err(|e| anyhow::anyhow!("--osc-listen: {e}"))?;
            run::run(run::RunArgs { policy, osc_listen, config, repeat })
        }
        Command::Osc(cmd) => osc::run(cmd),
        Command::Midi(cmd) => crate::midi::run(cmd),
        Command::Peers(cmd) => peers::run(cmd),
        Command::Identity(cmd) => identity::run(cmd),
        Command::Serve { config } => serve::run(config),
        Command::Status { name, json, connect } => status::run(name, json, connect),
        Command::Start { name, connect } => ctl::lifecycle(ctl::Lifecycle::Start, name, connect),
        Command::Stop { name, connect } => ctl::lifecycle(ctl::Lifecycle::Stop, name, connect),
        Command::Restart { name, connect } => {
            ctl::lifecycle(ctl::Lifecycle::Restart, name, connect)
        }
        Command::Reload { connect } => ctl::reload(connect),
        Command::Logs { name, follow, connect } => logs::run(name, follow, connect),
        Command::Events { follow, json, connect } => events::run(follow, json, connect),
    }
}
