//! Helpers shared by the benches that drive a real `vitrine` process
//! (`#[path = "shared/mod.rs"] mod shared;`).

use std::path::{Path, PathBuf};

/// The 1-minute load average, to show the machine state next to each row.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

/// `$VITRINE_BIN`, or the `vitrine` beside the bench: target/release/deps/X → target/release/vitrine.
pub fn vitrine_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VITRINE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("own path");
    exe.parent().and_then(Path::parent).map(|d| d.join("vitrine")).expect("target dir")
}

/// A fresh policy directory `vitrine-TAG-PID` with the shipped presets and seccomp profiles
/// beside it, as the loader expects (`<dir>/policies/x.toml`, `<dir>/presets`, `<dir>/seccomp`).
pub fn policy_dir(tag: &str) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::temp_dir().join(format!("vitrine-{tag}-{}", std::process::id()));
    let _ = std::fs::create_dir_all(dir.join("policies"));
    for sub in ["presets", "seccomp"] {
        let _ = std::os::unix::fs::symlink(repo.join("policies").join(sub), dir.join(sub));
    }
    dir
}
