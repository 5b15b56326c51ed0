//! Policy directories, preset resolution and merging, and the daemon configuration.

#![allow(clippy::unwrap_used)] // A failing unwrap is a failing test.

mod common;

use std::fs;
use std::path::Path;

use vitrine_policy::{LoadContext, load_config, load_policy, load_policy_dir};

const SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn policy(name: &str, extra: &str) -> String {
    format!(
        "[visualization]\nname = \"{name}\"\ncommand = \"/opt/{name}\"\n[verify]\nsha256 = \"{SHA}\"\n[filesystem]\npresets = []\n[syscalls]\nprofile = \"{}\"\n{extra}",
        common::repo().join("policies/seccomp/default.json").display()
    )
}

/// A site layout: policies/ next to presets/, as in /etc/vitrine.
fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("policies")).unwrap();
    fs::create_dir_all(dir.path().join("presets")).unwrap();
    dir
}

fn hermetic() -> LoadContext {
    LoadContext { allow_unsigned: false, system_dirs: Vec::new() }
}

#[test]
fn duplicate_names_and_prefixes_reject_both_files() {
    let site = site();
    let p = site.path().join("policies");
    fs::write(p.join("a.toml"), policy("aurora", "")).unwrap();
    fs::write(p.join("b.toml"), policy("aurora", "[osc]\nprefix = \"/b\"\n")).unwrap();
    fs::write(p.join("c.toml"), policy("comet", "[osc]\nprefix = \"/shared\"\n")).unwrap();
    fs::write(p.join("d.toml"), policy("dune", "[osc]\nprefix = \"/shared/dune\"\n")).unwrap();
    fs::write(p.join("e.toml"), policy("ember", "")).unwrap();
    fs::write(p.join("notes.txt"), "not a policy").unwrap();
    let (valid, diags) = load_policy_dir(&p, &hermetic());
    let names: Vec<String> = valid.iter().map(|p| p.visualization.name.to_string()).collect();
    assert_eq!(names, ["ember"]);
    assert_eq!(diags.len(), 2, "{diags}");
    let text = diags.to_string();
    assert!(text.contains("b.toml:2:1: error: name \"aurora\" clashes with "), "{text}");
    assert!(text.contains("a.toml"), "{text}");
    assert!(
        text.contains("d.toml:11:1: error: OSC prefix \"/shared/dune\" clashes with "),
        "{text}"
    );
}

#[test]
fn a_directory_keeps_the_valid_policies() {
    let site = site();
    let p = site.path().join("policies");
    fs::write(p.join("good.toml"), policy("good", "")).unwrap();
    fs::write(p.join("bad.toml"), policy("bad", "[limits]\nmemory = \"lots\"\n")).unwrap();
    fs::write(p.join("binary.toml"), b"\xff\xfe").unwrap();
    std::os::unix::fs::symlink(p.join("loop.toml"), p.join("loop.toml")).unwrap();
    let (valid, diags) = load_policy_dir(&p, &hermetic());
    assert_eq!(valid.len(), 1);
    assert_eq!(diags.len(), 3, "{diags}");
    let text = diags.to_string();
    assert!(text.contains("bad.toml:11:10: error: invalid size \"lots\""), "{text}");
    assert!(text.contains("binary.toml: error: is not valid UTF-8"), "{text}");
    assert!(
        text.contains("loop.toml: error: cannot be opened: too many levels of symbolic links"),
        "{text}"
    );
}

#[test]
fn a_looping_directory_is_an_error() {
    let site = site();
    let looped = site.path().join("looped");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let (valid, diags) = load_policy_dir(&looped, &hermetic());
    assert!(valid.is_empty());
    assert!(diags.to_string().contains("too many levels of symbolic links"), "{diags}");
    let (_, diags) = load_policy_dir(&site.path().join("missing"), &hermetic());
    assert!(diags.to_string().ends_with("missing: error: does not exist"), "{diags}");
}

#[test]
fn presets_merge_depth_first_as_a_union() {
    let site = site();
    let presets = site.path().join("presets");
    fs::write(presets.join("base.toml"), "[filesystem]\nread = [\"/usr/share/base\"]\n").unwrap();
    fs::write(presets.join("gfx.toml"), "[filesystem]\npresets = [\"base\"]\nread = [\"/usr/share/gfx\"]\ndevices = [\"/dev/dri/renderD128\"]\n").unwrap();
    fs::write(
        presets.join("audio.toml"),
        "[filesystem]\npresets = [\"base\"]\nread_write = [\"/usr/share/base\"]\n",
    )
    .unwrap();
    let file = site.path().join("policies/p.toml");
    let text = policy("p", "").replace(
        "presets = []",
        "presets = [\"gfx\", \"audio\"]\nread = [\"/opt/own\", \"/usr/share/gfx\"]",
    );
    fs::write(&file, text).unwrap();
    let p = load_policy(&file, &hermetic()).unwrap();
    assert_eq!(p.filesystem.presets, ["base", "gfx", "audio"]);
    let read: Vec<String> = p.filesystem.read.iter().map(|p| p.to_string()).collect();
    assert_eq!(read, ["/usr/share/base", "/usr/share/gfx", "/opt/own"]);
    // Granted read by one preset and read-write by another: both rights stay.
    assert_eq!(
        p.filesystem.read_write.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        ["/usr/share/base"]
    );
}

#[test]
fn preset_cycles_name_the_chain() {
    let site = site();
    let presets = site.path().join("presets");
    fs::write(presets.join("a.toml"), "[filesystem]\npresets = [\"b\"]\n").unwrap();
    fs::write(presets.join("b.toml"), "[filesystem]\nread = [\"/opt/b\"]\npresets = [\"a\"]\n")
        .unwrap();
    let file = site.path().join("policies/p.toml");
    fs::write(&file, policy("p", "").replace("presets = []", "presets = [\"a\"]")).unwrap();
    let d = load_policy(&file, &hermetic()).unwrap_err();
    assert_eq!(d.len(), 1, "{d}");
    assert!(d.0[0].path.ends_with("presets/b.toml"), "{d}");
    assert_eq!(d.0[0].message, "preset cycle: a -> b -> a");
    assert_eq!(d.0[0].location.unwrap().line, 3);
}

#[test]
fn preset_files_hold_only_filesystem() {
    let site = site();
    let presets = site.path().join("presets");
    fs::write(
        presets.join("odd.toml"),
        "[filesystem]\nread = [\"/opt\"]\n[limits]\nmemory = \"1G\"\n",
    )
    .unwrap();
    let file = site.path().join("policies/p.toml");
    fs::write(&file, policy("p", "").replace("presets = []", "presets = [\"odd\"]")).unwrap();
    let d = load_policy(&file, &hermetic()).unwrap_err();
    assert!(d.to_string().contains("odd.toml:3:2: error: unknown table or key \"limits\""), "{d}");
}

#[test]
fn presets_next_to_the_policy_win_over_system_dirs() {
    let site = site();
    let system = tempfile::tempdir().unwrap();
    fs::create_dir_all(system.path().join("presets")).unwrap();
    fs::write(system.path().join("presets/x.toml"), "[filesystem]\nread = [\"/opt/system\"]\n")
        .unwrap();
    fs::write(system.path().join("presets/y.toml"), "[filesystem]\nread = [\"/opt/system-y\"]\n")
        .unwrap();
    fs::write(site.path().join("presets/x.toml"), "[filesystem]\nread = [\"/opt/local\"]\n")
        .unwrap();
    let file = site.path().join("policies/p.toml");
    fs::write(&file, policy("p", "").replace("presets = []", "presets = [\"x\", \"y\"]")).unwrap();
    let ctx = LoadContext { allow_unsigned: false, system_dirs: vec![system.path().to_path_buf()] };
    let p = load_policy(&file, &ctx).unwrap();
    let read: Vec<String> = p.filesystem.read.iter().map(|p| p.to_string()).collect();
    assert_eq!(read, ["/opt/local", "/opt/system-y"]);
}

#[test]
fn config_defaults_and_errors() {
    let missing = Path::new("/nonexistent/vitrine.toml");
    assert!(load_config(Some(missing)).unwrap_err().to_string().contains("does not exist"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vitrine.toml");
    fs::write(&file, "").unwrap();
    let c = load_config(Some(&file)).unwrap();
    assert_eq!(c.policies, Path::new("/etc/vitrine/policies"));
    assert_eq!(c.osc.max_packet, 8192);
    assert_eq!(c.osc.oscquery_listen, None);
    assert_eq!(c.metrics.listen, Some("127.0.0.1:10049".parse().unwrap()));
    assert!(!c.allow_unsigned);
    fs::write(&file, "allow_unsigned = true\n[osc]\nlisten = [\"0.0.0.0:9000\", \"[::]:9000\"]\nallow_from = [\"local\", \"10.0.0.0/8\"]\noscquery_listen = \"127.0.0.1:9001\"\n[metrics]\nlisten = \"off\"\n[peering]\nenabled = true\ndiscovery = \"static\"\nstatic_peers = [\"box-2.local:7447\", \"10.0.0.2:7447\"]\n").unwrap();
    let c = load_config(Some(&file)).unwrap();
    assert!(c.allow_unsigned && c.peering.enabled);
    assert_eq!(c.osc.listen.len(), 2);
    assert_eq!(c.metrics.listen, None);
    assert_eq!(c.osc.oscquery_listen, Some("127.0.0.1:9001".parse().unwrap()));
    assert!(LoadContext::from_config(&c).allow_unsigned);
    fs::write(&file, "polices = \"/x\"\n[osc]\nallow_from = [\"10.0.0.1/8\"]\nmax_packet = 10\n[peering]\ndiscovery = \"dns\"\nstatic_peers = [\"nohost\"]\n").unwrap();
    let d = load_config(Some(&file)).unwrap_err();
    let got: Vec<String> = d
        .iter()
        .map(|d| {
            format!("{}:{}: {}", d.location.unwrap().line, d.location.unwrap().column, d.message)
        })
        .collect();
    assert_eq!(
        got,
        [
            "1:1: unknown table or key \"polices\"",
            "3:15: \"10.0.0.1/8\" has host bits set",
            "4:14: must be between 64 and 65507",
            "6:13: unknown value \"dns\"",
            "7:17: invalid peer address \"nohost\"",
        ]
    );
    assert_eq!(d.0[0].hints, vec!["did you mean \"policies\"?".to_string()]);
}

#[test]
fn peering_tunables_parse_with_defaults_and_located_errors() {
    use std::time::Duration;
    use vitrine_policy::PeerRole;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vitrine.toml");
    fs::write(&file, "[peering]\n").unwrap();
    let p = load_config(Some(&file)).unwrap().peering;
    assert_eq!(p.site_key_role, PeerRole::Observer);
    assert_eq!((p.osc_rate, p.osc_burst), (500, 1000));
    assert_eq!(p.ban_cooldown, Duration::from_secs(300));
    assert_eq!(p.rotation_grace, Duration::from_secs(7 * 86_400));
    assert_eq!(
        (p.reconnect_min, p.reconnect_max),
        (Duration::from_secs(1), Duration::from_secs(60))
    );
    assert_eq!(
        (p.ping_interval, p.ping_timeout),
        (Duration::from_secs(15), Duration::from_secs(45))
    );
    assert_eq!(p.status_interval, Duration::from_secs(10));
    fs::write(
        &file,
        "[peering]\nsite_key_role = \"controller\"\nosc_rate = 50\nosc_burst = 80\nban_cooldown = \"2h\"\nrotation_grace = \"30d\"\npairing_window = \"90s\"\nreconnect_min = \"500ms\"\nreconnect_max = \"5m\"\nhandshake_timeout = \"3s\"\nping_interval = \"2s\"\nping_timeout = \"7s\"\nstatus_interval = \"1s\"\n",
    )
    .unwrap();
    let p = load_config(Some(&file)).unwrap().peering;
    assert_eq!(p.site_key_role, PeerRole::Controller);
    assert_eq!((p.osc_rate, p.osc_burst), (50, 80));
    assert_eq!(p.ban_cooldown, Duration::from_secs(7200));
    assert_eq!(p.rotation_grace, Duration::from_secs(30 * 86_400));
    assert_eq!(p.pairing_window, Duration::from_secs(90));
    assert_eq!(p.reconnect_min, Duration::from_millis(500));
    assert_eq!(p.handshake_timeout, Duration::from_secs(3));
    assert_eq!((p.ping_interval, p.ping_timeout), (Duration::from_secs(2), Duration::from_secs(7)));
    assert_eq!(p.status_interval, Duration::from_secs(1));
    fs::write(
        &file,
        "[peering]\nsite_key_role = \"admin\"\nosc_rate = 0\nban_cooldown = \"5\"\nrotation_grace = \"400d\"\nreconnect_min = \"2m\"\nreconnect_max = \"1m\"\nping_interval = \"10s\"\nping_timeout = \"10s\"\nstatus_intervall = \"1s\"\n",
    )
    .unwrap();
    let d = load_config(Some(&file)).unwrap_err();
    let got: Vec<String> = d
        .iter()
        .map(|d| {
            format!("{}:{}: {}", d.location.unwrap().line, d.location.unwrap().column, d.message)
        })
        .collect();
    assert_eq!(
        got,
        [
            "2:17: unknown value \"admin\"",
            "3:12: must be between 1 and 100000",
            "4:16: duration \"5\" has no unit",
            "5:18: \"400d\" is longer than 365d",
            "7:17: reconnect_max must not be shorter than reconnect_min",
            "9:16: ping_timeout must be longer than ping_interval (a peer misses a ping before it is down)",
            "10:1: unknown key \"status_intervall\" in [peering]",
        ]
    );
    assert_eq!(d.0[6].hints, vec!["did you mean \"status_interval\"?".to_string()]);
}
