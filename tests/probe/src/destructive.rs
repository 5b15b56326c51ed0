//! Checks that try to hurt: they run only inside a fresh pid namespace and a cgroup namespace,
//! and refuse to run anywhere else.

use std::io::Write;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use vitrine_sandbox::probe::{Outcome, in_child};

use crate::Report;
use crate::process::{init_is_shim, visible_pids};

/// Inside a sandbox: pid 1 is vitrine's init and every cgroup line is the namespace's root.
fn contained() -> Result<(), String> {
    if !init_is_shim() || std::process::id() == 1 {
        return Err("pid 1 is not vitrine's init: not in a fresh pid namespace".into());
    }
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    if !cgroups.lines().all(|l| l.ends_with(":/")) {
        return Err(format!("not at the root of a cgroup namespace: {cgroups}"));
    }
    Ok(())
}

pub fn checks(report: &mut Report) {
    if let Err(why) = contained() {
        report.check("destructive checks", false, format!("refused to run: {why}"));
        return;
    }
    fork_bomb(report);
    memory_bomb(report);
    fill_tmp(report);
}

/// Forks until the cgroup's pids limit stops it, then cleans up.
fn fork_bomb(report: &mut Report) {
    let outcome = in_child(|| {
        // A process group of its own, so the cleanup below kills only the bomb.
        if nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).is_err() {
            return -1;
        }
        let mut n = 0i64;
        loop {
            match vitrine_sandbox::fork_single_threaded() {
                Ok(vitrine_sandbox::Forked::Child) => {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                    vitrine_sandbox::exit_immediately(0)
                }
                Ok(vitrine_sandbox::Forked::Parent { .. }) => n += 1,
                Err(e) => {
                    // Reap nothing: the children die with this process's group below.
                    let _ = kill(Pid::from_raw(0), Signal::SIGKILL);
                    return if e.raw_os_error() == Some(libc::EAGAIN) { n } else { -n - 1 };
                }
            }
            if n > 100_000 {
                return -1;
            }
        }
    });
    // The child kills its own process group (itself included) once fork fails.
    let ok = matches!(outcome, Ok(Outcome::Killed(9)) | Ok(Outcome::Returned(1..)));
    report.check("fork bomb stopped by the pids limit", ok, format!("{outcome:?}"));
}

/// Touches memory until the cgroup's memory limit makes the kernel kill the child.
fn memory_bomb(report: &mut Report) {
    let outcome = in_child(|| {
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        loop {
            blocks.push(vec![1u8; 16 << 20]);
            if blocks.len() > 4096 {
                return blocks.len() as i64;
            }
        }
    });
    let ok = matches!(outcome, Ok(Outcome::Killed(9)));
    report.check("memory bomb killed at the memory limit", ok, format!("{outcome:?}"));
}

/// Fills the private /tmp until it is full (its size is the policy's tmp_size).
fn fill_tmp(report: &mut Report) {
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    let result = std::fs::File::create("/tmp/fill").and_then(|mut f| {
        loop {
            f.write_all(&chunk)?;
            written += 1;
            if written > 1 << 20 {
                return Ok(());
            }
        }
    });
    let full = matches!(&result, Err(e) if e.raw_os_error() == Some(libc::ENOSPC));
    let _ = std::fs::remove_file("/tmp/fill");
    report.check("/tmp fill stops at its size", full, format!("{written} MiB written, {result:?}"));
}

/// `kill(-1, SIGKILL)`: reaches every process this one may signal, which inside the sandbox
/// is only the sandbox's own. Called last; the harness checks its outside process survived.
pub fn kill_everything(report: &mut Report) {
    if let Err(why) = contained() {
        report.check("kill(-1)", false, format!("refused to run: {why}"));
        return;
    }
    let before = visible_pids();
    let _ = std::io::stdout().flush();
    let r = kill(Pid::from_raw(-1), Signal::SIGKILL);
    println!("kill(-1, SIGKILL) from inside: {r:?}; sandbox pids before {before:?}");
}
