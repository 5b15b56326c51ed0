//! The chain continues across restarts, and a disagreement between the log and its head file
//! is written into the log instead of being papered over.

use std::fs;
use std::path::PathBuf;

use serde_json::json;
use vitrine_audit::{AuditLog, CHAIN_RESTART, verify};

fn fresh() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    (dir, path)
}

fn append_n(log: &mut AuditLog, n: u64) {
    for i in 0..n {
        log.append("policy-loaded", "aurora", json!({"n": i})).expect("append");
    }
}

#[test]
fn reopening_continues_the_chain_silently() {
    let (_dir, path) = fresh();
    let (mut log, _) = AuditLog::open(&path).expect("open");
    append_n(&mut log, 3);
    drop(log);
    let (mut log, resumed) = AuditLog::open(&path).expect("reopen");
    assert_eq!(resumed.restart, None);
    assert_eq!(resumed.from.map(|h| h.seq), Some(3));
    append_n(&mut log, 2);
    let report = verify(&path).expect("verify");
    assert!(report.is_intact() && report.notices.is_empty(), "{report:?}");
    assert_eq!(report.last.map(|h| h.seq), Some(5));
}

#[test]
fn a_truncated_log_restarts_the_chain_with_a_record() {
    let (_dir, path) = fresh();
    let (mut log, _) = AuditLog::open(&path).expect("open");
    append_n(&mut log, 5);
    drop(log);
    let text = fs::read_to_string(&path).expect("read");
    let kept: Vec<&str> = text.lines().take(3).collect();
    fs::write(&path, kept.join("\n") + "\n").expect("truncate");

    let (mut log, resumed) = AuditLog::open(&path).expect("reopen");
    let reason = resumed.restart.expect("a restart must be recorded");
    assert!(reason.contains("seq 3") && reason.contains("seq 5"), "{reason}");
    append_n(&mut log, 1);

    let text = fs::read_to_string(&path).expect("read");
    let restart_line = text.lines().nth(3).expect("line 4");
    assert!(restart_line.contains(CHAIN_RESTART), "{restart_line}");
    assert!(restart_line.contains(r#""head":{"hash""#), "{restart_line}");
    let report = verify(&path).expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.notices.len(), 1, "{report:?}");
    assert_eq!(report.notices[0].line, Some(4));
}

#[test]
fn a_torn_last_line_is_discarded_and_recorded() {
    let (_dir, path) = fresh();
    let (mut log, _) = AuditLog::open(&path).expect("open");
    append_n(&mut log, 2);
    drop(log);
    let mut text = fs::read_to_string(&path).expect("read");
    text.push_str(r#"{"ts":"2026-"#);
    fs::write(&path, text).expect("tear");
    let (_log, resumed) = AuditLog::open(&path).expect("reopen");
    assert!(resumed.restart.expect("restart").contains("partial line"));
    let report = verify(&path).expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.lines, 3);
}

#[test]
fn a_rotated_log_continues_in_the_new_file() {
    let (dir, path) = fresh();
    let (mut log, _) = AuditLog::open(&path).expect("open");
    append_n(&mut log, 2);
    let last = log.last();
    fs::rename(&path, dir.path().join("audit.jsonl.1")).expect("rotate");
    let resumed = log.reopen().expect("reopen");
    assert!(resumed.restart.is_some());
    append_n(&mut log, 1);
    let text = fs::read_to_string(&path).expect("read");
    assert!(text.lines().next().expect("line 1").contains(&hex_of(&last.hash)));
    let report = verify(&path).expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.last.map(|h| h.seq), Some(4));
}

#[test]
fn a_failed_head_update_is_reported_and_retried() {
    let (_dir, path) = fresh();
    let (mut log, _) = AuditLog::open(&path).expect("open");
    append_n(&mut log, 1);
    // A directory in place of the head file makes the head rewrite fail: the record is written,
    // the caller is told, and the next append retries.
    let head = vitrine_audit::head::head_path(&path);
    fs::remove_file(&head).expect("rm head");
    fs::create_dir(&head).expect("block head");
    let err = log.append("oom", "aurora", json!({})).expect_err("head cannot be replaced");
    assert!(err.record_written(), "{err}");
    fs::remove_dir(&head).expect("unblock head");
    log.append("oom", "aurora", json!({})).expect("append after recovery");
    let report = verify(&path).expect("verify");
    assert!(report.is_intact() && report.notices.is_empty(), "{report:?}");
    assert_eq!(report.last.map(|h| h.seq), Some(3));
}

fn hex_of(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_batch_is_one_chain_of_records() {
    let (_dir, path) = fresh();
    let (mut log, _) = AuditLog::open(&path).expect("open");
    append_n(&mut log, 1);
    let empty: [(&str, &str, serde_json::Value); 0] = [];
    assert_eq!(log.append_batch(empty).expect("empty batch").seq, 1);
    let batch = (0..5).map(|i| ("oom", "aurora", json!({"i": i})));
    let last = log.append_batch(batch).expect("batch");
    assert_eq!(last.seq, 6);
    assert_eq!(log.last().hash, last.hash);
    let report = verify(&path).expect("verify");
    assert!(report.is_intact() && report.notices.is_empty(), "{report:?}");
    assert_eq!(report.lines, 6);
    assert_eq!(report.last.map(|h| h.hash), Some(last.hash));
}
