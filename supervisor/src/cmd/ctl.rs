//! `vitrine start|stop|restart NAME` and `vitrine reload`: clients of the control socket.

use std::process::ExitCode;

use crate::cli::ConnectArgs;
use crate::control::{Request, Response, client};
use crate::daemon::machine::State;

#[derive(Debug, Clone, Copy)]
pub enum Lifecycle {
    Start,
    Stop,
    Restart,
}

/// Sends the request and waits until the visualization settled; exit 1 when it did not end in
/// the state asked for (e.g. `start` of a visualization that failed at once).
pub fn lifecycle(verb: Lifecycle, name: String, connect: ConnectArgs) -> anyhow::Result<ExitCode> {
    let socket = client::socket_path(connect.socket.as_deref(), connect.config.as_deref())?;
    let (request, wanted) = match verb {
        Lifecycle::Start => (Request::Start { name }, State::Running),
        Lifecycle::Stop => (Request::Stop { name }, State::Stopped),
        Lifecycle::Restart => (Request::Restart { name }, State::Running),
    };
    match client::send(&socket, &request)?.single()? {
        Response::State { name, state } => {
            println!("{name}: {}", state.as_str());
            Ok(if state == wanted { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    }
}

/// Prints what the reload did; exit 1 when any file was rejected.
pub fn reload(connect: ConnectArgs) -> anyhow::Result<ExitCode> {
    let socket = client::socket_path(connect.socket.as_deref(), connect.config.as_deref())?;
    let Response::Reload(report) = client::send(&socket, &Request::Reload)?.single()? else {
        anyhow::bail!("unexpected answer from the daemon");
    };
    for (what, names) in
        [("added", &report.added), ("changed", &report.changed), ("removed", &report.removed)]
    {
        if !names.is_empty() {
            println!("{what}: {}", names.join(", "));
        }
    }
    for diagnostic in &report.rejected {
        eprintln!("{diagnostic}");
    }
    if report.added.is_empty()
        && report.changed.is_empty()
        && report.removed.is_empty()
        && report.rejected.is_empty()
    {
        println!("nothing changed");
    }
    Ok(if report.rejected.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
