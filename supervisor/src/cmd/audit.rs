//! `vitrine audit verify PATH`: check a hash-chained audit log and its head file.
//!
//! Exit 0 when the chain is intact, 1 with the first problem (its line, seq and what is wrong).
//! Notices (a chain restart the writer recorded, a missing or lagging head file) are printed as
//! warnings; `--strict` makes them fail too.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;
use vitrine_audit::{Head, Report};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify an audit log: exit 0 when intact, 1 naming the first edited, removed, inserted or
    /// reordered line, or a cut-off tail.
    Verify {
        /// The log, e.g. /var/log/vitrine/audit.jsonl (its head file is PATH.head).
        path: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Also fail on notices: chain restarts, a missing or lagging head file.
        #[arg(long)]
        strict: bool,
    },
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { path, json, strict } => verify(&path, json, strict),
    }
}

/// The `--json` output: the report plus the verdict.
#[derive(Serialize)]
struct JsonReport<'a> {
    path: &'a Path,
    intact: bool,
    ok: bool,
    #[serde(flatten)]
    report: &'a Report,
}

fn verify(path: &Path, json: bool, strict: bool) -> anyhow::Result<ExitCode> {
    let report =
        vitrine_audit::verify(path).with_context(|| format!("cannot verify {}", path.display()))?;
    let notices_fail = strict && !report.notices.is_empty();
    let ok = report.is_intact() && !notices_fail;
    if json {
        let out = JsonReport { path, intact: report.is_intact(), ok, report: &report };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_human(path, &report);
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_human(path: &Path, report: &Report) {
    let shown = path.display();
    for notice in &report.notices {
        eprintln!("{shown}: warning: {}", notice.message);
    }
    match &report.problem {
        Some(p) => {
            let seq = p.seq.map(|s| format!(" (seq {s})")).unwrap_or_default();
            println!("{shown}:{}: {}{seq}: {}", p.line, p.kind, p.message);
        }
        None => println!(
            "{shown}: intact: {} record(s){}",
            report.lines,
            report.last.map(describe_last).unwrap_or_default()
        ),
    }
}

fn describe_last(head: Head) -> String {
    format!(", last {head}")
}
