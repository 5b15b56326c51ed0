//! `vitrine logs NAME [--follow]`.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::ConnectArgs;
use crate::cmd::events::timestamp;
use crate::control::{Request, Response, client};

pub fn run(name: String, follow: bool, connect: ConnectArgs) -> anyhow::Result<ExitCode> {
    let socket = client::socket_path(connect.socket.as_deref(), connect.config.as_deref())?;
    let mut answers = client::send(&socket, &Request::Logs { name, follow })?;
    let mut out = std::io::stdout().lock();
    while let Some(answer) = answers.next_answer()? {
        match answer {
            Response::Log { line } => {
                let tag = if line.stream == "stdout" {
                    String::new()
                } else {
                    format!("[{}] ", line.stream)
                };
                writeln!(out, "{} {tag}{}", timestamp(line.ts_ms), line.line)?;
            }
            Response::Lagged { missed } => {
                writeln!(out, "... {missed} lines missed (output too fast)")?
            }
            Response::Error { message } => anyhow::bail!("{message}"),
            other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
