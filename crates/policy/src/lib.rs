//! Policy and daemon configuration: TOML schema, spans, validation, presets, exposure score.
//!
//! ```no_run
//! use vitrine_policy::{LoadContext, load_config, load_policy};
//! let config = load_config(None)?;
//! let policy = load_policy("/etc/vitrine/policies/aurora.toml".as_ref(), &LoadContext::from_config(&config))?;
//! println!("{}", vitrine_policy::explain(&policy));
//! # Ok::<(), vitrine_policy::Diagnostics>(())
//! ```
//!
//! Every error a user can cause is a [`Diagnostic`] with the file, 1-based line and column, a
//! message and hints; loading a file reports all of its errors, not just the first.
//!
//! # Presets
//!
//! `[filesystem] presets = [...]` names files `presets/<name>.toml` holding only a
//! `[filesystem]` table (which may include other presets). They are looked up in
//! `<dir of the policy>/../presets/`, then `/etc/vitrine/presets/`, then
//! `/usr/share/vitrine/presets/`; a value containing `/` is a path. The effective grants are the
//! union of all included presets (depth-first, in listed order, each merged once) followed by the
//! policy's own; a cycle is an error naming the chain, and nothing is ever removed. Without a
//! `presets` key a policy gets `["system-libs"]`. Seccomp profiles are found the same way under
//! `seccomp/<name>.json`.

#![forbid(unsafe_code)]

mod config;
mod diag;
mod dir;
mod explain;
mod grants;
mod keys;
mod model;
mod oscmidi;
mod policy;
mod resolve;
mod schema;
mod seccomp;
mod source;
mod values;
mod walk;

use std::path::{Path, PathBuf};

pub use config::{DEFAULT_CONFIG, defaults as default_config, load_config, parse_config};
pub use diag::{Diagnostic, Diagnostics, Location};
pub use dir::load_policy_dir;
pub use explain::{Explanation, ScoreItem, explain};
pub use model::*;
pub use schema::schema;
/// Syscalls no profile or `[syscalls] allow` may ever grant.
pub use seccomp::NEVER as NEVER_ALLOWED_SYSCALLS;
pub use source::MAX_FILE_SIZE;

/// Checks an OSC address prefix by the rules of a policy's `[osc] prefix` (`/a/b`, printable
/// ASCII, no pattern characters, no empty parts, at most 255 bytes), for prefixes that come from
/// elsewhere, such as a peer's status. The error says what is wrong.
pub fn check_osc_prefix(prefix: &str) -> Result<(), String> {
    values::osc_address(prefix).map(drop).map_err(|bad| bad.message)
}

/// Whether two OSC prefixes overlap (`/a` and `/a/b` do, `/a` and `/ab` do not): a message
/// under one could belong to the other.
pub fn osc_prefixes_overlap(a: &str, b: &str) -> bool {
    dir::prefixes_overlap(a, b)
}

/// What loading a policy needs from outside the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadContext {
    /// The daemon's `allow_unsigned`: accept policies without sha256 or minisign.
    pub allow_unsigned: bool,
    /// Searched after `<policy dir>/..` for `presets/` and `seccomp/`, in order.
    pub system_dirs: Vec<PathBuf>,
}

impl Default for LoadContext {
    fn default() -> Self {
        LoadContext {
            allow_unsigned: false,
            system_dirs: vec![PathBuf::from("/etc/vitrine"), PathBuf::from("/usr/share/vitrine")],
        }
    }
}

impl LoadContext {
    pub fn from_config(config: &Config) -> Self {
        LoadContext { allow_unsigned: config.allow_unsigned, ..LoadContext::default() }
    }
}

/// Loads, merges and validates one policy file.
pub fn load_policy(path: &Path, ctx: &LoadContext) -> Result<Policy, Diagnostics> {
    policy::load_file(path, ctx)
}

/// Parses a policy from bytes as if read from `path` (presets and profiles are still looked up
/// relative to it). Invalid UTF-8 is a diagnostic, never a panic; this is the fuzzing entry.
pub fn parse_policy_bytes(
    bytes: &[u8],
    path: &Path,
    ctx: &LoadContext,
) -> Result<Policy, Diagnostics> {
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(Diagnostic::file(path, "is larger than 1024 KiB").into());
    }
    let text = source::text_from_bytes(path, bytes.to_vec())?;
    policy::parse_policy(path, &text, ctx)
}

/// The fuzzing entry: parses `data` as a policy placed in the repository's policies/examples/
/// (so that presets and profiles resolve and merging runs) and renders every diagnostic.
/// It must never panic, whatever the bytes.
pub fn fuzz_policy(data: &[u8]) {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/examples/fuzz.toml"));
    let ctx = LoadContext { allow_unsigned: true, system_dirs: Vec::new() };
    match parse_policy_bytes(data, path, &ctx) {
        Ok(policy) => drop(explain(&policy).to_string()),
        Err(diags) => drop(diags.to_string()),
    }
}
