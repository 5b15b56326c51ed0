//! An opt-in launch trace: one line per step on stderr, `vitrine-trace WHO STEP NS`, where NS is
//! CLOCK_MONOTONIC in nanoseconds, so stamps from the supervisor, the shim and a benchmark
//! harness line up (`bench/spawn.sh --trace`). Off unless `VITRINE_TRACE=1` is set for the
//! supervisor; the shim follows the plan's `trace` flag. Each line is one `write(2)`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static ON: AtomicBool = AtomicBool::new(false);

/// Turns the trace on or off for this process.
pub fn enable(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

/// Turns the trace on when `VITRINE_TRACE=1`; returns whether it is on.
pub fn enable_from_env() -> bool {
    let on = std::env::var_os("VITRINE_TRACE").is_some_and(|v| v == "1");
    enable(on);
    on
}

pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn now() -> u64 {
    crate::sys::clock::monotonic_ns()
}

/// Writes one stamp taken now.
pub fn stamp(who: &str, step: &str) {
    if enabled() {
        stamp_at(who, step, now());
    }
}

/// Writes one stamp taken earlier (e.g. before the trace was known to be on).
pub fn stamp_at(who: &str, step: &str, ns: u64) {
    if enabled() {
        let line = format!("vitrine-trace {who} {step} {ns}\n");
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}
