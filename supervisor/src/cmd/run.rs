//! `vitrine run POLICY`: one visualization in the foreground, fully sandboxed.
//!
//! The child's stdout and stderr are this process's own. One line on stderr says what is
//! enforced; the exit code is the child's, or 128 + signal. SIGINT/SIGTERM stop the child
//! gracefully (SIGTERM, then after `stop_timeout` the whole cgroup is killed; a second signal
//! kills at once).

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use vitrine_policy::{LoadContext, load_config, load_policy};

use crate::launch::{self, Child, Exit, Launcher, Output};

/// What `vitrine run` was asked to do.
#[derive(Debug)]
pub struct RunArgs {
    pub policy: PathBuf,
    pub config: Option<PathBuf>,
    /// Forward validated OSC received on this address to the child (`--osc-listen`).
    pub osc_listen: Option<std::net::SocketAddr>,
    /// Run the visualization this many times in a row, reusing the prepared binary and filter,
    /// and print spawn-time percentiles (benchmarks restarts).
    pub repeat: Option<u32>,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // Stop signals are taken synchronously through a signalfd; they must be blocked before any
    // thread exists so that every thread inherits the mask.
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGINT);
    stop.add(Signal::SIGTERM);
    stop.thread_block().context("blocking SIGINT/SIGTERM")?;
    let signals = SignalFd::with_flags(&stop, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .context("creating a signalfd")?;

    let config = load_config(args.config.as_deref()).map_err(|d| anyhow::anyhow!("{d}"))?;
    let policy = load_policy(&args.policy, &LoadContext::from_config(&config))
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let name = policy.visualization.name.to_string();
    let launcher = Launcher::start(launch::Options::run()).map_err(chain)?;
    for missing in launcher.cgroups().missing() {
        eprintln!("vitrine: {name}: warning: {missing}");
    }
    let prepared = launch::prepare(&policy, &config).map_err(chain)?;
    if let Some(n) = args.repeat {
        return repeat(&launcher, &prepared, n, &name);
    }
    let mut child = launcher.spawn(&prepared, Output::Inherit).map_err(chain)?;
    eprintln!("vitrine: {name}: started, {}", child.enforced().summary());
    for warning in child.enforced().warnings() {
        eprintln!("vitrine: {name}: warning: {warning}");
    }
    // With --osc-listen or [midi], validated OSC and MIDI are forwarded to the child; either
    // way the channel stays open for the child's lifetime.
    let forward = args.osc_listen.is_some() || policy.midi.is_some();
    let (osc, _ipc) = match (forward, child.take_ipc()) {
        (true, Some(ipc)) => {
            let (listen, midi) = (args.osc_listen, policy.midi.as_ref());
            let hub = crate::osc::Foreground::start(
                &config.osc,
                listen,
                &name,
                &policy.osc,
                midi,
                ipc.into(),
            )
            .context("starting OSC/MIDI forwarding")?;
            (Some(hub), None)
        }
        (_, ipc) => (None, ipc),
    };
    let exit = supervise(&mut child, &signals, prepared.stop_timeout());
    if let Some(osc) = osc {
        osc.stop();
    }
    report_exit(&name, &exit);
    if let Exit::Seccomp { syscall, .. } = &exit {
        if let Some(fix) = crate::events::seccomp_fix(syscall, &policy) {
            eprintln!("vitrine: {name}: {fix}");
        }
    }
    Ok(ExitCode::from(u8::try_from(exit.code()).unwrap_or(255)))
}

/// Waits for the child, turning stop signals into a graceful stop.
fn supervise(child: &mut Child, signals: &SignalFd, stop_timeout: Duration) -> Exit {
    let mut deadline: Option<Instant> = None;
    loop {
        let timeout = deadline.map_or(PollTimeout::NONE, |d| {
            let ms = d.saturating_duration_since(Instant::now()).as_millis();
            PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
        });
        let mut fds = [
            PollFd::new(child.pidfd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        let _ = poll(&mut fds, timeout);
        let child_done = fds[0].revents().is_some_and(|r| !r.is_empty());
        let got_signal = fds[1].revents().is_some_and(|r| !r.is_empty());
        if child_done {
            return child.wait();
        }
        if got_signal && matches!(signals.read_signal(), Ok(Some(_))) {
            if deadline.is_none() {
                child.terminate();
                deadline = Some(Instant::now() + stop_timeout);
            } else {
                child.kill_all();
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            child.kill_all();
        }
    }
}

fn report_exit(name: &str, exit: &Exit) {
    match exit {
        Exit::Clean => {}
        Exit::Code(c) => eprintln!("vitrine: {name}: exited with code {c}"),
        other => eprintln!("vitrine: {name}: {other}"),
    }
}

/// Spawns and waits `n` times; prints spawn-time percentiles (fork of the shim to exec of the
/// visualization) on stderr. The exit code is the last run's.
fn repeat(
    launcher: &Launcher,
    prepared: &launch::Prepared,
    n: u32,
    name: &str,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(n > 0, "--repeat needs at least one run");
    let mut times = Vec::with_capacity(n as usize);
    let mut last = Exit::Clean;
    for _ in 0..n {
        let mut child = launcher.spawn(prepared, Output::Inherit).map_err(chain)?;
        times.push(child.spawn_time());
        last = child.wait();
    }
    times.sort();
    let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)].as_secs_f64() * 1e3;
    eprintln!("vitrine: {name}: {n} spawns, p50 {:.2} ms, p99 {:.2} ms", pct(50), pct(99));
    Ok(ExitCode::from(u8::try_from(last.code()).unwrap_or(255)))
}

/// The whole error chain on one line (`anyhow` is only used at this edge).
fn chain(e: launch::LaunchError) -> anyhow::Error {
    anyhow::Error::new(e)
}
