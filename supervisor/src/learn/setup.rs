//! Everything a learning run needs before it starts: the program (resolved and pinned), the
//! presets and profiles a draft may name, and the learning sandbox (a normal plan with a wider
//! filesystem view and the notifying seccomp filter).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use vitrine_policy::{Config, Filesystem, LoadContext, Policy, Syscalls, parse_policy_bytes};
use vitrine_sandbox::learn::{ALWAYS_NOTIFIED, HANDOVER_SYSCALLS};
use vitrine_sandbox::plan::{FsAccess, FsRule, LandlockPlan, MountOp, Plan, SeccompPlan};

/// Descriptors the learning run allows, so the peak is measured above the usual default.
pub const LEARN_OPEN_FILES: u64 = 4096;
/// Device classes exposed while learning, besides the pseudo-devices every program may use.
const DEVICE_DIRS: [&str; 2] = ["/dev/dri", "/dev/snd"];
const HARMLESS_DEVICES: [&str; 5] =
    ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"];

/// What `vitrine policy learn` was asked to do.
#[derive(Debug, Clone)]
pub struct LearnArgs {
    pub out: Option<PathBuf>,
    /// Replace an existing file at `out`.
    pub force: bool,
    pub duration: std::time::Duration,
    pub base: Vec<String>,
    pub allow_write: Vec<PathBuf>,
    pub user: String,
    pub name: Option<String>,
    /// The program's whole environment while learning and in the draft.
    pub env: Vec<(String, String)>,
    pub config: Option<PathBuf>,
    pub command: Vec<String>,
}

/// A preset or profile a draft may name, as loaded through the normal policy loader.
#[derive(Debug, Clone)]
pub struct Candidate<T> {
    pub name: String,
    pub value: T,
}

/// The program being learned and where its draft goes: enough to write policy text for it.
#[derive(Debug)]
pub struct Program {
    pub name: String,
    pub command: PathBuf,
    pub args: Vec<String>,
    pub sha256: String,
    pub user: String,
    pub env: Vec<(String, String)>,
    pub out: PathBuf,
    pub ctx: LoadContext,
}

impl Program {
    /// A minimal policy for this program with the given presets and profile.
    /// The environment as a TOML inline table.
    pub fn env_table(&self) -> String {
        let pairs: Vec<String> =
            self.env.iter().map(|(k, v)| format!("{} = {}", toml_str(k), toml_str(v))).collect();
        if pairs.is_empty() { "{}".into() } else { format!("{{ {} }}", pairs.join(", ")) }
    }

    pub fn policy_text(
        &self,
        name: &str,
        presets: &[String],
        profile: &str,
        open_files: u64,
    ) -> String {
        format!(
            "[visualization]\nname = {}\ncommand = {}\nargs = [{}]\nenv = {}\n\n[verify]\nsha256 = \"{}\"\n\n\
             [limits]\nopen_files = {open_files}\n\n[sandbox]\nuser = {}\n\n\
             [filesystem]\npresets = [{}]\n\n[syscalls]\nprofile = {}\n",
            toml_str(name),
            toml_str(&self.command.display().to_string()),
            list(&self.args),
            self.env_table(),
            self.sha256,
            user_value(&self.user),
            list(presets),
            toml_str(profile),
        )
    }

    /// Parses policy text as if it were the draft file (presets resolve the same way).
    pub fn parse(&self, text: &str) -> anyhow::Result<Policy> {
        parse_policy_bytes(text.as_bytes(), &self.out, &self.ctx)
            .map_err(|d| anyhow::anyhow!("{d}"))
    }

    /// Every `<sub>/*.<ext>` the policy loader would find for the draft, loaded by `load`.
    fn candidates<T>(
        &self,
        sub: &str,
        ext: &str,
        load: impl Fn(&str) -> anyhow::Result<T>,
    ) -> Vec<Candidate<T>> {
        let mut dirs = vec![self.out.parent().unwrap_or(Path::new("/")).join("..").join(sub)];
        dirs.extend(self.ctx.system_dirs.iter().map(|d| d.join(sub)));
        let mut names = BTreeSet::new();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == ext) {
                    if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                        names.insert(stem.to_owned());
                    }
                }
            }
        }
        let mut out = Vec::new();
        for name in names {
            match load(&name) {
                Ok(value) => out.push(Candidate { name, value }),
                Err(e) => eprintln!("vitrine: learn: warning: skipping {sub}/{name}.{ext}: {e:#}"),
            }
        }
        out
    }
}

#[derive(Debug)]
pub struct Setup {
    pub program: Program,
    pub base: Vec<String>,
    pub allow_write: Vec<PathBuf>,
    /// Private tmpfs plus `--allow-write`: the only places writes can succeed while learning.
    pub writable: Vec<PathBuf>,
    pub presets: Vec<Candidate<Filesystem>>,
    pub profiles: Vec<Candidate<Syscalls>>,
    /// The policy the learning sandbox starts from (base presets, default profile).
    pub policy: Policy,
    pub seccomp: SeccompPlan,
}

impl Setup {
    pub fn new(args: &LearnArgs, config: &Config) -> anyhow::Result<Setup> {
        let Some((program, rest)) = args.command.split_first() else {
            bail!("no program given; put it after `--`");
        };
        let command = resolve_command(program)?;
        let bytes =
            std::fs::read(&command).with_context(|| format!("reading {}", command.display()))?;
        let name = args.name.clone().unwrap_or_else(|| default_name(&command));
        let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("{name}.toml")));
        let program = Program {
            out: std::path::absolute(&out).context("resolving --out")?,
            name,
            command,
            args: rest.to_vec(),
            sha256: hex::encode(Sha256::digest(&bytes)),
            user: args.user.clone(),
            env: args.env.clone(),
            ctx: LoadContext { allow_unsigned: true, ..LoadContext::from_config(config) },
        };
        let mut allow_write = Vec::new();
        for p in &args.allow_write {
            allow_write.push(
                std::fs::canonicalize(p)
                    .with_context(|| format!("--allow-write {}", p.display()))?,
            );
        }
        let learn_name: String = format!("learn-{}", program.name).chars().take(32).collect();
        let text = program.policy_text(&learn_name, &args.base, "default", LEARN_OPEN_FILES);
        let policy = program.parse(&text).context("the learning policy")?;
        let presets = program.candidates("presets", "toml", |n| {
            Ok(program
                .parse(&program.policy_text("x", &[n.to_owned()], "default", 256))?
                .filesystem)
        });
        let profiles = program.candidates("seccomp", "json", |n| {
            let syscalls = program.parse(&program.policy_text("x", &[], n, 256))?.syscalls;
            // The hot set comes from the candidates and must hold the listener handover.
            match HANDOVER_SYSCALLS.iter().find(|h| !unconditional(&syscalls).contains(**h)) {
                Some(h) => bail!("it does not allow `{h}`, which every sandbox needs"),
                None => Ok(syscalls),
            }
        });
        if profiles.is_empty() {
            bail!("no seccomp profiles found for {}", program.out.display());
        }
        let seccomp = vitrine_sandbox::learn::compile(
            &hot_set(&profiles),
            vitrine_policy::NEVER_ALLOWED_SYSCALLS,
        )
        .context("compiling the learning filter")?;
        Ok(Setup {
            program,
            base: args.base.clone(),
            writable: [PathBuf::from("/tmp"), PathBuf::from("/dev/shm")]
                .into_iter()
                .chain(allow_write.iter().cloned())
                .collect(),
            allow_write,
            presets,
            profiles,
            policy,
            seccomp,
        })
    }

    /// Turns the normal plan into the learning sandbox: same namespaces, masks, limits and
    /// privilege drop; the filesystem readable and executable except where writes may go,
    /// GPU and sound devices present, and the notifying filter.
    pub fn adapt(&self, plan: &mut Plan) {
        let devices = learning_devices();
        let masks: Vec<PathBuf> = plan
            .mounts
            .iter()
            .filter_map(|m| match m {
                MountOp::Tmpfs { target, .. } => Some(target.clone()),
                _ => None,
            })
            .collect();
        for op in &mut plan.mounts {
            if let MountOp::Dev { devices: d, .. } = op {
                *d = devices.clone();
            }
        }
        for p in &self.allow_write {
            if masks.iter().any(|m| p.starts_with(m) && p != m) {
                plan.mounts.push(MountOp::Bind {
                    path: p.clone(),
                    read_only: false,
                    optional: false,
                });
            }
        }
        let mut rules = Vec::new();
        let mut excluded: Vec<PathBuf> = self.writable.clone();
        excluded.extend([PathBuf::from("/dev"), PathBuf::from("/proc")]);
        exec_except(Path::new("/"), &excluded, &mut rules);
        rules.push(rule("/proc", FsAccess::Read));
        rules.push(rule("/dev", FsAccess::Read));
        for d in &devices {
            rules.push(FsRule { path: d.clone(), access: FsAccess::Device, optional: true });
        }
        for w in &self.writable {
            rules.push(FsRule { path: w.clone(), access: FsAccess::ReadWrite, optional: true });
        }
        plan.landlock = LandlockPlan { required: true, min_abi: 1, rules };
        plan.seccomp = self.seccomp.clone();
    }
}

fn rule(p: &str, access: FsAccess) -> FsRule {
    FsRule { path: PathBuf::from(p), access, optional: true }
}

/// Read and execute on everything beneath `dir` except the `excluded` trees: one rule per
/// entry, descending only into directories that contain an excluded tree.
fn exec_except(dir: &Path, excluded: &[PathBuf], rules: &mut Vec<FsRule>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if excluded.iter().any(|x| p.starts_with(x)) {
            continue;
        }
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && excluded.iter().any(|x| x.starts_with(&p)) {
            exec_except(&p, excluded, rules);
        } else {
            rules.push(FsRule { path: p, access: FsAccess::Exec, optional: true });
        }
    }
}

/// The pseudo-devices and every GPU and sound node of this host.
fn learning_devices() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = HARMLESS_DEVICES.iter().map(PathBuf::from).collect();
    for dir in DEVICE_DIRS {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for e in entries.flatten() {
            use std::os::unix::fs::FileTypeExt;
            if e.file_type().is_ok_and(|t| t.is_char_device()) {
                out.push(e.path());
            }
        }
    }
    out
}

/// The syscalls every candidate profile allows unconditionally, minus those always notified:
/// no draft can need to name them, so they run without a round trip.
fn hot_set(profiles: &[Candidate<Syscalls>]) -> Vec<String> {
    let mut sets = profiles.iter().map(|c| unconditional(&c.value));
    let first = sets.next().unwrap_or_default();
    let all = sets.fold(first, |acc, s| acc.intersection(&s).cloned().collect());
    all.into_iter().filter(|n| !ALWAYS_NOTIFIED.contains(&n.as_str())).collect()
}

/// The syscalls a profile allows whatever their arguments.
fn unconditional(s: &Syscalls) -> BTreeSet<String> {
    s.rules
        .iter()
        .filter(|r| r.args.is_empty())
        .map(|r| r.syscall.clone())
        .chain(s.allow.iter().cloned())
        .collect()
}

/// An absolute path as given, else the first match on `$PATH`.
fn resolve_command(program: &str) -> anyhow::Result<PathBuf> {
    if program.contains('/') {
        return std::path::absolute(program).context("resolving the program path");
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("{program} is not on $PATH; give its absolute path"))
}

/// `python3.11` → `python3-11`: a valid visualization name.
fn default_name(command: &Path) -> String {
    let base = command.file_name().and_then(|n| n.to_str()).unwrap_or("viz");
    let name: String = base
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' })
        .take(32)
        .collect();
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() { "viz".into() } else { name }
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn list(items: &[String]) -> String {
    items.iter().map(|s| toml_str(s)).collect::<Vec<_>>().join(", ")
}

/// A user name, or a uid when the argument is a number.
pub fn user_value(user: &str) -> String {
    if user.chars().all(|c| c.is_ascii_digit()) { user.to_owned() } else { toml_str(user) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_strings() {
        assert_eq!(default_name(Path::new("/usr/bin/python3.11")), "python3-11");
        assert_eq!(default_name(Path::new("/x/__")), "viz");
        assert_eq!(toml_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
        assert_eq!(user_value("65534"), "65534");
        assert_eq!(user_value("nobody"), "\"nobody\"");
    }

    fn profile(names: &[&str], conditional: &[&str]) -> Candidate<Syscalls> {
        use vitrine_policy::{ArgCondition, ArgOp, SeccompAction, SyscallRule};
        let cond = ArgCondition { index: 0, dword: true, op: ArgOp::Eq, val: 1 };
        let rules = names
            .iter()
            .map(|n| SyscallRule { syscall: (*n).into(), args: vec![] })
            .chain(
                conditional
                    .iter()
                    .map(|n| SyscallRule { syscall: (*n).into(), args: vec![cond.clone()] }),
            )
            .collect();
        let value = Syscalls {
            profile: "p".into(),
            profile_path: "/p".into(),
            rules,
            allow: vec![],
            action: SeccompAction::Kill,
        };
        Candidate { name: "p".into(), value }
    }

    #[test]
    fn the_hot_set_is_what_every_profile_allows_outright_minus_path_syscalls() {
        let a = profile(&["read", "write", "openat", "futex"], &["socket"]);
        let b = profile(&["read", "write", "openat", "mlock"], &["futex"]);
        assert_eq!(hot_set(&[a, b]), vec!["read".to_owned(), "write".to_owned()]);
    }

    #[test]
    fn exec_rules_skip_writable_trees_but_keep_their_siblings() {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["a/keep", "a/write", "b"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        let mut rules = Vec::new();
        exec_except(dir.path(), &[dir.path().join("a/write")], &mut rules);
        let mut got: Vec<PathBuf> = rules.into_iter().map(|r| r.path).collect();
        got.sort();
        assert_eq!(got, vec![dir.path().join("a/keep"), dir.path().join("b")]);
    }
}
