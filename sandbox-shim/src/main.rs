//! vitrine-shim: applies a prepared sandbox plan, then execs the visualization.
//!
//! Three processes run this code. The shim itself (outside every new namespace but the ones it
//! creates) reads the plan, unshares and forks; its child is pid 1 of the sandbox, which builds
//! the mounts and the network and forks again; that grandchild drops everything and becomes the
//! visualization. Each numbered step is DESIGN §3's; every failure is reported on fd 3 and ends
//! the process without exec, so a step that did not happen can never be skipped silently.

#![forbid(unsafe_code)]

use std::fmt::Display;
use std::os::fd::{AsFd, OwnedFd};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use vitrine_sandbox::plan::{IpcPlan, Plan, fds};
use vitrine_sandbox::proto::{self, Report};
use vitrine_sandbox::trace::stamp;
use vitrine_sandbox::{
    Forked, child, creds, exit_immediately, filter, init, landlock, learn, mounts, net, trace,
};

/// A failed step: its name and the whole error chain.
struct Failure {
    step: &'static str,
    error: String,
}

fn step<T, E: std::error::Error>(step: &'static str, r: Result<T, E>) -> Result<T, Failure> {
    r.map_err(|e| {
        let mut error = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            error.push_str(&format!(": {s}"));
            source = s.source();
        }
        Failure { step, error }
    })
}

fn fail<T>(step: &'static str, error: impl Display) -> Result<T, Failure> {
    Err(Failure { step, error: error.to_string() })
}

/// Reports `failure` on the control socket (best effort: the supervisor may be gone) and exits.
fn die(control: &OwnedFd, failure: Failure, code: i32) -> ! {
    let report = Report::Failed { step: failure.step.to_owned(), error: failure.error };
    let _ = proto::send_report(control.as_fd(), &report, None);
    exit_immediately(code)
}

fn main() {
    let started = trace::now();
    // fd 3 is the control socket by the spawn contract; nothing else in this process owns it.
    let control = proto::inherited(fds::CONTROL);
    match shim(&control, started) {
        Ok(code) => exit_immediately(code),
        Err(failure) => die(&control, failure, 1),
    }
}

/// The shim: steps 1 and 2, then it waits for the sandbox's init and mirrors its exit.
fn shim(control: &OwnedFd, started: u64) -> Result<i32, Failure> {
    // Step 1. Read and bound-check the plan. The supervisor writes it only after it placed
    // this process in the visualization's cgroup, so everything below is accounted there.
    // The binary (fd 4) and the IPC end (fd 5) come with it.
    let (plan, received) = step("read plan", proto::recv_plan(control.as_fd()))?;
    trace::enable(plan.trace);
    trace::stamp_at("shim", "main", started);
    stamp("shim", "plan");
    step("plan descriptors", child::install_plan_fds(received, plan.ipc == IpcPlan::Fd))?;
    // A new session: no controlling terminal, so TIOCSTI has no terminal to inject into.
    step("setsid", nix::unistd::setsid())?;
    // If the supervisor dies, so does the sandbox; re-check the parent because it may have
    // died before the death signal was armed.
    step("PR_SET_PDEATHSIG", nix::sys::prctl::set_pdeathsig(Signal::SIGKILL))?;
    if nix::unistd::getppid().as_raw() as u32 != plan.supervisor_pid {
        return fail("check parent", "the supervisor exited before the sandbox was set up");
    }
    // Tag the kernel's audit records of this sandbox (seccomp kills) with a fresh session id.
    let audit_session = tag_audit_session(plan.uid);
    // Nothing below may ever gain a capability again: empty the bounding set once, here, so the
    // init and the visualization inherit it empty (they check; capabilities they hold now stay
    // until they drop them).
    step("drop bounding set", creds::drop_bounding_and_ambient())?;
    step(
        "report start",
        proto::send_report(control.as_fd(), &Report::Started { audit_session }, None),
    )?;

    // Step 2. New namespaces here, before anything untrusted exists; the pid namespace applies
    // to the children, so the next fork creates the sandbox's pid 1. The cgroup namespace is
    // rooted at the cgroup the supervisor placed us in.
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWCGROUP;
    step("unshare", nix::sched::unshare(flags))?;
    stamp("shim", "unshare");
    step("sethostname", nix::unistd::sethostname(&plan.name))?;
    step("block signals", init::block_signals())?;
    match step("fork init", vitrine_sandbox::fork_single_threaded())? {
        Forked::Child => match sandbox_init(control, &plan) {
            Ok(code) => exit_immediately(code),
            Err(failure) => die(control, failure, 1),
        },
        Forked::Parent { child } => Ok(wait_for_init(Pid::from_raw(child))),
    }
}

/// Writes the visualization's uid as the audit login uid, which gives this process tree a new
/// audit session id; returns it, or `None` when the kernel refuses (auditing off, immutable).
fn tag_audit_session(uid: u32) -> Option<u32> {
    std::fs::write("/proc/self/loginuid", uid.to_string()).ok()?;
    let id: u32 = std::fs::read_to_string("/proc/self/sessionid").ok()?.trim().parse().ok()?;
    (id != u32::MAX).then_some(id)
}

/// The shim stays outside the pid namespace: it forwards stop signals to the init and exits
/// with the init's code, so the supervisor can watch one pid.
fn wait_for_init(init_pid: Pid) -> i32 {
    let set: SigSet = init::handled_signals();
    loop {
        let Ok(sig) = set.wait() else { continue };
        if sig != Signal::SIGCHLD {
            let _ = kill(init_pid, sig);
            continue;
        }
        match waitpid(init_pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            _ => {}
        }
    }
}

/// Pid 1 of the sandbox: steps 3 and 4, then it forks the visualization and supervises it.
fn sandbox_init(control: &OwnedFd, plan: &Plan) -> Result<i32, Failure> {
    stamp("init", "forked");
    step("PR_SET_PDEATHSIG", nix::sys::prctl::set_pdeathsig(Signal::SIGKILL))?;
    // Step 3. Mounts: private propagation, tmpfs masks, grants, minimal /dev, then a procfs
    // of this pid namespace (only pid 1 of the new namespace can mount it).
    step("mounts", mounts::apply(&plan.mounts))?;
    stamp("init", "mounts");
    step("mount /proc", mounts::mount_proc())?;
    stamp("init", "proc");
    // Step 4. Network: only loopback; the supervisor's UDP socket is created in here.
    step("loopback up", net::loopback_up())?;
    if let IpcPlan::Udp { reply_port, .. } = plan.ipc {
        let (sock, local_port) = step("udp socket", net::supervisor_udp_socket(reply_port))?;
        let report = Report::UdpSocket { local_port };
        step("send udp socket", proto::send_report(control.as_fd(), &report, Some(sock.as_fd())))?;
    }
    stamp("init", "network");
    // A primed sandbox waits here for its restart; the end of the control socket (the
    // supervisor dropped it) ends it before anything of the visualization exists.
    if plan.hold {
        step("report ready", proto::send_report(control.as_fd(), &Report::Ready, None))?;
        step("wait for go", proto::wait_go(control.as_fd()))?;
        stamp("init", "go");
    }
    let (status_read, status_write) =
        step("status pipe", nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC))?;
    let viz = match step("fork visualization", vitrine_sandbox::fork_single_threaded())? {
        Forked::Child => {
            drop(status_read);
            visualization(control, status_write, plan)
        }
        Forked::Parent { child } => Pid::from_raw(child),
    };
    drop(status_write);
    // The init keeps only CAP_KILL, to forward signals to the visualization's uid.
    step("reduce init privileges", creds::reduce_init())?;
    match read_exec_status(&status_read) {
        ExecStatus::Running => {
            step("report running", proto::send_report(control.as_fd(), &Report::Running, None))?
        }
        ExecStatus::Reported => {}
        ExecStatus::ExecFailed(errno) => {
            let error = std::io::Error::from_raw_os_error(errno).to_string();
            let report = Report::Failed { step: "exec".into(), error };
            let _ = proto::send_report(control.as_fd(), &report, None);
        }
    }
    Ok(init::supervise(viz, control.as_fd()))
}

/// The status pipe's protocol: nothing before EOF means exec succeeded (the write end is
/// close-on-exec); `F` means the child already reported its failure; `E` + errno means exec
/// itself failed after seccomp, when the child may no longer use the control socket.
enum ExecStatus {
    Running,
    Reported,
    ExecFailed(i32),
}

fn read_exec_status(pipe: &OwnedFd) -> ExecStatus {
    let mut buf = [0u8; 5];
    let mut filled = 0;
    while filled < buf.len() {
        match nix::unistd::read(pipe, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(nix::Error::EINTR) => {}
            Err(_) => break,
        }
    }
    match (filled, buf[0]) {
        (0, _) => ExecStatus::Running,
        (5, b'E') => ExecStatus::ExecFailed(i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]])),
        _ => ExecStatus::Reported,
    }
}

/// The visualization's process: steps 5 to 9; never returns.
///
/// Failures before exec are reported on the control socket and marked `F` on the status pipe;
/// once the descriptors are rearranged both live at the numbers in [`child::KeptFds`] (the
/// originals are closed then, and this process only ever execs or exits, so they are never
/// dropped).
fn visualization(control: &OwnedFd, status: OwnedFd, plan: &Plan) -> ! {
    stamp("viz", "forked");
    if let Err(failure) = prepare(plan) {
        let _ = nix::unistd::write(&status, b"F");
        die(control, failure, 127)
    }
    let ipc = plan.ipc == IpcPlan::Fd;
    let kept = match step("descriptors", child::arrange_fds(control, &status, ipc)) {
        Ok(kept) => kept,
        Err(failure) => {
            let _ = nix::unistd::write(&status, b"F");
            die(control, failure, 127)
        }
    };
    if let Err(failure) = restrict(&kept, plan) {
        let _ = nix::unistd::write(&kept.status, b"F");
        die(&kept.control, failure, 127)
    }
    stamp("viz", "seccomp");
    // Step 9. Exec the verified binary from fd 4. After seccomp only `write` is certain to be
    // allowed, so an exec failure goes to the init over the status pipe.
    let err = child::exec(plan);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&err.raw_os_error().unwrap_or(EIO).to_ne_bytes());
    let _ = nix::unistd::write(&kept.status, &msg);
    exit_immediately(127)
}

const EIO: i32 = 5;

/// Step 5. Death signal, default signal handling, limits, working directory.
fn prepare(plan: &Plan) -> Result<(), Failure> {
    step("PR_SET_PDEATHSIG", nix::sys::prctl::set_pdeathsig(Signal::SIGKILL))?;
    step("unblock signals", init::unblock_all())?;
    vitrine_sandbox::reset_signal_dispositions();
    step("rlimits", child::set_rlimits(plan))?;
    let dir = plan.working_dir.clone().unwrap_or_else(|| "/".into());
    step("chdir", nix::unistd::chdir(&dir))
}

/// Steps 6 to 8.
fn restrict(kept: &child::KeptFds, plan: &Plan) -> Result<(), Failure> {
    // Step 6. Drop to the policy's user: no groups, no capabilities, no_new_privs.
    stamp("viz", "prepared");
    step("drop privileges", creds::drop_to(plan.uid, plan.gid))?;
    stamp("viz", "credentials");
    // Step 7. Landlock, after the mounts (rules name paths as the sandbox sees them) and
    // before seccomp (its own syscalls must still be allowed). Report what is enforced.
    let report = step("landlock", landlock::apply(&plan.landlock))?;
    stamp("viz", "landlock");
    step(
        "report landlock",
        proto::send_report(kept.control.as_fd(), &Report::Landlock(report), None),
    )?;
    // Step 8. Seccomp last: from here on only the allowlist and execveat on fd 4 remain.
    if !plan.seccomp.is_learning() {
        return step("seccomp", filter::install(&plan.seccomp));
    }
    // Policy learning: the filter notifies instead of killing, and the supervisor must hold
    // the listener before exec, the first notified call (the handover is in the hot set).
    let listener = step("seccomp listener", learn::install_listener(&plan.seccomp))?;
    step(
        "send listener",
        proto::send_report(kept.control.as_fd(), &Report::Listener, Some(listener.as_fd())),
    )
}
