//! Tests of the metrics registry and its HTTP responder, including a real Prometheus server
//! scraping it and `promtool check metrics` on a scrape.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::http::route;
use super::*;
use crate::events::Event;

/// The names DESIGN §9 promises, without the `vitrine_` prefix.
const DESIGN_NAMES: [&str; 21] = [
    "build_info",
    "visualization_up",
    "visualization_state",
    "visualization_restarts_total",
    "visualization_cpu_seconds_total",
    "visualization_memory_bytes",
    "visualization_pids",
    "visualization_oom_kills_total",
    "sandbox_violations_total",
    "sandbox_landlock_abi",
    "sandbox_layer_enforced",
    "spawn_seconds",
    "osc_received_total",
    "osc_forwarded_total",
    "osc_rejected_total",
    "osc_dropped_total",
    "osc_forward_latency_seconds",
    "midi_messages_total",
    "peer_connected",
    "peer_handshakes_total",
    "audit_events_total",
];

/// A registry where every series has at least one sample.
fn busy_metrics() -> Metrics {
    let m = Metrics::new();
    m.set_state("aurora", "running");
    m.record_restart("aurora", "oom");
    m.set_visualization_stats(
        "aurora",
        &VisualizationStats { cpu_seconds: 1.5, memory_bytes: 4096, pids: 3, oom_kills: 1 },
    );
    m.set_sandbox("aurora", 6, &["landlock".into(), "seccomp".into()]);
    m.record_violation("aurora", "ptrace");
    m.observe_spawn(0.012);
    m.osc_received("udp");
    m.osc_forwarded("aurora");
    m.osc_rejected("unknown-address");
    m.osc_dropped("aurora", "child-lagging");
    m.observe_osc_latency(0.00004);
    m.midi_messages("aurora", "nanoKONTROL2:nanoKONTROL2 _ CTRL", "accepted", 1);
    m.set_peer_connected("ABCD-EFGH", true);
    m.peer_handshake("ok");
    m.audit_event("policy-loaded", 1);
    m.audit_write_error();
    m
}

#[test]
fn every_design_series_is_registered_and_exported() {
    let m = busy_metrics();
    let names = m.names();
    let text = m.render();
    for name in DESIGN_NAMES {
        let full = format!("vitrine_{name}");
        assert!(names.contains(&full), "{full} is not registered");
        assert!(text.contains(&format!("# TYPE {full} ")), "{full} is not in a scrape:\n{text}");
    }
    assert!(text.contains(r#"vitrine_build_info{version=""#));
    assert!(text.contains(r#"vitrine_visualization_state{name="aurora",state="running"} 1"#));
    assert!(text.contains(r#"vitrine_visualization_state{name="aurora",state="failed"} 0"#));
}

#[test]
fn launcher_layer_names_map_to_enforced_layers() {
    let m = Metrics::new();
    let reported: Vec<String> =
        ["namespaces", "landlock-abi-6", "seccomp-kill", "cgroup", "verified"]
            .map(String::from)
            .into();
    m.set_sandbox("a", 6, &reported);
    for layer in LAYERS {
        assert_eq!(m.layer_enforced.with_label_values(&["a", layer]).get(), 1, "{layer}");
    }
    // Learning mode records and allows: seccomp is not enforced. Landlock missing: not enforced.
    m.set_sandbox("b", 0, &["namespaces".into(), "seccomp-log".into()]);
    assert_eq!(m.layer_enforced.with_label_values(&["b", "seccomp"]).get(), 0);
    assert_eq!(m.layer_enforced.with_label_values(&["b", "landlock"]).get(), 0);
    assert!(!layer_enforced("landlocked", "landlock"));
}

#[test]
fn cgroup_totals_become_monotonic_counters_across_restarts() {
    let m = Metrics::new();
    let stats = |cpu, oom| VisualizationStats {
        cpu_seconds: cpu,
        memory_bytes: 1,
        pids: 1,
        oom_kills: oom,
    };
    m.set_visualization_stats("a", &stats(2.0, 1));
    m.set_visualization_stats("a", &stats(3.5, 1));
    // A new cgroup after a restart starts from zero again.
    m.set_visualization_stats("a", &stats(0.5, 1));
    assert_eq!(m.cpu_seconds.with_label_values(&["a"]).get(), 4.0);
    assert_eq!(m.oom_kills.with_label_values(&["a"]).get(), 2);
    // A restart announced on the bus resets even when no total went down.
    m.observe_event(&Event::Starting { name: "a".into(), attempt: 2 }, &mut HashMap::new());
    m.set_visualization_stats("a", &stats(1.0, 1));
    assert_eq!(m.cpu_seconds.with_label_values(&["a"]).get(), 5.0);
    assert_eq!(m.oom_kills.with_label_values(&["a"]).get(), 3);
}

#[test]
fn bus_events_drive_state_and_restart_reasons() {
    let m = Metrics::new();
    let mut last = HashMap::new();
    let name = || "aurora".to_owned();
    m.observe_event(&Event::Starting { name: name(), attempt: 1 }, &mut last);
    m.observe_event(
        &Event::Running { name: name(), pid: 7, layers: vec!["seccomp".into()] },
        &mut last,
    );
    assert_eq!(m.up.with_label_values(&["aurora"]).get(), 1);
    assert_eq!(m.layer_enforced.with_label_values(&["aurora", "seccomp"]).get(), 1);
    assert_eq!(m.layer_enforced.with_label_values(&["aurora", "landlock"]).get(), 0);
    let exit = ExitReason::Seccomp { syscall: "ptrace".into() };
    m.observe_event(&Event::Exited { name: name(), pid: 7, exit, uptime_ms: 10 }, &mut last);
    m.observe_event(&Event::Starting { name: name(), attempt: 2 }, &mut last);
    assert_eq!(m.up.with_label_values(&["aurora"]).get(), 0);
    assert_eq!(m.restarts.with_label_values(&["aurora", "seccomp"]).get(), 1);
    assert_eq!(m.state.with_label_values(&["aurora", "starting"]).get(), 1);
    m.remove_visualization("aurora");
    assert!(!m.render().contains(r#"vitrine_visualization_up{name="aurora"}"#));
}

#[test]
fn the_responder_answers_only_what_it_should() {
    let m = Metrics::new();
    let get = |head: &str| route(head, &m);
    assert_eq!(get("GET /metrics HTTP/1.1\r\nHost: x").0, "200 OK");
    assert!(get("GET /metrics?x=1 HTTP/1.1").2.contains("vitrine_build_info"));
    assert!(get("HEAD /metrics HTTP/1.1").3);
    assert_eq!(get("GET /other HTTP/1.1").0, "404 Not Found");
    assert_eq!(get("POST /metrics HTTP/1.1").0, "405 Method Not Allowed");
    assert_eq!(get("GET /metrics HTTP/2.0").0, "505 HTTP Version Not Supported");
    assert_eq!(get("GET  /metrics HTTP/1.1").0, "400 Bad Request");
    assert_eq!(get("GET /metrics HTTP/1.1\r\nContent-Length: 5").0, "400 Bad Request");
    assert_eq!(get("GET /metrics HTTP/1.1\r\nContent-Length: 0").0, "200 OK");
}

/// Starts the responder on a free loopback port in a runtime of its own thread.
fn start_server(metrics: Metrics) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async move {
            let listener = bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
            addr_tx.send(listener.local_addr().expect("local addr")).expect("send addr");
            serve(listener, metrics, async move {
                let _ = stop_rx.await;
            })
            .await;
        });
    });
    (addr_rx.recv().expect("server address"), stop_tx)
}

/// A blocking HTTP/1.1 GET; returns the status line and body.
fn http_get(addr: SocketAddr, target: &str) -> (String, String) {
    try_http_get(addr, target).expect("HTTP GET")
}

fn try_http_get(addr: SocketAddr, target: &str) -> std::io::Result<(String, String)> {
    let mut stream = TcpStream::connect(addr)?;
    write!(stream, "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or(std::io::ErrorKind::InvalidData)?;
    Ok((head.lines().next().unwrap_or_default().to_owned(), body.to_owned()))
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

#[test]
fn promtool_accepts_a_scrape() {
    if !have("promtool") {
        eprintln!("skipped: promtool not installed (Debian package `prometheus`)");
        return;
    }
    let (addr, _stop) = start_server(busy_metrics());
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child.stdin.take().expect("stdin").write_all(body.as_bytes()).expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && report.trim().is_empty(), "promtool:\n{report}\n{body}");
}

/// A free loopback port for Prometheus' own web listener.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Stops the Prometheus server even when an assertion fails.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_and_serves_a_vitrine_series() {
    if !have("prometheus") {
        eprintln!("skipped: prometheus not installed (Debian package `prometheus`)");
        return;
    }
    let metrics = busy_metrics();
    metrics.set_state("borealis", "running");
    let (target, _stop) = start_server(metrics);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: vitrine\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("config");
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let _server = Child(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let query = "/api/v1/query?query=vitrine_visualization_up%7Bname%3D%22borealis%22%7D";
    // Prometheus needs a few scrape intervals; the bound only keeps a broken setup from hanging.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok((status, body)) = try_http_get(web, query) {
            if status.contains("200") {
                let json: serde_json::Value =
                    serde_json::from_str(&body).expect("API answer is JSON");
                let result = &json["data"]["result"];
                if let Some(sample) = result.get(0) {
                    assert_eq!(sample["metric"]["job"], "vitrine");
                    assert_eq!(sample["value"][1], "1", "{body}");
                    return;
                }
                last = body;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("Prometheus never returned the vitrine series; last answer: {last}");
}

#[test]
fn the_grafana_dashboard_only_queries_exported_series() {
    let text = include_str!("../../../deploy/grafana/vitrine.json");
    let dashboard: serde_json::Value = serde_json::from_str(text).expect("dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 8, "the dashboard has too few queries: {exprs:?}");
    let names = Metrics::new().names();
    let mut used = Vec::new();
    for expr in &exprs {
        for name in series_in(expr) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| names.iter().any(|n| n == b)))
                .unwrap_or(&name)
                .to_owned();
            assert!(
                names.contains(&base),
                "the dashboard queries {name}, which vitrine does not export ({expr})"
            );
            used.push(base);
        }
    }
    for wanted in [
        "vitrine_visualization_up",
        "vitrine_osc_rejected_total",
        "vitrine_sandbox_violations_total",
        "vitrine_peer_connected",
    ] {
        assert!(used.iter().any(|u| u == wanted), "the dashboard does not show {wanted}");
    }
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// Every `vitrine_…` identifier in a PromQL expression.
fn series_in(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("vitrine_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if !preceded {
            found.push(expr[start..end].to_owned());
        }
        i = end;
    }
    found
}

#[test]
fn hub_snapshots_become_counter_increments_and_latency_buckets() {
    use crate::osc::{LatencySnapshot, StatsSnapshot, VisualizationStats as OscViz};
    const BOUNDS: [f64; 10] = LATENCY_BUCKETS;
    let snapshot = |udp: u64, forwarded: u64, fast: u64, slow: u64| StatsSnapshot {
        received_udp: udp,
        received_injected: 1,
        rejected: vec![("unknown-address", udp / 2)],
        visualizations: vec![OscViz {
            name: "aurora".into(),
            forwarded,
            dropped: vec![("coalesced", 3)],
            feedback: 0,
        }],
        latency: LatencySnapshot {
            bounds: &BOUNDS,
            counts: vec![fast, 0, 0, 0, 0, 0, 0, 0, 0, 0, slow],
            sum_seconds: 0.0,
        },
        blocks: 0,
    };
    let m = Metrics::new();
    let source_calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let calls = source_calls.clone();
    m.set_osc_source(Arc::new(move || {
        let n = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        snapshot(10 * n, 8 * n, 5 * n, n)
    }));
    m.render();
    let text = m.render();
    assert_eq!(source_calls.load(std::sync::atomic::Ordering::Relaxed), 2);
    // Totals of the second snapshot, not the sum of both.
    assert!(text.contains(r#"vitrine_osc_received_total{source="udp"} 20"#), "{text}");
    assert!(text.contains(r#"vitrine_osc_received_total{source="injected"} 1"#), "{text}");
    assert!(text.contains(r#"vitrine_osc_rejected_total{reason="unknown-address"} 10"#), "{text}");
    assert!(text.contains(r#"vitrine_osc_forwarded_total{name="aurora"} 16"#), "{text}");
    assert!(text.contains(r#"vitrine_osc_dropped_total{name="aurora",reason="coalesced"} 3"#));
    assert!(
        text.contains(r#"vitrine_osc_forward_latency_seconds_bucket{le="0.00002"} 10"#),
        "{text}"
    );
    assert!(text.contains("vitrine_osc_forward_latency_seconds_count 12"), "{text}");
}

#[test]
fn midi_counts_become_counter_steps() {
    use crate::midi::PortCount;
    let m = Metrics::new();
    let count = |result, total| PortCount {
        name: "aurora".into(),
        port: "VirMIDI 0-0".into(),
        result,
        total,
    };
    m.sync_midi(&[count("accepted", 2), count("channel", 0)]);
    m.sync_midi(&[count("accepted", 5), count("channel", 1)]);
    let text = m.render();
    assert!(
        text.contains(
            r#"vitrine_midi_messages_total{name="aurora",port="VirMIDI 0-0",result="accepted"} 5"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"vitrine_midi_messages_total{name="aurora",port="VirMIDI 0-0",result="channel"} 1"#
        ),
        "{text}"
    );
}
