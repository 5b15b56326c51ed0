//! Loading a directory of policies: each valid one is kept, every error is reported, and names
//! and OSC prefixes must be unique across the files.

use std::path::{Path, PathBuf};

use crate::LoadContext;
use crate::diag::{Diagnostic, Diagnostics, Location};
use crate::model::Policy;
use crate::policy::load_file;
use crate::source::io_diag;

/// The `*.toml` files of `dir`, sorted by name (not recursive).
pub(crate) fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_diag(dir, &e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_diag(dir, &e))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads every policy of `dir`: the valid ones plus all errors, so that a daemon keeps running
/// what is valid. Two files with the same name, or claiming the same OSC prefix, are both
/// rejected: neither can be preferred without guessing.
pub fn load_policy_dir(dir: &Path, ctx: &LoadContext) -> (Vec<Policy>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let files = match policy_files(dir) {
        Ok(f) => f,
        Err(d) => return (Vec::new(), d.into()),
    };
    let mut loaded = Vec::new();
    for file in files {
        match load_file(&file, ctx) {
            Ok(p) => loaded.push(p),
            Err(d) => diags.extend(d),
        }
    }
    let clashes = clashes(&loaded);
    diags.0.extend(clash_diagnostics(&loaded, &clashes));
    let valid = loaded
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !clashes.iter().any(|c| c.a == *i || c.b == *i))
        .map(|(_, p)| p)
        .collect();
    (valid, diags)
}

#[derive(Debug)]
struct Clash {
    a: usize,
    b: usize,
    what: &'static str,
    value: String,
}

fn clashes(policies: &[Policy]) -> Vec<Clash> {
    let mut out = Vec::new();
    for (b, pb) in policies.iter().enumerate() {
        for (a, pa) in policies[..b].iter().enumerate() {
            if pa.visualization.name == pb.visualization.name {
                out.push(Clash { a, b, what: "name", value: pb.visualization.name.to_string() });
            }
            if prefixes_overlap(&pa.osc.prefix, &pb.osc.prefix) {
                out.push(Clash { a, b, what: "OSC prefix", value: pb.osc.prefix.clone() });
            }
        }
    }
    out
}

/// `/a` and `/a/b` overlap: a message to `/a/b/x` could belong to either.
pub(crate) fn prefixes_overlap(a: &str, b: &str) -> bool {
    let under =
        |x: &str, y: &str| x == y || x.strip_prefix(y).is_some_and(|rest| rest.starts_with('/'));
    under(a, b) || under(b, a)
}

fn clash_diagnostics(policies: &[Policy], clashes: &[Clash]) -> Vec<Diagnostic> {
    clashes
        .iter()
        .map(|c| {
            let (pa, pb) = (&policies[c.a], &policies[c.b]);
            let key = if c.what == "name" { "name" } else { "prefix" };
            Diagnostic {
                path: pb.source.clone(),
                location: find_key(&pb.source, key),
                message: format!(
                    "{} \"{}\" clashes with {} (both files are rejected)",
                    c.what,
                    c.value,
                    pa.source.display()
                ),
                hints: vec![format!("give each visualization its own {}", c.what)],
            }
        })
        .collect()
}

/// The position of `key = ` in a file (best effort; the policy already parsed).
fn find_key(path: &Path, key: &str) -> Option<Location> {
    let text = std::fs::read_to_string(path).ok()?;
    let at = text.lines().scan(0usize, |off, line| {
        let start = *off;
        *off += line.len() + 1;
        Some((start, line))
    });
    for (start, line) in at {
        let trimmed = line.trim_start();
        if trimmed.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('=')) {
            let col = line.len() - trimmed.len();
            return Some(crate::diag::locate(&text, start + col));
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failing unwrap is a failing test.
mod tests {
    use super::prefixes_overlap;

    #[test]
    fn prefix_overlap() {
        assert!(prefixes_overlap("/a", "/a"));
        assert!(prefixes_overlap("/a", "/a/b"));
        assert!(!prefixes_overlap("/a", "/ab"));
        assert!(!prefixes_overlap("/a/b", "/a/c"));
    }
}
