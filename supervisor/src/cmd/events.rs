//! `vitrine events [--follow] [--json]`.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::ConnectArgs;
use crate::control::{Request, Response, client};
use crate::events::Envelope;

pub fn run(follow: bool, json: bool, connect: ConnectArgs) -> anyhow::Result<ExitCode> {
    let socket = client::socket_path(connect.socket.as_deref(), connect.config.as_deref())?;
    let mut answers = client::send(&socket, &Request::Events { follow })?;
    let mut out = std::io::stdout().lock();
    while let Some(answer) = answers.next_answer()? {
        match answer {
            Response::Event { event } if json => {
                writeln!(out, "{}", serde_json::to_string(&event)?)?
            }
            Response::Event { event } => writeln!(out, "{}", human(&event))?,
            Response::Lagged { missed } => writeln!(out, "... {missed} events missed")?,
            Response::Error { message } => anyhow::bail!("{message}"),
            other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `2026-05-01 12:00:03.120 exited name=aurora pid=42 exit={"type":"code","code":1}`: the
/// kind, then the event's fields in order, as people read them in a terminal.
fn human(env: &Envelope) -> String {
    let mut line = format!("{} ", timestamp(env.ts_ms));
    let value = serde_json::to_value(&env.event).unwrap_or_default();
    if let serde_json::Value::Object(fields) = value {
        line.push_str(fields.get("kind").and_then(|k| k.as_str()).unwrap_or("?"));
        for (key, v) in fields.iter().filter(|(k, _)| *k != "kind") {
            match v {
                serde_json::Value::String(s) => line.push_str(&format!(" {key}={s}")),
                other => line.push_str(&format!(" {key}={other}")),
            }
        }
    }
    line
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS.mmm` (UTC).
pub fn timestamp(ts_ms: u64) -> String {
    let secs = ts_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ts_ms % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_timestamps() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00.000");
        // 2024-02-29 12:34:56.789 UTC, a leap day.
        assert_eq!(timestamp(1_709_210_096_789), "2024-02-29 12:34:56.789");
    }
}
