//! The shipped launcher: the daemon's [`Launcher`] seam over the one spawn site
//! (`crate::launch`), with pidfd-based waiting on the tokio reactor.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use vitrine_policy::{Config, Policy};

use super::launcher::{Launcher, Sandboxed, Stats, Stream};
use crate::events::{Event, EventBus, ExitReason};
use crate::launch;
use crate::osc::Delivery;

/// Owns the launch module's spawn thread and cgroup manager for the daemon's lifetime.
#[derive(Debug)]
pub struct RealLauncher {
    inner: launch::Launcher,
    config: Config,
    /// Sandboxes built ahead for a restart, by visualization name. The lock is held while one
    /// is built or used, so a spawn never races a priming of the same name.
    primed: Mutex<HashMap<String, launch::Primed>>,
}

impl RealLauncher {
    /// Starts the spawn thread, reports missing cgroup controllers, and kills and removes the
    /// cgroups a previous run left behind (a crash or SIGKILL of the supervisor).
    pub fn new(config: &Config, bus: &EventBus) -> anyhow::Result<Self> {
        let inner = launch::Launcher::start(launch::Options::daemon()?)
            .map_err(|e| anyhow::anyhow!(chain(&e)))?;
        let cgroups = inner.cgroups();
        tracing::info!("cgroups: {}", cgroups.summary());
        for missing in cgroups.missing() {
            let message = missing.to_string();
            tracing::warn!("{message}");
            bus.publish(Event::Warning { subject: "cgroup".into(), message });
        }
        match cgroups.cleanup_leftovers() {
            Ok(cleaned) => {
                for c in cleaned {
                    tracing::warn!(
                        "removed the cgroup {:?} left by a previous run ({} process(es) killed)",
                        c.name,
                        c.killed.len()
                    );
                }
            }
            Err(e) => anyhow::bail!("cannot clean up the cgroups of a previous run: {}", chain(&e)),
        }
        Ok(RealLauncher { inner, config: config.clone(), primed: Mutex::default() })
    }
}

impl Launcher for RealLauncher {
    type Prepared = launch::Prepared;
    type Child = RealChild;

    fn prepare(&self, policy: &Policy) -> Result<launch::Prepared, String> {
        launch::prepare(policy, &self.config).map_err(|e| chain(&e))
    }

    fn spawn(&self, prepared: &launch::Prepared) -> Result<RealChild, String> {
        let mut primed = self.primed.lock().unwrap_or_else(|e| e.into_inner());
        // A sandbox primed for an older policy load is dropped (killed, its cgroup removed)
        // before a new one is made under the same name.
        let ready = primed.remove(prepared.name()).filter(|p| p.is_for(prepared));
        let child = match ready {
            Some(sandbox) => self.inner.spawn_primed(sandbox, prepared),
            None => self.inner.spawn(prepared, launch::Output::Pipe),
        };
        drop(primed);
        let child = child.map_err(|e| chain(&e))?;
        RealChild::new(child).map_err(|e| format!("cannot watch the sandbox's pidfd: {e}"))
    }

    fn prime(&self, prepared: &launch::Prepared) {
        let mut primed = self.primed.lock().unwrap_or_else(|e| e.into_inner());
        primed.remove(prepared.name());
        match self.inner.prime(prepared, launch::Output::Pipe) {
            Ok(sandbox) => {
                primed.insert(prepared.name().to_owned(), sandbox);
            }
            // The restart then builds its sandbox from scratch and reports what fails.
            Err(e) => tracing::debug!("cannot prime {}: {}", prepared.name(), chain(&e)),
        }
    }

    fn unprime(&self, prepared: &launch::Prepared) {
        let mut primed = self.primed.lock().unwrap_or_else(|e| e.into_inner());
        primed.remove(prepared.name());
    }
}

/// A sandbox from `launch`, with its pidfd registered with tokio so waiting costs no thread.
#[derive(Debug)]
pub struct RealChild {
    child: launch::Child,
    /// A duplicate of the child's pidfd; it becomes readable when the shim has exited.
    pidfd: AsyncFd<OwnedFd>,
}

impl RealChild {
    fn new(child: launch::Child) -> std::io::Result<Self> {
        let fd = child.pidfd().try_clone_to_owned()?;
        // `with_interest` is deprecated in favour of a function marked unsafe whose contract is
        // that the registered fd is not replaced or closed while registered. An `OwnedFd` moved
        // into the `AsyncFd` satisfies that by construction, and this crate forbids unsafe code.
        #[allow(deprecated)]
        let pidfd = AsyncFd::with_interest(fd, Interest::READABLE)?;
        Ok(RealChild { child, pidfd })
    }
}

impl Sandboxed for RealChild {
    fn pid(&self) -> u32 {
        self.child.pid()
    }

    fn layers(&self) -> Vec<String> {
        self.child.enforced().layers()
    }

    fn take_output(&mut self) -> Vec<(Stream, OwnedFd)> {
        let (out, err) = self.child.take_output();
        out.map(|fd| (Stream::Stdout, fd))
            .into_iter()
            .chain(err.map(|fd| (Stream::Stderr, fd)))
            .collect()
    }

    async fn wait(&mut self) -> ExitReason {
        loop {
            let Ok(mut ready) = self.pidfd.readable().await else {
                // The reactor refused the fd: fall back to a blocking wait off the reactor.
                return exit_reason(tokio::task::block_in_place(|| self.child.wait()));
            };
            // Reaping and classifying reads a few cgroup files and removes the cgroup: short
            // blocking work, kept off the reactor's other tasks.
            if let Some(exit) = tokio::task::block_in_place(|| self.child.try_wait()) {
                return exit_reason(exit);
            }
            ready.clear_ready();
        }
    }

    fn terminate(&mut self) {
        self.child.terminate();
    }

    fn kill_all(&mut self) {
        // Killing a cgroup returns once it is empty, which takes a moment.
        tokio::task::block_in_place(|| self.child.kill_all());
    }

    fn take_delivery(&mut self) -> Option<Delivery> {
        match self.child.take_ipc()? {
            launch::IpcEndpoint::Udp { socket, port } => Some(Delivery::Udp { socket, port }),
            launch::IpcEndpoint::Fd(fd) => Some(Delivery::Fd(fd)),
        }
    }

    fn spawn_seconds(&self) -> Option<f64> {
        Some(self.child.spawn_time().as_secs_f64())
    }

    fn stats(&self) -> Option<Stats> {
        let stats = self.child.cgroup()?.stats().ok()?;
        Some(Stats {
            cpu_seconds: stats.cpu_seconds,
            memory_bytes: stats.memory_current,
            memory_peak_bytes: (stats.memory_peak > 0).then_some(stats.memory_peak),
            pids: stats.pids_current,
            oom_kills: stats.oom_kills,
        })
    }
}

fn exit_reason(exit: launch::Exit) -> ExitReason {
    match exit {
        launch::Exit::Clean => ExitReason::Clean,
        launch::Exit::Code(code) => ExitReason::Code { code },
        launch::Exit::Signal(signal) => ExitReason::Signal { signal },
        launch::Exit::Seccomp { syscall, .. } => ExitReason::Seccomp { syscall },
        launch::Exit::Oom => ExitReason::Oom,
    }
}

/// An error and its sources as one line, `outer: inner: innermost`, for events and status.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}
