//! The sandbox's view of the filesystem, built inside its own mount namespace.
//!
//! The host root stays (Landlock decides what of it is reachable), but everything that holds
//! other programs' sockets, secrets or scratch files is hidden under fresh tmpfs mounts, and
//! only the plan's grants are bound back in. Bind sources are opened before the first tmpfs is
//! mounted, so a grant beneath a masked directory still reaches the host's object.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::Mode;

use crate::plan::MountOp;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{what} {path}")]
    Op { what: &'static str, path: PathBuf, source: nix::Error },
    #[error("cannot prepare mount point {path}")]
    MountPoint { path: PathBuf, source: std::io::Error },
}

fn op(what: &'static str, path: &Path) -> impl FnOnce(nix::Error) -> MountError + use<> {
    let path = path.to_owned();
    move |source| MountError::Op { what, path, source }
}

const NONE: Option<&str> = None;

/// Applies `ops` in order after making every mount private to this namespace.
pub fn apply(ops: &[MountOp]) -> Result<(), MountError> {
    // Nothing mounted here may propagate back to the host, and host mounts appearing later
    // must not show up inside.
    mount(NONE, "/", NONE, MsFlags::MS_REC | MsFlags::MS_PRIVATE, NONE)
        .map_err(op("make private", Path::new("/")))?;
    let sources = open_sources(ops)?;
    for (op_, source) in ops.iter().zip(sources) {
        match op_ {
            MountOp::Tmpfs { target, size, mode } => tmpfs(target, *size, *mode)?,
            MountOp::Bind { path, read_only, .. } => {
                if let Some(src) = source.into_iter().next() {
                    bind(&src, path, *read_only, false)?;
                }
            }
            MountOp::Dev { devices, shm_size } => dev(devices, source, *shm_size)?,
        }
    }
    Ok(())
}

/// Mounts a fresh procfs on `/proc`; must run in the new pid namespace (the sandbox's init).
pub fn mount_proc() -> Result<(), MountError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), "/proc", Some("proc"), flags, NONE)
        .map_err(op("mount proc on", Path::new("/proc")))
}

/// Opens every bind source (O_PATH) up front; absent optional sources yield nothing.
fn open_sources(ops: &[MountOp]) -> Result<Vec<Vec<OwnedFd>>, MountError> {
    let open_path = |p: &Path| open(p, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty());
    let mut all = Vec::with_capacity(ops.len());
    for op_ in ops {
        let fds = match op_ {
            MountOp::Tmpfs { .. } => Vec::new(),
            MountOp::Bind { path, optional, .. } => match open_path(path) {
                Ok(fd) => vec![fd],
                Err(nix::Error::ENOENT) if *optional => Vec::new(),
                Err(e) => return Err(op("open bind source", path)(e)),
            },
            MountOp::Dev { devices, .. } => devices
                .iter()
                .map(|d| open_path(d).map_err(op("open device", d)))
                .collect::<Result<_, _>>()?,
        };
        all.push(fds);
    }
    Ok(all)
}

fn tmpfs(target: &Path, size: u64, mode: u32) -> Result<(), MountError> {
    // A symlink (e.g. /var/run -> /run) points into a directory masked on its own, and a
    // missing directory has nothing to hide.
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => {}
        _ => return Ok(()),
    }
    let data = format!("size={size},mode={mode:o}");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some(data.as_str()))
        .map_err(op("mount tmpfs on", target))
}

/// Binds the object behind `src` to `target`, creating the mount point inside the tmpfs.
fn bind(src: &OwnedFd, target: &Path, read_only: bool, device: bool) -> Result<(), MountError> {
    let proc_path = PathBuf::from(format!("/proc/self/fd/{}", src.as_raw_fd()));
    let is_dir = fs::metadata(&proc_path).map(|m| m.is_dir()).unwrap_or(false);
    make_mount_point(target, is_dir)?;
    let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(Some(&proc_path), target, NONE, flags, NONE).map_err(op("bind-mount onto", target))?;
    let mut re = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID;
    if !device {
        re |= MsFlags::MS_NODEV;
    }
    if read_only {
        re |= MsFlags::MS_RDONLY;
    }
    mount(NONE, target, NONE, re, NONE).map_err(op("remount", target))
}

fn make_mount_point(target: &Path, is_dir: bool) -> Result<(), MountError> {
    let err = |source| MountError::MountPoint { path: target.to_owned(), source };
    if let Some(parent) = target.parent() {
        fs::DirBuilder::new().recursive(true).mode(0o755).create(parent).map_err(err)?;
    }
    if fs::symlink_metadata(target).is_ok() {
        return Ok(());
    }
    if is_dir {
        fs::DirBuilder::new().mode(0o755).create(target).map_err(err)
    } else {
        fs::File::create(target).map(drop).map_err(err)
    }
}

/// A minimal `/dev`: only the granted device nodes, the standard links and a private shm.
fn dev(devices: &[PathBuf], sources: Vec<OwnedFd>, shm_size: u64) -> Result<(), MountError> {
    let dev = Path::new("/dev");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount(Some("tmpfs"), dev, Some("tmpfs"), flags, Some("size=1m,mode=755"))
        .map_err(op("mount tmpfs on", dev))?;
    for (path, src) in devices.iter().zip(&sources) {
        bind(src, path, false, true)?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let path = dev.join(link);
        std::os::unix::fs::symlink(target, &path)
            .map_err(|source| MountError::MountPoint { path, source })?;
    }
    let shm = dev.join("shm");
    fs::DirBuilder::new()
        .mode(0o1777)
        .create(&shm)
        .map_err(|source| MountError::MountPoint { path: shm.clone(), source })?;
    fs::set_permissions(&shm, fs::Permissions::from_mode(0o1777))
        .map_err(|source| MountError::MountPoint { path: shm.clone(), source })?;
    tmpfs(&shm, shm_size, 0o1777)
}
