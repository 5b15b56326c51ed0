#!/bin/sh
# Spawn latency of a fully sandboxed start, against bubblewrap and a plain exec, in one run.
#
#   bench/spawn.sh [RUNS]          (root; apt-get install bubblewrap; default 200 runs)
#
# Every row starts the same program, `stamp`: a 9 KiB static binary without libc that prints
# CLOCK_MONOTONIC as its first act. The harness (python3) reads the clock right before it
# spawns the command, so
#   spawn->exec = stamp's clock - harness clock   (the program runs: everything before it is paid)
#   spawn->exit = until the command returned       (adds the teardown, shown for completeness)
# Rows:
#   plain exec       fork+exec of stamp
#   bwrap            bwrap --unshare-all --die-with-parent --ro-bind / / stamp
#   vitrine run      a whole `vitrine run` of stamp: process start, policy load, sha256
#                    verification into a sealed memfd, seccomp compilation, cgroup, shim, every
#                    layer (namespaces, mounts, loopback, rlimits, uid, Landlock, seccomp)
#   vitrine restart  another start of the same policy in the same supervisor, memfd and BPF
#                    reused (`vitrine run --repeat`, what a restart by the daemon costs); the
#                    supervisor's own clock from Launcher::spawn to the shim's `running` report
#                    (which comes after the exec), so it can only overstate
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
    (cd "$ROOT" && cargo build --release -p vitrine -p vitrine-shim)
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
python3 - "$RUNS" "$BIN/vitrine" "$WORK/policies/bench.toml" "$STAMP" <<'EOF'
import re, subprocess, sys, time

runs, vitrine, policy, stamp = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
commands = {
    "plain exec": [stamp],
    "bwrap --unshare-all": ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", stamp],
    "vitrine run": [vitrine, "run", policy],
}
to_exec = {name: [] for name in commands}
to_exit = {name: [] for name in commands}

def once(name, cmd):
    start = time.monotonic_ns()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic_ns()
    if r.returncode != 0:
        sys.exit(f"{name} failed ({r.returncode}): {r.stderr}")
    to_exec[name].append((int(r.stdout.split()[0]) - start) / 1e6)
    to_exit[name].append((end - start) / 1e6)

for name, cmd in commands.items():  # warm the page cache
    once(name, cmd)
for samples in (*to_exec.values(), *to_exit.values()):
    samples.clear()
for _ in range(runs):
    for name, cmd in commands.items():
        once(name, cmd)
out = subprocess.run([vitrine, "run", policy, "--repeat", str(runs)], check=True, capture_output=True, text=True)
m = re.search(r"p50 ([0-9.]+) ms, p99 ([0-9.]+) ms", out.stderr)

def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, len(s) * p // 100)]

for title, table in (("spawn -> exec", to_exec), ("spawn -> exit", to_exit)):
    base, bwrap = pct(table["plain exec"], 50), pct(table["bwrap --unshare-all"], 50)
    print(f"{title:22} {'p50 ms':>9} {'p99 ms':>9} {'x plain':>8} {'x bwrap':>8}   ({runs} runs each)")
    for name, s in table.items():
        p50, p99 = pct(s, 50), pct(s, 99)
        print(f"{name:22} {p50:9.2f} {p99:9.2f} {p50 / base:8.1f} {p50 / bwrap:8.2f}")
    if m and table is to_exec:
        p50, p99 = float(m.group(1)), float(m.group(2))
        print(f"{'vitrine restart':22} {p50:9.2f} {p99:9.2f} {p50 / base:8.1f} {p50 / bwrap:8.2f}"
              "   (memfd+BPF reused; to the running report)")
    print()
EOF
