//! Shared pieces of the sandbox integration tests: root gating, the shim and probe binaries,
//! policy files written into a temp dir, and `vitrine run` with a watchdog.
//!
//! The tests need root (namespaces, cgroups, setuid to the sandbox user); without it they say
//! why they skip. The watchdog only turns a hang into a failure; nothing asserts on durations.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const VITRINE: &str = env!("CARGO_BIN_EXE_vitrine");
const PATIENCE: Duration = Duration::from_secs(300);

/// Returns false (after saying why) when the test cannot run here.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped {test}: needs root (namespaces, cgroups, setuid to the sandbox user)");
    false
}

/// The directory of the test's own binaries (`target/<profile>`).
pub fn bin_dir() -> PathBuf {
    Path::new(VITRINE).parent().expect("bin dir").to_owned()
}

/// Builds `vitrine-shim` and `vitrine-probe` next to `vitrine` once per test binary: cargo
/// only builds the binaries of the package under test.
pub fn helpers() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = bin_dir();
        let target = dir.parent().expect("target dir");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "vitrine-shim", "-p", "vitrine-probe"])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building vitrine-shim and vitrine-probe failed");
        (dir.join("vitrine-shim"), dir.join("vitrine-probe"))
    })
}

pub fn probe() -> PathBuf {
    helpers().1.clone()
}

/// The repository's shipped policies (presets and seccomp profiles).
pub fn shipped(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policies")
        .join(sub)
        .canonicalize()
        .expect("policies")
}

pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("digest").to_owned()
}

/// A policy for one test; the `[visualization]` and `[verify]` tables are generated, the rest
/// is the test's own TOML.
#[derive(Debug)]
pub struct Policy {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Policy {
    /// `name` must be unique across tests (it names the cgroup). `args` and `env` are TOML
    /// values; `rest` holds every other table.
    pub fn new(
        name: &str,
        command: &Path,
        args: &[String],
        env: &str,
        verify: &str,
        rest: &str,
    ) -> Policy {
        let dir =
            tempfile::Builder::new().prefix("vitrine-sandbox-test").tempdir().expect("tempdir");
        let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        let text = format!(
            "[visualization]\nname = \"{name}\"\ncommand = \"{}\"\nargs = [{}]\nenv = {env}\n\n\
             [verify]\n{verify}\n\n{rest}\n",
            command.display(),
            args.join(", "),
        );
        // Presets and profiles are found by name in `<policy dir>/../presets` and `../seccomp`.
        for sub in ["presets", "seccomp"] {
            std::os::unix::fs::symlink(shipped(sub), dir.path().join(sub)).expect("link shipped");
        }
        std::fs::create_dir(dir.path().join("policies")).expect("policies dir");
        let path = dir.path().join("policies").join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write policy");
        Policy { dir, path }
    }
}

/// The usual tables: limits, sandbox user, system-libs, the default profile, udp transport.
pub fn standard_tables(user: &str, extra_fs: &str) -> String {
    tables(user, "system-libs", extra_fs)
}

/// Like [`standard_tables`] with another preset.
pub fn tables(user: &str, preset: &str, extra_fs: &str) -> String {
    format!(
        "[limits]\nmemory = \"256MiB\"\npids = 64\ntmp_size = \"16MiB\"\n\n\
         [sandbox]\nuser = \"{user}\"\nlandlock = \"required\"\nlandlock_min_abi = 1\n\n\
         [filesystem]\npresets = [\"{preset}\"]\n{extra_fs}\n\n\
         [syscalls]\nprofile = \"default\"\n\n\
         [ipc]\ntransport = \"udp\"\nport = 9000\n"
    )
}

#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

/// `vitrine run POLICY` with `envs`, waiting at most the watchdog's patience.
pub fn vitrine_run(policy: &Path, envs: &[(&str, &str)]) -> Run {
    vitrine_run_with(policy, &[], envs)
}

/// `vitrine run POLICY ARGS...`, as [`vitrine_run`].
pub fn vitrine_run_with(policy: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    helpers();
    let mut cmd = Command::new(VITRINE);
    cmd.arg("run")
        .arg(policy)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.env("VITRINE_SHIM", &helpers().0);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn vitrine run");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!("vitrine run {} hung", policy.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = Run {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    };
    eprintln!("--- stdout\n{}--- stderr\n{}---", run.stdout, run.stderr);
    run
}
