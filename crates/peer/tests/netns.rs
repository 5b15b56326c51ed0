//! Three boxes, each in its own network namespace, on one bridge in a fourth: they find each
//! other by mDNS (and a stock avahi-browse, run with a private dbus-daemon and avahi-daemon on
//! the bridge, sees each box's service with its TXT `id=` and `v=1`), trust each other through
//! the site key, relay OSC, and a forgotten box is refused. Needs root (network namespaces);
//! skips with a printed reason otherwise.
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

    // A stock mDNS browser on the same bridge sees each box's service with its ID.
    avahi_sees_every_box(&net, &ids);

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
    // Box 0 names the reason: the forgotten record, not an unknown or banned key (earlier
    // refusals, such as a duplicate dial while the boxes found each other, are skipped).
    let forgotten = format!("key {} refused: forgotten", ids[2]);
    while !boxes[0].expect_prefix("REFUSED ").join(" ").contains(&forgotten) {}
    boxes[0].send(&format!("standing {}", ids[2]));
    assert_eq!(boxes[0].expect_prefix("STANDING ")[0], "forgotten");
    for b in &mut boxes {
        b.send("quit");
    }
}

/// Runs a private dbus-daemon and avahi-daemon in the bridge's namespace (the bridge gets an
/// address of its own) and waits until `avahi-browse -rpt _vitrine._tcp` resolves every box with
/// its TXT `id=` and `v=1`.
fn avahi_sees_every_box(net: &Net, ids: &[PeerId]) {
    let hub = net.ns("hub");
    ip(&["-n", &hub, "addr", "add", "10.77.0.254/24", "dev", "br0"]);
    ip(&["-n", &hub, "link", "set", "lo", "up"]);
    let dir = tempfile::tempdir().unwrap();
    let bus = dir.path().join("bus");
    let bus_conf = dir.path().join("bus.conf");
    std::fs::write(
        &bus_conf,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
            bus.display()
        ),
    )
    .unwrap();
    let avahi_conf = dir.path().join("avahi-daemon.conf");
    std::fs::write(
        &avahi_conf,
        "[server]\nhost-name=vitrine-test-browser\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces=br0\nenable-dbus=yes\n\
         [wide-area]\nenable-wide-area=no\n\
         [publish]\npublish-addresses=no\npublish-hinfo=no\npublish-workstation=no\npublish-domain=no\n",
    )
    .unwrap();
    let bus_addr = format!("unix:path={}", bus.display());
    let _dbus = Daemon::spawn(
        Command::new("ip")
            .args(["netns", "exec", &hub, "dbus-daemon", "--nofork", "--nopidfile"])
            .arg(format!("--config-file={}", bus_conf.display())),
        "dbus-daemon (package dbus; tests/setup.sh installs it)",
    );
    wait_for("the private D-Bus socket", || bus.exists());
    // avahi-daemon keeps its pid file and socket under /run/avahi-daemon: give it a private
    // /run so it neither sees nor disturbs a system instance. No chroot, no privilege drop: the
    // test's throwaway configuration has no avahi user to drop to.
    let _avahi = Daemon::spawn(
        Command::new("ip")
            .args(["netns", "exec", &hub, "unshare", "--mount", "sh", "-c"])
            .arg(
                "mount -t tmpfs tmpfs /run && mkdir /run/avahi-daemon && \
                 exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f \"$0\"",
            )
            .arg(&avahi_conf)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus_addr),
        "avahi-daemon (package avahi-daemon; tests/setup.sh installs it)",
    );
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", &hub, "avahi-browse", "-rpt", "_vitrine._tcp"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus_addr)
            .output()
            .expect("avahi-browse (package avahi-utils; tests/setup.sh installs it)");
        let last = String::from_utf8_lossy(&out.stdout).into_owned();
        // Resolved lines: =;IFACE;IPv4;NAME;TYPE;DOMAIN;HOST;ADDRESS;PORT;"TXT" "TXT"
        let resolved: Vec<&str> = last.lines().filter(|l| l.starts_with("=;")).collect();
        let seen = |id: &PeerId| {
            resolved.iter().any(|l| {
                let f: Vec<&str> = l.splitn(10, ';').collect();
                f.len() == 10
                    && f[4] == "_vitrine._tcp"
                    && f[8] == PORT.to_string()
                    && f[9].contains(&format!("\"id={id}\""))
                    && f[9].contains("\"v=1\"")
            })
        };
        if ids.iter().all(seen) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "avahi-browse did not resolve every box; last output:\n{last}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A helper daemon killed (and reaped) when the test is done with it.
struct Daemon(Child);

impl Daemon {
    fn spawn(cmd: &mut Command, what: &str) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Daemon(child)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what} never appeared");
        std::thread::sleep(Duration::from_millis(50));
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
            // The test harness of the box prints its own text before the first line; a match
            // inside a longer word ("DISCONNECTED " for "CONNECTED ") does not count.
            let at = line
                .match_indices(prefix)
                .map(|(at, _)| at)
                .find(|&at| at == 0 || !line.as_bytes()[at - 1].is_ascii_uppercase());
            if let Some(at) = at {
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
        let (svc, PeerChannels { mut events, mut osc, .. }) =
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
                    PeerEvent::HandshakeFailed { reason, .. } => println!("REFUSED {reason}"),
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
