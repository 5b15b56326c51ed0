//! Turning a validated policy into a [`Prepared`] launch: done once per policy load.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use vitrine_policy::{Config, Ipc, LandlockMode, Policy, UserSpec};
use vitrine_sandbox::plan::{
    FsAccess, FsRule, IpcPlan, LandlockPlan, MountOp, Plan, Rlimits, SeccompPlan, fds,
};
use vitrine_sandbox::verify::{Expectation, VerifiedBinary, open_verified};

use super::LaunchError;

/// Directories hidden under a private tmpfs: they hold other programs' sockets, scratch files
/// and secrets. Grants beneath them are bound back in one by one.
const MASKED: [(&str, u32); 6] = [
    ("/tmp", 0o1777),
    ("/var/tmp", 0o1777),
    ("/run", 0o755),
    ("/var/run", 0o755),
    ("/home", 0o755),
    ("/root", 0o700),
];

/// Size of the masks that only hold bind mount points.
const MASK_SIZE: u64 = 1 << 20;

/// Everything a spawn needs, computed once per policy load and reused by restarts.
#[derive(Debug)]
pub struct Prepared {
    /// Unique per policy load in this process (a primed sandbox is only used for its own).
    id: u64,
    name: String,
    plan: Plan,
    binary: VerifiedBinary,
    limits: vitrine_cgroup::Limits,
    user: String,
    stop_timeout: Duration,
    /// Policy learning: where the seccomp listener the shim sends goes (`crate::learn`).
    listener: Option<mpsc::Sender<OwnedFd>>,
}

impl Prepared {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The plan as the shim will receive it (with this process as the expected parent).
    pub fn plan_for(&self, supervisor_pid: u32) -> Plan {
        Plan { supervisor_pid, ..self.plan.clone() }
    }

    pub fn cgroup_limits(&self) -> &vitrine_cgroup::Limits {
        &self.limits
    }

    /// How the binary was verified, for the start line and the audit log.
    pub fn verified(&self) -> &str {
        &self.binary.how
    }

    /// The account the visualization runs as, as `name (uid N, gid M)`.
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn stop_timeout(&self) -> Duration {
        self.stop_timeout
    }

    pub fn seccomp(&self) -> &SeccompPlan {
        &self.plan.seccomp
    }

    /// Turns this launch into a learning run: `adapt` replaces the filesystem view, Landlock
    /// rules and seccomp filter of the plan, and the seccomp listener the shim sends before
    /// exec is passed to `listener` at once (the exec itself waits for its answer).
    pub fn into_learning(
        mut self,
        adapt: impl FnOnce(&mut Plan),
        listener: mpsc::Sender<OwnedFd>,
    ) -> Prepared {
        adapt(&mut self.plan);
        self.listener = Some(listener);
        self
    }

    pub(super) fn listener(&self) -> Option<mpsc::Sender<OwnedFd>> {
        self.listener.clone()
    }

    pub(super) fn ipc(&self) -> IpcPlan {
        self.plan.ipc
    }

    /// The verified binary's descriptor, sent to each shim with its plan.
    pub(super) fn binary_fd(&self) -> BorrowedFd<'_> {
        self.binary.fd.as_fd()
    }

    /// For the fd transport: the supervisor's end and the end that becomes the child's fd 3.
    pub(super) fn ipc_pair(&self) -> Result<(Option<OwnedFd>, Option<OwnedFd>), LaunchError> {
        if self.plan.ipc != IpcPlan::Fd {
            return Ok((None, None));
        }
        let (ours, theirs) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
                .map_err(std::io::Error::from)?;
        Ok((Some(ours), Some(theirs)))
    }
}

/// Resolves the user, verifies the binary into a sealed memfd and compiles the seccomp filter.
pub fn prepare(policy: &Policy, config: &Config) -> Result<Prepared, LaunchError> {
    let (uid, gid, user) = resolve_user(&policy.sandbox.user)?;
    let viz = &policy.visualization;
    let expect = Expectation::from_policy(&policy.verify, config.allow_unsigned);
    let binary = open_verified(viz.command.as_path(), &expect)?;
    let seccomp =
        vitrine_sandbox::seccomp::compile(&policy.syscalls, fds::EXEC).map_err(|source| {
            LaunchError::Seccomp {
                profile: policy.syscalls.profile_path.display().to_string(),
                source,
            }
        })?;
    let ipc = match policy.ipc {
        Ipc::Udp { port, reply_port } => IpcPlan::Udp { port, reply_port },
        Ipc::Fd => IpcPlan::Fd,
    };
    let plan = Plan {
        name: viz.name.to_string(),
        supervisor_pid: 0,
        uid,
        gid,
        argv: std::iter::once(viz.command.to_string()).chain(viz.args.iter().cloned()).collect(),
        env: environment(policy),
        working_dir: viz.working_dir.as_ref().map(|d| d.as_path().to_owned()),
        mounts: mounts(policy),
        landlock: landlock(policy),
        seccomp,
        rlimits: Rlimits { nofile: policy.limits.open_files },
        ipc,
        trace: false,
        hold: false,
    };
    static LOADS: AtomicU64 = AtomicU64::new(0);
    Ok(Prepared {
        id: LOADS.fetch_add(1, Ordering::Relaxed),
        name: viz.name.to_string(),
        plan,
        binary,
        limits: cgroup_limits(policy),
        user,
        stop_timeout: policy.restart.stop_timeout,
        listener: None,
    })
}

/// The cgroup limits of a policy (known before [`prepare`], so the cgroup can be created
/// while the binary is verified).
pub fn cgroup_limits(policy: &Policy) -> vitrine_cgroup::Limits {
    vitrine_cgroup::Limits {
        memory: policy.limits.memory,
        cpu: policy.limits.cpu,
        cpuset: policy.limits.cpuset.as_ref().map(|c| c.to_string()),
        pids: policy.limits.pids,
    }
}

/// The policy's environment, plus `VITRINE_OSC_FD=3` for the fd transport.
fn environment(policy: &Policy) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        policy.visualization.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if policy.ipc == Ipc::Fd {
        env.push(("VITRINE_OSC_FD".into(), fds::CHILD_IPC.to_string()));
    }
    env
}

/// Returns `(uid, gid, description)`; root is refused.
fn resolve_user(spec: &UserSpec) -> Result<(u32, u32, String), LaunchError> {
    let (uid, gid, name) = match spec {
        UserSpec::Name(name) => {
            let user = nix::unistd::User::from_name(name)
                .map_err(|e| LaunchError::User { user: name.clone(), source: Some(e) })?
                .ok_or_else(|| LaunchError::User { user: name.clone(), source: None })?;
            (user.uid.as_raw(), user.gid.as_raw(), name.clone())
        }
        UserSpec::Uid(uid) => {
            let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(*uid)).ok().flatten();
            let gid = user.as_ref().map_or(*uid, |u| u.gid.as_raw());
            (*uid, gid, user.map_or_else(|| uid.to_string(), |u| u.name))
        }
    };
    let description = format!("{name} (uid {uid}, gid {gid})");
    if uid == 0 || gid == 0 {
        return Err(LaunchError::Root(description));
    }
    Ok((uid, gid, description))
}

/// The masked directory a path lies strictly beneath, if any (`/var/run` counts as `/run`).
fn masked_parent(path: &Path) -> Option<&'static str> {
    MASKED.iter().map(|(m, _)| *m).find(|m| path.starts_with(m) && path != Path::new(m))
}

fn mounts(policy: &Policy) -> Vec<MountOp> {
    let fs = &policy.filesystem;
    let tmp = policy.limits.tmp_size;
    let mut ops: Vec<MountOp> = MASKED
        .iter()
        .map(|(dir, mode)| {
            let size = if dir.ends_with("tmp") { tmp } else { MASK_SIZE };
            MountOp::Tmpfs { target: PathBuf::from(dir), size, mode: *mode }
        })
        .collect();
    let devices = fs.devices.iter().map(|d| d.as_path().to_owned()).collect();
    ops.push(MountOp::Dev { devices, shm_size: tmp });
    let grants = fs.read.iter().map(|p| (p, true)).chain(fs.exec.iter().map(|p| (p, true)));
    for (path, read_only) in grants.chain(fs.read_write.iter().map(|p| (p, false))) {
        if masked_parent(path.as_path()).is_some() {
            ops.push(MountOp::Bind { path: path.as_path().to_owned(), read_only, optional: true });
        }
    }
    ops
}

fn landlock(policy: &Policy) -> LandlockPlan {
    let fs = &policy.filesystem;
    let groups = [
        (&fs.read, FsAccess::Read),
        (&fs.exec, FsAccess::Exec),
        (&fs.read_write, FsAccess::ReadWrite),
        (&fs.devices, FsAccess::Device),
    ];
    let mut rules = Vec::new();
    for (paths, access) in groups {
        for p in paths {
            // Presets name paths that some hosts lack; a missing grant only means less access,
            // and the report lists what was skipped.
            rules.push(FsRule { path: p.as_path().to_owned(), access, optional: true });
        }
    }
    LandlockPlan {
        required: policy.sandbox.landlock == LandlockMode::Required,
        min_abi: test_floor().unwrap_or(policy.sandbox.landlock_min_abi),
        rules,
    }
}

/// Debug builds only: `VITRINE_TEST_LANDLOCK_MIN_ABI` raises the Landlock floor above what a
/// policy may say, so the tests can show the shim refusing a kernel below the floor on any
/// host. It can only make the sandbox stricter, and release builds do not read it.
fn test_floor() -> Option<u8> {
    if cfg!(debug_assertions) {
        std::env::var("VITRINE_TEST_LANDLOCK_MIN_ABI").ok()?.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_strictly_beneath_a_mask_are_bound() {
        assert_eq!(masked_parent(Path::new("/tmp/.X11-unix/X0")), Some("/tmp"));
        assert_eq!(masked_parent(Path::new("/run/user/1000/wayland-0")), Some("/run"));
        assert_eq!(masked_parent(Path::new("/tmp")), None);
        assert_eq!(masked_parent(Path::new("/tmpfoo")), None);
        assert_eq!(masked_parent(Path::new("/usr/lib")), None);
    }

    #[test]
    fn root_is_refused_by_name_and_number() {
        assert!(matches!(resolve_user(&UserSpec::Uid(0)), Err(LaunchError::Root(_))));
        assert!(matches!(resolve_user(&UserSpec::Name("root".into())), Err(LaunchError::Root(_))));
        assert!(matches!(
            resolve_user(&UserSpec::Name("no-such-user-vitrine".into())),
            Err(LaunchError::User { source: None, .. })
        ));
        let (uid, _, _) = resolve_user(&UserSpec::Uid(65534)).expect("nobody");
        assert_eq!(uid, 65534);
    }
}
