//! Finding presets and seccomp profiles by name: next to the policy first, then the system.

use std::path::{Path, PathBuf};

use crate::LoadContext;
use crate::diag::{Bad, suggest};

/// What is being looked up: the directory name and the file extension.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Preset,
    Profile,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Preset => "presets",
            Kind::Profile => "seccomp",
        }
    }

    fn ext(self) -> &'static str {
        match self {
            Kind::Preset => "toml",
            Kind::Profile => "json",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Preset => "preset",
            Kind::Profile => "seccomp profile",
        }
    }
}

/// The directories searched for `kind`, in order: `<dir of the policy>/../<kind>/`, then each
/// system directory's `<kind>/` (by default /etc/vitrine, then /usr/share/vitrine).
pub(crate) fn search_dirs(kind: Kind, policy: &Path, ctx: &LoadContext) -> Vec<PathBuf> {
    let parent = match policy.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut dirs = vec![parent.join("..").join(kind.dir())];
    dirs.extend(ctx.system_dirs.iter().map(|d| d.join(kind.dir())));
    dirs
}

/// Resolves a preset or profile reference. A value containing `/` is a path (relative ones are
/// relative to the referring file's directory); anything else is a name looked up in order.
pub(crate) fn resolve(
    kind: Kind,
    value: &str,
    referrer: &Path,
    ctx: &LoadContext,
) -> Result<PathBuf, Bad> {
    if value.contains('/') {
        let path = match referrer.parent() {
            Some(dir) if !value.starts_with('/') => dir.join(value),
            _ => PathBuf::from(value),
        };
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Bad::new(format!("{} file \"{}\" does not exist", kind.noun(), path.display())))
        };
    }
    let dirs = search_dirs(kind, referrer, ctx);
    let file = format!("{value}.{}", kind.ext());
    if let Some(found) = dirs.iter().map(|d| d.join(&file)).find(|p| p.is_file()) {
        return Ok(found);
    }
    let available = available(kind, &dirs);
    let mut bad = Bad::new(format!("unknown {} \"{value}\"", kind.noun()));
    if let Some(h) = suggest(value, available.iter().map(String::as_str)) {
        bad = bad.hint(h);
    }
    let list = if available.is_empty() { "none".to_string() } else { available.join(", ") };
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(bad.hint(format!("available: {list}")).hint(format!("searched: {}", searched.join(", "))))
}

/// The names found in `dirs`, sorted and without repeats.
fn available(kind: Kind, dirs: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(&format!(".{}", kind.ext())).map(str::to_string)
        })
        .collect();
    names.sort();
    names.dedup();
    names
}
