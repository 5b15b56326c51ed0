//! Measures the audit writer (records per second, each synced) and the verifier (lines per
//! second) in a directory of your choice:
//!
//!     cargo run --release -p vitrine-audit --example throughput -- /var/tmp 2000
//!
//! A single append costs about three syncs (the line, the head's temporary file, the
//! directory), so its rate is the disk's fsync rate divided by three; a batch pays that once.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use vitrine_audit::{AuditLog, verify};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "/var/tmp".into()));
    let records: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(1000);
    let scratch = dir.join(format!("vitrine-audit-throughput-{}", std::process::id()));
    std::fs::create_dir(&scratch)?;
    let path = scratch.join("audit.jsonl");

    let (mut log, _) = AuditLog::open(&path)?;
    let start = Instant::now();
    for i in 0..records {
        let detail = json!({"uid": 1000, "verb": "restart", "i": i});
        log.append("control-action", "aurora", detail)?;
    }
    let single = start.elapsed();
    let start = Instant::now();
    for chunk in 0..records.div_ceil(64) {
        let batch = (0..64)
            .map(|i| ("control-action", "aurora", json!({"uid": 1000, "i": chunk * 64 + i})));
        log.append_batch(batch)?;
    }
    let batched = start.elapsed();
    let lines = log.last().seq;
    let start = Instant::now();
    let report = verify(&path)?;
    let check = start.elapsed();
    let bytes = std::fs::metadata(&path)?.len();
    std::fs::remove_dir_all(&scratch)?;

    assert!(report.is_intact(), "{report:?}");
    println!("directory        {}", dir.display());
    println!("records          {lines} ({} bytes/line)", bytes / lines.max(1));
    println!("append (synced)  {:.0} records/s", records as f64 / single.as_secs_f64());
    println!("append batch 64  {:.0} records/s", (lines - records) as f64 / batched.as_secs_f64());
    println!("verify           {:.0} lines/s", lines as f64 / check.as_secs_f64());
    Ok(())
}
