//! The files of `deploy/`: the systemd unit, sysusers and tmpfiles snippets, the default
//! configuration and the Debian package's asset list.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// The value of `Key=` in the unit (last assignment wins, as in systemd).
fn directive<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        .next_back()
        .map(str::trim)
}

#[test]
fn the_unit_has_the_contract_directives() {
    let unit = read("deploy/vitrine.service");
    for (key, value) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("Delegate", "yes"),
        ("KillMode", "mixed"),
        ("NoNewPrivileges", "yes"),
        ("RestrictNamespaces", "no"),
        ("ProtectControlGroups", "no"),
        ("ProtectKernelLogs", "no"),
        ("ProtectClock", "no"),
    ] {
        assert_eq!(directive(&unit, key), Some(value), "{key}");
    }
    assert!(directive(&unit, "WatchdogSec").is_some());
    assert_eq!(directive(&unit, "SystemCallFilter"), None, "a filter would reach every child");
    let mut caps: Vec<&str> =
        directive(&unit, "CapabilityBoundingSet").expect("bounding set").split(' ').collect();
    caps.sort_unstable();
    assert_eq!(
        caps,
        [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_KILL",
            "CAP_NET_ADMIN",
            "CAP_SETGID",
            "CAP_SETPCAP",
            "CAP_SETUID",
            "CAP_SYSLOG",
            "CAP_SYS_ADMIN"
        ]
    );
}

#[test]
fn systemd_analyze_accepts_the_unit() {
    if !have("systemd-analyze") {
        eprintln!("skipped: systemd-analyze not installed (Debian package `systemd`)");
        return;
    }
    // The unit names /usr/bin/vitrine; verify a copy that points at the binary under test.
    let dir = tempfile::tempdir().expect("tempdir");
    let unit =
        read("deploy/vitrine.service").replace("/usr/bin/vitrine", env!("CARGO_BIN_EXE_vitrine"));
    let path = dir.path().join("vitrine.service");
    std::fs::write(&path, unit).expect("write unit");
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("run");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.trim().is_empty(), "systemd-analyze verify:\n{text}");
}

#[test]
fn sysusers_and_tmpfiles_create_the_accounts_and_directories() {
    if !is_root() || !have("systemd-sysusers") {
        eprintln!("skipped: needs root and systemd-sysusers (it chowns inside a scratch root)");
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("etc")).expect("etc");
    let run = |tool: &str, args: &[&str], conf: &str| {
        let out = Command::new(tool)
            .arg(format!("--root={}", root.path().display()))
            .args(args)
            .arg(repo().join(conf).canonicalize().expect("conf path"))
            .output()
            .expect("run");
        assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run("systemd-sysusers", &[], "deploy/sysusers.d/vitrine.conf");
    let group = std::fs::read_to_string(root.path().join("etc/group")).expect("group");
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).expect("passwd");
    assert!(group.contains("\nvitrine-admin:") || group.starts_with("vitrine-admin:"), "{group}");
    assert!(group.lines().any(|l| l.starts_with("vitrine:")), "{group}");
    assert!(
        passwd.lines().any(|l| l.starts_with("vitrine-viz:") && l.ends_with("/usr/sbin/nologin"))
    );

    run("systemd-tmpfiles", &["--create"], "deploy/tmpfiles.d/vitrine.conf");
    use std::os::unix::fs::PermissionsExt;
    let mode = |rel: &str| {
        std::fs::metadata(root.path().join(rel)).expect(rel).permissions().mode() & 0o7777
    };
    assert_eq!(mode("var/lib/vitrine"), 0o751);
    assert_eq!(mode("var/lib/vitrine/identity"), 0o700);
    assert_eq!(mode("var/log/vitrine"), 0o2750);
    assert_eq!(mode("run/vitrine"), 0o750);
}

#[test]
fn the_default_config_documents_every_key_and_parses() {
    let path = repo().join("deploy/etc/vitrine.toml");
    let text = read("deploy/etc/vitrine.toml");
    // As shipped (everything commented) it is the defaults.
    let shipped = vitrine_policy::parse_config(&path, &text).expect("the shipped file parses");
    assert_eq!(shipped.metrics, vitrine_policy::default_config(None).metrics);
    // Uncommented, every documented key must be a real key (unknown keys are errors).
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest)
                if rest.starts_with('[')
                    || rest.split(" = ").count() == 2 && !rest.starts_with(' ') =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = vitrine_policy::parse_config(&path, &uncommented)
        .unwrap_or_else(|d| panic!("uncommented config does not parse: {d:?}"));
    assert_eq!(config.osc.max_packet, 8192);
    // The documented values are the defaults.
    let defaults = vitrine_policy::default_config(None);
    assert_eq!(config.peering.site_key_role, defaults.peering.site_key_role);
    assert_eq!(config.peering.rotation_grace, defaults.peering.rotation_grace);
    assert_eq!(config.peering.status_interval, defaults.peering.status_interval);
    // Proof that the commented lines were really read: this key has no default.
    assert!(config.osc.oscquery_listen.is_some());
    for key in [
        "policies",
        "state_dir",
        "allow_unsigned",
        "listen",
        "allow_from",
        "max_packet",
        "oscquery_listen",
        "socket",
        "admin_group",
        "operator_group",
        "enabled",
        "discovery",
        "static_peers",
        "site_key_file",
        "site_key_role",
        "osc_rate",
        "osc_burst",
        "ban_cooldown",
        "rotation_grace",
        "pairing_window",
        "reconnect_min",
        "reconnect_max",
        "handshake_timeout",
        "ping_interval",
        "ping_timeout",
        "status_interval",
        "path",
    ] {
        assert!(
            text.contains(&format!("\n#{key} = ")),
            "deploy/etc/vitrine.toml does not document {key}"
        );
    }
}

#[test]
fn every_debian_asset_exists() {
    let manifest = read("supervisor/Cargo.toml");
    let section = manifest.split("[package.metadata.deb]").nth(1).expect("[package.metadata.deb]");
    let mut checked = 0;
    for line in section.lines().map(str::trim).filter(|l| l.starts_with("[\"")) {
        let source = line.trim_start_matches("[\"").split('"').next().expect("asset source");
        if source.starts_with("target/") {
            continue; // built by `cargo build --release`
        }
        let full = repo().join("supervisor").join(source);
        let text = full.to_string_lossy().into_owned();
        let found = match text.split_once('*') {
            Some((dir, suffix)) => std::fs::read_dir(dir)
                .map(|entries| {
                    entries.flatten().any(|e| e.file_name().to_string_lossy().ends_with(suffix))
                })
                .unwrap_or(false),
            None => full.exists(),
        };
        assert!(found, "the .deb asset {source} matches no file");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} assets checked");
    for script in ["postinst", "postrm"] {
        assert!(repo().join("deploy/debian").join(script).exists());
    }
}
