//! The probe runs as a visualization under `vitrine run` and checks every restriction from
//! inside; the harness prepares what must stay unreachable (host listeners, sockets, a
//! setuid-root program, a process of the sandbox's uid outside) and checks the outside after.

mod sandbox_support;

use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::Path;

use sandbox_support::*;

/// Check names every passing run must print as `ok`.
const EXPECTED: &[&str] = &[
    "threads",
    "NoNewPrivs",
    "Seccomp",
    "CapEff",
    "CapPrm",
    "CapBnd",
    "CapAmb",
    "uid",
    "supplementary groups",
    "open fds",
    "environment",
    "/proc shows only the sandbox",
    "pid 1 is the init",
    "only loopback",
    "host TCP unreachable",
    "TCP bind denied (Landlock)",
    "host pathname Unix socket unreachable",
    "host abstract Unix socket unreachable",
    "read /etc/shadow refused",
    "exec /usr/bin/true refused",
    "private /tmp",
    "minimal /dev",
    "mount refused",
    "unshare refused",
    "bpf refused",
    "perf_event_open refused",
    "keyctl refused",
    "userfaultfd refused",
    "ptrace refused",
    "clock_settime refused",
    "x32 getpid refused",
    "int 0x80 getpid refused",
    "io_uring_setup fails with ENOSYS",
    "clone3 fails with ENOSYS",
    "TIOCSTI refused",
    "setuid does not elevate",
];

/// Everything outside the sandbox the probe must not reach.
struct Host {
    tcp: TcpListener,
    udp: UdpSocket,
    _unix: UnixListener,
    _abstract: UnixListener,
    dir: tempfile::TempDir,
    /// Root-owned, on the root filesystem (not nosuid), holding the setuid copy and the
    /// granted files.
    fixtures: tempfile::TempDir,
}

fn host(tag: &str) -> Host {
    use std::os::linux::net::SocketAddrExt;
    let dir = tempfile::Builder::new().prefix("vitrine-probe-host").tempdir().expect("tempdir");
    let unix = UnixListener::bind(dir.path().join("host.sock")).expect("unix listener");
    std::fs::set_permissions(dir.path().join("host.sock"), std::fs::Permissions::from_mode(0o777))
        .expect("chmod socket");
    let name = format!("vitrine-probe-{tag}-{}", std::process::id());
    let addr =
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract");
    let abstract_ = UnixListener::bind_addr(&addr).expect("abstract listener");
    std::fs::create_dir_all("/var/lib/vitrine-test").expect("fixture root");
    let fixtures = tempfile::Builder::new()
        .prefix("probe")
        .tempdir_in("/var/lib/vitrine-test")
        .expect("fixtures");
    std::fs::set_permissions(fixtures.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let rw = fixtures.path().join("rw");
    std::fs::create_dir(&rw).expect("rw dir");
    nix::unistd::chown(&rw, Some(nix::unistd::Uid::from_raw(65534)), None).expect("chown rw");
    std::fs::write(fixtures.path().join("readme"), "granted\n").expect("readme");
    let suid = fixtures.path().join("suid-probe");
    std::fs::copy(probe(), &suid).expect("copy probe");
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).expect("setuid bit");
    Host {
        tcp: TcpListener::bind("127.0.0.1:0").expect("tcp listener"),
        udp: UdpSocket::bind("127.0.0.1:0").expect("udp socket"),
        _unix: unix,
        _abstract: abstract_,
        dir,
        fixtures,
    }
}

fn probe_policy(name: &str, host: &Host, destructive: bool) -> Policy {
    let f = host.fixtures.path();
    let mut args = vec![
        format!("tcp={}", host.tcp.local_addr().expect("addr").port()),
        format!("udp={}", host.udp.local_addr().expect("addr").port()),
        format!("unix={}", host.dir.path().join("host.sock").display()),
        format!("abstract={}", abstract_name(host)),
        format!("read={}/readme", f.display()),
        format!("write={}/rw", f.display()),
        format!("setuid={}/suid-probe", f.display()),
        "deny=/etc/shadow".into(),
        format!("deny={}", Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml").display()),
        "deny=/root".into(),
        "deny-write=/usr/lib".into(),
        "deny-write=/etc".into(),
        "deny-exec=/usr/bin/true".into(),
        "env=LANG=C.UTF-8".into(),
        "env=PROBE=1".into(),
        "uid=65534".into(),
    ];
    if destructive {
        args.push("--destructive".into());
    }
    let fs = format!(
        "read = [\"{0}/readme\"]\nread_write = [\"{0}/rw\"]\nexec = [\"{0}/suid-probe\"]",
        f.display()
    );
    let verify = format!("sha256 = \"{}\"", sha256(&probe()));
    Policy::new(
        name,
        &probe(),
        &args,
        "{ LANG = \"C.UTF-8\", PROBE = \"1\" }",
        &verify,
        &standard_tables("nobody", &fs),
    )
}

fn abstract_name(host: &Host) -> String {
    let addr = host._abstract.local_addr().expect("abstract addr");
    use std::os::linux::net::SocketAddrExt;
    String::from_utf8_lossy(addr.as_abstract_name().expect("abstract")).into_owned()
}

fn assert_probe_passed(run: &Run) {
    let failed: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failed.is_empty(), "probe failures: {failed:#?}");
    for name in EXPECTED {
        let line = format!("ok   {name}:");
        assert!(run.stdout.lines().any(|l| l.starts_with(&line)), "check `{name}` did not run");
    }
    assert!(run.stdout.contains("probe: 0 failure(s)"), "probe did not finish");
}

#[test]
fn probe_checks_pass_inside_the_sandbox() {
    if !root_or_skip("probe_checks_pass_inside_the_sandbox") {
        return;
    }
    let host = host("plain");
    let policy = probe_policy("t-probe", &host, false);
    let run = vitrine_run(&policy.path, &[]);
    assert_probe_passed(&run);
    assert_eq!(run.code(), 0);
    let start = run.stderr.lines().find(|l| l.contains("started,")).expect("start line");
    for part in [
        "namespaces mnt,pid,ipc,uts,net,cgroup",
        "landlock ABI",
        "seccomp",
        "default kill",
        "cgroup",
        "sha256 pinned",
    ] {
        assert!(start.contains(part), "start line lacks `{part}`: {start}");
    }
    // The probe's datagram to the host's port went to the sandbox's own loopback: loopback
    // delivery is synchronous, so anything that had reached the host would be queued now.
    host.udp.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 16];
    assert!(host.udp.recv_from(&mut buf).is_err(), "a datagram from the sandbox reached the host");
    host.tcp.set_nonblocking(true).expect("nonblocking");
    assert!(host.tcp.accept().is_err(), "a TCP connection from the sandbox reached the host");
}

#[test]
fn probe_checks_pass_in_a_primed_restart() {
    if !root_or_skip("probe_checks_pass_in_a_primed_restart") {
        return;
    }
    // A start, then a restart in a sandbox primed after the exit, as `serve` restarts: the
    // second probe runs in the primed sandbox and every check must hold there too.
    let host = host("primed");
    let policy = probe_policy("t-probe-primed", &host, false);
    let run = vitrine_run_with(&policy.path, &["--repeat", "1"], &[]);
    assert_probe_passed(&run);
    assert_eq!(run.stdout.matches("probe: 0 failure(s)").count(), 2, "{}", run.stdout);
    assert!(run.stderr.contains("1 restarts, p50"), "{}", run.stderr);
    assert_eq!(run.code(), 0);
}

#[test]
fn destructive_probes_stay_inside() {
    if !root_or_skip("destructive_probes_stay_inside") {
        return;
    }
    let host = host("destructive");
    // A process outside the sandbox with the sandbox's own uid: kill(-1) inside must miss it.
    let mut outside = std::process::Command::new("sleep")
        .arg("600")
        .uid(65534)
        .gid(65534)
        .spawn()
        .expect("outside sleeper");
    let policy = probe_policy("t-probe-bombs", &host, true);
    let run = vitrine_run(&policy.path, &[]);
    let alive = outside.try_wait().expect("try_wait").is_none();
    let _ = outside.kill();
    let _ = outside.wait();
    assert_probe_passed(&run);
    for name in [
        "fork bomb stopped by the pids limit",
        "memory bomb killed at the memory limit",
        "/tmp fill stops at its size",
    ] {
        assert!(run.stdout.contains(&format!("ok   {name}")), "`{name}` did not pass");
    }
    assert!(run.stdout.contains("kill(-1, SIGKILL) from inside"), "kill(-1) did not run");
    assert!(alive, "kill(-1) inside the sandbox killed a process outside");
}
