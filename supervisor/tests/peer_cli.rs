//! `vitrine identity show` and `vitrine peers list|forget` on a box whose daemon is not running:
//! they work on `state_dir` directly (the daemon applies a changed `peers.toml` when it runs).

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use vitrine_peer::{
    Ban, BanList, Identity, IdentityOptions, PeerEntry, Role, Standing, TrustStore,
};

fn vitrine(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run vitrine");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    let config = dir.path().join("vitrine.toml");
    let text = format!(
        "state_dir = \"{}\"\npolicies = \"{}\"\n[control]\nsocket = \"{}\"\n",
        state.display(),
        dir.path().display(),
        dir.path().join("control.sock").display()
    );
    std::fs::write(&config, text).expect("config");
    (dir, config)
}

#[test]
fn identity_show_reads_the_key_without_the_daemon() {
    let (dir, config) = setup();
    let (ok, _, err) = vitrine(&config, &["identity", "show"]);
    assert!(!ok && err.contains("no identity"), "{err}");
    let opts = IdentityOptions {
        dir: dir.path().join("state/identity"),
        credentials_dir: None,
        machine_id: Some("/etc/machine-id".into()),
    };
    let (ident, _) = Identity::load_or_create(&opts).expect("identity");
    let (ok, out, err) = vitrine(&config, &["identity", "show"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().next(), Some(ident.id().to_string().as_str()));
    let (ok, out, _) = vitrine(&config, &["identity", "show", "--json"]);
    assert!(ok && out.contains(&format!("\"id\":\"{}\"", ident.id())), "{out}");
    let (ok, _, err) = vitrine(&config, &["identity", "rotate"]);
    assert!(!ok && err.contains("rotation needs the running daemon"), "{err}");
}

#[test]
fn peers_list_and_forget_work_on_the_trust_store_offline() {
    let (dir, config) = setup();
    let trust = dir.path().join("state/peers.toml");
    let peer = Identity::generate().expect("key").id();
    let mut store = TrustStore::default();
    store.pin(PeerEntry {
        id: peer,
        name: "foyer".into(),
        role: Role::Controller,
        added: SystemTime::now(),
        addresses: vec!["10.0.0.7:7447".into()],
        previous: vec![],
    });
    store.save(&trust).expect("trust store");
    let (ok, out, err) = vitrine(&config, &["peers", "list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&peer.to_string()) && out.contains("foyer") && out.contains("controller"),
        "{out}"
    );
    let (ok, out, err) = vitrine(&config, &["peers", "forget", &peer.to_string()]);
    assert!(ok && out.contains("forgot"), "{out}{err}");
    let store = TrustStore::load(&trust).expect("reload");
    assert_eq!(store.standing(&peer, SystemTime::now()), Standing::Forgotten);
    let (ok, out, _) = vitrine(&config, &["peers", "list", "--json"]);
    assert!(ok, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["peers"], serde_json::json!([]), "{out}");
    assert_eq!(doc["forgotten"][0]["id"], peer.to_string(), "{out}");
    // A ban written by the daemon before it stopped is shown until it ends.
    let now = SystemTime::now();
    let until = now + std::time::Duration::from_secs(600);
    let reason = "OSC rate limit exceeded".to_owned();
    let bans = BanList { bans: vec![Ban { id: peer, since: Some(now), until, reason }] };
    bans.save(&dir.path().join("state/peer-bans.toml")).expect("bans");
    let (ok, out, err) = vitrine(&config, &["peers", "list"]);
    assert!(
        ok && out.contains("banned (not pinned)") && out.contains("OSC rate limit exceeded"),
        "{out}{err}"
    );
    assert!(out.contains("forgotten") && out.contains(&peer.to_string()), "{out}");
    let (_, out, _) = vitrine(&config, &["peers", "list", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["banned"][0]["reason"], "OSC rate limit exceeded", "{out}");
    let (ok, _, err) = vitrine(&config, &["peers", "forget", "NOT-AN-ID"]);
    assert!(!ok && err.contains("is not a peer ID"), "{err}");
    let (ok, _, err) = vitrine(&config, &["peers", "accept", &peer.to_string(), "--code", "12345"]);
    assert!(!ok && err.contains("six digits"), "{err}");
}
