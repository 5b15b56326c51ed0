//! From what a learning run saw to a policy draft in the normal format, with a comment on
//! every line saying why it is there.
//!
//! Filesystem needs are covered first by presets (the base presets, then greedily the preset
//! that covers most of what is left), then by the policy's own lists: paths grouped by
//! directory, a whole directory only when several of its entries were used. Writes are only
//! granted where they could succeed while learning (the private tmpfs and `--allow-write`);
//! attempts elsewhere, host sockets and network connections are listed as comments, never
//! granted. The seccomp profile is the candidate with the fewest syscalls once the extras it
//! would need are counted.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vitrine_policy::{AbsPath, Filesystem, NEVER_ALLOWED_SYSCALLS, Syscalls};

use super::listener::{Capped, Observed};
use super::observe::Need;
use super::paths::{Root, canonical, covers, interpreter};
use super::setup::{Candidate, Setup};

/// Entries of one directory with the same access that are granted as the directory itself.
const GROUP_MIN: usize = 4;
/// Directories never granted as a group, however many of their entries were used: a grant
/// there would cover the system's configuration, programs, devices or users' files. Grouping
/// happens only below them.
const NEVER_GROUPED: [&str; 10] =
    ["/", "/etc", "/usr", "/proc", "/sys", "/dev", "/home", "/root", "/run", "/var"];
pub(super) const MIB: u64 = 1 << 20;

/// Peaks measured over the run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Peaks {
    pub memory: u64,
    pub pids: u64,
    pub fds: u64,
}

/// A grant of the draft's own lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub path: PathBuf,
    pub need: Need,
    pub comment: String,
}

/// What the draft grants, for the summary and the tests.
#[derive(Debug, Default)]
pub struct Draft {
    pub text: String,
    pub presets: Vec<String>,
    pub grants: Vec<Grant>,
    pub profile: String,
    pub extra_syscalls: Vec<String>,
    /// Syscalls that were seen but are not allowed, with the reason (comments in `allow`).
    pub withheld_syscalls: Vec<(String, String)>,
    /// Needs that were seen but not granted, with the reason.
    pub refused: Vec<String>,
    pub needs: usize,
    /// Bytes of the regular files the program read: page cache a cold start may charge to
    /// the sandbox's cgroup that a warm learning run did not.
    pub file_bytes: u64,
}

pub fn build(
    setup: &Setup,
    seen: &Observed,
    peaks: Peaks,
    ran: Duration,
    uid_gid: (u32, u32),
) -> Draft {
    let (needs, mut refused) = needs(setup, seen, uid_gid);
    let file_bytes = needs
        .iter()
        .filter(|(_, n, _)| matches!(n, Need::Read | Need::Exec))
        .filter_map(|(p, _, _)| std::fs::metadata(p).ok().filter(|m| m.is_file()))
        .map(|m| m.len())
        .sum();
    let (presets, cover_notes, left) = cover(setup, &needs);
    let grants = group(&left);
    let choice = choose_profile(&setup.profiles, seen);
    refused.extend(seen.lossy.keys().map(|l| format!("{l}; not granted")));
    more(&mut refused, &seen.lossy, "path arguments that cannot be granted");
    more(&mut refused, &seen.paths, "paths (too many distinct paths)");
    refused.extend(seen.unix_connects.keys().map(|p| {
        format!(
            "{}: Unix socket connect (host sockets are hidden); grant it in `read` if needed",
            p.display()
        )
    }));
    more(&mut refused, &seen.unix_connects, "Unix socket connects");
    refused.extend(
        seen.abstract_unix
            .keys()
            .map(|n| format!("@{n}: abstract Unix socket (always out of reach)")),
    );
    more(&mut refused, &seen.abstract_unix, "abstract Unix sockets");
    refused.extend(
        seen.inet_connects
            .keys()
            .filter(|(a, _)| !is_loopback(a))
            .map(|(a, p)| format!("{a}:{p}: network connection (the sandbox has no network)")),
    );
    more(&mut refused, &seen.inet_connects, "network connections");
    let mut draft = Draft {
        presets,
        grants,
        profile: choice.profile,
        extra_syscalls: choice.extras,
        withheld_syscalls: choice.withheld,
        refused,
        needs: needs.len(),
        file_bytes,
        ..Draft::default()
    };
    draft.text = super::render::render(setup, seen, peaks, ran, &draft, &cover_notes);
    draft
}

/// "… and N more" when a capped list turned entries away.
fn more<K, V>(notes: &mut Vec<String>, list: &Capped<K, V>, what: &str) {
    if list.dropped > 0 {
        notes.push(format!("… and {} more {what}, not recorded", list.dropped));
    }
}

pub(super) fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// The needs that can be granted, and the reasons for those that cannot.
fn needs(
    setup: &Setup,
    seen: &Observed,
    (uid, gid): (u32, u32),
) -> (Vec<(PathBuf, Need, String)>, Vec<String>) {
    let mut needs: BTreeMap<(PathBuf, Need), String> = BTreeMap::new();
    let mut add = |p: PathBuf, need: Need, what: String| {
        needs.entry((p, need)).or_insert(what);
    };
    // The program itself is the operator's file on the host (it runs from a sealed copy);
    // the loaders of what it executes were looked up inside the sandbox while learning.
    if let Some(i) = interpreter(&Root::Host, &setup.program.command) {
        add(canonical(&i), Need::Exec, "loader of the program".into());
    }
    for ((p, need), what) in seen.paths.iter() {
        add(p.clone(), *need, (*what).to_owned());
    }
    // One path may need several rights; a stronger one that includes a weaker makes it moot
    // (exec and write include read, a device includes write), while exec and write both stay.
    let all: Vec<(PathBuf, Need)> = needs.keys().cloned().collect();
    needs.retain(|(p, n), _| {
        !all.iter().any(|(q, m)| q == p && m != n && super::paths::satisfies(*m, *n))
    });
    let mut granted = Vec::new();
    let mut refused = Vec::new();
    for ((p, need), what) in needs {
        let in_dev = p.starts_with("/dev") && !p.starts_with("/dev/shm");
        if p == Path::new("/") || (in_dev && need != Need::Device) {
            // The policy format never grants the root, nor /dev entries other than devices.
            refused.push(format!("{}: {what} (a policy cannot grant this path)", p.display()));
        } else if need == Need::Write && !setup.writable.iter().any(|w| p.starts_with(w)) {
            refused.push(format!(
                "{}: {what} refused while learning (not under --allow-write)",
                p.display()
            ));
        } else if need != Need::Device && !permitted(&p, need, uid, gid) {
            refused.push(format!("{}: {what} refused by the file's permissions", p.display()));
        } else {
            granted.push((p, need, what));
        }
    }
    (granted, refused)
}

/// Whether the file's mode lets the sandbox user (no supplementary groups) do `need`.
fn permitted(p: &Path, need: Need, uid: u32, gid: u32) -> bool {
    let Ok(m) = std::fs::metadata(p) else { return true };
    let bits = if m.uid() == uid {
        m.mode() >> 6
    } else if m.gid() == gid {
        m.mode() >> 3
    } else {
        m.mode()
    };
    match need {
        Need::Read => bits & 0o4 != 0,
        Need::Exec => bits & 0o1 != 0 || m.is_dir(),
        Need::Write | Need::Device => bits & 0o2 != 0,
    }
}

fn grants_of(fs: &Filesystem) -> Vec<(&AbsPath, Need)> {
    fs.read
        .iter()
        .map(|p| (p, Need::Read))
        .chain(fs.exec.iter().map(|p| (p, Need::Exec)))
        .chain(fs.read_write.iter().map(|p| (p, Need::Write)))
        .chain(fs.devices.iter().map(|p| (p, Need::Device)))
        .collect()
}

fn covered_by(fs: &Filesystem, path: &Path, need: Need) -> bool {
    grants_of(fs).iter().any(|(g, n)| covers(g.as_path(), *n, path, need))
}

type Needs = Vec<(PathBuf, Need, String)>;

/// Base presets, then greedily the preset covering most of what is left. Returns the presets,
/// a note per preset (how many needs it covers, one example) and the needs left over.
fn cover(setup: &Setup, needs: &Needs) -> (Vec<String>, BTreeMap<String, String>, Needs) {
    let find = |name: &str| setup.presets.iter().find(|c| c.name == name);
    let mut chosen: Vec<&Candidate<Filesystem>> =
        setup.base.iter().filter_map(|b| find(b)).collect();
    let mut left: Needs = needs.clone();
    let take = |c: &Candidate<Filesystem>, left: &mut Needs| {
        left.retain(|(p, n, _)| !covered_by(&c.value, p, *n));
    };
    for c in &chosen {
        take(c, &mut left);
    }
    loop {
        let best = setup
            .presets
            .iter()
            .filter(|c| !chosen.iter().any(|k| k.name == c.name))
            .map(|c| (left.iter().filter(|(p, n, _)| covered_by(&c.value, p, *n)).count(), c))
            .filter(|(n, _)| *n > 0)
            .max_by_key(|(n, c)| (*n, std::cmp::Reverse(grants_of(&c.value).len())));
        let Some((_, c)) = best else { break };
        take(c, &mut left);
        chosen.push(c);
    }
    // A preset that another chosen preset already includes adds nothing.
    let all = chosen.clone();
    chosen.retain(|c| !all.iter().any(|o| o.name != c.name && o.value.presets.contains(&c.name)));
    let mut notes = BTreeMap::new();
    for c in &chosen {
        let hit: Vec<&PathBuf> = needs
            .iter()
            .filter(|(p, n, _)| covered_by(&c.value, p, *n))
            .map(|(p, _, _)| p)
            .collect();
        let example = hit.first().map(|p| format!(", e.g. {}", p.display())).unwrap_or_default();
        notes.insert(c.name.clone(), format!("covers {} of the paths used{example}", hit.len()));
    }
    (chosen.iter().map(|c| c.name.clone()).collect(), notes, left)
}

/// The draft's own grants: one entry per path, or the directory when at least `GROUP_MIN`
/// entries of it needed the same access.
fn group(left: &Needs) -> Vec<Grant> {
    let mut by_dir: BTreeMap<(Need, PathBuf), Vec<(PathBuf, String)>> = BTreeMap::new();
    for (p, need, what) in left {
        let dir = p.parent().unwrap_or(Path::new("/")).to_owned();
        by_dir.entry((*need, dir)).or_default().push((p.clone(), what.clone()));
    }
    let mut grants: Vec<Grant> = Vec::new();
    for ((need, dir), entries) in by_dir {
        // Programs and devices are always named one by one: a directory of them grants too much.
        let groupable = matches!(need, Need::Read | Need::Write);
        let sensitive = NEVER_GROUPED.iter().any(|s| dir == Path::new(s));
        if entries.len() >= GROUP_MIN && groupable && !sensitive {
            let names: Vec<String> = entries
                .iter()
                .take(3)
                .map(|(p, _)| {
                    p.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                })
                .collect();
            let more = if entries.len() > 3 { ", …" } else { "" };
            grants.push(Grant {
                path: dir,
                need,
                comment: format!("{} entries used: {}{more}", entries.len(), names.join(", ")),
            });
        } else {
            grants.extend(entries.into_iter().map(|(path, what)| Grant {
                path,
                need,
                comment: what,
            }));
        }
    }
    // A grant beneath another grant with at least its access is redundant.
    let all = grants.clone();
    grants.retain(|g| {
        !all.iter().any(|o| o.path != g.path && covers(&o.path, o.need, &g.path, g.need))
    });
    grants.sort_by(|a, b| a.path.cmp(&b.path));
    grants
}

/// The seccomp part of a draft.
#[derive(Debug, PartialEq, Eq)]
pub struct SyscallChoice {
    pub profile: String,
    /// Granted by name in `allow`.
    pub extras: Vec<String>,
    /// Seen but not granted, with the reason.
    pub withheld: Vec<(String, String)>,
}

/// Why a syscall may never be granted by name in a draft, whatever the profile.
fn never_by_name(name: &str) -> Option<&'static str> {
    if name.starts_with("syscall ") {
        Some("a number without a name in the syscall table; no policy can name it")
    } else if NEVER_ALLOWED_SYSCALLS.contains(&name) {
        Some("never allowed in a vitrine sandbox; no policy may allow it")
    } else if name == "clone" {
        Some(
            "allowing clone by name would allow namespace flags; only a profile's clone rule may allow it",
        )
    } else {
        None
    }
}

/// The candidate profile that refuses the fewest calls by their arguments (a call refused
/// for its arguments cannot be allowed by name without allowing every argument), then has the
/// fewest syscalls, counting the extras it needs.
pub fn choose_profile(profiles: &[Candidate<Syscalls>], seen: &Observed) -> SyscallChoice {
    let calls = |name: &str| seen.syscalls.get(&name.to_owned()).copied().unwrap_or(0);
    let mut best: Option<((usize, usize), SyscallChoice)> = None;
    for (i, c) in profiles.iter().enumerate() {
        let (Some(beyond), Some(conditioned)) = (seen.beyond.get(i), seen.conditioned.get(i))
        else {
            continue;
        };
        let mut names: BTreeSet<&str> = c.value.rules.iter().map(|r| r.syscall.as_str()).collect();
        names.extend(c.value.allow.iter().map(String::as_str));
        let mut extras = Vec::new();
        let mut withheld = Vec::new();
        for name in beyond {
            match never_by_name(name) {
                Some(why) => withheld.push((name.clone(), format!("{} calls; {why}", calls(name)))),
                None => extras.push(name.clone()),
            }
        }
        for (name, seen_args) in conditioned {
            let args: Vec<&str> = seen_args.args.keys().map(String::as_str).collect();
            let dropped = match seen_args.args.dropped {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            withheld.push((
                name.clone(),
                format!(
                    "{} calls with {}{dropped}, which profile \"{}\" refuses; allowing {name} by \
                     name would allow it with every argument",
                    seen_args.calls,
                    args.join("; "),
                    c.name
                ),
            ));
        }
        withheld.sort();
        let cost = (conditioned.len(), names.len() + extras.len());
        if best.as_ref().is_none_or(|(b, _)| cost < *b) {
            best = Some((cost, SyscallChoice { profile: c.name.clone(), extras, withheld }));
        }
    }
    let mut choice = best.map_or_else(
        || SyscallChoice { profile: "default".into(), extras: Vec::new(), withheld: Vec::new() },
        |(_, c)| c,
    );
    if seen.syscalls.dropped > 0 {
        let n = seen.syscalls.dropped;
        choice.withheld.push(("…".into(), format!("and {n} more calls of syscalls not recorded")));
    }
    choice
}

/// Comment text with control characters escaped: paths and names come from the learned
/// program, and a newline in one must not start a line of policy in the draft.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

/// Memory: the peak and the files read (see [`Draft::file_bytes`]), plus half and 16 MiB, in
/// whole MiB, at least 32 MiB. An OOM kill in front of an audience costs more than a few
/// megabytes: the margin absorbs a colder page cache and allocator noise between runs.
pub fn memory_limit(peak: u64, files: u64) -> u64 {
    let base = peak.saturating_add(files);
    (base + base / 2 + 16 * MIB).div_ceil(MIB).max(32)
}

/// Tasks: the peak plus half, at least 4 more.
pub fn pids_limit(peak: u64) -> u64 {
    peak + (peak / 2).max(4)
}

/// Descriptors: the peak plus half, at least 16 more, in multiples of 8 (the policy's floor is 16).
pub fn open_files_limit(peak: u64) -> u64 {
    (peak + (peak / 2).max(16)).div_ceil(8) * 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_cannot_carry_a_line_of_policy() {
        assert_eq!(clean("/tmp/x\n[syscalls]\tallow"), "/tmp/x\\n[syscalls]\\tallow");
        assert!(!clean("a\r\nb").contains('\n'));
    }

    #[test]
    fn limits_sit_a_little_above_the_peaks() {
        assert_eq!(memory_limit(0, 0), 32);
        assert_eq!(memory_limit(100 * MIB, 0), 166);
        assert_eq!(memory_limit(60 * MIB, 40 * MIB), 166);
        assert_eq!(pids_limit(3), 7);
        assert_eq!(pids_limit(40), 60);
        assert_eq!(open_files_limit(5), 24);
        assert_eq!(open_files_limit(100), 152);
    }

    #[test]
    fn directories_are_granted_only_when_several_entries_were_used() {
        let needs: Needs = ["a", "b", "c", "d"]
            .iter()
            .map(|n| (PathBuf::from(format!("/opt/x/{n}")), Need::Read, "open".to_owned()))
            .chain([(PathBuf::from("/opt/y/one"), Need::Read, "open".to_owned())])
            .chain([(PathBuf::from("/opt/x/sub/e"), Need::Read, "open".to_owned())])
            .collect();
        let g = group(&needs);
        let paths: Vec<&Path> = g.iter().map(|g| g.path.as_path()).collect();
        assert_eq!(paths, vec![Path::new("/opt/x"), Path::new("/opt/y/one")]);
    }

    #[test]
    fn grouping_never_widens_to_a_sensitive_root() {
        for root in NEVER_GROUPED {
            let needs: Needs = ["a", "b", "c", "d", "e"]
                .iter()
                .map(|n| (Path::new(root).join(n), Need::Read, "open".to_owned()))
                .collect();
            let g = group(&needs);
            assert_eq!(g.len(), 5, "{root} was granted as a whole: {g:?}");
            assert!(g.iter().all(|g| g.path != Path::new(root)));
        }
        // Below them, a directory of several used entries is still one grant.
        let needs: Needs = ["a", "b", "c", "d"]
            .iter()
            .map(|n| (PathBuf::from(format!("/etc/fonts/{n}")), Need::Read, "open".to_owned()))
            .collect();
        assert_eq!(
            group(&needs).iter().map(|g| g.path.clone()).collect::<Vec<_>>(),
            vec![PathBuf::from("/etc/fonts")]
        );
    }

    fn profile(name: &str, plain: &[&str], conditioned: &[&str]) -> Candidate<Syscalls> {
        use vitrine_policy::{ArgCondition, ArgOp, SeccompAction, SyscallRule};
        let cond = ArgCondition { index: 0, dword: true, op: ArgOp::Eq, val: 1 };
        let rules = plain
            .iter()
            .map(|n| SyscallRule { syscall: (*n).into(), args: vec![] })
            .chain(
                conditioned
                    .iter()
                    .map(|n| SyscallRule { syscall: (*n).into(), args: vec![cond.clone()] }),
            )
            .collect();
        let value = Syscalls {
            profile: name.into(),
            profile_path: format!("/p/{name}.json").into(),
            rules,
            allow: vec![],
            action: SeccompAction::Kill,
        };
        Candidate { name: name.into(), value }
    }

    /// What the listener records for these calls (name, arguments) under these profiles.
    fn observe(profiles: &[Candidate<Syscalls>], calls: &[(&str, [u64; 6])]) -> Observed {
        let values: Vec<Syscalls> = profiles.iter().map(|c| c.value.clone()).collect();
        let mut seen = Observed::new(profiles.len());
        for (name, args) in calls {
            seen.syscall(&values, name, args);
        }
        seen
    }

    #[test]
    fn calls_refused_for_their_arguments_are_never_allowed_by_name() {
        let small = profile("small", &["read"], &["socket", "ioctl", "clone"]);
        let packet = ("socket", [17, 3, 0, 0, 0, 0]);
        let inet = ("socket", [1, 2, 0, 0, 0, 0]);
        let ns_clone = ("clone", [0x1000_0000, 0, 0, 0, 0, 0]);
        let choice = choose_profile(
            std::slice::from_ref(&small),
            &observe(std::slice::from_ref(&small), &[packet, inet, ns_clone]),
        );
        assert_eq!(choice.profile, "small");
        assert!(choice.extras.is_empty(), "widened: {:?}", choice.extras);
        let names: Vec<&str> = choice.withheld.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["clone", "socket"]);
        assert!(choice.withheld[1].1.contains("arg0 = 17 (AF_PACKET)"), "{:?}", choice.withheld);
        assert!(!choice.withheld[1].1.contains("arg0 = 1 "), "allowed arguments are not listed");

        // A profile whose rules take the call is preferred, even when it is larger.
        let wide = profile("wide", &["read", "write", "ioctl", "mmap"], &["socket", "clone"]);
        let tty = ("ioctl", [0, 0x5401, 0, 0, 0, 0]);
        let both = [small.clone(), wide];
        let choice = choose_profile(&both, &observe(&both, &[tty]));
        assert_eq!(
            choice,
            SyscallChoice { profile: "wide".into(), extras: vec![], withheld: vec![] }
        );
    }

    #[test]
    fn unknown_and_never_allowed_syscalls_are_comments() {
        let p = profile("p", &["read"], &[]);
        let calls = [
            ("syscall 1000", [0; 6]),
            ("ptrace", [0; 6]),
            ("clone", [0; 6]),
            ("sched_setaffinity", [0; 6]),
        ];
        let choice =
            choose_profile(std::slice::from_ref(&p), &observe(std::slice::from_ref(&p), &calls));
        assert_eq!(choice.extras, vec!["sched_setaffinity".to_owned()]);
        let withheld: BTreeMap<&str, &str> =
            choice.withheld.iter().map(|(n, w)| (n.as_str(), w.as_str())).collect();
        assert!(withheld["syscall 1000"].contains("no policy can name it"));
        assert!(withheld["ptrace"].contains("no policy may allow it"));
        assert!(withheld["clone"].contains("namespace flags"));
    }
}
