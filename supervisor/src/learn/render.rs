//! The text of a policy draft: every section in the normal format, with a comment on every
//! line saying what the learning run saw that put it there.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::draft::{
    Draft, Grant, MIB, Peaks, clean, is_loopback, memory_limit, open_files_limit, pids_limit,
};
use super::listener::Observed;
use super::observe::Need;
use super::setup::{Setup, list, toml_str, user_value};

pub(super) fn render(
    setup: &Setup,
    seen: &Observed,
    peaks: Peaks,
    ran: Duration,
    d: &Draft,
    notes: &BTreeMap<String, String>,
) -> String {
    let p = &setup.program;
    let mut t = String::new();
    let cmdline: Vec<String> =
        std::iter::once(p.command.display().to_string()).chain(p.args.iter().cloned()).collect();
    let _ = writeln!(
        t,
        "# Drafted by `vitrine policy learn` from a {:.2} s trial run of",
        ran.as_secs_f64()
    );
    let _ = writeln!(t, "#   {}", clean(&cmdline.join(" ")));
    let _ = writeln!(
        t,
        "# It grants what that run used and nothing else: review it, and learn again with the\n\
         # inputs the installation will really see (other scenes, files, controllers).\n"
    );
    let _ = writeln!(t, "[visualization]\nname = {}", toml_str(&p.name));
    let _ = writeln!(t, "command = {}", toml_str(&p.command.display().to_string()));
    let _ = writeln!(t, "args = [{}]", list(&p.args));
    let why =
        if p.env.is_empty() { "learned with an empty environment" } else { "as given with --env" };
    let _ = writeln!(t, "env = {}  # {why}\n", p.env_table());
    let _ = writeln!(
        t,
        "[verify]\n# The binary as it was learned; update the pin when the program is updated."
    );
    let _ = writeln!(t, "sha256 = \"{}\"\n", p.sha256);
    let _ = writeln!(t, "[limits]");
    let _ = writeln!(
        t,
        "memory = \"{}MiB\"  # peak {:.1} MiB while learning, {:.1} MiB of files read (a cold \
         page cache is charged here too), plus headroom",
        memory_limit(peaks.memory, d.file_bytes),
        peaks.memory as f64 / MIB as f64,
        d.file_bytes as f64 / MIB as f64
    );
    let _ = writeln!(
        t,
        "pids = {}  # peak {} tasks (threads included, and the sandbox's own two)",
        pids_limit(peaks.pids),
        peaks.pids
    );
    let _ = writeln!(
        t,
        "open_files = {}  # highest descriptor number seen: {}\n",
        open_files_limit(peaks.fds),
        peaks.fds.saturating_sub(1)
    );
    let _ = writeln!(t, "[sandbox]\nuser = {}\nlandlock = \"required\"\n", user_value(&p.user));
    render_filesystem(&mut t, d, notes);
    let _ = writeln!(t, "[network]\nmode = \"none\"");
    for (a, port) in seen.inet_connects.keys().filter(|(a, _)| !is_loopback(a)) {
        let _ =
            writeln!(t, "# tried to connect to {a}:{port} while learning (refused: no network)");
    }
    t.push('\n');
    render_syscalls(&mut t, setup, seen, d);
    render_ipc(&mut t, seen);
    t
}

fn render_filesystem(t: &mut String, d: &Draft, notes: &BTreeMap<String, String>) {
    let _ = writeln!(t, "[filesystem]");
    for name in &d.presets {
        let note = notes.get(name).map_or("included by the base", String::as_str);
        let _ = writeln!(t, "# preset {name}: {}", clean(note));
    }
    let _ = writeln!(t, "presets = [{}]", list(&d.presets));
    for need in [Need::Read, Need::Exec, Need::Write, Need::Device] {
        let mine: Vec<&Grant> = d.grants.iter().filter(|g| g.need == need).collect();
        if mine.is_empty() {
            continue;
        }
        let _ = writeln!(t, "{} = [", need.word());
        let mut last_dir: Option<&Path> = None;
        for g in mine {
            let dir = g.path.parent();
            if dir != last_dir {
                if let Some(dir) = dir {
                    let _ = writeln!(t, "    # {}", clean(&dir.display().to_string()));
                }
                last_dir = dir;
            }
            let _ = writeln!(
                t,
                "    {},  # {}",
                toml_str(&g.path.display().to_string()),
                clean(&g.comment)
            );
        }
        let _ = writeln!(t, "]");
    }
    if !d.refused.is_empty() {
        let _ = writeln!(t, "# Seen while learning but not granted:");
        for r in &d.refused {
            let _ = writeln!(t, "#   {}", clean(r));
        }
    }
    t.push('\n');
}

fn render_syscalls(t: &mut String, setup: &Setup, seen: &Observed, d: &Draft) {
    let _ = writeln!(t, "[syscalls]");
    let size = setup
        .profiles
        .iter()
        .find(|c| c.name == d.profile)
        .map_or(0, |c| c.value.rules.iter().map(|r| &r.syscall).collect::<BTreeSet<_>>().len());
    let _ = writeln!(
        t,
        "profile = {}  # {size} syscalls; the smallest shipped profile for this program",
        toml_str(&d.profile)
    );
    if d.extra_syscalls.is_empty() && d.withheld_syscalls.is_empty() {
        let _ = writeln!(t, "allow = []  # nothing beyond the profile was called");
    } else {
        let _ = writeln!(t, "allow = [");
        for s in &d.extra_syscalls {
            let calls = seen.syscalls.get(s).copied().unwrap_or(0);
            let _ = writeln!(
                t,
                "    {},  # {calls} calls; not allowed by profile \"{}\"",
                toml_str(s),
                d.profile
            );
        }
        for (s, why) in &d.withheld_syscalls {
            let _ = writeln!(t, "    # {},  # not granted: {}", clean(&toml_str(s)), clean(why));
        }
        let _ = writeln!(t, "]");
    }
    t.push('\n');
}

fn render_ipc(t: &mut String, seen: &Observed) {
    let ports: BTreeSet<u16> =
        seen.inet_binds.keys().map(|(_, p)| *p).filter(|p| *p != 0).collect();
    let _ = writeln!(t, "[ipc]\ntransport = \"udp\"");
    match ports.iter().next() {
        Some(port) if ports.len() == 1 => {
            let _ = writeln!(
                t,
                "port = {port}  # the program bound UDP port {port}: validated OSC goes there"
            );
        }
        Some(_) => {
            let all: Vec<String> = ports.iter().map(u16::to_string).collect();
            let _ = writeln!(
                t,
                "port = {}  # the program bound ports {}; pick the one it reads OSC on",
                ports.iter().next().copied().unwrap_or(9000),
                all.join(", ")
            );
        }
        None => {
            let _ =
                writeln!(t, "port = 9000  # no port was bound while learning; OSC would go here");
        }
    }
}
