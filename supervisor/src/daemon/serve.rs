//! The daemon's main sequence: bind the control socket, load and start every visualization,
//! tell systemd we are ready, then serve until SIGTERM/SIGINT, reloading on SIGHUP, `vitrine
//! reload` and changes in the policy directory. Shutdown is a designed path: every visualization
//! is stopped with its own stop timeout before the process exits.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use vitrine_policy::{Config, LoadContext};

use super::companions::Companions;
use super::launcher::Launcher;
use super::machine::State;
use super::{Daemon, watch as dirwatch};
use crate::control;
use crate::events::{Event, EventBus};

/// Runs the daemon until a termination signal. `bus` is shared with the other parts (metrics,
/// audit, OSC, peers) that were started next to it.
pub async fn serve<L: Launcher>(
    config: &Config,
    launcher: Arc<L>,
    bus: EventBus,
    mut companions: Companions,
) -> anyhow::Result<()> {
    let listener = control::server::bind(&config.control).with_context(|| {
        format!("cannot create the control socket {}", config.control.socket.display())
    })?;
    let ctx = LoadContext::from_config(config);
    let daemon = Daemon::new(
        launcher,
        bus.clone(),
        Arc::new(companions.hooks()),
        config.policies.clone(),
        ctx,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let report = daemon.reload().await;
    // After the first load, so that the first status peers get (and the prefixes no peer may
    // claim) already name every visualization.
    let stats_daemon = daemon.clone();
    companions.follow_stats(move || {
        let daemon = stats_daemon.clone();
        async move { daemon.status(None).await.unwrap_or_default() }
    });
    tracing::info!(
        "loaded {} visualization(s) from {}; {} file(s) rejected",
        report.added.len(),
        config.policies.display(),
        report.rejected.len()
    );
    let control_task = tokio::spawn(control::server::serve(
        listener,
        daemon.clone(),
        Arc::new(config.control.clone()),
        stop_rx.clone(),
    ));
    let status_task = tokio::spawn(systemd_status(daemon.clone(), stop_rx.clone()));
    let watchdog_task = watchdog(stop_rx.clone());
    let watcher = match dirwatch::watch(&config.policies) {
        Ok(w) => Some(w),
        Err(e) => {
            let message = format!(
                "cannot watch {}: {e}; reload with SIGHUP or `vitrine reload`",
                config.policies.display()
            );
            tracing::warn!("{message}");
            bus.publish(Event::Warning { subject: "policy-watch".into(), message });
            None
        }
    };
    notify_systemd(&[sd_notify::NotifyState::Ready]);

    run_until_terminated(&daemon, watcher).await?;

    tracing::info!("shutting down: stopping every visualization");
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    let _ = stop_tx.send(true);
    daemon.shutdown().await;
    let _ = control_task.await;
    let _ = status_task.await;
    companions.shutdown().await;
    if let Some(task) = watchdog_task {
        let _ = task.await;
    }
    if let Err(e) = std::fs::remove_file(&config.control.socket) {
        tracing::debug!("removing the control socket: {e}");
    }
    Ok(())
}

type DirWatch = (notify::RecommendedWatcher, tokio::sync::mpsc::Receiver<()>);

async fn run_until_terminated<L: Launcher>(
    daemon: &Arc<Daemon<L>>,
    watcher: Option<DirWatch>,
) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let (_guard, mut changes) = match watcher {
        Some((guard, rx)) => (Some(guard), Some(rx)),
        None => (None, None),
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading policies");
                daemon.reload().await;
            }
            Some(()) = recv_opt(&mut changes) => {
                tracing::info!("policy directory changed: reloading");
                daemon.reload().await;
            }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}

async fn recv_opt(rx: &mut Option<tokio::sync::mpsc::Receiver<()>>) -> Option<()> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Keeps systemd's STATUS= line ("3 running, 1 failed") current as lifecycle events arrive.
async fn systemd_status<L: Launcher>(daemon: Arc<Daemon<L>>, mut stop: watch::Receiver<bool>) {
    let mut events = daemon.bus().subscribe();
    let mut last = String::new();
    loop {
        let line = status_line(&daemon).await;
        if line != last {
            notify_systemd(&[sd_notify::NotifyState::Status(&line)]);
            last = line;
        }
        tokio::select! {
            _ = events.recv() => {}
            _ = stop.changed() => return,
        }
    }
}

async fn status_line<L: Launcher>(daemon: &Daemon<L>) -> String {
    let all = daemon.status(None).await.unwrap_or_default();
    let count = |s: State| all.iter().filter(|u| u.state == s).count();
    let mut parts = vec![format!("{} running", count(State::Running))];
    for (state, label) in
        [(State::BackingOff, "backing off"), (State::Failed, "failed"), (State::Stopped, "stopped")]
    {
        let n = count(state);
        if n > 0 {
            parts.push(format!("{n} {label}"));
        }
    }
    parts.join(", ")
}

/// Pings systemd's watchdog at half its interval when `WATCHDOG_USEC` asks for it.
fn watchdog(mut stop: watch::Receiver<bool>) -> Option<tokio::task::JoinHandle<()>> {
    let period = watchdog_period(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )?;
    tracing::info!("systemd watchdog: pinging every {period:?}");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => notify_systemd(&[sd_notify::NotifyState::Watchdog]),
                _ = stop.changed() => return,
            }
        }
    }))
}

/// Half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3) decides it: the watchdog is ours unless
/// `WATCHDOG_PID` names another process. (The sd-notify crate also requires `WATCHDOG_PID` to be
/// set, which would ignore a watchdog that systemd configured for us.)
fn watchdog_period(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(own_pid)
    {
        return None;
    }
    Some(Duration::from_micros(usec) / 2)
}

fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    // Outside systemd ($NOTIFY_SOCKET unset) this is a no-op that succeeds.
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("sd_notify failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_period_follows_sd_watchdog_enabled() {
        assert_eq!(watchdog_period(Some("2000000"), None, 7), Some(Duration::from_secs(1)));
        assert_eq!(watchdog_period(Some("2000000"), Some("7"), 7), Some(Duration::from_secs(1)));
        assert_eq!(
            watchdog_period(Some("2000000"), Some("8"), 7),
            None,
            "another process's watchdog"
        );
        assert_eq!(watchdog_period(Some("0"), None, 7), None);
        assert_eq!(watchdog_period(Some("soon"), None, 7), None);
        assert_eq!(watchdog_period(None, Some("7"), 7), None);
    }
}
