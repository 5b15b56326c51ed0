//! `vitrine policy explain`: the effective sandbox of a policy and its exposure score.
//!
//! The score follows the idea of `systemd-analyze security`: every property that widens what a
//! compromised visualization could do adds a weighted item with its reason; the total is capped
//! at 10 and lower is better. Weights only grow when a policy grants more, so granting a path,
//! a syscall or a higher limit never lowers the score.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::model::*;

/// The effective sandbox of one policy, for people (Display) and machines (Serialize).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub name: String,
    pub source: PathBuf,
    pub command: String,
    pub args: Vec<String>,
    pub enabled: bool,
    pub user: String,
    pub verification: String,
    pub exec_from: ExecFrom,
    pub landlock: LandlockMode,
    pub landlock_min_abi: u8,
    /// Effective filesystem grants by access right (presets merged).
    pub filesystem: Filesystem,
    pub limits: Limits,
    pub syscall_profile: String,
    pub syscall_profile_path: PathBuf,
    /// Distinct syscall names allowed (profile and `allow` together).
    pub syscall_count: usize,
    /// Of those, how many are allowed only with argument conditions.
    pub syscalls_conditional: usize,
    pub syscalls_extra: Vec<String>,
    pub syscall_action: SeccompAction,
    pub ipc: Ipc,
    pub osc: Osc,
    pub midi: Option<Midi>,
    /// 0 (nothing exposed) to 10, one decimal; lower is better.
    pub exposure: f64,
    pub rating: &'static str,
    pub score_items: Vec<ScoreItem>,
}

/// One contribution to the exposure score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreItem {
    pub weight: f64,
    pub reason: String,
}

pub fn explain(p: &Policy) -> Explanation {
    let items = score_items(p);
    let exposure = total(&items);
    let (count, conditional) = syscall_counts(&p.syscalls);
    Explanation {
        name: p.visualization.name.to_string(),
        source: p.source.clone(),
        command: p.visualization.command.to_string(),
        args: p.visualization.args.clone(),
        enabled: p.visualization.enabled,
        user: match &p.sandbox.user {
            UserSpec::Name(n) => n.clone(),
            UserSpec::Uid(u) => format!("uid {u}"),
        },
        verification: verification(&p.verify),
        exec_from: p.verify.exec_from,
        landlock: p.sandbox.landlock,
        landlock_min_abi: p.sandbox.landlock_min_abi,
        filesystem: p.filesystem.clone(),
        limits: p.limits.clone(),
        syscall_profile: p.syscalls.profile.clone(),
        syscall_profile_path: p.syscalls.profile_path.clone(),
        syscall_count: count,
        syscalls_conditional: conditional,
        syscalls_extra: p.syscalls.allow.clone(),
        syscall_action: p.syscalls.action,
        ipc: p.ipc,
        osc: p.osc.clone(),
        midi: p.midi.clone(),
        exposure,
        rating: rating(exposure),
        score_items: items,
    }
}

fn verification(v: &Verify) -> String {
    match (v.sha256.is_some(), v.minisign_signature.is_some()) {
        (true, true) => "sha256 pin and minisign signature".into(),
        (true, false) => "sha256 pin".into(),
        (false, true) => "minisign signature".into(),
        (false, false) => "none (allow_unsigned)".into(),
    }
}

/// (distinct names allowed, names allowed only under argument conditions)
fn syscall_counts(s: &Syscalls) -> (usize, usize) {
    let mut names: Vec<&str> = s
        .rules
        .iter()
        .map(|r| r.syscall.as_str())
        .chain(s.allow.iter().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let conditional = names.iter().filter(|n| !unconditional(s, n)).count();
    (names.len(), conditional)
}

fn unconditional(s: &Syscalls, name: &str) -> bool {
    s.allow.iter().any(|a| a == name)
        || s.rules.iter().any(|r| r.syscall == name && r.args.is_empty())
}

fn total(items: &[ScoreItem]) -> f64 {
    let sum: f64 = items.iter().map(|i| i.weight).sum();
    (sum.min(10.0) * 10.0).round() / 10.0
}

fn rating(score: f64) -> &'static str {
    match score {
        s if s < 1.0 => "SAFE",
        s if s < 3.0 => "OK",
        s if s < 6.0 => "MEDIUM",
        s if s < 8.0 => "EXPOSED",
        _ => "UNSAFE",
    }
}

struct Items(Vec<ScoreItem>);

impl Items {
    fn add(&mut self, weight: f64, reason: impl Into<String>) {
        if weight > 0.0 {
            self.0.push(ScoreItem {
                weight: (weight * 100.0).round() / 100.0,
                reason: reason.into(),
            });
        }
    }
}

pub(crate) fn score_items(p: &Policy) -> Vec<ScoreItem> {
    let mut it = Items(Vec::new());
    filesystem_items(&mut it, &p.filesystem);
    limit_items(&mut it, &p.limits);
    syscall_items(&mut it, &p.syscalls);
    sandbox_items(&mut it, p);
    channel_items(&mut it, p);
    it.0
}

/// Where a visualization may keep state without exposing anything else.
const PRIVATE_WRITABLE: &[&str] = &["/var/lib/vitrine", "/tmp", "/dev/shm"];
/// Trees whose contents belong to the host: reading them leaks configuration or user data.
const SENSITIVE: &[&str] =
    &["/etc", "/home", "/root", "/var", "/srv", "/run", "/boot", "/sys", "/mnt", "/media"];
/// Pseudo-devices every program may use.
const HARMLESS_DEVICES: &[&str] =
    &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"];

fn under(path: &Path, root: &str) -> bool {
    path.starts_with(root)
}

fn filesystem_items(it: &mut Items, fs: &Filesystem) {
    let writable: Vec<&AbsPath> = fs
        .read_write
        .iter()
        .filter(|p| !PRIVATE_WRITABLE.iter().any(|r| under(p.as_path(), r)))
        .collect();
    it.add(
        (0.5 * writable.len() as f64).min(2.0),
        format!("read-write outside /var/lib/vitrine and the private tmpfs: {}", list(&writable)),
    );
    let sensitive: Vec<&AbsPath> =
        fs.read.iter().chain(&fs.exec).filter(|p| is_sensitive(p.as_path())).collect();
    it.add(
        (1.0 * sensitive.len() as f64).min(2.0),
        format!("reads whole host trees or home directories: {}", list(&sensitive)),
    );
    let wx: Vec<&AbsPath> = fs
        .exec
        .iter()
        .filter(|e| fs.read_write.iter().any(|w| overlaps(e.as_path(), w.as_path())))
        .collect();
    it.add(
        (1.5 * wx.len() as f64).min(3.0),
        format!("writable and executable (can run code it wrote): {}", list(&wx)),
    );
    device_items(it, &fs.devices);
}

/// A grant of a whole sensitive tree (or an ancestor of one), or anything in a home directory.
fn is_sensitive(p: &Path) -> bool {
    SENSITIVE.iter().any(|s| Path::new(s).starts_with(p)) || under(p, "/home") || under(p, "/root")
}

fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// GPU render nodes count once as a class: a box with four GPUs exposes the same driver surface
/// as a box with one. Every other device node counts on its own.
fn device_items(it: &mut Items, devices: &[AbsPath]) {
    let named: Vec<&AbsPath> =
        devices.iter().filter(|d| !HARMLESS_DEVICES.contains(&d.to_string().as_str())).collect();
    let is_render = |d: &&AbsPath| d.to_string().starts_with("/dev/dri/renderD");
    let mut weight: f64 = if named.iter().any(is_render) { 0.5 } else { 0.0 };
    for d in named.iter().filter(|d| !is_render(d)) {
        weight += if under(d.as_path(), "/dev/input") { 1.5 } else { 1.0 };
    }
    it.add(
        weight.min(3.0),
        format!(
            "device nodes (render nodes 0.5 together, input 1.5, others 1.0): {}",
            list(&named)
        ),
    );
}

fn list(paths: &[&AbsPath]) -> String {
    paths.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
}

fn limit_items(it: &mut Items, l: &Limits) {
    match l.memory {
        None => it.add(1.0, "memory is unlimited: the box can be driven into swap or OOM"),
        Some(m) if m > 4 << 30 => it.add(0.3, "memory limit above 4 GiB"),
        Some(_) => {}
    }
    match l.pids {
        None => it.add(1.0, "pids unlimited: a fork bomb is only stopped by the host"),
        Some(n) if n > 1024 => it.add(0.3, "pids limit above 1024"),
        Some(_) => {}
    }
    if l.cpu.is_none() {
        it.add(0.3, "no CPU limit: may starve other visualizations");
    }
    if l.open_files > 4096 {
        it.add(0.2, "more than 4096 open files");
    }
    if l.tmp_size > 512 << 20 {
        it.add(0.2, "private /tmp and /dev/shm larger than 512 MiB each");
    }
}

fn syscall_items(it: &mut Items, s: &Syscalls) {
    let (count, _) = syscall_counts(s);
    it.add(((count as f64 - 120.0) / 80.0).clamp(0.0, 1.5), format!("{count} syscalls allowed"));
    if unconditional(s, "ioctl") {
        it.add(0.5, "ioctl allowed with any request (driver attack surface)");
    }
    it.add(
        (0.2 * s.allow.len() as f64).min(1.0),
        format!("extra syscalls: {}", s.allow.join(", ")),
    );
    match s.action {
        SeccompAction::Log => {
            it.add(3.0, "seccomp action log: forbidden syscalls are allowed (learning mode)")
        }
        SeccompAction::Errno => {
            it.add(1.0, "seccomp action errno: forbidden syscalls fail instead of killing")
        }
        SeccompAction::Kill => {}
    }
}

fn sandbox_items(it: &mut Items, p: &Policy) {
    if p.sandbox.landlock == LandlockMode::BestEffort {
        it.add(1.5, "landlock best-effort: may start without filesystem isolation");
    }
    let abi = f64::from(p.sandbox.landlock_min_abi);
    it.add(
        (7.0 - abi).max(0.0) * 0.1,
        format!(
            "landlock_min_abi {}: older kernels enforce fewer rights (truncate, ioctl, scopes)",
            p.sandbox.landlock_min_abi
        ),
    );
    if p.verify.sha256.is_none() && p.verify.minisign_signature.is_none() {
        it.add(2.0, "binary not verified (allow_unsigned)");
    }
    if p.verify.exec_from == ExecFrom::File {
        it.add(0.5, "exec_from = file: executes the file, not a sealed copy");
    }
    let loader_vars = p.visualization.env.keys().filter(|k| k.starts_with("LD_")).count();
    it.add(0.3 * loader_vars as f64, "dynamic loader variables (LD_*) in the environment");
}

fn channel_items(it: &mut Items, p: &Policy) {
    if let Ipc::Udp { reply_port: Some(port), .. } = p.ipc {
        it.add(0.3, format!("child may send OSC back (reply_port {port})"));
    }
    if p.osc.max_rate > 10_000 {
        it.add(1.0, format!("OSC max_rate {} msg/s", p.osc.max_rate));
    } else if p.osc.max_rate > 2000 {
        it.add(0.5, format!("OSC max_rate {} msg/s", p.osc.max_rate));
    }
    let open_strings = p
        .osc
        .params
        .iter()
        .filter(|q| matches!(q.kind, ParamKind::String { max_len: None, one_of: None }))
        .count();
    it.add((0.1 * open_strings as f64).min(0.5), "string params without max_len or one_of");
    let big_blobs = p
        .osc
        .params
        .iter()
        .filter(|q| matches!(q.kind, ParamKind::Blob { max_len } if max_len > 4096))
        .count();
    it.add((0.2 * big_blobs as f64).min(0.6), "blob params above 4 KiB");
    if let Some(m) = &p.midi {
        if m.sysex {
            it.add(0.5, "MIDI SysEx accepted");
        }
        if m.max_rate > 1000 {
            it.add(0.3, format!("MIDI max_rate {} msg/s", m.max_rate));
        }
    }
}

fn size(b: u64) -> String {
    match b {
        b if b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

fn opt<T: fmt::Display>(v: Option<T>, none: &str) -> String {
    v.map_or_else(|| none.to_string(), |v| v.to_string())
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ({}){}",
            self.name,
            self.source.display(),
            if self.enabled { "" } else { " [disabled]" }
        )?;
        writeln!(f, "  command     {} {}", self.command, self.args.join(" "))?;
        writeln!(f, "  user        {}", self.user)?;
        let from =
            if self.exec_from == ExecFrom::File { "the verified file" } else { "a sealed memfd" };
        writeln!(f, "  verify      {}, executed from {from}", self.verification)?;
        let mode = if self.landlock == LandlockMode::Required { "required" } else { "best-effort" };
        writeln!(f, "  landlock    {mode}, ABI >= {}", self.landlock_min_abi)?;
        self.fmt_filesystem(f)?;
        let l = &self.limits;
        writeln!(f, "limits")?;
        writeln!(
            f,
            "  memory {}, cpu {}, cpuset {}, pids {}, open files {}, /tmp and /dev/shm {} each",
            opt(l.memory.map(size), "unlimited"),
            opt(l.cpu.map(|c| format!("{c} cores")), "unlimited"),
            opt(l.cpuset.as_ref(), "all"),
            opt(l.pids, "unlimited"),
            l.open_files,
            size(l.tmp_size)
        )?;
        writeln!(f, "syscalls")?;
        writeln!(
            f,
            "  profile {} ({}): {} syscalls, {} with argument conditions; action {}; extra: {}",
            self.syscall_profile,
            self.syscall_profile_path.display(),
            self.syscall_count,
            self.syscalls_conditional,
            action_word(self.syscall_action),
            if self.syscalls_extra.is_empty() {
                "none".into()
            } else {
                self.syscalls_extra.join(", ")
            }
        )?;
        self.fmt_channels(f)?;
        writeln!(f, "exposure {:.1}/10 {} (lower is better)", self.exposure, self.rating)?;
        for i in &self.score_items {
            writeln!(f, "  +{:.2}  {}", i.weight, i.reason)?;
        }
        Ok(())
    }
}

impl Explanation {
    fn fmt_filesystem(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fs = &self.filesystem;
        writeln!(
            f,
            "filesystem (presets: {})",
            if fs.presets.is_empty() { "none".into() } else { fs.presets.join(", ") }
        )?;
        for (right, paths) in [
            ("read", &fs.read),
            ("read_write", &fs.read_write),
            ("exec", &fs.exec),
            ("devices", &fs.devices),
        ] {
            for (i, p) in paths.iter().enumerate() {
                writeln!(f, "  {:<11} {p}", if i == 0 { right } else { "" })?;
            }
        }
        Ok(())
    }

    fn fmt_channels(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ipc {
            Ipc::Udp { port, reply_port } => writeln!(
                f,
                "ipc         udp 127.0.0.1:{port} inside the sandbox{}",
                opt(reply_port.map(|p| format!(", replies to port {p}")), "")
            )?,
            Ipc::Fd => writeln!(f, "ipc         fd 3 (SOCK_SEQPACKET, VITRINE_OSC_FD=3)")?,
        }
        writeln!(
            f,
            "osc         prefix {}, {} msg/s, {} params",
            self.osc.prefix,
            self.osc.max_rate,
            self.osc.params.len()
        )?;
        for p in &self.osc.params {
            writeln!(
                f,
                "  {:<22} {}{}{}",
                p.address,
                kind(&p.kind),
                opt(p.max_rate.map(|r| format!(", {r}/s")), ""),
                if p.coalesce { ", coalesce" } else { "" }
            )?;
        }
        match &self.midi {
            None => writeln!(f, "midi        none"),
            Some(m) => writeln!(
                f,
                "midi        inputs {}, channels {}, {} kinds, sysex {}, {} msg/s",
                m.inputs.join(" "),
                if m.channels.is_empty() {
                    "all".into()
                } else {
                    m.channels.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
                },
                m.messages.len(),
                if m.sysex { "on" } else { "off" },
                m.max_rate
            ),
        }
    }
}

fn action_word(a: SeccompAction) -> &'static str {
    match a {
        SeccompAction::Kill => "kill",
        SeccompAction::Errno => "errno",
        SeccompAction::Log => "log",
    }
}

fn kind(k: &ParamKind) -> String {
    let oor = |o: &OutOfRange| if *o == OutOfRange::Clamp { "clamp" } else { "reject" };
    match k {
        ParamKind::Float { range: Some((a, b)), out_of_range } => {
            format!("float [{a}, {b}] {}", oor(out_of_range))
        }
        ParamKind::Int { range: Some((a, b)), out_of_range } => {
            format!("int [{a}, {b}] {}", oor(out_of_range))
        }
        ParamKind::Float { .. } => "float".into(),
        ParamKind::Int { .. } => "int".into(),
        ParamKind::String { max_len, one_of } => format!(
            "string{}{}",
            opt(max_len.map(|m| format!(" <= {m} bytes")), ""),
            opt(one_of.as_ref().map(|o| format!(" one of {}", o.join("|"))), "")
        ),
        ParamKind::Blob { max_len } => format!("blob <= {max_len} bytes"),
        ParamKind::Bool => "bool".into(),
        ParamKind::Impulse => "impulse".into(),
        ParamKind::Color => "color".into(),
        ParamKind::Midi => "midi".into(),
    }
}

#[cfg(test)]
mod score_tests;
