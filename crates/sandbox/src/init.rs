//! The sandbox's pid 1: reaps every orphan, forwards termination signals to the
//! visualization and reports how the visualization ended.

use std::os::fd::BorrowedFd;

use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::proto::{Report, send_report};

/// The signals the init (and the shim above it) handle synchronously with `sigwait`.
pub fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT] {
        set.add(s);
    }
    set
}

/// Blocks the handled signals; call before forking so no signal is lost in between.
pub fn block_signals() -> nix::Result<()> {
    handled_signals().thread_block()
}

/// Unblocks everything again (in the child that will exec).
pub fn unblock_all() -> nix::Result<()> {
    SigSet::all().thread_unblock()
}

/// How a waited-for process ended, as an exit code in the shell's convention.
pub fn exit_code(code: Option<i32>, signal: Option<i32>) -> i32 {
    match (code, signal) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
    }
}

/// Runs the init loop until the visualization `viz` ended; returns its exit code after
/// reporting it on `control` and killing whatever it left behind.
pub fn supervise(viz: Pid, control: BorrowedFd<'_>) -> i32 {
    let set = handled_signals();
    loop {
        let Ok(sig) = set.wait() else { continue };
        if sig != Signal::SIGCHLD {
            // Forwarded to the visualization only; it decides how to stop its own helpers.
            let _ = kill(viz, sig);
            continue;
        }
        if let Some((code, signal)) = reap(viz) {
            let _ = send_report(control, &Report::Exited { code, signal }, None);
            // Leftover processes die with the init anyway; killing them first keeps the
            // order deterministic.
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            return exit_code(code, signal);
        }
    }
}

/// Reaps every exited child; returns the visualization's end when it was among them.
fn reap(viz: Pid) -> Option<(Option<i32>, Option<i32>)> {
    let mut ended = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == viz => ended = Some((Some(code), None)),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == viz => {
                ended = Some((None, Some(sig as i32)))
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return ended,
            Ok(_) => {}
        }
    }
}
