//! What one notified syscall means for a policy: the paths it names, resolved the way the
//! sandbox sees them, and the access each needs; the sockets it binds or connects to.
//!
//! Arguments are read from the stopped task: pointers through `/proc/PID/mem`, directory
//! descriptors through `/proc/PID/fd/N`, relative paths through `/proc/PID/cwd`. The caller
//! checks that the notification is still valid after the reads, so a pid reused meanwhile
//! cannot feed another process's memory into the draft.

use std::fs::File;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Component, Path, PathBuf};

use vitrine_sandbox::learn::decode::{self, SockAddr};

/// The access a path needs, in the words of the policy's `[filesystem]` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Need {
    Read,
    Exec,
    /// Write contents, or create/remove entries (then the need is on the directory).
    Write,
    /// A device node: bound into the sandbox's `/dev`, read, write and ioctl.
    Device,
}

impl Need {
    pub fn word(self) -> &'static str {
        match self {
            Need::Read => "read",
            Need::Exec => "exec",
            Need::Write => "read_write",
            Need::Device => "devices",
        }
    }
}

/// One fact a syscall established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// `path` needs `need`; `what` says which call (for comments).
    Path { path: PathBuf, need: Need, what: &'static str },
    /// A pathname Unix socket the program tried to connect to.
    UnixConnect(PathBuf),
    /// An abstract Unix socket (never reachable: Landlock scopes them).
    AbstractUnix(String),
    /// An IPv4/IPv6 bind; `port` in host order.
    InetBind { addr: String, port: u16 },
    /// An IPv4/IPv6 connect.
    InetConnect { addr: String, port: u16 },
}

/// The stopped task's view of memory and descriptors.
pub struct Task {
    pid: u32,
    /// Opened on the first read: most notified calls (ioctl, socket, clone) carry no pointer.
    mem: std::cell::OnceCell<Option<File>>,
}

const AT_FDCWD: i32 = -100;
const AT_EMPTY_PATH: u64 = 0x1000;
const O_ACCMODE: u64 = 0o3;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const O_DIRECTORY: u64 = 0o200000;
const O_PATH: u64 = 0o10000000;
const PATH_MAX: usize = 4096;
const PAGE: u64 = 4096;

impl Task {
    pub fn new(pid: u32) -> Task {
        Task { pid, mem: std::cell::OnceCell::new() }
    }

    /// Reads bytes at `addr`, never across a page boundary in one read (a read that touches
    /// an unmapped page fails as a whole).
    fn read(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        let mem =
            self.mem.get_or_init(|| File::open(format!("/proc/{}/mem", self.pid)).ok()).as_ref()?;
        let mut out = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let at = addr.checked_add(done as u64)?;
            let room = (PAGE - at % PAGE) as usize;
            let n = mem.read_at(&mut out[done..(done + room).min(len)], at).ok()?;
            if n == 0 {
                return None;
            }
            done += n;
        }
        Some(out)
    }

    /// A NUL-terminated string at `addr`, at most `PATH_MAX` bytes.
    fn string(&self, addr: u64) -> Option<String> {
        let mut bytes = Vec::new();
        let mut at = addr;
        while bytes.len() < PATH_MAX {
            let chunk = ((PAGE - at % PAGE) as usize).min(256);
            let part = self.read(at, chunk)?;
            if let Some(s) = decode::c_string(&part) {
                bytes.extend_from_slice(s);
                return Some(String::from_utf8_lossy(&bytes).into_owned());
            }
            bytes.extend_from_slice(&part);
            at = at.checked_add(chunk as u64)?;
        }
        None
    }

    fn link(&self, what: &str) -> Option<PathBuf> {
        std::fs::read_link(format!("/proc/{}/{what}", self.pid)).ok()
    }

    /// Resolves `path` against `dirfd` as the kernel would (lexically; symlinks later).
    fn at(&self, dirfd: u64, path: &str) -> Option<PathBuf> {
        let base = if path.starts_with('/') {
            PathBuf::from("/")
        } else if dirfd as i32 == AT_FDCWD {
            self.link("cwd")?
        } else {
            self.link(&format!("fd/{}", dirfd as i32))?
        };
        Some(normalize(&base.join(path)))
    }

    /// Whether `path` exists in the sandbox's view (through the task's root; a dangling link
    /// does not count, since opening it fails with ENOENT whatever the policy grants).
    /// Relative links resolve inside the sandbox; an absolute link target is looked up from
    /// the host's root, which differs only in the sandbox's private trees.
    fn exists(&self, path: &Path) -> bool {
        let inside = PathBuf::from(format!("/proc/{}/root", self.pid))
            .join(path.strip_prefix("/").unwrap_or(path));
        std::fs::metadata(inside).is_ok()
    }

    fn is_device(&self, path: &Path) -> bool {
        let inside = PathBuf::from(format!("/proc/{}/root", self.pid))
            .join(path.strip_prefix("/").unwrap_or(path));
        std::fs::metadata(inside)
            .map(|m| m.file_type().is_char_device() || m.file_type().is_block_device())
            .unwrap_or(false)
    }
}

/// `a/./b/../c` → `a/c`, without touching the filesystem.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The facts of one syscall, by name and raw arguments.
pub fn facts(task: &Task, name: &str, a: &[u64; 6]) -> Vec<Fact> {
    let mut out = Vec::new();
    let cwd = AT_FDCWD as u64;
    match name {
        "open" => open(task, &mut out, cwd, a[0], a[1]),
        "openat" => open(task, &mut out, a[0], a[1], a[2]),
        "openat2" => {
            // struct open_how starts with the u64 flags.
            if let Some(flags) = task.read(a[2], 8).and_then(|b| decode::open_how_flags(&b)) {
                open(task, &mut out, a[0], a[1], flags);
            }
        }
        "creat" => open(task, &mut out, cwd, a[0], O_CREAT | O_TRUNC | 1),
        "execve" => path(task, &mut out, cwd, a[0], Need::Exec, "execute"),
        "execveat" => {
            let empty = task.string(a[1]).is_some_and(|s| s.is_empty());
            if !(empty && a[4] & AT_EMPTY_PATH != 0) {
                path(task, &mut out, a[0], a[1], Need::Exec, "execute");
            }
        }
        "mkdir" | "rmdir" | "unlink" | "mknod" => parent(task, &mut out, cwd, a[0], name),
        "mkdirat" | "unlinkat" | "mknodat" => parent(task, &mut out, a[0], a[1], name),
        "rename" | "link" => {
            parent(task, &mut out, cwd, a[0], name);
            parent(task, &mut out, cwd, a[1], name);
        }
        "renameat" | "renameat2" | "linkat" => {
            parent(task, &mut out, a[0], a[1], name);
            parent(task, &mut out, a[2], a[3], name);
        }
        "symlink" => parent(task, &mut out, cwd, a[1], name),
        "symlinkat" => parent(task, &mut out, a[1], a[2], name),
        "truncate" => path(task, &mut out, cwd, a[0], Need::Write, "truncate"),
        "connect" | "bind" => sockaddr(task, &mut out, name == "bind", a[1], a[2]),
        _ => {}
    }
    out
}

fn open(task: &Task, out: &mut Vec<Fact>, dirfd: u64, addr: u64, flags: u64) {
    // O_PATH opens no file contents; Landlock does not check them.
    if flags & O_PATH != 0 {
        return;
    }
    let Some(p) = task.string(addr).and_then(|s| task.at(dirfd, &s)) else { return };
    let write = flags & O_ACCMODE != 0 || flags & O_TRUNC != 0;
    if !task.exists(&p) {
        // Without O_CREAT the call fails with ENOENT however the policy reads; with it, a
        // file is made in the directory.
        if flags & O_CREAT != 0 {
            if let Some(dir) = p.parent().filter(|d| task.exists(d)) {
                out.push(Fact::Path { path: dir.to_owned(), need: Need::Write, what: "create" });
            }
        }
        return;
    }
    let need = if task.is_device(&p) {
        Need::Device
    } else if write {
        Need::Write
    } else {
        Need::Read
    };
    let what = if flags & O_DIRECTORY != 0 { "list" } else { "open" };
    out.push(Fact::Path { path: p, need, what });
}

fn path(task: &Task, out: &mut Vec<Fact>, dirfd: u64, addr: u64, need: Need, what: &'static str) {
    if let Some(p) = task.string(addr).and_then(|s| task.at(dirfd, &s)) {
        if task.exists(&p) {
            out.push(Fact::Path { path: p, need, what });
        }
    }
}

/// Creating or removing an entry needs write access to the directory that holds it.
fn parent(task: &Task, out: &mut Vec<Fact>, dirfd: u64, addr: u64, name: &str) {
    let what = match name {
        "mkdir" | "mkdirat" => "mkdir",
        "rmdir" | "unlink" | "unlinkat" => "remove",
        "rename" | "renameat" | "renameat2" => "rename",
        "link" | "linkat" | "symlink" | "symlinkat" => "link",
        _ => "mknod",
    };
    if let Some(p) = task.string(addr).and_then(|s| task.at(dirfd, &s)) {
        if let Some(dir) = p.parent() {
            if task.exists(dir) {
                out.push(Fact::Path { path: dir.to_owned(), need: Need::Write, what });
            }
        }
    }
}

fn sockaddr(task: &Task, out: &mut Vec<Fact>, bind: bool, addr: u64, len: u64) {
    let len = (len as usize).min(128);
    let Some(bytes) = (len >= 2).then(|| task.read(addr, len)).flatten() else { return };
    match decode::sockaddr(&bytes) {
        Some(SockAddr::Abstract(name)) => out.push(Fact::AbstractUnix(name)),
        Some(SockAddr::Unix(path)) => {
            let Some(p) = task.at(AT_FDCWD as u64, &path) else { return };
            if !bind && task.exists(&p) {
                // Reachable while learning, so bound in by a base preset's grant (e.g. the
                // X11 socket directory): the draft must grant it too.
                out.push(Fact::Path { path: p, need: Need::Read, what: "connect" });
            } else if !bind {
                out.push(Fact::UnixConnect(p));
            } else if let Some(dir) = p.parent() {
                // Binding creates the socket file in its directory.
                let path = dir.to_owned();
                out.push(Fact::Path { path, need: Need::Write, what: "bind a socket in" });
            }
        }
        Some(SockAddr::Inet { addr, port }) => {
            let addr = addr.to_string();
            out.push(if bind {
                Fact::InetBind { addr, port }
            } else {
                Fact::InetConnect { addr, port }
            });
        }
        Some(SockAddr::Other(_)) | None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_lexically() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/../..")), PathBuf::from("/"));
    }

    #[test]
    fn reads_strings_and_paths_from_a_live_task() {
        // This test process is its own stopped-task stand-in: its memory is readable.
        let task = Task::new(std::process::id());
        let s = std::ffi::CString::new("/usr/../etc/hostname").expect("cstring");
        let addr = s.as_ptr() as u64;
        assert_eq!(task.string(addr).as_deref(), Some("/usr/../etc/hostname"));
        let facts = facts(&task, "open", &[addr, 0, 0, 0, 0, 0]);
        if Path::new("/etc/hostname").exists() {
            assert_eq!(
                facts,
                vec![Fact::Path { path: "/etc/hostname".into(), need: Need::Read, what: "open" }]
            );
        }
        let missing = std::ffi::CString::new("/no/such/file").expect("cstring");
        assert!(facts_for(&task, &missing, 0).is_empty());
        assert!(facts_for(&task, &missing, O_CREAT | 1).is_empty(), "no directory to create in");
        let tmp = tempfile::tempdir().expect("tempdir");
        let new = std::ffi::CString::new(format!("{}/new", tmp.path().display())).expect("cstring");
        assert_eq!(
            facts_for(&task, &new, O_CREAT | 1),
            vec![Fact::Path { path: tmp.path().to_owned(), need: Need::Write, what: "create" }]
        );
    }

    fn facts_for(task: &Task, path: &std::ffi::CStr, flags: u64) -> Vec<Fact> {
        facts(task, "open", &[path.as_ptr() as u64, flags, 0, 0, 0, 0])
    }
}
