//! `vitrine audit verify` on real logs: exit codes, the named line, `--json`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;
use vitrine_audit::AuditLog;

fn log_with(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (mut log, _) = AuditLog::open(&path).expect("open");
    for i in 0..n {
        log.append("control-action", "aurora", json!({"uid": 1000, "verb": "restart", "i": i}))
            .expect("append");
    }
    (dir, path)
}

fn vitrine(args: &[&str], path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vitrine")).args(args).arg(path).output().expect("run vitrine")
}

#[test]
fn an_intact_log_exits_0() {
    let (_dir, path) = log_with(4);
    let out = vitrine(&["audit", "verify"], &path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("intact: 4 record(s)"), "{stdout}");
}

#[test]
fn an_edited_line_exits_1_and_is_named() {
    let (_dir, path) = log_with(4);
    let text = std::fs::read_to_string(&path).expect("read");
    let edited: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| if i == 2 { l.replace("restart", "stop") } else { l.to_owned() })
        .collect();
    std::fs::write(&path, edited.join("\n") + "\n").expect("write");
    let out = vitrine(&["audit", "verify"], &path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(":3: edited (seq 3):"), "{stdout}");
}

#[test]
fn json_output_names_the_truncation() {
    let (_dir, path) = log_with(4);
    let text = std::fs::read_to_string(&path).expect("read");
    let kept: Vec<&str> = text.lines().take(2).collect();
    std::fs::write(&path, kept.join("\n") + "\n").expect("write");
    let out = vitrine(&["audit", "verify", "--json"], &path);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["intact"], false);
    assert_eq!(report["problem"]["kind"], "truncated");
    assert_eq!(report["problem"]["line"], 3);
    assert_eq!(report["last"]["seq"], 2);
}

#[test]
fn strict_fails_on_a_missing_head_file() {
    let (_dir, path) = log_with(2);
    std::fs::remove_file(vitrine_audit::head::head_path(&path)).expect("rm head");
    assert!(vitrine(&["audit", "verify"], &path).status.success());
    let out = vitrine(&["audit", "verify", "--strict"], &path);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: no head file"));
}

#[test]
fn a_missing_log_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = vitrine(&["audit", "verify"], &dir.path().join("nope.jsonl"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot verify"));
}
