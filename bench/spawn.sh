#!/bin/sh
# Spawn latency of a fully sandboxed start, against bubblewrap and a plain exec, in one run.
#
#   bench/spawn.sh [RUNS]          (root; apt-get install bubblewrap; default 200 runs)
#   TRACE=1 bench/spawn.sh [RUNS]  also a breakdown: RUNS more starts and restarts with
#                                  VITRINE_TRACE=1, the median time of every step
#
# Every row starts the same program, `stamp`: a 9 KiB static binary without libc that prints
# CLOCK_MONOTONIC as its first act. The harness (python3) reads the clock right before it
# spawns the command, so
#   spawn->exec = stamp's clock - harness clock   (the program runs: everything before it is paid)
#   spawn->exit = until the command returned       (adds the teardown, shown for completeness)
# Rows:
#   plain exec       fork+exec of stamp
#   glibc exec       a 3-line static glibc program that execs stamp: what one glibc process start
#                    costs on this machine before its main() runs (glibc 2.36's CPU feature
#                    and cache detection executes 68 CPUID instructions, each a trap into the
#                    hypervisor on a virtual machine). bwrap is one such process; `vitrine run`
#                    is two (the supervisor and the shim's fresh image), plus Rust's runtime
#                    and the page faults of a larger program
#   bwrap            bwrap --unshare-all --die-with-parent --ro-bind / / stamp
#   vitrine run      a whole `vitrine run` of stamp: process start, policy load, sha256
#                    verification into a sealed memfd, seccomp compilation, cgroup, shim, every
#                    layer (namespaces, mounts, loopback, rlimits, uid, Landlock, seccomp)
#   vitrine restart  another start of the same policy in the same supervisor, memfd and BPF
#                    reused, through the daemon's own call (`Launcher::spawn`, output to pipes):
#                    `vitrine run --repeat`; the supervisor's own clock from Launcher::spawn
#                    (cgroup creation) to the shim's `running` report (which comes after the
#                    exec), so it can only overstate. Median of 5 chunks of RUNS/5 restarts.
#                    The daemon primes each restart's sandbox during the backoff (cgroup, shim,
#                    namespaces, mounts); that time, paid between the exit and the restart,
#                    is the `(priming)` row.
#   baseline ...     with BASELINE=DIR (a `vitrine` and `vitrine-shim` built from another
#                    commit), the same two rows for those binaries, interleaved with the others
# Ratios are of p50s. The machine is whatever it is: the rows run interleaved, one run of each
# in turn, so background load hits them alike.
set -eu

RUNS="${1:-200}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${VITRINE_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"
if [ "$(id -u)" != 0 ]; then
    echo "bench/spawn.sh: needs root (namespaces, cgroups)" >&2
    exit 1
fi
if [ ! -x "$BIN/vitrine" ] || [ ! -x "$BIN/vitrine-shim" ]; then
    (cd "$ROOT" && cargo build --release -p vitrine -p vitrine-shim &&
        cargo rustc --release -p vitrine-shim --bin vitrine-shim -- -C target-feature=+crt-static)
fi
command -v bwrap >/dev/null || { echo "bench/spawn.sh: install bubblewrap" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/policies"
ln -s "$ROOT/policies/presets" "$WORK/presets"
ln -s "$ROOT/policies/seccomp" "$WORK/seccomp"
cat > "$WORK/stamp.c" <<'EOF'
/* Prints CLOCK_MONOTONIC in ns as its first act: no libc, no loader (x86_64 syscalls). */
struct ts { long sec, nsec; };
static long sys(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}
void _start(void) {
    struct ts t;
    char buf[24];
    int i = sizeof buf;
    sys(228, 1, (long)&t, 0);                 /* clock_gettime(CLOCK_MONOTONIC) */
    unsigned long v = (unsigned long)t.sec * 1000000000UL + (unsigned long)t.nsec;
    buf[--i] = '\n';
    do { buf[--i] = '0' + v % 10; v /= 10; } while (v);
    sys(1, 1, (long)(buf + i), sizeof buf - i); /* write(1, ...) */
    sys(231, 0, 0, 0);                        /* exit_group(0) */
}
EOF
cc -O2 -static -nostdlib -fno-stack-protector -o "$WORK/stamp" "$WORK/stamp.c"
STAMP="$WORK/stamp"
cat > "$WORK/hop.c" <<'EOF'
/* One glibc process start, then exec of argv[1]. */
#include <unistd.h>
int main(int argc, char **argv) { (void)argc; execv(argv[1], argv + 1); return 127; }
EOF
cc -O2 -static -o "$WORK/hop" "$WORK/hop.c"
cat > "$WORK/policies/bench.toml" <<EOF
[visualization]
name = "bench-spawn"
command = "$STAMP"

[verify]
sha256 = "$(sha256sum "$STAMP" | cut -d' ' -f1)"

[limits]
memory = "64MiB"
pids = 16

[sandbox]
user = "nobody"
landlock = "required"
landlock_min_abi = 1

[filesystem]
presets = ["system-libs"]

[syscalls]
profile = "default"

[ipc]
transport = "udp"
port = 9000
EOF

export VITRINE_SHIM="$BIN/vitrine-shim"
python3 - "$RUNS" "$BIN/vitrine" "$WORK/policies/bench.toml" "$STAMP" "${TRACE:-0}" "${BASELINE:-}" "$WORK/hop" <<'EOF'
import os, re, subprocess, sys, time

runs, vitrine, policy, stamp = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
trace, baseline, hop = sys.argv[5] == "1", sys.argv[6], sys.argv[7]
env = dict(os.environ)
commands = {
    "plain exec": ([stamp], env),
    "glibc exec": ([hop, stamp], env),
    "bwrap --unshare-all": (["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", stamp], env),
    "vitrine run": ([vitrine, "run", policy], env),
}
# Restarts: `vitrine run --repeat`, in chunks that alternate with the baseline's.
restarts = {"vitrine restart": ([vitrine, "run", policy, "--repeat"], env)}
if baseline:
    old_env = dict(os.environ, VITRINE_SHIM=f"{baseline}/vitrine-shim")
    commands["baseline run"] = ([f"{baseline}/vitrine", "run", policy], old_env)
    restarts["baseline restart"] = ([f"{baseline}/vitrine", "run", policy, "--repeat"], old_env)
to_exec = {name: [] for name in commands}
to_exit = {name: [] for name in commands}

def once(name, cmd, env):
    start = time.monotonic_ns()
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic_ns()
    if r.returncode != 0:
        sys.exit(f"{name} failed ({r.returncode}): {r.stderr}")
    to_exec[name].append((int(r.stdout.split()[0]) - start) / 1e6)
    to_exit[name].append((end - start) / 1e6)

for name, (cmd, e) in commands.items():  # warm the page cache
    once(name, cmd, e)
for samples in (*to_exec.values(), *to_exit.values()):
    samples.clear()
for _ in range(runs):
    for name, (cmd, e) in commands.items():
        once(name, cmd, e)
chunks = 5
restart_pcts = {name: [] for name in restarts}
for _ in range(chunks):
    for name, (cmd, e) in restarts.items():
        out = subprocess.run(cmd + [str(max(1, runs // chunks))], env=e, check=True,
                             capture_output=True, text=True)
        m = re.search(r"p50 ([0-9.]+) ms, p99 ([0-9.]+) ms", out.stderr)
        restart_pcts[name].append((float(m.group(1)), float(m.group(2))))
        m = re.search(r"priming during the backoff: p50 ([0-9.]+) ms, p99 ([0-9.]+) ms", out.stderr)
        if m:  # paid between the exit and the restart, shown apart
            priming = restart_pcts.setdefault(name + " (priming)", [])
            priming.append((float(m.group(1)), float(m.group(2))))

def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, len(s) * p // 100)]

for title, table in (("spawn -> exec", to_exec), ("spawn -> exit", to_exit)):
    base, bwrap = pct(table["plain exec"], 50), pct(table["bwrap --unshare-all"], 50)
    print(f"{title:22} {'p50 ms':>9} {'p99 ms':>9} {'x plain':>8} {'x bwrap':>8}   ({runs} runs each)")
    for name, s in table.items():
        p50, p99 = pct(s, 50), pct(s, 99)
        print(f"{name:22} {p50:9.2f} {p99:9.2f} {p50 / base:8.1f} {p50 / bwrap:8.2f}")
    if table is to_exec:
        for name, chunk in restart_pcts.items():
            p50, p99 = pct([c[0] for c in chunk], 50), pct([c[1] for c in chunk], 50)
            until = "ready" if name.endswith("(priming)") else "running"
            print(f"{name:22} {p50:9.2f} {p99:9.2f} {p50 / base:8.1f} {p50 / bwrap:8.2f}"
                  f"   (median of {chunks} chunks; to the {until} report)")
    print()

def timeline(title, groups):
    """Median time of every traced step, from the group's first stamp, in order."""
    steps = {}
    for group in groups:
        for (who, step), ns in group.items():
            steps.setdefault((who, step), []).append(ns)
    rows = sorted((pct(v, 50), who, step) for (who, step), v in steps.items())
    print(f"{title:34} {'at ms':>7} {'step ms':>8}   (median of {len(groups)})")
    prev = 0.0
    for at, who, step in rows:
        print(f"{who + ' ' + step:34} {at:7.2f} {at - prev:8.2f}")
        prev = at
    print()

def parse(stderr, stdout, starts, origin, skip=0):
    """Splits trace lines into one group per `starts` stamp; offsets in ms from each group's
    `origin` stamp. The stamp program's times (stdout) go to the groups in order, after `skip`."""
    groups, execs = [], [int(x) for x in stdout.split()][skip:]
    for line in stderr.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[0] != "vitrine-trace":
            continue
        who, step, ns = parts[1], " ".join(parts[2:-1]), int(parts[-1])
        if (who, step) == starts:
            groups.append({"t0": ns})
        if groups:
            groups[-1][(who, step)] = ns
    for group, ex in zip(groups, execs):
        group[("stamp", "exec")] = ex
    groups = [g for g in groups if origin in g]
    return [{k: (v - g[origin]) / 1e6 for k, v in g.items() if k != "t0"} for g in groups]

if trace:
    env = dict(os.environ, VITRINE_TRACE="1")
    groups = []
    for _ in range(runs):
        start = time.monotonic_ns()
        r = subprocess.run([vitrine, "run", policy], env=env, capture_output=True, text=True)
        line = f"vitrine-trace harness start {start}\n"
        groups += parse(line + r.stderr, r.stdout, ("harness", "start"), ("harness", "start"))
    timeline("vitrine run, traced", groups)
    r = subprocess.run([vitrine, "run", policy, "--repeat", str(runs)], env=env,
                       capture_output=True, text=True)
    # Each restart: the priming after the previous exit (negative times), then from the go.
    timeline("vitrine restart, traced",
             parse(r.stderr, r.stdout, ("supervisor", "prime"), ("supervisor", "go"), skip=1))
EOF
