//! Seccomp profiles (seccompiler's JSON format) and syscall names.
//!
//! A profile file holds one filter named `main` with `mismatch_action` `kill_process` and
//! `match_action` `allow`; the policy's `action` decides what the sandbox does on a mismatch.
//! Several rules for one syscall are alternatives (OR), the conditions of one rule all must hold.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;
use syscalls::x86_64::Sysno;

use crate::diag::{Bad, Diagnostic, Report, suggest};
use crate::model::{ArgCondition, ArgOp, SyscallRule};

/// Syscalls no profile and no `allow` may contain: they reconfigure the host (mounts, modules,
/// clocks, swap), enter or create namespaces, inspect other processes, or load kernel code.
/// `clone3` and `io_uring_*` are answered with ENOSYS by the sandbox, so listing them would be
/// a contradiction.
pub const NEVER: &[&str] = &[
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "keyctl",
    "add_key",
    "request_key",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "clock_settime",
    "settimeofday",
    "adjtimex",
    "clock_adjtime",
    "iopl",
    "ioperm",
    "open_by_handle_at",
    "name_to_handle_at",
    "userfaultfd",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "quotactl",
    "syslog",
    "vhangup",
    "uselib",
    "lookup_dcookie",
    "clone3",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "sethostname",
    "setdomainname",
    "pidfd_getfd",
];

/// Checks a syscall name against the x86_64 table and the never-allowed list.
pub(crate) fn syscall_name(s: &str) -> Result<(), Bad> {
    if Sysno::from_str(s).is_err() {
        let mut bad = Bad::new(format!("unknown syscall \"{s}\" (x86_64)"));
        let names: Vec<&str> = Sysno::iter().map(|n| n.name()).collect();
        if let Some(h) = suggest(s, names.iter().copied()) {
            bad = bad.hint(h);
        }
        return Err(bad);
    }
    if NEVER.contains(&s) {
        return Err(Bad::new(format!("syscall \"{s}\" is never allowed in a vitrine sandbox")));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonFilter {
    mismatch_action: serde_json::Value,
    match_action: serde_json::Value,
    filter: Vec<JsonRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRule {
    syscall: String,
    args: Option<Vec<JsonCondition>>,
    #[serde(rename = "comment")]
    _comment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonCondition {
    index: u8,
    #[serde(rename = "type")]
    len: JsonLen,
    op: JsonOp,
    val: u64,
    #[serde(rename = "comment")]
    _comment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum JsonLen {
    Dword,
    Qword,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum JsonOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    MaskedEq(u64),
}

/// Parses and validates a profile's text; every problem is reported.
pub(crate) fn parse_profile(path: &Path, text: &str) -> Result<Vec<SyscallRule>, Vec<Diagnostic>> {
    let filters: BTreeMap<String, JsonFilter> = serde_json::from_str(text).map_err(|e| {
        let mut d = Diagnostic::file(path, format!("invalid seccomp profile: {}", strip_position(&e)));
        if e.line() > 0 {
            d.location = Some(crate::diag::Location { line: e.line(), column: e.column().max(1) });
        }
        vec![d.with_hint("the format is seccompiler's: {\"main\": {\"mismatch_action\": \"kill_process\", \"match_action\": \"allow\", \"filter\": [{\"syscall\": \"read\"}]}}")]
    })?;
    let mut r = Report::new(path, text);
    let names: Vec<&str> = filters.keys().map(String::as_str).collect();
    if names != ["main"] {
        r.error(
            0..0,
            format!("a profile holds exactly one filter named \"main\", found {names:?}"),
        );
    }
    let mut rules = Vec::new();
    if let Some(main) = filters.get("main") {
        check_actions(&mut r, text, main);
        rules = convert_rules(&mut r, text, &main.filter);
    }
    if r.has_errors() { Err(r.finish()) } else { Ok(rules) }
}

/// serde_json appends " at line L column C"; the diagnostic already shows the position.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn check_actions(r: &mut Report<'_>, text: &str, f: &JsonFilter) {
    if f.mismatch_action != "kill_process" {
        let at = find(text, "\"mismatch_action\"");
        r.error(at, "mismatch_action must be \"kill_process\"")
            .hints
            .push("the policy's [syscalls] action chooses kill, errno or log".into());
    }
    if f.match_action != "allow" {
        r.error(
            find(text, "\"match_action\""),
            "match_action must be \"allow\" (profiles are allowlists)",
        );
    }
}

fn convert_rules(r: &mut Report<'_>, text: &str, rules: &[JsonRule]) -> Vec<SyscallRule> {
    let mut out: Vec<SyscallRule> = Vec::with_capacity(rules.len());
    for rule in rules {
        // Only errors need the position: searching the text for every rule of a clean profile
        // would cost more than the rest of the policy load.
        let at = || find(text, &format!("\"{}\"", rule.syscall));
        if let Err(bad) = syscall_name(&rule.syscall) {
            r.bad(at(), bad);
            continue;
        }
        let mut args = Vec::new();
        for c in rule.args.iter().flatten() {
            match condition(c) {
                Ok(a) => args.push(a),
                Err(bad) => r.bad(at(), bad),
            }
        }
        // seccompiler drops an unconditional rule when the same syscall also has conditional
        // ones, so mixing them would silently narrow what the author meant to allow.
        let mixed =
            out.iter().any(|o| o.syscall == rule.syscall && o.args.is_empty() != args.is_empty());
        if mixed {
            r.error(
                at(),
                format!("\"{}\" is listed both with and without argument conditions", rule.syscall),
            )
            .hints
            .push("seccompiler would only keep the conditional rules; remove one form".into());
            continue;
        }
        out.push(SyscallRule { syscall: rule.syscall.clone(), args });
    }
    out
}

fn condition(c: &JsonCondition) -> Result<ArgCondition, Bad> {
    if c.index > 5 {
        return Err(Bad::new(format!("argument index {} is out of range 0-5", c.index)));
    }
    let dword = matches!(c.len, JsonLen::Dword);
    let op = match c.op {
        JsonOp::Eq => ArgOp::Eq,
        JsonOp::Ne => ArgOp::Ne,
        JsonOp::Lt => ArgOp::Lt,
        JsonOp::Le => ArgOp::Le,
        JsonOp::Gt => ArgOp::Gt,
        JsonOp::Ge => ArgOp::Ge,
        JsonOp::MaskedEq(m) => ArgOp::MaskedEq(m),
    };
    let too_wide = |v: u64| dword && v > u64::from(u32::MAX);
    if too_wide(c.val) || matches!(op, ArgOp::MaskedEq(m) if too_wide(m)) {
        return Err(Bad::new(format!("value {:#x} does not fit a dword comparison", c.val)));
    }
    Ok(ArgCondition { index: c.index, dword, op, val: c.val })
}

/// The byte span of the first occurrence of `needle`, or the file start.
fn find(text: &str, needle: &str) -> std::ops::Range<usize> {
    text.find(needle).map_or(0..0, |i| i..i + needle.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failing unwrap is a failing test.
mod tests {
    use super::*;

    fn profile(filter: &str) -> String {
        format!(
            "{{\"main\": {{\"mismatch_action\": \"kill_process\", \"match_action\": \"allow\", \"filter\": [{filter}]}}}}"
        )
    }

    #[test]
    fn names_are_checked_with_a_hint() {
        assert!(syscall_name("openat").is_ok());
        let bad = syscall_name("opneat").unwrap_err();
        assert_eq!(bad.hints, vec!["did you mean \"openat\"?".to_string()]);
        assert!(syscall_name("ptrace").unwrap_err().message.contains("never"));
    }

    #[test]
    fn a_profile_with_conditions_parses() {
        let text = profile(
            r#"{"syscall": "read"}, {"syscall": "ioctl", "args": [{"index": 1, "type": "dword", "op": "eq", "val": 21505}]}, {"syscall": "clone", "args": [{"index": 0, "type": "qword", "op": {"masked_eq": 2113929216}, "val": 0}]}"#,
        );
        let rules = parse_profile(Path::new("p.json"), &text).unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(
            rules[1].args[0],
            ArgCondition { index: 1, dword: true, op: ArgOp::Eq, val: 21505 }
        );
        assert_eq!(rules[2].args[0].op, ArgOp::MaskedEq(0x7E00_0000));
    }

    #[test]
    fn errors_have_positions() {
        let text = profile("{\"syscall\": \"read\"},\n{\"syscall\": \"opneat\"}");
        let d = parse_profile(Path::new("p.json"), &text).unwrap_err();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].location.unwrap().line, 2);
        let d = parse_profile(Path::new("p.json"), "{\"main\": {\"filter\": [], \"bogus\": 1}}")
            .unwrap_err();
        assert!(d[0].message.contains("bogus"), "{}", d[0]);
        let d = parse_profile(Path::new("p.json"), &profile(r#"{"syscall": "read"}, {"syscall": "read", "args": [{"index": 0, "type": "dword", "op": "eq", "val": 0}]}"#)).unwrap_err();
        assert!(d[0].message.contains("both"), "{}", d[0]);
    }
}
