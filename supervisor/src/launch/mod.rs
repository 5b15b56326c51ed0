//! The one place that creates sandboxed processes (DESIGN §3, supervisor side).
//!
//! ```text
//! let launcher = launch::Launcher::start(launch::Options::default())?;   // owns the spawn thread
//! let prepared = launch::prepare(&policy, &config)?;   // once per policy load: user, binary
//!                                                      // verified into a sealed memfd, BPF
//! let mut child = launcher.spawn(&prepared, launch::Output::Pipe)?;  // blocking, short
//! eprintln!("{}", child.enforced().summary());         // what is enforced, one line
//! child.pidfd();                                        // readable when the sandbox ended
//! child.terminate();                                    // SIGTERM -> shim -> init -> child
//! child.kill_all();                                     // SIGKILL the whole cgroup
//! let exit: launch::Exit = child.wait();                // blocking; or try_wait()
//! ```
//!
//! - [`Launcher::start`] starts a dedicated, long-lived thread: the shim's parent-death signal
//!   is tied to the thread that forked it, so every shim is forked from this one thread. When
//!   the `Launcher` is dropped, the thread ends and every sandbox it started is killed.
//! - [`prepare`] does the expensive, policy-level work once; restarts reuse the [`Prepared`]
//!   (same memfd, same BPF program).
//! - [`Launcher::spawn`] creates the visualization's cgroup with its limits, forks the shim
//!   (fd 3 control socket, fd 4 the verified binary, fd 5 the IPC end, empty environment),
//!   places it in the cgroup before sending the plan (the shim waits for the plan), then reads
//!   the shim's reports until the visualization was executed or a step failed.
//! - [`Child::wait`] classifies the end: [`Exit::Clean`], `Code`, `Signal`, `Seccomp` (with the
//!   syscall's name from the kernel's audit record) or `Oom` (the cgroup's memory events).
//!
//! Everything here is blocking; async callers use `spawn_blocking`, except `try_wait`,
//! `terminate` and `kill_all`, which never block for long.

mod child;
mod kmsg;
mod plan;
mod summary;

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Instant;

// `IpcEndpoint` and `Enforced` are part of the API for the daemon and OSC forwarding.
#[allow(unused_imports)]
pub use child::{Child, Exit, IpcEndpoint};
pub use plan::{Prepared, cgroup_limits, prepare};
#[allow(unused_imports)]
pub use summary::Enforced;
pub use vitrine_sandbox::spawn::Output;
use vitrine_sandbox::spawn::{Shim, SpawnError, spawn_shim};
use vitrine_sandbox::trace;

/// Why a visualization could not be started. Every message names what to change.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot resolve user {user}")]
    User { user: String, source: Option<nix::Error> },
    #[error("the policy's user {0} is root (uid or gid 0); use an unprivileged account")]
    Root(String),
    #[error(transparent)]
    Verify(#[from] vitrine_sandbox::verify::VerifyError),
    #[error("cannot compile the seccomp profile {profile}")]
    Seccomp { profile: String, source: vitrine_sandbox::seccomp::SeccompError },
    #[error("cgroups are unavailable, so limits cannot be enforced")]
    NoCgroups(#[source] vitrine_cgroup::Error),
    #[error("cannot set up the visualization's cgroup")]
    Cgroup(#[source] vitrine_cgroup::Error),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("the spawn thread is gone")]
    ThreadGone,
    #[error("control socket with the shim")]
    Proto(#[from] vitrine_sandbox::proto::ProtoError),
    #[error("I/O with the shim")]
    Io(#[from] std::io::Error),
    #[error("sandbox setup failed at step `{step}`, nothing was executed: {error}")]
    Refused { step: String, error: String },
    #[error("the shim ended before the visualization started ({0})")]
    ShimDied(String),
}

/// The daemon's cgroup subtree; it removes whatever it finds there when it starts.
pub const DAEMON_CGROUP_ROOT: &str = "vitrine";
/// The subtree of `vitrine run`, so a daemon starting next to it never takes its sandboxes for
/// leftovers (and `run` never reuses a daemon's cgroup); `run` cleans up nothing but its own.
pub const RUN_CGROUP_ROOT: &str = "vitrine-run";

/// How the launcher finds its shim and cgroups.
#[derive(Debug, Clone)]
pub struct Options {
    /// `vitrine-shim`; default `$VITRINE_SHIM`, else next to the running `vitrine` binary.
    pub shim: Option<PathBuf>,
    /// The name of the supervisor's cgroup subtree.
    pub cgroup_root: String,
}

impl Default for Options {
    /// The daemon's options.
    fn default() -> Self {
        Options { shim: None, cgroup_root: DAEMON_CGROUP_ROOT.into() }
    }
}

impl Options {
    /// The daemon's options: the cgroup root is `vitrine`, or `$VITRINE_CGROUP_ROOT` for a
    /// second daemon on the same host (each daemon removes every leftover cgroup under its own
    /// root at start, so two daemons must never share one).
    pub fn daemon() -> anyhow::Result<Self> {
        let Some(root) = std::env::var_os("VITRINE_CGROUP_ROOT") else {
            return Ok(Options::default());
        };
        let root = root.to_string_lossy().into_owned();
        let valid = (1..=64).contains(&root.len())
            && root.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        anyhow::ensure!(valid, "VITRINE_CGROUP_ROOT={root:?}: use 1-64 of [A-Za-z0-9_-]");
        Ok(Options { shim: None, cgroup_root: root })
    }

    /// The options of `vitrine run`.
    pub fn run() -> Self {
        Options { shim: None, cgroup_root: RUN_CGROUP_ROOT.into() }
    }
}

struct Request {
    output: Output,
    cgroup: vitrine_cgroup::Cgroup,
    reply: mpsc::Sender<Result<Spawned, LaunchError>>,
}

/// A shim as the spawn thread started it.
struct Spawned {
    shim: Shim,
    /// Born inside its cgroup (v1); otherwise the caller still has to place it.
    placed: bool,
}

/// Owns the spawn thread and the cgroup manager.
#[derive(Debug)]
pub struct Launcher {
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    cgroups: vitrine_cgroup::Manager,
}

impl Launcher {
    /// Detects cgroups and starts the spawn thread.
    pub fn start(options: Options) -> Result<Launcher, LaunchError> {
        let cgroups = vitrine_cgroup::Manager::detect(&options.cgroup_root)
            .map_err(LaunchError::NoCgroups)?;
        let shim = options.shim.unwrap_or_else(default_shim_path);
        let (tx, rx) = mpsc::channel::<Request>();
        let manager = cgroups.clone();
        let thread = std::thread::Builder::new().name("vitrine-spawn".into()).spawn(move || {
            for req in rx {
                let _ = req.reply.send(spawn_placed(&manager, &shim, &req));
            }
        })?;
        Ok(Launcher { requests: Mutex::new(Some(tx)), thread: Some(thread), cgroups })
    }

    /// The cgroup manager (for the start line and for cleaning leftovers).
    pub fn cgroups(&self) -> &vitrine_cgroup::Manager {
        &self.cgroups
    }

    /// Starts one sandbox for `prepared`; returns once the visualization was executed.
    pub fn spawn(&self, prepared: &Prepared, output: Output) -> Result<Child, LaunchError> {
        let pending = self.start_shim(prepared.name(), prepared.cgroup_limits(), output)?;
        self.launch(pending, prepared)
    }

    /// The first half of a start, which needs nothing of [`prepare`]'s work: creates the
    /// visualization's cgroup with its limits and starts a shim in it, which waits for its plan.
    /// `vitrine run` does this while the binary is verified; [`Launcher::launch`] finishes.
    pub fn start_shim(
        &self,
        name: &str,
        limits: &vitrine_cgroup::Limits,
        output: Output,
    ) -> Result<Pending, LaunchError> {
        let started = Instant::now();
        trace::stamp("supervisor", "start");
        let cgroup = self.cgroups.create(name, limits).map_err(LaunchError::Cgroup)?;
        trace::stamp("supervisor", "cgroup");
        let (reply, answer) = mpsc::channel();
        let request = Request { output, cgroup: cgroup.clone(), reply };
        let sent = self
            .requests
            .lock()
            .map_err(|_| LaunchError::ThreadGone)
            .and_then(|tx| tx.clone().ok_or(LaunchError::ThreadGone))
            .and_then(|tx| tx.send(request).map_err(|_| LaunchError::ThreadGone));
        let spawned = sent.and_then(|()| answer.recv().map_err(|_| LaunchError::ThreadGone)?);
        let spawned = match spawned {
            Ok(spawned) => spawned,
            Err(e) => {
                let _ = cgroup.kill_all();
                let _ = cgroup.remove();
                return Err(e);
            }
        };
        trace::stamp("supervisor", "shim spawned");
        let pending = Pending { shim: Some(spawned.shim), cgroup: Some(cgroup), started };
        // The shim blocks on the plan, so it runs nothing of the policy before it is placed:
        // born inside on v1; on v2 moved in here (CLONE_INTO_CGROUP would save this write).
        if !spawned.placed
            && let (Some(shim), Some(cgroup)) = (&pending.shim, &pending.cgroup)
        {
            cgroup.add_pid(shim.pid).map_err(LaunchError::Cgroup)?;
        }
        Ok(pending)
    }

    /// The second half: sends the plan with the verified binary (and the IPC end) to the
    /// waiting shim and reads its reports until the visualization was executed.
    pub fn launch(&self, pending: Pending, prepared: &Prepared) -> Result<Child, LaunchError> {
        let (shim, cgroup, started) = pending.into_parts()?;
        match launch_in(shim, prepared, started, false) {
            Ok(parts) => Ok(Child::new(prepared, parts, cgroup, started.elapsed())),
            Err(e) => {
                let _ = cgroup.kill_all();
                let _ = cgroup.remove();
                Err(e)
            }
        }
    }

    /// Builds a sandbox for `prepared` as far as it goes without the visualization, for a
    /// restart: cgroup, shim, namespaces, mounts, network; its init then waits.
    /// [`Launcher::spawn_primed`] lets it fork, restrict and exec the visualization.
    pub fn prime(&self, prepared: &Prepared, output: Output) -> Result<Primed, LaunchError> {
        trace::stamp("supervisor", "prime");
        let pending = self.start_shim(prepared.name(), prepared.cgroup_limits(), output)?;
        let (shim, cgroup, started) = pending.into_parts()?;
        match launch_in(shim, prepared, started, true) {
            Ok(parts) => {
                trace::stamp("supervisor", "primed");
                Ok(Primed { parts: Some(parts), cgroup: Some(cgroup), prepared: prepared.id() })
            }
            Err(e) => {
                let _ = cgroup.kill_all();
                let _ = cgroup.remove();
                Err(e)
            }
        }
    }

    /// Starts the visualization in a sandbox [`Launcher::prime`] built for the same
    /// [`Prepared`]; returns once it was executed. The spawn time counts from the go.
    pub fn spawn_primed(
        &self,
        mut primed: Primed,
        prepared: &Prepared,
    ) -> Result<Child, LaunchError> {
        if primed.prepared != prepared.id() {
            return Err(LaunchError::ShimDied("primed for another policy load".into()));
        }
        let (Some(mut parts), Some(cgroup)) = (primed.parts.take(), primed.cgroup.take()) else {
            return Err(LaunchError::ShimDied("the primed sandbox was already used".into()));
        };
        let started = Instant::now();
        trace::stamp("supervisor", "go");
        let go = vitrine_sandbox::proto::send_go(parts.shim.control.as_fd());
        let result = match go {
            Ok(()) => parts.read_until_running(started),
            Err(e) => {
                parts.kill_and_reap();
                Err(e.into())
            }
        };
        match result {
            Ok(()) => {
                trace::stamp("supervisor", "running");
                Ok(Child::new(prepared, parts, cgroup, started.elapsed()))
            }
            Err(e) => {
                let _ = cgroup.kill_all();
                let _ = cgroup.remove();
                Err(e)
            }
        }
    }
}

/// A sandbox built for a restart, waiting before its visualization's fork (see
/// [`Launcher::prime`]). Dropped unused, it is killed and its cgroup removed.
pub struct Primed {
    parts: Option<child::Parts>,
    cgroup: Option<vitrine_cgroup::Cgroup>,
    /// [`Prepared::id`] of the policy load it was built for.
    prepared: u64,
}

impl std::fmt::Debug for Primed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pid = self.parts.as_ref().map(|p| p.shim.pid);
        f.debug_struct("Primed").field("shim", &pid).field("prepared", &self.prepared).finish()
    }
}

impl Primed {
    /// Whether this sandbox was built for `prepared` (the same policy load).
    pub fn is_for(&self, prepared: &Prepared) -> bool {
        self.prepared == prepared.id()
    }
}

impl Drop for Primed {
    fn drop(&mut self) {
        if let Some(mut parts) = self.parts.take() {
            parts.kill_and_reap();
        }
        if let Some(cgroup) = self.cgroup.take() {
            let _ = cgroup.kill_all();
            let _ = cgroup.remove();
        }
    }
}

/// A shim started in the visualization's cgroup, waiting for its plan. Dropped unused, it is
/// killed and its cgroup removed.
#[derive(Debug)]
pub struct Pending {
    shim: Option<Shim>,
    cgroup: Option<vitrine_cgroup::Cgroup>,
    started: Instant,
}

impl Pending {
    fn into_parts(mut self) -> Result<(Shim, vitrine_cgroup::Cgroup, Instant), LaunchError> {
        match (self.shim.take(), self.cgroup.take()) {
            (Some(shim), Some(cgroup)) => Ok((shim, cgroup, self.started)),
            _ => Err(LaunchError::ShimDied("the shim was already used".into())),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(shim) = self.shim.take() {
            child::Parts::new(shim, None).kill_and_reap();
        }
        if let Some(cgroup) = self.cgroup.take() {
            let _ = cgroup.kill_all();
            let _ = cgroup.remove();
        }
    }
}

/// Sends the plan and its descriptors, then reads the reports until the visualization runs,
/// or with `hold` until the primed sandbox is ready.
fn launch_in(
    shim: Shim,
    prepared: &Prepared,
    started: Instant,
    hold: bool,
) -> Result<child::Parts, LaunchError> {
    let (ipc_ours, ipc_theirs) = match prepared.ipc_pair() {
        Ok(pair) => pair,
        Err(e) => {
            child::Parts::new(shim, None).kill_and_reap();
            return Err(e);
        }
    };
    let mut parts = child::Parts::new(shim, ipc_ours);
    parts.listener = prepared.listener();
    let mut plan = prepared.plan_for(std::process::id());
    plan.trace = trace::enabled();
    plan.hold = hold;
    let exec = prepared.binary_fd();
    let mut fds = vec![exec];
    fds.extend(ipc_theirs.as_ref().map(|f| f.as_fd()));
    if let Err(e) = vitrine_sandbox::proto::send_plan(parts.shim.control.as_fd(), &plan, &fds) {
        parts.kill_and_reap();
        return Err(e.into());
    }
    drop(ipc_theirs);
    trace::stamp("supervisor", "plan sent");
    if hold {
        parts.read_until_ready(started)?;
    } else {
        parts.read_until_running(started)?;
        trace::stamp("supervisor", "running");
    }
    Ok(parts)
}

/// On the spawn thread: enters the request's cgroup (v1), starts the shim, which is then born
/// inside, and returns to the supervisor's own cgroup.
fn spawn_placed(
    manager: &vitrine_cgroup::Manager,
    shim_path: &std::path::Path,
    req: &Request,
) -> Result<Spawned, LaunchError> {
    let placed = match req.cgroup.enter_calling_thread() {
        Ok(placed) => placed,
        Err(e) => {
            let _ = manager.return_calling_thread();
            return Err(LaunchError::Cgroup(e));
        }
    };
    let shim = spawn_shim(shim_path, req.output);
    let back = manager.return_calling_thread();
    let shim = shim?;
    if let Err(e) = back {
        // This thread could not leave; the sandbox must not start with it inside.
        let mut parts = child::Parts::new(shim, None);
        parts.kill_and_reap();
        return Err(LaunchError::Cgroup(e));
    }
    Ok(Spawned { shim, placed })
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.requests.lock() {
            tx.take();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `$VITRINE_SHIM`, else `vitrine-shim` next to the running binary.
pub fn default_shim_path() -> PathBuf {
    if let Some(p) = std::env::var_os("VITRINE_SHIM") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("vitrine-shim")))
        .unwrap_or_else(|| PathBuf::from("/usr/libexec/vitrine/vitrine-shim"))
}
