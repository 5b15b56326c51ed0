//! Three boxes, each in its own network namespace, on one bridge in a fourth: they find each
//! other by mDNS, trust each other through the site key, relay OSC, and a forgotten box is
//! refused. Needs root (network namespaces); skips with a printed reason otherwise.
//!
//! The boxes are this test binary re-executed under `ip netns exec` with [`BOX_ENV`] set; each
//! runs a real `PeerService`, reports on stdout and takes commands on stdin.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use vitrine_peer::{
    Identity, IdentitySource, PeerChannels, PeerConfig, PeerEvent, PeerId, PeerService, Role,
    SiteKey, Standing, TrustStore,
};

const BOX_ENV: &str = "VITRINE_PEER_TEST_BOX";
const TEST_NAME: &str = "three_boxes_discover_pair_relay_and_forget_in_network_namespaces";
const PORT: u16 = 7447;
/// A hang guard for each expected line; the test asserts on what happens, never on how fast.
const PATIENCE: Duration = Duration::from_secs(90);

#[test]
fn three_boxes_discover_pair_relay_and_forget_in_network_namespaces() {
    if let Ok(spec) = std::env::var(BOX_ENV) {
        return box_main(&spec);
    }
    if !nix_is_root() {
        eprintln!("skipped: creating network namespaces needs root");
        return;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        eprintln!("skipped: the `ip` command (iproute2) is not installed");
        return;
    }
    let net = Net::create(3);
    let mut boxes: Vec<BoxProc> = (0..3).map(|i| BoxProc::spawn(&net, i)).collect();
    let ids: Vec<PeerId> =
        boxes.iter_mut().map(|b| b.expect_prefix("READY ")[0].parse().unwrap()).collect();

    // Every box links with the other two: found by mDNS, admitted by the site key.
    for (i, b) in boxes.iter_mut().enumerate() {
        let mut want: Vec<String> =
            (0..3).filter(|j| *j != i).map(|j| ids[j].to_string()).collect();
        while !want.is_empty() {
            let got = b.expect_prefix("CONNECTED ");
            want.retain(|w| *w != got[0]);
        }
    }

    // Box 1 relays an OSC message to box 0, which receives it from box 1's address.
    boxes[1].send(&format!("osc {}", ids[0]));
    let got = boxes[0].expect_prefix("OSC ");
    assert_eq!(got[0], ids[1].to_string());
    assert_eq!(got[1], "10.77.0.2");

    // Box 0 forgets box 2: the link drops on both sides and box 2's reconnect is refused.
    boxes[0].send(&format!("forget {}", ids[2]));
    assert_eq!(boxes[0].expect_prefix("DISCONNECTED ")[0], ids[2].to_string());
    assert_eq!(boxes[2].expect_prefix("DISCONNECTED ")[0], ids[0].to_string());
    boxes[2].send("connect 10.77.0.1");
    let refused = boxes[2].expect_prefix("CONNECT-FAILED ");
    assert!(!refused.is_empty());
    boxes[0].send(&format!("standing {}", ids[2]));
    assert_eq!(boxes[0].expect_prefix("STANDING ")[0], "forgotten");
    for b in &mut boxes {
        b.send("quit");
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The namespaces and links of one test run, removed on drop.
struct Net {
    prefix: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    fn create(n: usize) -> Self {
        let prefix = format!("vtp{}", std::process::id() % 100_000);
        let net = Net { prefix };
        let hub = net.ns("hub");
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for i in 0..n {
            let ns = net.ns(&i.to_string());
            ip(&["netns", "add", &ns]);
            let (inner, outer) = (format!("{}i{i}", net.prefix), format!("{}o{i}", net.prefix));
            ip(&["link", "add", &inner, "type", "veth", "peer", "name", &outer]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &outer, "netns", &hub]);
            ip(&["-n", &hub, "link", "set", &outer, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", &outer, "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("10.77.0.{}/24", i + 1), "dev", &inner]);
            ip(&["-n", &ns, "link", "set", &inner, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn ns(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for s in ["hub", "0", "1", "2"] {
            let _ = Command::new("ip").args(["netns", "del", &self.ns(s)]).status();
        }
    }
}

/// One box process and its output lines.
struct BoxProc {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    _state: tempfile::TempDir,
}

impl BoxProc {
    fn spawn(net: &Net, i: usize) -> Self {
        let state = tempfile::tempdir().unwrap();
        let spec = format!("box-{i} {}", state.path().display());
        let mut child = Command::new("ip")
            .args(["netns", "exec", &net.ns(&i.to_string())])
            .arg(std::env::current_exe().unwrap())
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(BOX_ENV, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, stdin, lines, _state: state }
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
    }

    /// The words after `prefix` on the next line that starts with it.
    fn expect_prefix(&mut self, prefix: &str) -> Vec<String> {
        loop {
            let line = self
                .lines
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("no line starting with {prefix:?}"));
            // The test harness of the box prints its own text before the first line.
            if let Some(at) = line.find(prefix) {
                return line[at + prefix.len()..].split_whitespace().map(str::to_owned).collect();
            }
        }
    }
}

impl Drop for BoxProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The box side: a peer service with mDNS and the site key, driven by stdin.
fn box_main(spec: &str) {
    let (name, dir) = spec.split_once(' ').unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let mut cfg = PeerConfig::new(name, std::path::Path::new(dir), ([0, 0, 0, 0], PORT).into());
        cfg.mdns = true;
        cfg.site_key = SiteKey::from_bytes(b"netns-test-site-key-0123456789");
        cfg.site_key_role = Role::Controller;
        let ident = Identity::generate().unwrap();
        let (svc, PeerChannels { mut events, mut osc }) =
            PeerService::start(cfg, ident, IdentitySource::Memory).await.unwrap();
        println!("READY {}", svc.id());
        let (cmd_tx, mut cmds) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lines().map_while(Result::ok) {
                let _ = cmd_tx.send(line);
            }
        });
        loop {
            tokio::select! {
                Some(e) = events.recv() => match e {
                    PeerEvent::Connected { peer, .. } => println!("CONNECTED {peer}"),
                    PeerEvent::Disconnected { peer, reason } => println!("DISCONNECTED {peer} {reason}"),
                    other => eprintln!("{name}: {other:?}"),
                },
                Some(m) = osc.recv() => println!("OSC {} {}", m.peer, m.addr.ip()),
                Some(cmd) = cmds.recv() => {
                    let (verb, arg) = cmd.split_once(' ').unwrap_or((cmd.as_str(), ""));
                    match verb {
                        "osc" => svc.send_osc(&arg.parse().unwrap(), b"/a\0\0,i\0\0\0\0\0\x01".to_vec()).unwrap(),
                        "forget" => { svc.forget(&arg.parse().unwrap()).unwrap(); }
                        "standing" => {
                            let store = TrustStore::load(&std::path::Path::new(dir).join("peers.toml")).unwrap();
                            let standing = match store.standing(&arg.parse().unwrap(), std::time::SystemTime::now()) {
                                Standing::Pinned(_) | Standing::Previous(_) => "pinned",
                                Standing::Forgotten => "forgotten",
                                Standing::Stranger => "stranger",
                            };
                            println!("STANDING {standing}");
                        }
                        "connect" => match svc.connect((arg.parse::<std::net::IpAddr>().unwrap(), PORT).into()).await {
                            Ok(p) => println!("CONNECTED-AGAIN {p}"),
                            Err(e) => println!("CONNECT-FAILED {e}"),
                        },
                        _ => break,
                    }
                }
            }
        }
        svc.shutdown().await;
    });
}
