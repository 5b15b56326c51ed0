//! `vitrine status [NAME] [--json]`.

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::ConnectArgs;
use crate::control::{Request, Response, client};
use crate::daemon::unit::{UnitStatus, human_duration};

pub fn run(name: Option<String>, json: bool, connect: ConnectArgs) -> anyhow::Result<ExitCode> {
    let socket = client::socket_path(connect.socket.as_deref(), connect.config.as_deref())?;
    let Response::Status { visualizations } =
        client::send(&socket, &Request::Status { name })?.single()?
    else {
        anyhow::bail!("unexpected answer from the daemon");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&visualizations)?);
    } else {
        print!("{}", table(&visualizations));
    }
    Ok(ExitCode::SUCCESS)
}

const HEADER: [&str; 11] = [
    "NAME",
    "STATE",
    "PID",
    "UPTIME",
    "RESTARTS",
    "LAST EXIT",
    "CPU",
    "MEMORY",
    "PEAK",
    "PIDS",
    "OOM",
];

/// A table with one row per visualization, then the enforced layers and errors below it.
fn table(all: &[UnitStatus]) -> String {
    let rows: Vec<[String; 11]> = all.iter().map(row).collect();
    let mut widths = HEADER.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let padded: Vec<String> =
            cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(&HEADER.map(str::to_owned));
    for r in &rows {
        line(r);
    }
    for s in all {
        if !s.layers.is_empty() {
            out.push_str(&format!("{}: enforced {}\n", s.name, s.layers.join(", ")));
        }
        for port in &s.midi {
            out.push_str(&format!("{}: midi {port}\n", s.name));
        }
        if let Some(e) = &s.error {
            out.push_str(&format!("{}: {e}\n", s.name));
        }
        if let Some(fix) = &s.fix {
            out.push_str(&format!("{}: killed syscall: {fix}\n", s.name));
        }
    }
    if all.is_empty() {
        out.push_str("(no visualizations)\n");
    }
    out
}

fn row(s: &UnitStatus) -> [String; 11] {
    let dash = || "-".to_owned();
    let stats = s.stats.as_ref();
    [
        s.name.clone(),
        s.state.as_str().to_owned(),
        s.pid.map_or_else(dash, |p| p.to_string()),
        s.uptime_ms.map_or_else(dash, |ms| human_duration(Duration::from_millis(ms))),
        s.restarts.to_string(),
        s.last_exit.as_ref().map_or_else(dash, ToString::to_string),
        stats.map_or_else(dash, |st| format!("{:.1}s", st.cpu_seconds)),
        stats.map_or_else(dash, |st| bytes(st.memory_bytes)),
        stats.and_then(|st| st.memory_peak_bytes).map_or_else(dash, bytes),
        stats.map_or_else(dash, |st| st.pids.to_string()),
        stats.map_or(s.oom_exits, |st| st.oom_kills.max(s.oom_exits)).to_string(),
    ]
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n}B") } else { format!("{value:.1}{}", UNITS[unit]) }
}
