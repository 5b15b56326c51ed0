//! A full disk never leaves a partial line, and the writer recovers once space is back.
//!
//! Needs root: it mounts a tiny tmpfs (two pages of data) to run out of space for real.

use std::path::Path;
use std::process::Command;

use serde_json::json;
use vitrine_audit::{AuditError, AuditLog, verify};

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Unmounts the tmpfs even when an assertion fails.
struct Mount<'a>(&'a Path);

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "vitrine-audit-test"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn enospc_leaves_a_valid_prefix_and_the_writer_recovers() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs to fill the disk needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(mount_tmpfs(dir.path(), "12k"), "mount tmpfs");
    let _mount = Mount(dir.path());
    let path = dir.path().join("audit.jsonl");
    let (mut log, _) = AuditLog::open(&path).expect("open");

    // Large records so that a few of them cross page boundaries and meet ENOSPC.
    let filler = "x".repeat(700);
    let mut errors = Vec::new();
    let mut written = 0u64;
    for i in 0..200 {
        match log.append("sandbox-violation", "aurora", json!({"i": i, "pad": filler})) {
            Ok(_) => written += 1,
            Err(e) => {
                if e.record_written() {
                    written += 1;
                }
                errors.push(e);
            }
        }
        let bytes = std::fs::read(&path).expect("read log");
        assert!(bytes.is_empty() || bytes.ends_with(b"\n"), "partial line after append {i}");
    }
    assert!(!errors.is_empty(), "the tiny tmpfs never filled up");
    // The log itself must have been refused at least once (not only its head file).
    assert!(
        errors.iter().any(|e| matches!(e, AuditError::Write(_) | AuditError::ShortWrite { .. })),
        "{errors:?}"
    );
    let report = verify(&path).expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.last.map(|h| h.seq), Some(written));

    // Space comes back: the same writer continues the same chain.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=1m"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    assert!(grown, "remount");
    log.append("oom", "aurora", json!({})).expect("append after space is back");
    let report = verify(&path).expect("verify");
    assert!(report.is_intact() && report.notices.is_empty(), "{report:?}");
    assert_eq!(report.last.map(|h| h.seq), Some(written + 1));
}
