//! `vitrine serve` end to end for observability: the metrics endpoint answers with vitrine's
//! series, security events land in the audit log (counted in the metrics), and the log a
//! stopped daemon leaves behind verifies.
//!
//! Needs root: the daemon sets up its cgroup hierarchy at start.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn scrape(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: vitrine\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.starts_with("HTTP/1.1 200 ").then_some(response)
}

/// Kills the daemon if the test fails before it stopped it.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(dir: &Path, metrics: SocketAddr) -> std::path::PathBuf {
    let config = dir.join("vitrine.toml");
    let d = dir.display();
    std::fs::write(
        &config,
        format!(
            "policies = \"{d}/policies\"\nstate_dir = \"{d}/state\"\n[osc]\nlisten = []\n\
             [control]\nsocket = \"{d}/control.sock\"\n[metrics]\nlisten = \"{metrics}\"\n\
             [audit]\npath = \"{d}/log/audit.jsonl\"\n"
        ),
    )
    .expect("config");
    config
}

#[test]
fn the_daemon_exports_metrics_and_audits_what_happened() {
    if !is_root() {
        eprintln!("skipped: `vitrine serve` sets up cgroups at start, which needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("policies")).expect("policies");
    std::fs::create_dir_all(dir.path().join("log")).expect("log dir");
    // An invalid policy: the daemon rejects it, which is an audit record.
    std::fs::write(dir.path().join("policies/broken.toml"), "[visualization]\nnaem = \"x\"\n")
        .expect("policy");
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let config = write_config(dir.path(), metrics);
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_vitrine"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start vitrine serve"),
    );

    // The bound only keeps a broken daemon from hanging the test.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    // One record per diagnostic of the rejected file.
    let rejected = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(r#"vitrine_audit_events_total{kind="policy-rejected"} "#))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    while Instant::now() < deadline && rejected(&last) == 0 {
        std::thread::sleep(Duration::from_millis(200));
        last = scrape(metrics).unwrap_or_default();
    }
    assert!(rejected(&last) > 0, "no policy-rejected record counted; last scrape:\n{last}");
    assert!(last.contains(r#"vitrine_build_info{version=""#));
    assert!(last.contains("vitrine_audit_write_errors_total 0"), "{last}");

    let pid = nix::unistd::Pid::from_raw(daemon.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = daemon.0.wait().expect("wait");
    assert!(status.success(), "vitrine serve exited with {status}");

    let log = dir.path().join("log/audit.jsonl");
    let text = std::fs::read_to_string(&log).expect("audit log");
    let kinds: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .map(|v| v["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("daemon-started"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "policy-rejected"), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("daemon-stopping"), "{kinds:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .args(["audit", "verify", "--strict"])
        .arg(&log)
        .output()
        .expect("audit verify");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}
