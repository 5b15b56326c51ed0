//! `vitrine policy learn`: run a program once in a learning sandbox and draft its policy.
//!
//! The learning sandbox is a normal launch (same namespaces, masks, cgroup limits and privilege
//! drop, through the one spawn site) with three differences, made by [`setup::Setup::adapt`]:
//! Landlock lets the program read and execute the whole (masked) filesystem but write only to
//! its private tmpfs and `--allow-write` paths; GPU and sound devices are present; and the
//! seccomp filter notifies a listener here instead of killing ([`listener`]). Every notified
//! syscall is recorded and continued; paths are read from the stopped task ([`observe`]). The
//! run ends when the program exits or the duration elapses; then [`draft`] writes the policy.

mod draft;
mod listener;
mod observe;
mod paths;
mod render;
mod setup;

use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use vitrine_policy::{LoadContext, load_config, load_policy};

use crate::launch::{self, Child, Exit, Launcher, Output};
pub use setup::LearnArgs;

/// How often peaks are sampled while the program runs.
const SAMPLE: Duration = Duration::from_millis(20);

pub fn run(args: LearnArgs) -> anyhow::Result<ExitCode> {
    let mut stop_signals = SigSet::empty();
    stop_signals.add(Signal::SIGINT);
    stop_signals.add(Signal::SIGTERM);
    stop_signals.thread_block().context("blocking SIGINT/SIGTERM")?;
    let signals =
        SignalFd::with_flags(&stop_signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .context("creating a signalfd")?;
    vitrine_sandbox::learn::check_sizes().context("seccomp user notification is unavailable")?;

    let config = load_config(args.config.as_deref()).map_err(|d| anyhow::anyhow!("{d}"))?;
    let setup = setup::Setup::new(&args, &config)?;
    if !args.force && setup.program.out.exists() {
        anyhow::bail!(
            "{} exists; choose another file with --out, or replace it with --force",
            setup.program.out.display()
        );
    }
    let uid_gid = sandbox_ids(&args.user)?;
    let options = launch::Options { shim: None, cgroup_root: LEARN_CGROUP_ROOT.into() };
    let launcher = Launcher::start(options).map_err(anyhow::Error::new)?;
    let prepared = launch::prepare(&setup.policy, &config).map_err(anyhow::Error::new)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicBool::new(false));
    let profiles = setup.profiles.iter().map(|c| c.value.clone()).collect();
    let observer = listener::start(rx, profiles, Arc::clone(&stop), Arc::clone(&failed));
    let prepared = prepared.into_learning(|plan| setup.adapt(plan), tx);

    let name = &setup.program.name;
    eprintln!(
        "vitrine: learning {name} for at most {:?}: writes only to /tmp, /dev/shm{}; no network",
        args.duration,
        setup.allow_write.iter().map(|p| format!(", {}", p.display())).collect::<String>()
    );
    let started = Instant::now();
    let spawned = launcher.spawn(&prepared, Output::Inherit);
    let (exit, peaks) = match spawned {
        Ok(mut child) => {
            eprintln!("vitrine: {name}: started, {}", child.enforced().summary());
            for warning in child.enforced().warnings() {
                eprintln!("vitrine: {name}: note: {warning}");
            }
            supervise(&mut child, &signals, &failed, args.duration, prepared.stop_timeout())
        }
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            let _ = observer.join();
            return Err(anyhow::Error::new(e).context("starting the learning sandbox"));
        }
    };
    let ran = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let seen = observer.join().map_err(|_| anyhow::anyhow!("the seccomp listener panicked"))?;
    if let Some(failure) = &seen.failure {
        anyhow::bail!("the learning run was stopped, no draft written: {failure}");
    }
    let peaks = draft::Peaks {
        fds: peaks.fds.max(seen.fd_peak),
        pids: peaks.pids.max(seen.pids_peak),
        ..peaks
    };
    eprintln!("vitrine: {name}: {exit}");

    let draft = draft::build(&setup, &seen, peaks, ran, uid_gid);
    write_draft(&setup.program.out, &draft.text, args.force)
        .with_context(|| format!("writing {}", setup.program.out.display()))?;
    let check = LoadContext::from_config(&config);
    Ok(if summary(&setup, &seen, &draft, peaks, &check) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The cgroup subtree of learning runs: neither the daemon's (which removes what it finds in
/// its own at start) nor `vitrine run`'s.
pub const LEARN_CGROUP_ROOT: &str = "vitrine-learn";

/// Writes the draft through a temporary file in the same directory, renamed into place: a
/// reader never sees half a draft, and an existing file is replaced only with `force`
/// (`RENAME_NOREPLACE` otherwise, so a file created meanwhile is not overwritten either).
fn write_draft(out: &Path, text: &str, force: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = out.parent().unwrap_or(Path::new("/"));
    let name = out.file_name().context("--out names no file")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        let flags = if force { RenameFlags::empty() } else { RenameFlags::RENAME_NOREPLACE };
        match renameat2(AT_FDCWD, &tmp, AT_FDCWD, out, flags) {
            Ok(()) => Ok(()),
            Err(nix::Error::EEXIST) => {
                anyhow::bail!("{} exists; replace it with --force", out.display())
            }
            Err(e) => Err(anyhow::Error::new(e).context("renaming the draft into place")),
        }
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Waits for the program; the duration or a stop signal ends it gracefully (SIGTERM, then the
/// whole cgroup after `stop_timeout`). Samples the peaks meanwhile.
fn supervise(
    child: &mut Child,
    signals: &SignalFd,
    listener_failed: &AtomicBool,
    duration: Duration,
    stop_timeout: Duration,
) -> (Exit, draft::Peaks) {
    let mut peaks = draft::Peaks::default();
    let end = Instant::now() + duration;
    let mut kill_at: Option<Instant> = None;
    loop {
        sample(child, &mut peaks);
        let mut fds = [
            PollFd::new(child.pidfd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        let _ = poll(
            &mut fds,
            PollTimeout::try_from(SAMPLE.as_millis() as i32).unwrap_or(PollTimeout::MAX),
        );
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            return (child.wait(), peaks);
        }
        let signalled = fds[1].revents().is_some_and(|r| !r.is_empty())
            && matches!(signals.read_signal(), Ok(Some(_)));
        if listener_failed.load(Ordering::Relaxed) {
            // Nobody answers the sandbox's notifications any more: end it now.
            child.kill_all();
            continue;
        }
        let now = Instant::now();
        if kill_at.is_none() && (signalled || now >= end) {
            child.terminate();
            kill_at = Some(now + stop_timeout);
        } else if signalled || kill_at.is_some_and(|k| now >= k) {
            child.kill_all();
        }
    }
}

/// Memory and task peaks from the cgroup, descriptors from every process in it.
fn sample(child: &Child, peaks: &mut draft::Peaks) {
    let Some(cg) = child.cgroup() else { return };
    if let Ok(stats) = cg.stats() {
        peaks.memory = peaks.memory.max(stats.memory_peak.max(stats.memory_current));
        peaks.pids = peaks.pids.max(stats.pids_current);
    }
    for dir in cg.dirs() {
        if let Some(p) =
            std::fs::read_to_string(dir.join("pids.peak")).ok().and_then(|s| s.trim().parse().ok())
        {
            peaks.pids = peaks.pids.max(p);
        }
    }
    let shim = child.pid();
    for pid in cg.pids().unwrap_or_default() {
        let pid = pid as u32;
        // The shim and the sandbox's init are not under the program's descriptor limit.
        if pid == shim || parent_of(pid) == Some(shim) {
            continue;
        }
        peaks.fds = peaks.fds.max(listener::highest_fd(pid) + 1);
    }
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields follow the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

fn sandbox_ids(user: &str) -> anyhow::Result<(u32, u32)> {
    if let Ok(uid) = user.parse::<u32>() {
        let gid =
            nix::unistd::User::from_uid(uid.into()).ok().flatten().map_or(uid, |u| u.gid.as_raw());
        return Ok((uid, gid));
    }
    let u = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .with_context(|| format!("no user {user}; pass an existing account with --user"))?;
    Ok((u.uid.as_raw(), u.gid.as_raw()))
}

/// What was observed, what the draft grants, and its exposure score. `false` when the draft
/// does not load as `vitrine policy check` loads it.
fn summary(
    setup: &setup::Setup,
    seen: &listener::Observed,
    d: &draft::Draft,
    peaks: draft::Peaks,
    check: &LoadContext,
) -> bool {
    let out = &setup.program.out;
    eprintln!("vitrine: draft written to {}", out.display());
    eprintln!(
        "  observed: {} notified syscalls ({} distinct), {} paths, {} UDP binds, peaks memory {:.1} MiB, {} tasks, {} descriptors",
        seen.notified,
        seen.syscalls.len(),
        seen.paths.len(),
        seen.inet_binds.len(),
        peaks.memory as f64 / (1 << 20) as f64,
        peaks.pids,
        peaks.fds
    );
    eprintln!(
        "  granted:  presets [{}] and {} own paths for the {} paths used, profile {} + {} extra syscalls [{}]",
        d.presets.join(", "),
        d.grants.len(),
        d.needs,
        d.profile,
        d.extra_syscalls.len(),
        d.extra_syscalls.join(", ")
    );
    let devices: Vec<String> = seen
        .paths
        .keys()
        .filter(|(_, need)| *need == observe::Need::Device)
        .map(|(p, _)| p.display().to_string())
        .collect();
    if !devices.is_empty() {
        eprintln!("  devices used: {}", devices.join(", "));
    }
    for r in &d.refused {
        eprintln!("  not granted: {r}");
    }
    for (s, why) in &d.withheld_syscalls {
        eprintln!("  not granted: syscall {s}: {why}");
    }
    match load_policy(out, check) {
        Ok(policy) => {
            let e = vitrine_policy::explain(&policy);
            eprintln!(
                "  exposure: {:.1}/10 ({}); `vitrine policy explain {}` has the details",
                e.exposure,
                e.rating,
                out.display()
            );
            true
        }
        Err(diags) => {
            eprintln!(
                "vitrine: the draft does not pass `vitrine policy check`, which is a bug:\n{diags}"
            );
            false
        }
    }
}
