//! Every kind of tampering is found, and the report names the first line it concerns.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;
use vitrine_audit::{AuditLog, ProblemKind, Report, verify};

/// A log of `n` records (seq 1..=n) in a fresh directory.
fn log_with(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (mut log, resumed) = AuditLog::open(&path).expect("open");
    assert_eq!(resumed.restart, None);
    for i in 1..=n {
        log.append("control-action", &format!("viz-{i}"), json!({"uid": 1000, "i": i}))
            .expect("append");
    }
    (dir, path)
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).expect("read").lines().map(str::to_owned).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).expect("write");
}

fn problem(report: &Report) -> (u64, Option<u64>, ProblemKind) {
    let p = report.problem.as_ref().expect("a problem must be reported");
    assert!(p.message.contains(&format!("line {}", p.line)) || p.kind == ProblemKind::Truncated);
    (p.line, p.seq, p.kind)
}

#[test]
fn an_untouched_log_is_intact() {
    let (_dir, path) = log_with(6);
    let report = verify(&path).expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.lines, 6);
    assert_eq!(report.last.map(|h| h.seq), Some(6));
    assert!(report.notices.is_empty(), "{report:?}");
}

#[test]
fn an_edited_line_is_named() {
    let (_dir, path) = log_with(6);
    let mut l = lines(&path);
    l[3] = l[3].replace("viz-4", "viz-x");
    write_lines(&path, &l);
    assert_eq!(problem(&verify(&path).expect("verify")), (4, Some(4), ProblemKind::Edited));
}

#[test]
fn an_edit_with_a_recomputed_hash_is_named() {
    let (_dir, path) = log_with(6);
    let mut l = lines(&path);
    // Rewrite line 3 as a self-consistent record with different content and the same prev.
    let original = vitrine_audit::record::parse_line(l[2].as_bytes()).expect("parse");
    let forged = vitrine_audit::Record::new(
        original.ts.clone(),
        original.seq,
        &original.kind,
        "someone-else",
        original.detail.clone(),
        original.prev,
    );
    l[2] = forged.line().trim_end().to_owned();
    write_lines(&path, &l);
    assert_eq!(problem(&verify(&path).expect("verify")), (3, Some(3), ProblemKind::Edited));
}

#[test]
fn a_removed_line_is_named() {
    let (_dir, path) = log_with(6);
    let mut l = lines(&path);
    l.remove(2);
    write_lines(&path, &l);
    let report = verify(&path).expect("verify");
    assert_eq!(problem(&report), (3, Some(4), ProblemKind::Removed));
}

#[test]
fn a_removed_first_line_is_named() {
    let (_dir, path) = log_with(4);
    let mut l = lines(&path);
    l.remove(0);
    write_lines(&path, &l);
    assert_eq!(problem(&verify(&path).expect("verify")), (1, Some(2), ProblemKind::Removed));
}

#[test]
fn an_inserted_copy_is_named() {
    let (_dir, path) = log_with(6);
    let mut l = lines(&path);
    let copy = l[1].clone();
    l.insert(4, copy);
    write_lines(&path, &l);
    assert_eq!(problem(&verify(&path).expect("verify")), (5, Some(2), ProblemKind::Inserted));
}

#[test]
fn an_inserted_forged_line_is_named() {
    let (_dir, path) = log_with(6);
    let mut l = lines(&path);
    let third = vitrine_audit::record::parse_line(l[2].as_bytes()).expect("parse");
    // A perfectly linked forgery after line 3: it passes by itself, line 5 exposes it.
    let forged = vitrine_audit::Record::new(
        third.ts.clone(),
        4,
        "control-action",
        "forged",
        json!({}),
        third.hash,
    );
    l.insert(3, forged.line().trim_end().to_owned());
    write_lines(&path, &l);
    assert_eq!(problem(&verify(&path).expect("verify")), (4, Some(4), ProblemKind::Inserted));
}

#[test]
fn a_handwritten_line_is_named() {
    let (_dir, path) = log_with(6);
    let mut l = lines(&path);
    l.insert(2, l[1].replace("viz-2", "viz-9"));
    write_lines(&path, &l);
    assert_eq!(problem(&verify(&path).expect("verify")), (3, Some(2), ProblemKind::Edited));
}

#[test]
fn swapped_lines_are_named() {
    let (_dir, path) = log_with(6);
    let mut l = lines(&path);
    l.swap(2, 3);
    write_lines(&path, &l);
    assert_eq!(problem(&verify(&path).expect("verify")), (3, Some(4), ProblemKind::Reordered));
}

#[test]
fn a_truncated_tail_is_found_through_the_head_file() {
    let (_dir, path) = log_with(6);
    let mut l = lines(&path);
    l.truncate(4);
    write_lines(&path, &l);
    let report = verify(&path).expect("verify");
    assert_eq!(problem(&report), (5, None, ProblemKind::Truncated));
    assert!(report.problem.expect("problem").message.contains("2 record(s) cut off"));
}

#[test]
fn a_partial_last_line_is_named() {
    let (_dir, path) = log_with(3);
    let text = fs::read_to_string(&path).expect("read");
    fs::write(&path, &text[..text.len() - 20]).expect("write");
    let report = verify(&path).expect("verify");
    assert_eq!(problem(&report), (3, None, ProblemKind::Malformed));
    assert!(report.problem.expect("problem").message.contains("partial line"));
}

#[test]
fn an_emptied_log_is_truncated() {
    let (_dir, path) = log_with(3);
    fs::write(&path, "").expect("write");
    assert_eq!(problem(&verify(&path).expect("verify")), (1, None, ProblemKind::Truncated));
}

#[test]
fn a_missing_head_file_is_a_notice() {
    let (_dir, path) = log_with(3);
    fs::remove_file(vitrine_audit::head::head_path(&path)).expect("rm head");
    let report = verify(&path).expect("verify");
    assert!(report.is_intact());
    assert_eq!(report.notices.len(), 1, "{report:?}");
}
