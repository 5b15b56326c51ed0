//! Shared helpers: policies parsed as if they lived in the repository's policies/examples/, so
//! that the shipped presets and seccomp profiles resolve without touching the system.

#![allow(dead_code, clippy::unwrap_used)] // A failing unwrap is a failing test.

use std::path::{Path, PathBuf};

use vitrine_policy::{Diagnostics, LoadContext, Policy, parse_policy_bytes};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// No system directories: only the repository's policies/ tree is searched.
pub fn ctx() -> LoadContext {
    LoadContext { allow_unsigned: false, system_dirs: Vec::new() }
}

pub fn parse(text: &str) -> Result<Policy, Diagnostics> {
    let path = repo().join("policies/examples/test.toml");
    parse_policy_bytes(text.as_bytes(), &path, &ctx())
}

/// `LINE:COL: MESSAGE` for every diagnostic of `text`.
pub fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .iter()
            .map(|d| match d.location {
                Some(l) => format!("{}:{}: {}", l.line, l.column, d.message),
                None => format!("-: {}", d.message),
            })
            .collect(),
    }
}

/// A valid minimal policy of five lines; cases append to it, so their lines start at 6.
pub const BASE: &str = "[visualization]\nname = \"t\"\ncommand = \"/opt/t/bin/t\"\n[verify]\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n";
