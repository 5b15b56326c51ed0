//! Every file shipped in policies/ passes check, and the seccomp profiles are real seccompiler
//! filters.

#![allow(clippy::unwrap_used)] // A failing unwrap is a failing test.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use vitrine_policy::{load_policy, load_policy_dir};

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(common::repo().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no *.{ext} in {dir}");
    v
}

#[test]
fn shipped_examples_pass_check() {
    let (valid, diags) = load_policy_dir(&common::repo().join("policies/examples"), &common::ctx());
    assert!(diags.is_empty(), "{diags}");
    let names: BTreeSet<String> = valid.iter().map(|p| p.visualization.name.to_string()).collect();
    assert_eq!(names, ["aurora", "oscdump", "sdk-viz"].map(String::from).into());
}

/// Each preset is checked by referring to it from a minimal policy by path.
#[test]
fn shipped_presets_pass_check() {
    for preset in files("policies/presets", "toml") {
        let text = format!("{}[filesystem]\npresets = [\"{}\"]\n", common::BASE, preset.display());
        let policy = common::parse(&text).unwrap_or_else(|d| panic!("{d}"));
        assert!(!policy.filesystem.presets.is_empty());
    }
}

#[test]
fn system_libs_lets_the_loader_execute() {
    let p = common::parse(common::BASE).unwrap();
    let exec: Vec<String> = p.filesystem.exec.iter().map(|p| p.to_string()).collect();
    for dir in ["/lib", "/lib64", "/usr/lib"] {
        assert!(exec.contains(&dir.to_string()), "{exec:?}");
    }
    let devices: Vec<String> = p.filesystem.devices.iter().map(|p| p.to_string()).collect();
    assert!(devices.contains(&"/dev/null".to_string()));
}

#[test]
fn shipped_profiles_compile_with_seccompiler() {
    for profile in files("policies/seccomp", "json") {
        let bytes = std::fs::read(&profile).unwrap();
        let filters =
            seccompiler::compile_from_json(bytes.as_slice(), seccompiler::TargetArch::x86_64)
                .unwrap_or_else(|e| panic!("{}: {e}", profile.display()));
        assert!(filters.contains_key("main"));
        let name = profile.file_stem().unwrap().to_str().unwrap();
        let text = format!("{}[syscalls]\nprofile = \"{name}\"\n", common::BASE);
        let policy = common::parse(&text).unwrap_or_else(|d| panic!("{d}"));
        assert!(policy.syscalls.rules.len() > 100, "{name}");
    }
}

/// The default profile keeps to its contract: no namespace, mount, bpf, perf, keyctl, ptrace,
/// module, clock, reboot or swap syscalls, and clone3 / io_uring are left to the sandbox.
#[test]
fn default_profile_has_no_dangerous_syscalls() {
    let p = common::parse(common::BASE).unwrap();
    let names: BTreeSet<&str> = p.syscalls.rules.iter().map(|r| r.syscall.as_str()).collect();
    for forbidden in [
        "unshare",
        "setns",
        "mount",
        "bpf",
        "perf_event_open",
        "keyctl",
        "ptrace",
        "init_module",
        "clock_settime",
        "reboot",
        "swapon",
        "clone3",
        "io_uring_setup",
    ] {
        assert!(!names.contains(forbidden), "{forbidden}");
    }
    for needed in
        ["futex", "epoll_wait", "mmap", "rt_sigaction", "sendto", "recvfrom", "clone", "exit_group"]
    {
        assert!(names.contains(needed), "{needed}");
    }
    // clone is allowed only without namespace flags.
    assert!(p.syscalls.rules.iter().filter(|r| r.syscall == "clone").all(|r| !r.args.is_empty()));
}

/// A policy whose [syscalls] profile is a path; a broken profile is reported in its own file.
#[test]
fn profile_errors_name_the_profile_file() {
    let dir = tempfile::tempdir().unwrap();
    let prof = dir.path().join("mine.json");
    std::fs::write(&prof, "{\"main\": {\"mismatch_action\": \"kill_process\", \"match_action\": \"allow\",\n\"filter\": [{\"syscall\": \"read\"},\n{\"syscall\": \"wirte\"}]}}").unwrap();
    let text = format!("{}[syscalls]\nprofile = \"{}\"\n", common::BASE, prof.display());
    let d = common::parse(&text).unwrap_err();
    assert_eq!(d.len(), 1, "{d}");
    assert_eq!(d.0[0].path, prof);
    assert_eq!(d.0[0].location.unwrap().line, 3);
    assert_eq!(d.0[0].hints, vec!["did you mean \"write\"?".to_string()]);
}

#[test]
fn oscdump_example_pins_the_debian_binary() {
    let path = common::repo().join("policies/examples/oscdump.toml");
    let p = load_policy(&path, &common::ctx()).unwrap();
    assert_eq!(p.visualization.command.as_path(), Path::new("/usr/bin/oscdump"));
    let pinned = p.verify.sha256.unwrap();
    match std::fs::read("/usr/bin/oscdump") {
        Ok(bytes) => {
            use sha2::Digest;
            let actual: [u8; 32] = sha2::Sha256::digest(&bytes).into();
            assert_eq!(actual, pinned, "liblo-tools changed: update the pin");
        }
        Err(e) => eprintln!(
            "skipping the pin comparison: /usr/bin/oscdump: {e} (apt-get install liblo-tools)"
        ),
    }
}
