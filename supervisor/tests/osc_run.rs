//! `vitrine run --osc-listen`: liblo's `oscsend` and python-osc send to vitrine, and liblo's
//! `oscdump` runs as the sandboxed visualization (udp transport, inside its own network
//! namespace) and prints exactly what was delivered. Needs root and liblo-tools; skips with
//! the reason otherwise.

#![allow(clippy::unwrap_used)] // A failing unwrap is a failing test.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

const VITRINE: &str = env!("CARGO_BIN_EXE_vitrine");

fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped {test}: needs root (namespaces, cgroups, setuid to the sandbox user)");
    false
}

/// Builds `vitrine-shim` next to `vitrine` once: cargo only builds the package under test.
fn shim() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = Path::new(VITRINE).parent().unwrap().to_owned();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "vitrine-shim"]).env("CARGO_TARGET_DIR", dir.parent().unwrap());
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(
            cmd.current_dir(env!("CARGO_MANIFEST_DIR")).status().unwrap().success(),
            "building vitrine-shim"
        );
        dir.join("vitrine-shim")
    })
}

/// A policy in a temp dir with the shipped presets and seccomp profiles beside it.
fn policy(dir: &Path, name: &str, oscdump: &Path) -> PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies").canonicalize().unwrap();
    for sub in ["presets", "seccomp"] {
        std::os::unix::fs::symlink(shipped.join(sub), dir.join(sub)).unwrap();
    }
    let out = Command::new("sha256sum").arg(oscdump).output().unwrap();
    let digest = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned();
    let text = format!(
        "[visualization]\nname = \"{name}\"\ncommand = \"{}\"\nargs = [\"-L\", \"9000\"]\n\n\
         [verify]\nsha256 = \"{digest}\"\n\n\
         [limits]\nmemory = \"128MiB\"\npids = 32\ntmp_size = \"4MiB\"\n\n\
         [sandbox]\nuser = \"nobody\"\nlandlock = \"required\"\nlandlock_min_abi = 1\n\n\
         [filesystem]\npresets = [\"system-libs\"]\n\n[syscalls]\nprofile = \"default\"\n\n\
         [ipc]\ntransport = \"udp\"\nport = 9000\n{OSC}",
        oscdump.display()
    );
    std::fs::create_dir(dir.join("policies")).unwrap();
    let path = dir.join("policies").join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Guards against a hang only; nothing asserts on durations.
const HANG_GUARD: Duration = Duration::from_secs(60);

const OSC: &str = r#"
[osc]
prefix = "/box"
max_rate = 1000

[[osc.params]]
address = "/level"
type = "float"
range = [0.0, 1.0]
out_of_range = "clamp"

[[osc.params]]
address = "/note"
type = "int"
range = [0, 127]
out_of_range = "reject"

[[osc.params]]
address = "/mode"
type = "string"
one_of = ["calm", "storm"]

[[osc.params]]
address = "/ready"
type = "impulse"

[[osc.params]]
address = "/end"
type = "impulse"
"#;

struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Running {
    /// oscdump's lines (timetag column removed) up to and including `end`.
    fn until(&self, end: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let line = self.lines.recv_timeout(HANG_GUARD).expect("oscdump printed the marker");
            let line = line.split_once(' ').map_or(line.as_str(), |(_, r)| r).trim_end().to_owned();
            let done = line == end;
            out.push(line);
            if done {
                return out;
            }
        }
    }

    fn send(&self, address: &str, types: &str, args: &[&str]) {
        let ok = Command::new("oscsend")
            .arg("127.0.0.1")
            .arg(self.port.to_string())
            .arg(address)
            .arg(types)
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "oscsend {address}");
    }

    /// Sends `/box/ready` until oscdump, started in its sandbox, shows it is listening.
    fn wait_ready(&self) {
        for _ in 0..600 {
            self.send("/box/ready", "", &[]);
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                assert!(line.ends_with("/ready "), "unexpected first line {line:?}");
                // Later /ready copies may still be in flight; the marker below skips them.
                return;
            }
        }
        panic!("oscdump never received anything");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn start(name: &str) -> Option<Running> {
    if !root_or_skip(name) {
        return None;
    }
    let oscdump = Path::new("/usr/bin/oscdump");
    if !oscdump.exists()
        || Command::new("sh")
            .args(["-c", "command -v oscsend"])
            .status()
            .map_or(true, |s| !s.success())
    {
        eprintln!("skipped {name}: install liblo-tools (oscdump, oscsend)");
        return None;
    }
    let dir = tempfile::Builder::new().prefix("vitrine-osc-test").tempdir().unwrap();
    let policy = policy(dir.path(), name, oscdump);
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(VITRINE)
        .arg("run")
        .arg(&policy)
        .arg("--osc-listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("VITRINE_SHIM", shim())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let out = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let running = Running { child, lines, port, _dir: dir };
    running.wait_ready();
    Some(running)
}

#[test]
fn sandboxed_oscdump_prints_exactly_what_vitrine_delivered() {
    let Some(viz) = start("t-osc-run") else { return };
    viz.send("/box/end", "", &[]);
    let _ = viz.until("/end");
    viz.send("/box/level", "f", &["0.25"]);
    viz.send("/box/level", "f", &["7"]);
    viz.send("/box/level", "i", &["0"]);
    viz.send("/box/note", "i", &["200"]);
    viz.send("/box/note", "f", &["60.4"]);
    viz.send("/box/mode", "s", &["chaos"]);
    viz.send("/box/mode", "s", &["storm"]);
    viz.send("/box/other", "f", &["1"]);
    viz.send("/b?x/{note,level}", "i", &["1"]);
    viz.send("/box/end", "", &[]);
    assert_eq!(
        viz.until("/end"),
        [
            "/level f 0.250000",
            "/level f 1.000000",
            "/level f 0.000000",
            "/note i 60",
            "/mode s \"storm\"",
            // A pattern reaches the matching parameters in the policy's order.
            "/level f 1.000000",
            "/note i 1",
            "/end"
        ]
    );
}

#[test]
fn python_osc_bundle_reaches_the_sandbox_flattened() {
    if Command::new("python3")
        .args(["-c", "import pythonosc"])
        .status()
        .map_or(true, |s| !s.success())
    {
        eprintln!(
            "skipped python_osc_bundle_reaches_the_sandbox_flattened: pip install python-osc"
        );
        return;
    }
    let Some(viz) = start("t-osc-py") else { return };
    viz.send("/box/end", "", &[]);
    let _ = viz.until("/end");
    let script = format!(
        "from pythonosc import udp_client, osc_bundle_builder as bb, osc_message_builder as mb\n\
         c = udp_client.SimpleUDPClient('127.0.0.1', {})\n\
         b = bb.OscBundleBuilder(bb.IMMEDIATELY)\n\
         for addr, v in [('/box/level', -3.0), ('/box/note', 64), ('/box/mode', 'calm'), ('/box/note', 128)]:\n\
         \x20   m = mb.OscMessageBuilder(address=addr); m.add_arg(v); b.add_content(m.build())\n\
         b.add_content(mb.OscMessageBuilder(address='/box/end').build())\n\
         c.send(b.build())\n",
        viz.port
    );
    assert!(Command::new("python3").arg("-c").arg(script).status().unwrap().success());
    assert_eq!(viz.until("/end"), ["/level f 0.000000", "/note i 64", "/mode s \"calm\"", "/end"]);
}
