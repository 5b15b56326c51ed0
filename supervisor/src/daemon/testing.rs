//! Test helpers: policies built through the real parser (valid by construction) and an
//! in-process fake launcher for the lifecycle logic. The shipped daemon never uses the fake; the
//! root-gated `supervisor/tests/daemon_*.rs` run real sandboxes.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use tokio::sync::mpsc;
use vitrine_policy::{LoadContext, Policy};

use super::launcher::{Launcher, Sandboxed, Stats, Stream};
use crate::events::ExitReason;

/// The shipped seccomp profile, so that test policies resolve without any install.
fn default_profile() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/seccomp/default.json")
}

/// The TOML of a small, valid, unsigned test policy (burst 5, backoff 500ms..4s, stop 5s).
pub fn test_policy_toml(name: &str, command: &Path) -> String {
    format!(
        r#"[visualization]
name = "{name}"
command = "{command}"

[restart]
policy = "always"
backoff_initial = "500ms"
backoff_max = "4s"
burst = 5
burst_window = "60s"
stop_timeout = "5s"

[sandbox]
user = 65534
landlock = "best-effort"

[filesystem]
presets = []

[syscalls]
profile = "{profile}"
"#,
        command = command.display(),
        profile = default_profile().display(),
    )
}

pub fn test_policy(name: &str, command: PathBuf) -> Policy {
    let path = PathBuf::from(format!("/test/policies/{name}.toml"));
    let ctx = LoadContext { allow_unsigned: true, system_dirs: Vec::new() };
    let toml = test_policy_toml(name, &command);
    match vitrine_policy::parse_policy_bytes(toml.as_bytes(), &path, &ctx) {
        Ok(p) => p,
        Err(d) => panic!("test policy is invalid:\n{d}"),
    }
}

/// Spawns fake children; each spawn is announced to the test with a handle to end it.
#[derive(Debug)]
pub struct FakeLauncher {
    spawned: mpsc::UnboundedSender<FakeHandle>,
    next_pid: AtomicU32,
    pub ignore_term: AtomicBool,
    /// Policies whose command contains this string fail to prepare.
    pub reject_command: std::sync::Mutex<Option<String>>,
}

#[derive(Debug)]
pub struct FakeHandle {
    pub pid: u32,
    pub exit: mpsc::UnboundedSender<ExitReason>,
    pub killed: Arc<AtomicBool>,
}

#[derive(Debug)]
pub struct FakeChild {
    pid: u32,
    exit_tx: mpsc::UnboundedSender<ExitReason>,
    exit_rx: mpsc::UnboundedReceiver<ExitReason>,
    ignore_term: bool,
    killed: Arc<AtomicBool>,
}

impl FakeLauncher {
    /// The launcher and the feed of every child it spawns.
    pub fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<FakeHandle>) {
        let (spawned, rx) = mpsc::unbounded_channel();
        let launcher = FakeLauncher {
            spawned,
            next_pid: AtomicU32::new(100),
            ignore_term: AtomicBool::new(false),
            reject_command: std::sync::Mutex::new(None),
        };
        (Arc::new(launcher), rx)
    }
}

impl Launcher for FakeLauncher {
    type Prepared = ();
    type Child = FakeChild;

    fn prepare(&self, policy: &Policy) -> Result<(), String> {
        let reject = self.reject_command.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match reject {
            Some(r) if policy.visualization.command.to_string().contains(&r) => {
                Err(format!("cannot verify {r}"))
            }
            _ => Ok(()),
        }
    }

    fn spawn(&self, _: &()) -> Result<FakeChild, String> {
        let pid = self.next_pid.fetch_add(1, Ordering::SeqCst);
        let (exit_tx, exit_rx) = mpsc::unbounded_channel();
        let killed = Arc::new(AtomicBool::new(false));
        let handle = FakeHandle { pid, exit: exit_tx.clone(), killed: killed.clone() };
        self.spawned.send(handle).map_err(|_| "test ended".to_owned())?;
        let ignore_term = self.ignore_term.load(Ordering::SeqCst);
        Ok(FakeChild { pid, exit_tx, exit_rx, ignore_term, killed })
    }
}

impl Sandboxed for FakeChild {
    fn pid(&self) -> u32 {
        self.pid
    }
    fn layers(&self) -> Vec<String> {
        vec!["fake".into()]
    }
    fn take_output(&mut self) -> Vec<(Stream, OwnedFd)> {
        Vec::new()
    }
    async fn wait(&mut self) -> ExitReason {
        match self.exit_rx.recv().await {
            Some(exit) => exit,
            None => std::future::pending().await,
        }
    }
    fn terminate(&mut self) {
        if !self.ignore_term {
            let _ = self.exit_tx.send(ExitReason::Signal { signal: 15 });
        }
    }
    fn kill_all(&mut self) {
        self.killed.store(true, Ordering::SeqCst);
        let _ = self.exit_tx.send(ExitReason::Signal { signal: 9 });
    }
    fn stats(&self) -> Option<Stats> {
        None
    }
}
