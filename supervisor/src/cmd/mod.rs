//! One module per verb of the command line.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

mod policy;

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Policy(cmd) => policy::run(cmd),
    }
}
