#!/bin/sh
# Supervisor footprint and restart latency with N real sandboxed visualizations.
#
#   bench/daemon.sh [N] [VITRINE_BINARY_DIR]      (root; default N=16, target/release)
#
# Prints the daemon's RSS with N running children, its CPU use over an idle period, and the
# time from `vitrine restart NAME` until the command returned (it returns once the new child
# runs, so this is restart-to-running as an operator sees it). Children are `sleep` under the
# full sandbox, so they add nothing to the supervisor's own numbers.
set -eu

N=${1:-16}
BIN=${2:-target/release}
IDLE_SECONDS=${IDLE_SECONDS:-10}
RESTARTS=${RESTARTS:-20}
REPO=$(cd "$(dirname "$0")/.." && pwd)
VITRINE="$BIN/vitrine"
[ -x "$VITRINE" ] || { echo "no $VITRINE (cargo build --release -p vitrine -p vitrine-shim)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench/daemon.sh needs root (sandboxes, cgroups)" >&2; exit 2; }

DIR=$(mktemp -d /tmp/vitrine-bench.XXXXXX)
DAEMON=
cleanup() {
    [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

mkdir -p "$DIR/policies"
ln -s "$REPO/policies/presets" "$DIR/presets"
ln -s "$REPO/policies/seccomp" "$DIR/seccomp"
cat > "$DIR/vitrine.toml" <<TOML
policies = "$DIR/policies"
state_dir = "$DIR/state"
allow_unsigned = true
[osc]
listen = []
[metrics]
listen = "off"
[control]
socket = "$DIR/control.sock"
[audit]
path = "$DIR/audit.jsonl"
TOML
i=0
while [ "$i" -lt "$N" ]; do
    cat > "$DIR/policies/viz-$i.toml" <<TOML
[visualization]
name = "viz-$i"
command = "/usr/bin/sleep"
args = ["100000"]
[limits]
memory = "64MiB"
pids = 16
[sandbox]
user = 65534
landlock = "best-effort"
[filesystem]
presets = ["system-libs"]
[syscalls]
profile = "default"
TOML
    i=$((i + 1))
done

"$VITRINE" serve --config "$DIR/vitrine.toml" 2>"$DIR/daemon.log" &
DAEMON=$!
S="--socket $DIR/control.sock"
# Wait until every visualization runs (bounded, so a broken build fails instead of hanging).
tries=0
until [ "$("$VITRINE" status --json $S 2>/dev/null | grep -c '"state": "running"')" = "$N" ]; do
    tries=$((tries + 1))
    [ "$tries" -lt 600 ] || { echo "visualizations did not all start; log:" >&2; cat "$DIR/daemon.log" >&2; exit 1; }
    sleep 0.1
done

ticks() { awk '{print $14 + $15}' "/proc/$DAEMON/stat"; }
HZ=$(getconf CLK_TCK)
sleep 2
t0=$(ticks)
sleep "$IDLE_SECONDS"
t1=$(ticks)
rss_kib=$(awk '/^VmRSS/ {print $2}' "/proc/$DAEMON/status")
threads=$(awk '/^Threads/ {print $2}' "/proc/$DAEMON/status")
fds=$(ls "/proc/$DAEMON/fd" | wc -l)

total_ms=0
i=0
while [ "$i" -lt "$RESTARTS" ]; do
    start=$(date +%s%N)
    "$VITRINE" restart "viz-$((i % N))" $S >/dev/null
    end=$(date +%s%N)
    total_ms=$((total_ms + (end - start) / 1000000))
    i=$((i + 1))
done

echo "visualizations running:        $N"
echo "supervisor RSS:                $((rss_kib / 1024)).$(( (rss_kib % 1024) * 10 / 1024 )) MiB ($rss_kib KiB)"
echo "supervisor threads, fds:       $threads, $fds"
awk -v d="$((t1 - t0))" -v hz="$HZ" -v s="$IDLE_SECONDS" \
    'BEGIN { printf "idle CPU over %ds:             %.2f%% of one core (%d ticks)\n", s, 100 * d / hz / s, d }'
echo "restart -> running (mean of $RESTARTS): $((total_ms / RESTARTS)) ms (CLI round trip included)"
