//! Real third-party programs run under the shipped presets and seccomp profile: Debian's
//! python3 and liblo's oscdump (apt `liblo-tools`).

mod sandbox_support;

use std::path::Path;
use std::process::{Command, Stdio};

use sandbox_support::*;

#[test]
fn python3_runs_under_its_preset() {
    if !root_or_skip("python3_runs_under_its_preset") {
        return;
    }
    let python = Path::new("/usr/bin/python3");
    if !python.exists() {
        eprintln!("skipped python3_runs_under_its_preset: /usr/bin/python3 is not installed");
        return;
    }
    // One line: policies refuse control characters in arguments.
    let script = "import json, os, threading, hashlib, tempfile; \
                  t = threading.Thread(target=lambda: None); t.start(); t.join(); \
                  f = tempfile.NamedTemporaryFile(); f.write(b'x'); f.close(); \
                  print(json.dumps({'uid': os.getuid(), 'sha': hashlib.sha256(b'v').hexdigest()[:8]}))";
    let verify = format!("sha256 = \"{}\"", sha256(&python.canonicalize().expect("python path")));
    let args = vec!["-c".to_owned(), script.to_owned()];
    let policy = Policy::new(
        "t-python",
        python,
        &args,
        "{ LANG = \"C.UTF-8\" }",
        &verify,
        &tables("nobody", "python3", ""),
    );
    let run = vitrine_run(&policy.path, &[]);
    assert_eq!(run.code(), 0, "python3 failed: {}", run.stderr);
    let digest = "4c94485e"; // sha256(b"v"), computed inside by hashlib
    assert!(
        run.stdout.contains(&format!("{{\"uid\": 65534, \"sha\": \"{digest}\"}}")),
        "{}",
        run.stdout
    );
}

/// The sandbox's processes, found from `vitrine run`'s pid: shim, then init, then the child
/// (whose name is its memfd's, `memfd:vitrine:…`, since it was executed from one).
fn descendants(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else { continue };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                all.push(c);
                queue.push(c);
            }
        }
    }
    all
}

fn state_and_comm(pid: u32) -> Option<(char, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let state = stat[close + 2..].chars().next()?;
    Some((state, stat[open + 1..close].to_owned()))
}

#[test]
fn oscdump_runs_until_stopped() {
    if !root_or_skip("oscdump_runs_until_stopped") {
        return;
    }
    let oscdump = Path::new("/usr/bin/oscdump");
    if !oscdump.exists() {
        eprintln!("skipped oscdump_runs_until_stopped: install liblo-tools");
        return;
    }
    helpers();
    let verify = format!("sha256 = \"{}\"", sha256(oscdump));
    let args = vec!["-L".to_owned(), "9000".to_owned()];
    let policy =
        Policy::new("t-oscdump", oscdump, &args, "{}", &verify, &standard_tables("nobody", ""));
    let mut child = Command::new(VITRINE)
        .arg("run")
        .arg(&policy.path)
        .env("VITRINE_SHIM", &helpers().0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vitrine run");
    // Wait until oscdump sleeps in its receive loop (or the sandbox ended early).
    let pid = child.id();
    let sleeping = loop {
        if child.try_wait().expect("try_wait").is_some() {
            break false;
        }
        let found = descendants(pid)
            .into_iter()
            .filter_map(state_and_comm)
            .any(|(s, c)| c != "vitrine-shim" && s == 'S');
        if found {
            break true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .ok();
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(sleeping, "oscdump ended before it reached its receive loop: {stderr}");
    assert!(!stderr.contains("seccomp:"), "oscdump was killed by seccomp: {stderr}");
    assert_eq!(out.status.code(), Some(128 + 15), "stopped by the forwarded SIGTERM: {stderr}");
}

#[test]
fn oom_kill_is_reported() {
    if !root_or_skip("oom_kill_is_reported") {
        return;
    }
    let python = Path::new("/usr/bin/python3");
    if !python.exists() {
        eprintln!("skipped oom_kill_is_reported: /usr/bin/python3 is not installed");
        return;
    }
    let verify = format!("sha256 = \"{}\"", sha256(&python.canonicalize().expect("python path")));
    // Multiplying bytes writes every page, so the memory is really used.
    let args = vec!["-c".to_owned(), "b = b'x' * (1 << 30); print(len(b))".to_owned()];
    let tables =
        tables("nobody", "python3", "").replace("memory = \"256MiB\"", "memory = \"64MiB\"");
    let policy = Policy::new("t-oom", python, &args, "{}", &verify, &tables);
    let run = vitrine_run(&policy.path, &[]);
    assert!(run.stderr.contains("killed by the OOM killer"), "{}", run.stderr);
    assert_eq!(run.code(), 128 + 9);
}
