//! Helpers shared by the privileged cgroup tests.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use vitrine_cgroup::Manager;

/// Why these tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root to create cgroups".to_owned());
    }
    if !Path::new("/sys/fs/cgroup").exists() {
        return Some("no /sys/fs/cgroup on this host".to_owned());
    }
    None
}

/// Returns early from a test, saying why, when cgroups cannot be created here.
#[macro_export]
macro_rules! require_root {
    () => {
        if let Some(reason) = common::skip_reason() {
            eprintln!("skipped: {reason}");
            return;
        }
    };
}

/// A root name no other test (or a running supervisor) uses.
pub fn unique_root(test: &str) -> String {
    format!("vitrine-test-{}-{test}", std::process::id())
}

/// Removes the (empty) base directories a test's manager created.
pub fn remove_bases(manager: &Manager) {
    for base in manager.base_dirs() {
        if let Err(e) = std::fs::remove_dir(&base)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            panic!("cannot remove {}: {e}", base.display());
        }
    }
}

/// Starts `sh -c script` waiting on its stdin, so the caller can put it into a cgroup before
/// it does anything; [`go`] lets it continue.
pub fn spawn_waiting(script: &str) -> (Child, ChildStdin) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("read go; {script}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let stdin = child.stdin.take().expect("stdin");
    (child, stdin)
}

pub fn go(mut stdin: ChildStdin) {
    stdin.write_all(b"go\n").expect("release the child");
}

pub fn pid_of(child: &Child) -> i32 {
    i32::try_from(child.id()).expect("pid fits i32")
}
