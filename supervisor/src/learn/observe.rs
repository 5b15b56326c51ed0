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

use super::paths::{Root, interpreter};

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
    /// A path argument that cannot become a grant: unreadable, longer than the kernel takes,
    /// not UTF-8, or relative to a directory that could not be resolved. `detail` says which
    /// and what was read.
    Lossy { call: String, detail: String },
}

/// Why a path argument cannot be trusted as a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lossy {
    /// The task's memory could not be read at the pointer.
    Unreadable,
    /// No NUL within `PATH_MAX` bytes (the kernel refuses such a path too).
    TooLong,
    /// Not UTF-8 (a policy names paths in TOML strings); the text with the bad bytes replaced.
    NotUtf8(String),
    /// Relative to a working directory or descriptor that could not be resolved.
    NoBase(String),
}

impl Lossy {
    pub fn detail(&self) -> String {
        match self {
            Lossy::Unreadable => "the path could not be read from the task's memory".into(),
            Lossy::TooLong => format!("the path is {PATH_MAX} bytes or longer"),
            Lossy::NotUtf8(s) => format!("\"{s}\" is not UTF-8"),
            Lossy::NoBase(s) => {
                format!("\"{s}\" is relative to a directory that could not be resolved")
            }
        }
    }
}

/// The stopped task's view of memory, descriptors and filesystem.
pub struct Task {
    pid: u32,
    /// Opened on the first read: most notified calls (ioctl, socket, clone) carry no pointer.
    mem: std::cell::OnceCell<Option<File>>,
    /// The task's root, opened on the first lookup.
    root: std::cell::OnceCell<Option<Root>>,
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
        Task { pid, mem: std::cell::OnceCell::new(), root: std::cell::OnceCell::new() }
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

    /// A NUL-terminated path at `addr`, shorter than `PATH_MAX` bytes with its NUL (the
    /// kernel refuses a longer one with ENAMETOOLONG).
    fn string(&self, addr: u64) -> Result<String, Lossy> {
        let mut bytes = Vec::new();
        let mut at = addr;
        while bytes.len() < PATH_MAX {
            let chunk = ((PAGE - at % PAGE) as usize).min(256);
            let part = self.read(at, chunk).ok_or(Lossy::Unreadable)?;
            if let Some(s) = decode::c_string(&part) {
                bytes.extend_from_slice(s);
                if bytes.len() >= PATH_MAX {
                    break;
                }
                return decode::utf8(bytes).map_err(Lossy::NotUtf8);
            }
            bytes.extend_from_slice(&part);
            at = at.checked_add(chunk as u64).ok_or(Lossy::Unreadable)?;
        }
        Err(Lossy::TooLong)
    }

    fn link(&self, what: &str) -> Option<PathBuf> {
        let target = std::fs::read_link(format!("/proc/{}/{what}", self.pid)).ok()?;
        // Only a directory path: not `socket:[…]`, not a removed directory, not a lossy name.
        let text = target.to_str()?;
        (text.starts_with('/') && !text.ends_with(" (deleted)")).then_some(target)
    }

    /// Resolves `path` against `dirfd` as the kernel would (lexically; symlinks later).
    fn at(&self, dirfd: u64, path: &str) -> Result<PathBuf, Lossy> {
        let base = if path.starts_with('/') {
            Some(PathBuf::from("/"))
        } else if dirfd as i32 == AT_FDCWD {
            self.link("cwd")
        } else {
            self.link(&format!("fd/{}", dirfd as i32))
        };
        let base = base.ok_or_else(|| Lossy::NoBase(path.to_owned()))?;
        Ok(normalize(&base.join(path)))
    }

    /// A path argument, read and resolved.
    fn path(&self, dirfd: u64, addr: u64) -> Result<PathBuf, Lossy> {
        self.at(dirfd, &self.string(addr)?)
    }

    fn root(&self) -> Option<&Root> {
        self.root.get_or_init(|| Root::of_task(self.pid)).as_ref()
    }

    /// What `path` is in the sandbox's view: looked up inside the task's root, never through
    /// a magic link and never opened for I/O. `Err(())` when it does not exist (a dangling
    /// link does not count, since opening it fails with ENOENT whatever the policy grants).
    fn kind(&self, path: &Path) -> Result<Kind, ()> {
        if path.starts_with("/proc") {
            return Ok(Kind::Other);
        }
        let root = self.root().ok_or(())?;
        match root.lookup(path) {
            Ok(f) => {
                let t = f.metadata().map_err(drop)?.file_type();
                Ok(if t.is_char_device() || t.is_block_device() {
                    Kind::Device
                } else {
                    Kind::Other
                })
            }
            // A magic link (`/dev/fd/N`, `/proc/self/…`) exists; it is the sandbox's procfs.
            Err(nix::Error::ELOOP) => Ok(Kind::Other),
            Err(_) => Err(()),
        }
    }

    fn exists(&self, path: &Path) -> bool {
        self.kind(path).is_ok()
    }

    fn is_device(&self, path: &Path) -> bool {
        self.kind(path) == Ok(Kind::Device)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Device,
    Other,
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
    let mut f = Facts { task, call: name, out: Vec::new() };
    let cwd = AT_FDCWD as u64;
    match name {
        "open" => f.open(cwd, a[0], a[1]),
        "openat" => f.open(a[0], a[1], a[2]),
        "openat2" => {
            // struct open_how starts with the u64 flags.
            if let Some(flags) = task.read(a[2], 8).and_then(|b| decode::open_how_flags(&b)) {
                f.open(a[0], a[1], flags);
            }
        }
        "creat" => f.open(cwd, a[0], O_CREAT | O_TRUNC | 1),
        "execve" => f.exec(cwd, a[0]),
        "execveat" => {
            let empty = task.string(a[1]).is_ok_and(|s| s.is_empty());
            if !(empty && a[4] & AT_EMPTY_PATH != 0) {
                f.exec(a[0], a[1]);
            }
        }
        "mkdir" | "rmdir" | "unlink" | "mknod" => f.parent(cwd, a[0]),
        "mkdirat" | "unlinkat" | "mknodat" => f.parent(a[0], a[1]),
        "rename" | "link" => {
            f.parent(cwd, a[0]);
            f.parent(cwd, a[1]);
        }
        "renameat" | "renameat2" | "linkat" => {
            f.parent(a[0], a[1]);
            f.parent(a[2], a[3]);
        }
        "symlink" => f.parent(cwd, a[1]),
        "symlinkat" => f.parent(a[1], a[2]),
        "truncate" => {
            f.existing(cwd, a[0], Need::Write, "truncate");
        }
        "connect" | "bind" => sockaddr(task, &mut f.out, name == "bind", a[1], a[2]),
        _ => {}
    }
    f.out
}

/// The facts of one call being collected.
struct Facts<'a> {
    task: &'a Task,
    call: &'a str,
    out: Vec<Fact>,
}

impl Facts<'_> {
    /// The path argument, or a [`Fact::Lossy`] saying why there is none.
    fn path(&mut self, dirfd: u64, addr: u64) -> Option<PathBuf> {
        match self.task.path(dirfd, addr) {
            Ok(p) => Some(p),
            Err(lossy) => {
                self.out.push(Fact::Lossy { call: self.call.to_owned(), detail: lossy.detail() });
                None
            }
        }
    }

    fn open(&mut self, dirfd: u64, addr: u64, flags: u64) {
        // O_PATH opens no file contents; Landlock does not check them.
        if flags & O_PATH != 0 {
            return;
        }
        let Some(p) = self.path(dirfd, addr) else { return };
        let write = flags & O_ACCMODE != 0 || flags & O_TRUNC != 0;
        let task = self.task;
        if !task.exists(&p) {
            // Without O_CREAT the call fails with ENOENT however the policy reads; with it, a
            // file is made in the directory.
            if flags & O_CREAT != 0 {
                if let Some(dir) = p.parent().filter(|d| task.exists(d)) {
                    let path = dir.to_owned();
                    self.out.push(Fact::Path { path, need: Need::Write, what: "create" });
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
        self.out.push(Fact::Path { path: p, need, what });
    }

    fn existing(
        &mut self,
        dirfd: u64,
        addr: u64,
        need: Need,
        what: &'static str,
    ) -> Option<PathBuf> {
        let p = self.path(dirfd, addr)?;
        if !self.task.exists(&p) {
            return None;
        }
        self.out.push(Fact::Path { path: p.clone(), need, what });
        Some(p)
    }

    /// An exec needs the program and the interpreters the kernel opens for it: a script's
    /// `#!` program and an ELF's loader, looked up inside the sandbox while the task is stopped.
    fn exec(&mut self, dirfd: u64, addr: u64) {
        let Some(program) = self.existing(dirfd, addr, Need::Exec, "execute") else { return };
        let Some(root) = self.task.root() else { return };
        // A script's interpreter may itself be dynamic: two levels.
        let mut at = program;
        for _ in 0..2 {
            let Some(interp) = interpreter(root, &at) else { break };
            self.out.push(Fact::Path { path: interp.clone(), need: Need::Exec, what: "loader" });
            at = interp;
        }
    }

    /// Creating or removing an entry needs write access to the directory that holds it.
    fn parent(&mut self, dirfd: u64, addr: u64) {
        let what = match self.call {
            "mkdir" | "mkdirat" => "mkdir",
            "rmdir" | "unlink" | "unlinkat" => "remove",
            "rename" | "renameat" | "renameat2" => "rename",
            "link" | "linkat" | "symlink" | "symlinkat" => "link",
            _ => "mknod",
        };
        if let Some(p) = self.path(dirfd, addr) {
            if let Some(dir) = p.parent() {
                if self.task.exists(dir) {
                    let path = dir.to_owned();
                    self.out.push(Fact::Path { path, need: Need::Write, what });
                }
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
            let p = match decode::utf8(path).map_err(Lossy::NotUtf8) {
                Ok(p) => task.at(AT_FDCWD as u64, &p),
                Err(e) => Err(e),
            };
            let p = match p {
                Ok(p) => p,
                Err(lossy) => {
                    let call = if bind { "bind" } else { "connect" }.to_owned();
                    out.push(Fact::Lossy { call, detail: lossy.detail() });
                    return;
                }
            };
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
        assert_eq!(task.string(addr).as_deref(), Ok("/usr/../etc/hostname"));
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

    #[test]
    fn lossy_paths_become_comments_not_grants() {
        let task = Task::new(std::process::id());
        let lossy = |facts: Vec<Fact>| match facts.as_slice() {
            [Fact::Lossy { call, detail }] => format!("{call}: {detail}"),
            other => panic!("expected one lossy fact, got {other:?}"),
        };
        let bad = std::ffi::CString::new(b"/etc/\xffhost".to_vec()).expect("cstring");
        assert_eq!(lossy(facts_for(&task, &bad, 0)), "open: \"/etc/\u{fffd}host\" is not UTF-8");
        let long =
            std::ffi::CString::new(format!("/{}", "a".repeat(PATH_MAX + 10))).expect("cstring");
        assert!(lossy(facts_for(&task, &long, 0)).contains("4096 bytes or longer"));
        assert!(lossy(facts(&task, "execve", &[8, 0, 0, 0, 0, 0])).contains("could not be read"));
        // Relative to a descriptor this process does not have.
        let rel = std::ffi::CString::new("lib/x").expect("cstring");
        let args = [999_999, rel.as_ptr() as u64, 0, 0, 0, 0];
        assert_eq!(
            lossy(facts(&task, "openat", &args)),
            "openat: \"lib/x\" is relative to a directory that could not be resolved"
        );
    }

    #[test]
    fn an_exec_needs_its_loader_looked_up_inside_the_task() {
        let task = Task::new(std::process::id());
        let exe = std::env::current_exe().expect("exe");
        let path = std::ffi::CString::new(exe.to_str().expect("utf-8")).expect("cstring");
        let got = facts(&task, "execve", &[path.as_ptr() as u64, 0, 0, 0, 0, 0]);
        assert_eq!(got[0], Fact::Path { path: exe.clone(), need: Need::Exec, what: "execute" });
        let loader = interpreter(&Root::Host, &exe);
        let seen: Vec<&Fact> = got.iter().skip(1).collect();
        match loader {
            Some(l) => {
                assert_eq!(seen, vec![&Fact::Path { path: l, need: Need::Exec, what: "loader" }])
            }
            None => assert!(seen.is_empty(), "a static test binary has no loader: {seen:?}"),
        }
    }

    fn facts_for(task: &Task, path: &std::ffi::CStr, flags: u64) -> Vec<Fact> {
        facts(task, "open", &[path.as_ptr() as u64, flags, 0, 0, 0, 0])
    }
}
