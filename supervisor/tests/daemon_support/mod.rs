//! A throwaway installation box for the daemon's integration tests: a temp dir with a config, a
//! policy directory of shell-script visualizations, the shipped presets and seccomp profiles,
//! and a running `vitrine serve` driven through the real CLI.
//!
//! These tests need root (namespaces, cgroups, setuid to the sandbox user); without it they
//! print why they skip. Waits poll the daemon's own status with a generous upper bound so a
//! broken daemon fails the test instead of hanging it; nothing asserts on durations.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const VITRINE: &str = env!("CARGO_BIN_EXE_vitrine");
/// Upper bound of every wait: reached only when something is broken.
const PATIENCE: Duration = Duration::from_secs(90);

/// Returns false (after saying why) when the test cannot run here.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped {test}: needs root (namespaces, cgroups, setuid to the sandbox user)");
    false
}

#[derive(Debug)]
pub struct TestBox {
    pub dir: tempfile::TempDir,
    pub daemon: Option<Child>,
}

/// What a test visualization looks like, beyond its script.
#[derive(Debug, Clone)]
pub struct Viz {
    pub restart: &'static str,
    pub burst: u32,
    pub stop_timeout: &'static str,
    pub memory: &'static str,
    pub pids: u32,
}

impl Default for Viz {
    fn default() -> Self {
        Viz { restart: "always", burst: 5, stop_timeout: "2s", memory: "64MiB", pids: 32 }
    }
}

impl TestBox {
    pub fn new() -> Self {
        // The daemon executes the shim next to its own binary; `cargo test` alone does not build
        // it, and without it every spawn fails only after the waits run out.
        let shim = std::env::var_os("VITRINE_SHIM")
            .map_or_else(|| Path::new(VITRINE).with_file_name("vitrine-shim"), PathBuf::from);
        assert!(
            shim.exists(),
            "{} is missing: build it first (cargo build --workspace --bins)",
            shim.display()
        );
        let dir =
            tempfile::Builder::new().prefix("vitrine-daemon-test").tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir(root.join("policies")).expect("mkdir policies");
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        for sub in ["presets", "seccomp"] {
            let target = shipped.join(sub).canonicalize().expect("shipped policies");
            std::os::unix::fs::symlink(target, root.join(sub)).expect("symlink");
        }
        let config = format!(
            r#"policies = "{root}/policies"
state_dir = "{root}/state"
allow_unsigned = true
[osc]
listen = []
[metrics]
listen = "off"
[control]
socket = "{root}/run/control.sock"
[audit]
path = "{root}/audit.jsonl"
"#,
            root = root.display()
        );
        std::fs::write(root.join("vitrine.toml"), config).expect("write config");
        TestBox { dir, daemon: None }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.path().join("run/control.sock")
    }

    pub fn policy_path(&self, name: &str) -> PathBuf {
        self.path().join("policies").join(format!("{name}.toml"))
    }

    /// Writes a policy whose visualization is `dash -c SCRIPT` (no single quotes in SCRIPT).
    pub fn write_policy(&self, name: &str, script: &str, viz: &Viz) {
        assert!(!script.contains('\''), "scripts are TOML literal strings");
        let toml = format!(
            r#"[visualization]
name = "{name}"
command = "/usr/bin/dash"
args = ["-c", '{script}']
env = {{ PATH = "/usr/bin" }}

[restart]
policy = "{restart}"
backoff_initial = "100ms"
backoff_max = "400ms"
burst = {burst}
burst_window = "60s"
stop_timeout = "{stop}"

[limits]
memory = "{memory}"
pids = {pids}

[sandbox]
user = 65534
landlock = "best-effort"

[filesystem]
presets = ["system-libs"]
exec = ["/usr/bin"]

[syscalls]
profile = "default"
"#,
            restart = viz.restart,
            burst = viz.burst,
            stop = viz.stop_timeout,
            memory = viz.memory,
            pids = viz.pids,
        );
        write_atomically(&self.policy_path(name), &toml);
    }

    /// Starts `vitrine serve` and waits until its control socket answers.
    pub fn start_daemon(&mut self) {
        self.start_daemon_with_env(&[]);
    }

    /// Like [`TestBox::start_daemon`], with extra environment (e.g. systemd's).
    pub fn start_daemon_with_env(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::File::create(self.path().join("daemon.log")).expect("log file");
        let child = Command::new(VITRINE)
            .args(["serve", "--config"])
            .arg(self.path().join("vitrine.toml"))
            .env("RUST_LOG", "info")
            // Test daemons run in parallel; each cleans up leftovers under its own cgroup root
            // (stable for the box, so a restarted daemon finds its predecessor's leftovers).
            .env("VITRINE_CGROUP_ROOT", self.cgroup_root())
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn vitrine serve");
        self.daemon = Some(child);
        self.wait_until("the control socket answers", |b| b.try_status().is_some());
    }

    /// The cgroup root of this box's daemon.
    pub fn cgroup_root(&self) -> String {
        let dir = self.dir.path().file_name().map(|n| n.to_string_lossy().into_owned());
        format!("vitrine-{}", dir.unwrap_or_default())
    }

    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("daemon running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("daemon.log")).unwrap_or_default()
    }

    /// Runs `vitrine ARGS --socket SOCKET`.
    pub fn vitrine(&self, args: &[&str]) -> Output {
        Command::new(VITRINE)
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .output()
            .expect("run vitrine")
    }

    /// `vitrine ARGS` that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.vitrine(args);
        assert!(
            out.status.success(),
            "vitrine {args:?} failed: {}\n--- daemon log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn try_status(&self) -> Option<Vec<Value>> {
        let out = self.vitrine(&["status", "--json"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    pub fn status(&self) -> Vec<Value> {
        self.try_status()
            .unwrap_or_else(|| panic!("status failed\n--- daemon log ---\n{}", self.log()))
    }

    pub fn status_of(&self, name: &str) -> Value {
        self.status()
            .into_iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in status"))
    }

    /// Every event the daemon kept, as JSON objects.
    pub fn events(&self) -> Vec<Value> {
        self.ok(&["events", "--json"])
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn events_of(&self, name: &str, kind: &str) -> Vec<Value> {
        self.events().into_iter().filter(|e| e["name"] == name && e["kind"] == kind).collect()
    }

    /// Polls until `cond` holds; panics with the daemon's log after [`PATIENCE`].
    pub fn wait_until(&self, what: &str, mut cond: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            if start.elapsed() > PATIENCE {
                panic!("gave up waiting until {what}\n--- daemon log ---\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_state(&self, name: &str, state: &str) -> Value {
        let mut last = Value::Null;
        self.wait_until(&format!("{name} is {state}"), |b| {
            last = b
                .try_status()
                .and_then(|all| all.into_iter().find(|v| v["name"] == name))
                .unwrap_or(Value::Null);
            last["state"] == state
        });
        last
    }

    /// SIGTERM to the daemon, then waits for it; returns its exit status.
    pub fn stop_daemon(&mut self) -> std::process::ExitStatus {
        let mut child = self.daemon.take().expect("daemon running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        child.wait().expect("wait daemon")
    }
}

impl Drop for TestBox {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
        // The daemon removed its visualizations' cgroups; its (now empty) root goes too, in
        // every v1 hierarchy or the v2 tree.
        let root = self.cgroup_root();
        for base in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir(base.path().join(&root));
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&root));
    }
}

/// Writes through a temp file and a rename, as editors and config management do, so the
/// daemon's directory watcher never reads a half-written policy.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The pids of every process in the system whose parent is `ppid` and that is a zombie.
pub fn zombie_children(ppid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(rest) = stat.rsplit(')').next() else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z")
            && fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(ppid)
        {
            out.push(pid);
        }
    }
    out
}

/// Open descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}
