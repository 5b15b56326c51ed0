#!/bin/sh
# Spawn latency of a fully sandboxed start, against bubblewrap and a plain exec, in one run.
#
#   bench/spawn.sh [RUNS]          (root; apt-get install bubblewrap; default 200 runs)
#
# Rows:
#   plain exec       fork+exec of /bin/true
#   bwrap            bwrap --unshare-all --die-with-parent --ro-bind / / /bin/true
#   vitrine run      a whole `vitrine run` of /bin/true: policy load, sha256 verification into a
#                    sealed memfd, seccomp compilation, cgroup, shim, every layer, exit
#   vitrine restart  spawn -> exec of the visualization only, with the memfd and BPF reused
#                    (`vitrine run --repeat`, what a restart by the daemon costs)
# Every row is timed by the same harness (python3, perf_counter around each run); the restart
# row is the supervisor's own measurement from forking the shim to the child's exec.
set -eu

RUNS="${1:-200}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${VITRINE_BIN_DIR:-$ROOT/target/release}"
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
TRUE="$(readlink -f /bin/true)"
cat > "$WORK/policies/bench.toml" <<EOF
[visualization]
name = "bench-spawn"
command = "$TRUE"

[verify]
sha256 = "$(sha256sum "$TRUE" | cut -d' ' -f1)"

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
python3 - "$RUNS" "$BIN/vitrine" "$WORK/policies/bench.toml" <<'EOF'
import re, subprocess, sys, time

runs, vitrine, policy = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def timed(cmd):
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            sys.exit(f"{cmd[0]} failed ({r.returncode}): {r.stderr}")
        samples.append((time.perf_counter() - t) * 1e3)
    return samples

def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, len(s) * p // 100)]

rows = [
    ("plain exec", timed(["/bin/true"])),
    ("bwrap --unshare-all", timed(["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "/bin/true"])),
    ("vitrine run", timed([vitrine, "run", policy])),
]
out = subprocess.run([vitrine, "run", policy, "--repeat", str(runs)], check=True, capture_output=True, text=True)
m = re.search(r"p50 ([0-9.]+) ms, p99 ([0-9.]+) ms", out.stderr)
base = pct(rows[0][1], 50)
bwrap = pct(rows[1][1], 50)
print(f"{'':22} {'p50 ms':>9} {'p99 ms':>9} {'x plain':>8} {'x bwrap':>8}   ({runs} runs each)")
for name, s in rows:
    p50, p99 = pct(s, 50), pct(s, 99)
    print(f"{name:22} {p50:9.2f} {p99:9.2f} {p50 / base:8.1f} {p50 / bwrap:8.2f}")
if m:
    p50, p99 = float(m.group(1)), float(m.group(2))
    print(f"{'vitrine restart':22} {p50:9.2f} {p99:9.2f} {p50 / base:8.1f} {p50 / bwrap:8.2f}   (spawn->exec, memfd+BPF reused)")
EOF
