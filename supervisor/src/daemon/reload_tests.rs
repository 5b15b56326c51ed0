//! Reload semantics with the fake launcher: only changed visualizations restart, removed ones
//! stop, added ones start, and an invalid file keeps its running version.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::daemon::launcher::NoHooks;
use crate::daemon::testing::{FakeLauncher, test_policy_toml};

fn write(dir: &Path, name: &str, command: &str) {
    let toml = test_policy_toml(name, Path::new(command));
    std::fs::write(dir.join(format!("{name}.toml")), toml).expect("write policy");
}

async fn pids(d: &Daemon<FakeLauncher>) -> BTreeMap<String, Option<u32>> {
    let all = d.status(None).await.expect("status");
    all.into_iter().map(|s| (s.name, s.pid)).collect()
}

/// Lets the unit tasks process what the reload sent them.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(start_paused = true)]
async fn reload_restarts_only_what_changed_and_keeps_invalid_files_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["a", "b", "c"] {
        write(dir.path(), name, "/bin/true");
    }
    let (launcher, _spawned) = FakeLauncher::new();
    let ctx = LoadContext { allow_unsigned: true, system_dirs: Vec::new() };
    let daemon = Daemon::new(
        launcher.clone(),
        EventBus::new(),
        Arc::new(NoHooks),
        dir.path().to_owned(),
        ctx,
    );

    let first = daemon.reload().await;
    assert_eq!(first.added, ["a", "b", "c"]);
    settle().await;
    let before = pids(&daemon).await;
    assert!(before.values().all(Option::is_some), "{before:?}");

    // a: changed; b: broken; c: removed; d: added.
    write(dir.path(), "a", "/bin/false");
    let broken = test_policy_toml("b", Path::new("/bin/true"))
        .replace("[visualization]\n", "[visualization]\nbogus = 1\n");
    std::fs::write(dir.path().join("b.toml"), broken).expect("write");
    std::fs::remove_file(dir.path().join("c.toml")).expect("remove");
    write(dir.path(), "d", "/bin/true");
    let report = daemon.reload().await;
    settle().await;
    assert_eq!(report.changed, ["a"]);
    assert_eq!(report.added, ["d"]);
    assert_eq!(report.removed, ["c"]);
    assert_eq!(report.rejected.len(), 1, "{:?}", report.rejected);
    let diag = &report.rejected[0];
    assert!(diag.starts_with(&format!("{}:", dir.path().join("b.toml").display())), "{diag}");
    assert!(diag.contains(":2:1: error: unknown key"), "the diagnostic names the line: {diag}");

    let after = pids(&daemon).await;
    assert_ne!(after["a"], before["a"], "a restarted with its new policy");
    assert_eq!(after["b"], before["b"], "b keeps running its previous version");
    assert!(!after.contains_key("c"));
    assert!(after["d"].is_some());

    // A policy whose binary fails verification is rejected like an invalid file.
    *launcher.reject_command.lock().expect("lock") = Some("/bin/sleep".into());
    write(dir.path(), "a", "/bin/sleep");
    let report = daemon.reload().await;
    settle().await;
    assert!(
        report.changed.is_empty() && report.rejected.iter().any(|r| r.contains("cannot verify")),
        "{report:?}"
    );
    assert_eq!(pids(&daemon).await["a"], after["a"], "a keeps running the verified version");

    daemon.shutdown().await;
    assert!(daemon.status(None).await.expect("status").is_empty());
}

#[tokio::test(start_paused = true)]
async fn disabled_policies_load_but_do_not_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = test_policy_toml("quiet", Path::new("/bin/true"))
        .replace("[visualization]\n", "[visualization]\nenabled = false\n");
    std::fs::write(dir.path().join("quiet.toml"), toml).expect("write");
    let (launcher, _spawned) = FakeLauncher::new();
    let ctx = LoadContext { allow_unsigned: true, system_dirs: Vec::new() };
    let daemon =
        Daemon::new(launcher, EventBus::new(), Arc::new(NoHooks), dir.path().to_owned(), ctx);
    assert_eq!(daemon.reload().await.added, ["quiet"]);
    settle().await;
    let status = daemon.status(Some("quiet")).await.expect("status");
    assert_eq!(status[0].state, State::Stopped);
    assert_eq!(daemon.act("quiet", Verb::Start).await, Ok(State::Running));
    assert!(daemon.act("nope", Verb::Start).await.is_err());
}

/// Hooks that write down what they were told, in order.
#[derive(Debug, Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl Hooks for Recorder {
    fn started(&self, policy: &Policy, _: &launcher::Started, _: Option<crate::osc::Delivery>) {
        self.note(format!("started {}", policy.visualization.name));
    }
    fn ended(&self, _: &str) {}
    fn removed(&self, _: &str) {}
    fn local_prefixes(&self, mut prefixes: Vec<String>) {
        prefixes.sort();
        self.note(format!("prefixes {prefixes:?}"));
    }
}

impl Recorder {
    fn note(&self, line: String) {
        self.0.lock().expect("lock").push(line);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }
}

#[tokio::test(start_paused = true)]
async fn peering_learns_every_local_prefix_before_anything_new_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["a", "b"] {
        write(dir.path(), name, "/bin/true");
    }
    let (launcher, _spawned) = FakeLauncher::new();
    let ctx = LoadContext { allow_unsigned: true, system_dirs: Vec::new() };
    let hooks = Arc::new(Recorder::default());
    let daemon = Daemon::new(launcher, EventBus::new(), hooks.clone(), dir.path().to_owned(), ctx);
    daemon.reload().await;
    settle().await;
    let log = hooks.take();
    // Without an `[osc] prefix`, a visualization's prefix is `/<name>`.
    let prefixes = |names: &[&str]| {
        let all: Vec<String> = names.iter().map(|n| format!("/{n}")).collect();
        format!("prefixes {all:?}")
    };
    assert_eq!(log.first(), Some(&prefixes(&["a", "b"])), "{log:?}");
    assert_eq!(log.iter().filter(|l| l.starts_with("started")).count(), 2, "{log:?}");
    // A broken file keeps its visualization, and so its prefix; an added one is told first.
    let broken = test_policy_toml("b", Path::new("/bin/true"))
        .replace("[visualization]\n", "[visualization]\nbogus = 1\n");
    std::fs::write(dir.path().join("b.toml"), broken).expect("write");
    write(dir.path(), "c", "/bin/true");
    daemon.reload().await;
    settle().await;
    let log = hooks.take();
    assert_eq!(log.first(), Some(&prefixes(&["a", "b", "c"])), "{log:?}");
    assert_eq!(log[1..], ["started c".to_string()], "{log:?}");
}
