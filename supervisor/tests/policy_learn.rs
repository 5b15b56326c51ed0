//! `vitrine policy learn` on real programs: each draft passes `vitrine policy check`, runs the
//! same program cleanly under `vitrine run`, and is tight (removing any one granted path,
//! preset or extra syscall makes the run fail). A hostile program stays contained while
//! learning.
//!
//! Root only (namespaces, cgroups, setuid); the tests say why they skip otherwise.

mod sandbox_support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sandbox_support::{VITRINE, helpers, root_or_skip, shipped};

/// A directory holding `presets/`, `seccomp/` and `policies/`, like an installed
/// /etc/vitrine, so that drafts resolve presets the way `check` and `run` will.
struct Lab {
    dir: tempfile::TempDir,
    /// Outside the sandbox's masked directories, so the program sees the host's files.
    data: tempfile::TempDir,
}

fn lab() -> Lab {
    let dir = tempfile::Builder::new().prefix("vitrine-learn").tempdir().expect("tempdir");
    for sub in ["presets", "seccomp"] {
        std::os::unix::fs::symlink(shipped(sub), dir.path().join(sub)).expect("link");
    }
    std::fs::create_dir(dir.path().join("policies")).expect("policies");
    let data =
        tempfile::Builder::new().prefix("vitrine-learn").tempdir_in("/var/lib").expect("data");
    open_up(data.path(), 0o755);
    Lab { dir, data }
}

fn open_up(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// Still running when the test stopped it.
    survived: bool,
}

/// Runs `cmd`; with `stop_after`, a program still running then gets SIGINT.
fn run(mut cmd: Command, stop_after: Option<Duration>) -> Outcome {
    cmd.env("VITRINE_SHIM", &helpers().0).stdin(Stdio::null());
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn vitrine");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let readers = (
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }),
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }),
    );
    let started = Instant::now();
    let mut survived = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if stop_after.is_some_and(|d| started.elapsed() > d) && !survived {
            survived = true;
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        }
        assert!(started.elapsed() < Duration::from_secs(300), "vitrine hung");
        std::thread::sleep(Duration::from_millis(20));
    };
    let o = Outcome {
        code: status.code(),
        stdout: readers.0.join().expect("stdout"),
        stderr: readers.1.join().expect("stderr"),
        survived,
    };
    eprintln!("--- code {:?} survived {}\n{}{}---", o.code, o.survived, o.stdout, o.stderr);
    o
}

/// Learns `program` and returns the draft's path and text.
fn learn(
    lab: &Lab,
    name: &str,
    extra: &[&str],
    program: &[&str],
    duration: &str,
) -> (PathBuf, String) {
    let out = lab.dir.path().join("policies").join(format!("{name}.toml"));
    let mut cmd = Command::new(VITRINE);
    cmd.args(["policy", "learn", "--name", name, "--duration", duration, "--out"]).arg(&out);
    cmd.args(extra).arg("--").args(program);
    let o = run(cmd, None);
    assert_eq!(o.code, Some(0), "learning failed");
    assert!(o.stderr.contains("exposure:"), "no exposure score in the summary");
    let text = std::fs::read_to_string(&out).expect("draft");
    eprintln!("--- draft {name}\n{text}---");
    (out, text)
}

fn check(path: &Path) -> bool {
    let mut cmd = Command::new(VITRINE);
    cmd.args(["policy", "check"]).arg(path);
    run(cmd, None).code == Some(0)
}

fn vitrine_run(path: &Path, stop_after: Option<Duration>) -> Outcome {
    let mut cmd = Command::new(VITRINE);
    cmd.arg("run").arg(path);
    run(cmd, stop_after)
}

/// Every variant of the draft with one grant taken out: a list entry (path or syscall) or
/// one preset.
fn variants(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut in_list = false;
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if ["read = [", "exec = [", "read_write = [", "devices = [", "allow = ["]
            .iter()
            .any(|s| t.starts_with(s))
        {
            in_list = true;
            continue;
        }
        if t.starts_with(']') {
            in_list = false;
        }
        if in_list && t.starts_with('"') {
            let mut v = lines.clone();
            v.remove(i);
            out.push((t.to_owned(), v.join("\n")));
        }
        if let Some(rest) = t.strip_prefix("presets = [") {
            let names: Vec<&str> = rest
                .trim_end_matches(']')
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            for n in &names {
                let kept: Vec<&str> = names.iter().filter(|m| m != &n).copied().collect();
                let mut v = lines.clone();
                let replaced = format!("presets = [{}]", kept.join(", "));
                v[i] = &replaced;
                out.push((format!("preset {n}"), v.join("\n")));
            }
        }
    }
    out
}

/// The draft works, and every variant without one grant does not.
fn assert_works_and_tight(
    path: &Path,
    text: &str,
    ok: impl Fn(&Outcome) -> bool,
    stop: Option<Duration>,
) {
    assert!(check(path), "vitrine policy check refused the draft");
    let full = vitrine_run(path, stop);
    assert!(ok(&full), "the draft does not run the program cleanly");
    assert!(!full.stderr.contains("seccomp:"), "a violation under the draft");
    let vs = variants(text);
    assert!(!vs.is_empty());
    for (label, variant) in vs {
        let p = path.with_file_name("variant.toml");
        std::fs::write(&p, &variant).expect("write variant");
        let failed = !check(&p) || !ok(&vitrine_run(&p, stop));
        assert!(failed, "the draft is not tight: it still works without {label}");
    }
}

#[test]
fn learns_oscdump() {
    if !root_or_skip("learns_oscdump") {
        return;
    }
    let Some(oscdump) = ["/usr/bin/oscdump"].into_iter().find(|p| Path::new(p).exists()) else {
        eprintln!("skipped learns_oscdump: oscdump is not installed (apt-get install liblo-tools)");
        return;
    };
    let lab = lab();
    let (path, text) = learn(&lab, "learn-oscdump", &[], &[oscdump, "-L", "9000"], "2s");
    assert!(
        text.contains("port = 9000  # the program bound UDP port 9000"),
        "UDP port not learned"
    );
    // oscdump waits for messages forever: running cleanly means still running when stopped.
    assert_works_and_tight(
        &path,
        &text,
        |o| o.survived && !o.stderr.contains("exited with code"),
        Some(Duration::from_secs(2)),
    );
}

#[test]
fn learns_a_python_script_that_reads_a_file_and_listens_on_udp() {
    if !root_or_skip("learns_a_python_script") {
        return;
    }
    if !Path::new("/usr/bin/python3").exists() {
        eprintln!("skipped learns_a_python_script: /usr/bin/python3 is not installed");
        return;
    }
    let lab = lab();
    let data = lab.data.path().join("scene.txt");
    std::fs::write(&data, "aurora borealis\n").expect("data");
    let script = format!(
        "import socket\nwords = open({:?}).read().split()\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('127.0.0.1', 9100))\ns.settimeout(0.1)\ntry:\n    s.recvfrom(64)\nexcept socket.timeout:\n    pass\n\
         print(len(words), 'words, listened on', s.getsockname()[1])\n",
        data.display().to_string()
    );
    // Policy arguments may not hold control characters, so the script travels escaped.
    let arg = format!("exec({script:?})");
    let env = ["--env", "PYTHONDONTWRITEBYTECODE=1"];
    let (path, text) = learn(&lab, "learn-python", &env, &["/usr/bin/python3", "-c", &arg], "30s");
    assert!(
        text.contains("env = { \"PYTHONDONTWRITEBYTECODE\" = \"1\" }"),
        "--env not in the draft"
    );
    assert!(
        text.contains(&format!("{:?}", data.display().to_string())),
        "the data file is not granted"
    );
    assert!(text.contains("port = 9100"), "UDP port not learned");
    let expected = "2 words, listened on 9100\n";
    assert_works_and_tight(&path, &text, |o| o.code == Some(0) && o.stdout == expected, None);
}

const THREADS_C: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
static long sums[4];
static char buf[4096];
static void *work(void *arg) {
    long i = (long)arg, s = 0;
    for (char *p = buf + i; *p; p += 4) s += *p;
    sums[i] = s;
    return NULL;
}
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    FILE *f = fopen(argv[1], "r");
    if (!f) { perror(argv[1]); return 3; }
    buf[fread(buf, 1, sizeof buf - 1, f)] = 0;
    fclose(f);
    /* Outside the default profile: the draft must allow it by name. */
    cpu_set_t set; CPU_ZERO(&set); CPU_SET(0, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) { perror("sched_setaffinity"); return 4; }
    pthread_t t[4];
    for (long i = 0; i < 4; i++) if (pthread_create(&t[i], NULL, work, (void *)i)) return 5;
    long total = 0;
    for (int i = 0; i < 4; i++) { pthread_join(t[i], NULL); total += sums[i]; }
    FILE *o = fopen(argv[2], "w");
    if (!o) { perror(argv[2]); return 6; }
    fprintf(o, "%ld\n", total);
    if (fclose(o)) return 7;
    printf("sum %ld\n", total);
    return 0;
}
"#;

fn compile(dir: &Path, name: &str, source: &str) -> Option<PathBuf> {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).expect("source");
    let bin = dir.join(name);
    let status =
        Command::new("cc").args(["-O", "-pthread", "-o"]).arg(&bin).arg(&src).status().ok()?;
    status.success().then_some(bin)
}

#[test]
fn learns_a_threaded_c_program() {
    if !root_or_skip("learns_a_threaded_c_program") {
        return;
    }
    let lab = lab();
    let Some(bin) = compile(lab.data.path(), "threads", THREADS_C) else {
        eprintln!("skipped learns_a_threaded_c_program: no C compiler (cc)");
        return;
    };
    let input = lab.data.path().join("in");
    let output = lab.data.path().join("out");
    std::fs::create_dir(&input).expect("in");
    std::fs::create_dir(&output).expect("out");
    open_up(&input, 0o755);
    open_up(&output, 0o777);
    std::fs::write(input.join("data.txt"), "four threads sum these bytes\n").expect("data");
    let (data, result) = (input.join("data.txt"), output.join("result"));
    let args = [
        bin.to_str().expect("utf-8"),
        data.to_str().expect("utf-8"),
        result.to_str().expect("utf-8"),
    ];
    let allow = output.to_str().expect("utf-8");
    let (path, text) = learn(&lab, "learn-threads", &["--allow-write", allow], &args, "30s");
    assert!(text.contains("\"sched_setaffinity\","), "the extra syscall is not allowed");
    assert!(text.contains(&format!("read_write = [\n    # {}", lab.data.path().display())));
    let ok = |o: &Outcome| {
        let done = std::fs::remove_file(output.join("result")).is_ok();
        o.code == Some(0) && o.stdout.starts_with("sum ") && done
    };
    assert_works_and_tight(&path, &text, ok, None);
}

const HOSTILE_C: &str = r#"
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
/* Destructive only inside a fresh pid namespace (we are pid 2 under the sandbox's init) and
   a cgroup namespace (every cgroup line ends in ":/"). */
static int fresh_namespaces(void) {
    if (getpid() != 2) return 0;
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return 0;
    char line[512];
    int ok = 1;
    while (fgets(line, sizeof line, f)) { size_t n = strlen(line); if (n < 3 || strcmp(line + n - 3, ":/\n")) ok = 0; }
    fclose(f);
    return ok;
}
int main(int argc, char **argv) {
    /* argv: unix socket path, file to create, host TCP port */
    struct sockaddr_un un = { .sun_family = AF_UNIX };
    strncpy(un.sun_path, argv[1], sizeof un.sun_path - 1);
    int u = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("unix %s\n", connect(u, (void *)&un, sizeof un) == 0 ? "CONNECTED" : "blocked");
    FILE *w = fopen(argv[2], "w");
    printf("write %s\n", w ? "WRITTEN" : "blocked");
    struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    int t = socket(AF_INET, SOCK_STREAM, 0);
    printf("loopback %s\n", connect(t, (void *)&in, sizeof in) == 0 ? "CONNECTED" : "blocked");
    struct sockaddr_in out = { .sin_family = AF_INET, .sin_port = htons(53) };
    inet_pton(AF_INET, "1.1.1.1", &out.sin_addr);
    int d = socket(AF_INET, SOCK_DGRAM, 0);
    printf("network %s\n", connect(d, (void *)&out, sizeof out) == 0 && send(d, "x", 1, 0) == 1 ? "SENT" : "blocked");
    printf("unshare %s\n", unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0 ? "CREATED" : "blocked");
    printf("setns %s\n", syscall(SYS_setns, -1, 0) == -1 && errno == EPERM ? "blocked" : "REACHED");
    if (!fresh_namespaces()) { printf("kill skipped: not in fresh namespaces\n"); return 9; }
    printf("kill %d\n", kill(-1, SIGKILL));
    return 0;
}
"#;

#[test]
fn a_hostile_program_is_contained_while_learning() {
    if !root_or_skip("a_hostile_program_is_contained_while_learning") {
        return;
    }
    let lab = lab();
    let Some(bin) = compile(
        lab.data.path(),
        "hostile",
        &HOSTILE_C.replace("#include <unistd.h>", "#include <unistd.h>\n#include <stdlib.h>"),
    ) else {
        eprintln!("skipped a_hostile_program_is_contained_while_learning: no C compiler (cc)");
        return;
    };
    // A host Unix socket under /run, a world-writable directory, a host TCP listener and a
    // process of the sandbox user on the host.
    let run_dir =
        tempfile::Builder::new().prefix("vitrine-learn").tempdir_in("/run").expect("run dir");
    let sock_path = run_dir.path().join("host.sock");
    let unix = std::os::unix::net::UnixListener::bind(&sock_path).expect("unix listener");
    open_up(&sock_path, 0o777);
    unix.set_nonblocking(true).expect("nonblocking");
    let target = lab.data.path().join("pwned");
    open_up(lab.data.path(), 0o777);
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp listener");
    tcp.set_nonblocking(true).expect("nonblocking");
    let port = tcp.local_addr().expect("addr").port().to_string();
    let mut bystander = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "120"])
        .spawn()
        .expect("bystander");

    let args = [
        bin.to_str().expect("utf-8"),
        sock_path.to_str().expect("utf-8"),
        target.to_str().expect("utf-8"),
        &port,
    ];
    let out = lab.dir.path().join("policies").join("hostile.toml");
    let mut cmd = Command::new(VITRINE);
    cmd.args(["policy", "learn", "--name", "learn-hostile", "--duration", "30s", "--out"])
        .arg(&out);
    cmd.arg("--").args(args);
    let o = run(cmd, None);
    assert_eq!(o.code, Some(0), "learning failed");
    for line in [
        "unix blocked",
        "write blocked",
        "loopback blocked",
        "network blocked",
        "unshare blocked",
        "setns blocked",
        "kill ",
    ] {
        assert!(o.stdout.contains(line), "expected `{line}`");
    }
    assert!(!o.stdout.contains("kill skipped"), "the probe did not see fresh namespaces");
    assert!(unix.accept().is_err(), "the host Unix socket got a connection");
    assert!(tcp.accept().is_err(), "the host TCP listener got a connection");
    assert!(!target.exists(), "the program wrote outside the sandbox");
    assert!(bystander.try_wait().expect("wait").is_none(), "kill(-1) reached a host process");
    let _ = bystander.kill();
    let _ = bystander.wait();
    // Nothing of it is granted: the draft names the attempts as comments only.
    let text = std::fs::read_to_string(&out).expect("draft");
    eprintln!("{text}");
    let sock = sock_path.display().to_string();
    assert!(
        text.contains(&format!("#   {sock}: Unix socket connect")),
        "socket attempt not reported"
    );
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with('"') && l.contains(&sock)),
        "socket granted"
    );
    assert!(
        !text.contains(&format!("\"{}\",", lab.data.path().display())),
        "write outside granted"
    );
    assert!(check(&out));
}

const ODD_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    /* Outside the default profile only for their arguments: a packet socket (no profile
       allows the family) and an ioctl request outside default's list (render allows any). */
    int p = socket(17 /* AF_PACKET */, SOCK_RAW, 0);
    int i = ioctl(1, 0x1234abcd, 0);
    /* A number without a name, and a path that is not UTF-8. */
    long n = syscall(1000);
    int f = open("/tmp/\xff\xfe", O_RDONLY);
    printf("socket %d ioctl %d syscall %ld open %d\n", p, i, n, f);
    return 0;
}
"#;

#[test]
fn arguments_unknown_numbers_and_lossy_paths_are_comments_not_grants() {
    if !root_or_skip("arguments_unknown_numbers_and_lossy_paths_are_comments_not_grants") {
        return;
    }
    let lab = lab();
    let Some(bin) = compile(lab.data.path(), "odd", ODD_C) else {
        eprintln!("skipped arguments_unknown_numbers_and_lossy_paths_are_comments: no cc");
        return;
    };
    let (path, text) = learn(&lab, "learn-odd", &[], &[bin.to_str().expect("utf-8")], "30s");
    let granted =
        |name: &str| text.lines().any(|l| l.trim_start().starts_with(&format!("\"{name}\"")));
    for name in ["socket", "ioctl", "syscall 1000"] {
        assert!(!granted(name), "{name} is granted by name");
    }
    assert!(
        text.contains("# \"socket\",  # not granted: 1 calls with arg0 = 17 (AF_PACKET)"),
        "the packet socket is not explained"
    );
    assert!(text.contains("# \"syscall 1000\",  # not granted:"), "syscall 1000 not explained");
    // The ioctl request is allowed by the profile that allows ioctl, not by name.
    assert!(text.contains("profile = \"render\""), "no profile that allows the ioctl chosen");
    assert!(
        text.contains("#   openat: \"/tmp/\u{fffd}\u{fffd}\" is not UTF-8; not granted"),
        "the lossy path is not explained"
    );
    assert!(check(&path), "vitrine policy check refused the draft");
}

#[test]
fn learning_never_overwrites_a_file_without_force() {
    if !root_or_skip("learning_never_overwrites_a_file_without_force") {
        return;
    }
    let lab = lab();
    let out = lab.dir.path().join("policies").join("true.toml");
    std::fs::write(&out, "# the operator's own policy\n").expect("existing");
    let learn = |force: bool| {
        let mut cmd = Command::new(VITRINE);
        cmd.args(["policy", "learn", "--name", "learn-true", "--duration", "10s", "--out"])
            .arg(&out);
        if force {
            cmd.arg("--force");
        }
        cmd.args(["--", "/bin/true"]);
        run(cmd, None)
    };
    let refused = learn(false);
    assert_ne!(refused.code, Some(0));
    assert!(refused.stderr.contains("--force"), "the refusal does not name --force");
    let kept = std::fs::read_to_string(&out).expect("read");
    assert_eq!(kept, "# the operator's own policy\n", "overwritten without --force");
    let forced = learn(true);
    assert_eq!(forced.code, Some(0));
    let text = std::fs::read_to_string(&out).expect("read");
    assert!(text.contains("[visualization]"), "not replaced with --force");
    assert!(check(&out));
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().expect("dir"))
        .expect("list")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn the_learning_sandbox_lives_in_its_own_cgroup_root() {
    if !root_or_skip("the_learning_sandbox_lives_in_its_own_cgroup_root") {
        return;
    }
    let lab = lab();
    let out = lab.dir.path().join("policies").join("sleep.toml");
    let mut learn = Command::new(VITRINE)
        .args(["policy", "learn", "--name", "learn-sleep", "--duration", "60s", "--out"])
        .arg(&out)
        .args(["--", "/bin/sleep", "60"])
        .env("VITRINE_SHIM", &helpers().0)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vitrine");
    let mut stderr = std::io::BufReader::new(learn.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("started") {
        line.clear();
        let n = std::io::BufRead::read_line(&mut stderr, &mut line).expect("read");
        assert!(n > 0, "vitrine policy learn ended before the program started");
    }
    // The daemon removes whatever it finds under its root `vitrine` when it starts; a
    // learning sandbox must not be there.
    let cgroups: Vec<String> = descendants_of(learn.id())
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/cgroup")).ok())
        .collect();
    let pid = nix::unistd::Pid::from_raw(learn.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let status = learn.wait().expect("wait");
    assert!(!cgroups.is_empty(), "no sandboxed process found");
    assert!(
        cgroups.iter().all(|c| c.contains("/vitrine-learn/") && !c.contains("/vitrine/")),
        "{cgroups:?}"
    );
    assert!(status.success(), "{status:?}");
}

/// Every process below `root`.
fn descendants_of(root: u32) -> Vec<u32> {
    let mut all = vec![root];
    let mut i = 0;
    while i < all.len() {
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let ppid = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1));
            if ppid.and_then(|p| p.parse().ok()) == Some(all[i]) && !all.contains(&pid) {
                all.push(pid);
            }
        }
        i += 1;
    }
    all.split_off(1)
}
