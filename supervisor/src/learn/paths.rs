//! Paths as Landlock sees them, and which grant covers which need.
//!
//! Landlock checks the object a path finally resolves to, so a need is recorded on the
//! canonical path: `/usr/bin/python3` is `/usr/bin/python3.11`. The sandbox's private trees
//! (its own `/proc`, `/tmp`, `/dev` and the masked host directories) are not resolved on the
//! host, whose versions differ.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{AT_FDCWD, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

use super::observe::Need;

/// Trees the sandbox has its own versions of.
const PRIVATE: [&str; 8] =
    ["/tmp", "/dev", "/run", "/var/run", "/var/tmp", "/home", "/root", "/proc"];
/// `/dev` entries that are links into the sandbox's procfs.
const DEV_LINKS: [&str; 4] = ["/dev/fd", "/dev/stdin", "/dev/stdout", "/dev/stderr"];

/// The path whose grant the kernel checks for an access to `p`.
pub fn canonical(p: &Path) -> PathBuf {
    if p.starts_with("/proc") || DEV_LINKS.iter().any(|l| p.starts_with(l)) {
        return PathBuf::from("/proc");
    }
    if PRIVATE.iter().any(|t| p.starts_with(t)) {
        return p.to_owned();
    }
    match std::fs::canonicalize(p) {
        Ok(c) if c.starts_with("/proc") => PathBuf::from("/proc"),
        Ok(c) => c,
        Err(_) => p.to_owned(),
    }
}

/// Whether a grant of `grant` on `at` covers `need` on `path`.
pub fn covers(at: &Path, grant: Need, path: &Path, need: Need) -> bool {
    path.starts_with(at) && satisfies(grant, need)
}

/// Whether access `grant` includes what `need` asks for.
pub fn satisfies(grant: Need, need: Need) -> bool {
    match need {
        Need::Read => true,
        Need::Exec => grant == Need::Exec,
        Need::Write => matches!(grant, Need::Write | Need::Device),
        Need::Device => grant == Need::Device,
    }
}

/// Where a path is looked up: the host's root (the program given on the command line) or a
/// task's root (`/proc/PID/root`, the sandbox's own view with its private trees).
pub enum Root {
    Host,
    Task(File),
}

impl Root {
    /// The root of task `pid`; `None` once the task is gone.
    pub fn of_task(pid: u32) -> Option<Root> {
        let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC);
        // The magic link /proc/PID/root is the one link meant to be followed here.
        openat2(AT_FDCWD, format!("/proc/{pid}/root").as_str(), how)
            .ok()
            .map(|fd| Root::Task(fd.into()))
    }

    /// An `O_PATH` descriptor of `path`, resolved as the kernel resolves it for the task:
    /// inside its root (an absolute symlink does not escape to the host's tree) and never
    /// through a magic link (`/proc/self/fd/N`). `O_PATH` opens nothing for I/O, so a FIFO
    /// or a device at the path cannot react.
    pub fn lookup(&self, path: &Path) -> nix::Result<File> {
        let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC);
        let fd = match self {
            Root::Host => openat2(AT_FDCWD, path, how.resolve(ResolveFlag::RESOLVE_NO_MAGICLINKS)),
            Root::Task(root) => {
                let rel = path.strip_prefix("/").unwrap_or(path);
                let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
                let resolve = ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS;
                openat2(root, rel, how.resolve(resolve))
            }
        }?;
        Ok(fd.into())
    }

    /// `path` opened for reading if it is a regular file; devices, FIFOs and sockets are never
    /// opened for I/O (the supervisor runs as root, and an open can act on a device).
    pub fn open_regular(&self, path: &Path) -> Option<File> {
        let opath = self.lookup(path).ok()?;
        if !opath.metadata().ok()?.is_file() {
            return None;
        }
        // The checked file itself, through its own descriptor: the path is not resolved again.
        let own = format!("/proc/self/fd/{}", opath.as_raw_fd());
        let flags = OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        nix::fcntl::open(own.as_str(), flags, Mode::empty()).ok().map(File::from)
    }
}

/// The interpreter the kernel opens (with execute intent) to run `path`: the ELF
/// `PT_INTERP`, or the `#!` line of a script; looked up in `root`.
pub fn interpreter(root: &Root, path: &Path) -> Option<PathBuf> {
    let mut file = root.open_regular(path)?;
    let mut head = vec![0u8; 4096];
    let n = file.read(&mut head).ok()?;
    head.truncate(n);
    if let Some(rest) = head.strip_prefix(b"#!") {
        let line = rest.split(|&b| b == b'\n').next()?;
        let interp = line.split(|b| b.is_ascii_whitespace()).find(|w| !w.is_empty())?;
        let interp = std::str::from_utf8(interp).ok()?;
        return interp.starts_with('/').then(|| PathBuf::from(interp));
    }
    elf_interp(&file, &head)
}

fn elf_interp(file: &std::fs::File, head: &[u8]) -> Option<PathBuf> {
    use std::os::unix::fs::FileExt;
    // 64-bit little-endian ELF only (the sandbox only runs x86_64 code).
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |b: &[u8], o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |b: &[u8], o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let phoff = u64_at(head, 0x20)?;
    let phentsize = u64::from(u16_at(head, 0x36)?);
    let phnum = u64::from(u16_at(head, 0x38)?.min(256));
    let mut ph = vec![0u8; 56];
    for i in 0..phnum {
        file.read_exact_at(&mut ph, phoff.checked_add(i.checked_mul(phentsize)?)?).ok()?;
        const PT_INTERP: u32 = 3;
        if u32_at(&ph, 0)? == PT_INTERP {
            let offset = u64_at(&ph, 8)?;
            let size = u64_at(&ph, 32)?.min(4096) as usize;
            let mut name = vec![0u8; size];
            file.read_exact_at(&mut name, offset).ok()?;
            let end = name.iter().position(|&b| b == 0)?;
            let interp = std::str::from_utf8(&name[..end]).ok()?;
            return interp.starts_with('/').then(|| PathBuf::from(interp));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_trees_are_not_resolved_on_the_host() {
        assert_eq!(canonical(Path::new("/proc/self/maps")), PathBuf::from("/proc"));
        assert_eq!(canonical(Path::new("/dev/stdout")), PathBuf::from("/proc"));
        assert_eq!(canonical(Path::new("/tmp/x")), PathBuf::from("/tmp/x"));
        assert_eq!(canonical(Path::new("/dev/null")), PathBuf::from("/dev/null"));
    }

    #[test]
    fn grants_cover_weaker_needs_beneath_them() {
        assert!(covers(Path::new("/usr"), Need::Exec, Path::new("/usr/lib/x"), Need::Read));
        assert!(!covers(Path::new("/usr"), Need::Read, Path::new("/usr/lib/x"), Need::Exec));
        assert!(!covers(Path::new("/usr/lib"), Need::Exec, Path::new("/usr/libx"), Need::Read));
        assert!(covers(
            Path::new("/dev/snd"),
            Need::Device,
            Path::new("/dev/snd/pcm"),
            Need::Write
        ));
        assert!(!covers(Path::new("/tmp"), Need::Write, Path::new("/tmp/a"), Need::Exec));
    }

    #[test]
    fn lookups_stay_inside_the_task_root_and_never_open_special_files() {
        // A stand-in for a sandbox's root: its /opt/run.sh names /opt/interp, and an absolute
        // link /opt/link -> /opt/run.sh must resolve inside it, not on the host.
        let root = tempfile::tempdir().expect("tempdir");
        let opt = root.path().join("opt");
        std::fs::create_dir(&opt).expect("opt");
        std::fs::write(opt.join("run.sh"), "#!/opt/interp -x\n").expect("script");
        std::os::unix::fs::symlink("/opt/run.sh", opt.join("link")).expect("link");
        std::os::unix::fs::symlink("/proc/self/exe", opt.join("magic")).expect("magic");
        nix::unistd::mkfifo(&opt.join("fifo"), Mode::from_bits_truncate(0o644)).expect("fifo");
        let task = Root::Task(File::open(root.path()).expect("root"));
        assert_eq!(interpreter(&task, Path::new("/opt/link")), Some(PathBuf::from("/opt/interp")));
        assert_eq!(interpreter(&Root::Host, &opt.join("link")), None, "host /opt/run.sh");
        // ../../ cannot climb out of the root either.
        let up = Path::new("/opt/../../../opt/run.sh");
        assert_eq!(interpreter(&task, up), Some(PathBuf::from("/opt/interp")));
        // A FIFO or a device is never opened for I/O, and no magic link is followed.
        assert!(task.lookup(Path::new("/opt/fifo")).is_ok());
        assert!(task.open_regular(Path::new("/opt/fifo")).is_none());
        assert!(Root::Host.open_regular(Path::new("/dev/null")).is_none());
        assert!(task.lookup(Path::new("/opt/magic")).is_err());
    }

    #[test]
    fn finds_the_loader_of_a_dynamic_binary() {
        let exe = std::env::current_exe().expect("exe");
        if let Some(interp) = interpreter(&Root::Host, &exe) {
            assert!(interp.is_absolute() && interp.exists(), "{}", interp.display());
        }
        assert_eq!(interpreter(&Root::Host, Path::new("/no/such/binary")), None);
    }
}
