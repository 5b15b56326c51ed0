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
use vitrine_sandbox::trace;

use crate::launch::{self, Child, Exit, Launcher, Output};

/// What `vitrine run` was asked to do.
#[derive(Debug)]
pub struct RunArgs {
    pub policy: PathBuf,
    pub config: Option<PathBuf>,
    /// Forward validated OSC received on this address to the child (`--osc-listen`).
    pub osc_listen: Option<std::net::SocketAddr>,
    /// Start the visualization, then restart it this many times as the daemon does, and print
    /// restart-time percentiles (benchmarks restarts).
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
    trace::stamp("supervisor", "policy loaded");
    let launcher = Launcher::start(launch::Options::run()).map_err(chain)?;
    trace::stamp("supervisor", "launcher");
    for missing in launcher.cgroups().missing() {
        eprintln!("vitrine: {name}: warning: {missing}");
    }
    if let Some(n) = args.repeat {
        let prepared = launch::prepare(&policy, &config).map_err(chain)?;
        return repeat(&launcher, &prepared, n, &name);
    }
    // The cgroup and the shim need only the policy: they are set up while another thread
    // verifies the binary and compiles the filter; the shim waits for its plan meanwhile.
    let limits = launch::cgroup_limits(&policy);
    let (pending, prepared) = std::thread::scope(|s| {
        let preparing = s.spawn(|| {
            let prepared = launch::prepare(&policy, &config);
            trace::stamp("supervisor", "prepared");
            prepared
        });
        let pending = launcher.start_shim(&name, &limits, Output::Inherit);
        (pending, preparing.join())
    });
    let prepared = match prepared {
        Ok(prepared) => prepared.map_err(chain)?,
        Err(_) => anyhow::bail!("preparing the launch panicked"),
    };
    let mut child = launcher.launch(pending.map_err(chain)?, &prepared).map_err(chain)?;
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

/// Restarts the visualization `n` times as the daemon does (`Launcher::spawn` for the first
/// start, then after every exit a sandbox primed for the next start, `spawn_primed`; output to
/// pipes; the prepared memfd and filter reused) and prints restart-time percentiles (from the
/// restart's go to the shim's report that the visualization was executed) and the priming's,
/// which the daemon does during the restart backoff, on stderr. What the sandbox wrote (at
/// most a pipe's buffer) is copied to stdout and stderr after each run. The exit code is the
/// last run's.
fn repeat(
    launcher: &Launcher,
    prepared: &launch::Prepared,
    n: u32,
    name: &str,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(n > 0, "--repeat needs at least one run");
    let (mut times, mut priming) = (Vec::new(), Vec::new());
    let mut last = Exit::Clean;
    let mut primed = None;
    // One first start, then `n` restarts.
    for i in 0..=n {
        let mut child = match primed.take() {
            Some(primed) => launcher.spawn_primed(primed, prepared),
            None => launcher.spawn(prepared, Output::Pipe),
        }
        .map_err(chain)?;
        if i > 0 {
            times.push(child.spawn_time());
        }
        let (stdout, stderr) = child.take_output();
        last = child.wait();
        if let (Some(out), Some(err)) = (stdout, stderr) {
            std::io::copy(&mut std::fs::File::from(out), &mut std::io::stdout().lock())
                .context("copying the sandbox's stdout")?;
            std::io::copy(&mut std::fs::File::from(err), &mut std::io::stderr().lock())
                .context("copying the sandbox's stderr")?;
        }
        if i < n {
            let begun = Instant::now();
            primed = Some(launcher.prime(prepared, Output::Pipe).map_err(chain)?);
            priming.push(begun.elapsed());
        }
    }
    let pct = |v: &mut Vec<Duration>, p: usize| {
        v.sort();
        v[(v.len() * p / 100).min(v.len() - 1)].as_secs_f64() * 1e3
    };
    eprintln!(
        "vitrine: {name}: {n} restarts, p50 {:.2} ms, p99 {:.2} ms (priming during the backoff: \
         p50 {:.2} ms, p99 {:.2} ms)",
        pct(&mut times, 50),
        pct(&mut times, 99),
        pct(&mut priming, 50),
        pct(&mut priming, 99)
    );
    Ok(ExitCode::from(u8::try_from(last.code()).unwrap_or(255)))
}

/// The whole error chain on one line (`anyhow` is only used at this edge).
fn chain(e: launch::LaunchError) -> anyhow::Error {
    anyhow::Error::new(e)
}
