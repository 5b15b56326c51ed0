//! The probe: runs inside a sandbox as a visualization and checks each restriction from inside.
//!
//! Arguments are `key=value` pairs naming what the harness prepared outside (a host TCP/UDP
//! listener, Unix sockets, granted and denied paths, the expected environment). Every check
//! prints one line, `ok   NAME: detail` or `FAIL NAME: detail`; any failure makes the probe
//! exit with code 1. `--destructive` adds the fork bomb, memory bomb, /tmp fill and `kill(-1)` checks, which
//! run only after the probe proved it is inside a fresh pid namespace and its own cgroup.
//!
//! `whoami` (used through a setuid copy of the probe) prints the effective uid and exits;
//! `ptrace` makes a forbidden syscall in the main process.

#![forbid(unsafe_code)]

mod destructive;
mod fs;
mod net;
mod process;
mod syscalls;

use std::collections::BTreeMap;

/// What the harness told the probe.
#[derive(Debug, Default)]
pub struct Args {
    /// Repeated keys (`deny=`, `env=`) keep every value.
    pub values: BTreeMap<String, Vec<String>>,
    pub destructive: bool,
}

impl Args {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn all(&self, key: &str) -> &[String] {
        self.values.get(key).map_or(&[], Vec::as_slice)
    }
}

/// Collects check results.
#[derive(Debug, Default)]
pub struct Report {
    failures: usize,
}

impl Report {
    pub fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Display) {
        if ok {
            println!("ok   {name}: {detail}");
        } else {
            self.failures += 1;
            println!("FAIL {name}: {detail}");
        }
    }
}

fn parse_args() -> Args {
    let mut args = Args::default();
    for arg in std::env::args().skip(1) {
        if arg == "--destructive" {
            args.destructive = true;
        } else if let Some((k, v)) = arg.split_once('=') {
            args.values.entry(k.to_owned()).or_default().push(v.to_owned());
        }
    }
    args
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("whoami") => {
            println!("euid={}", nix::unistd::geteuid());
            return;
        }
        // A forbidden syscall in the main process: the sandbox must kill the visualization.
        Some("ptrace") => {
            let r = vitrine_sandbox::probe::raw_syscall(libc::SYS_ptrace, [0; 6]);
            println!("ptrace returned {r:?}");
            std::process::exit(3);
        }
        _ => {}
    }
    let args = parse_args();
    let mut report = Report::default();
    // Threads first: the syscall checks fork, which is only sound while single-threaded.
    process::threads(&mut report);
    process::credentials(&mut report, &args);
    process::descriptors(&mut report, &args);
    process::environment(&mut report, &args);
    process::pid_namespace(&mut report);
    net::checks(&mut report, &args);
    fs::checks(&mut report, &args);
    syscalls::checks(&mut report);
    process::setuid(&mut report, &args);
    if args.destructive {
        destructive::checks(&mut report);
    }
    let failures = report.failures;
    println!("probe: {failures} failure(s)");
    if args.destructive {
        // Last: kill(-1) may only reach this sandbox's own processes; the harness checks that
        // its process outside, of the same uid, survived.
        destructive::kill_everything(&mut report);
    }
    std::process::exit(i32::from(failures > 0));
}
