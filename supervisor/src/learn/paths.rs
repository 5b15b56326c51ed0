//! Paths as Landlock sees them, and which grant covers which need.
//!
//! Landlock checks the object a path finally resolves to, so a need is recorded on the
//! canonical path: `/usr/bin/python3` is `/usr/bin/python3.11`. The sandbox's private trees
//! (its own `/proc`, `/tmp`, `/dev` and the masked host directories) are not resolved on the
//! host, whose versions differ.

use std::io::Read;
use std::path::{Path, PathBuf};

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

/// The interpreter the kernel opens (with execute intent) to run `path`: the ELF
/// `PT_INTERP`, or the `#!` line of a script.
pub fn interpreter(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    // Only regular files: the path came from the learned program, and opening a FIFO or a
    // device as root could block or act on it. O_NONBLOCK covers a swap after the check.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut head = vec![0u8; 4096];
    let n = file.read(&mut head).ok()?;
    head.truncate(n);
    if let Some(rest) = head.strip_prefix(b"#!") {
        let line = rest.split(|&b| b == b'\n').next()?;
        let text = String::from_utf8_lossy(line);
        let interp = text.split_whitespace().next()?;
        return interp.starts_with('/').then(|| canonical(Path::new(interp)));
    }
    elf_interp(&file, &head).map(|p| canonical(&p))
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
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            return Some(PathBuf::from(String::from_utf8_lossy(&name[..end]).into_owned()));
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
    fn finds_the_loader_of_a_dynamic_binary() {
        let exe = std::env::current_exe().expect("exe");
        if let Some(interp) = interpreter(&exe) {
            assert!(interp.is_absolute() && interp.exists(), "{}", interp.display());
        }
        assert_eq!(interpreter(Path::new("/no/such/binary")), None);
    }
}
