#!/usr/bin/env bash
# Inside the VM (cgroup v2, every controller): `vitrine serve` runs in a delegated subtree, as
# under systemd's Delegate=yes, and enforces and reports each limit on real visualizations,
# one at a time so that an emulated guest is not swamped: a busy loop is throttled to its cpu
# quota, a memory hog is OOM-killed, reported as such and restarted, a fork bomb stops at
# pids.max. The evidence is the kernel's own counters (cpu.stat, memory.events, pids.events)
# next to what `vitrine status`, the events and the metrics say. Needs VITRINE_BIN.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${VITRINE_BIN:?set VITRINE_BIN to the vitrine binary}"

root=/sys/fs/cgroup
[[ -f $root/cgroup.controllers ]] || { echo "skipped: $root is not cgroup v2"; exit 0; }
# What systemd does for a Delegate=yes service: controllers on for the service's cgroup, which
# the service then manages itself.
for c in cpu cpuset memory pids; do echo "+$c" >"$root/cgroup.subtree_control"; done
service=$root/vitrine-lane.service
mkdir -p "$service"

work=$(new_box)
dash_policy "$work/policies/spin.toml" spin 'while :; do :; done' "[limits]" "cpu = 0.2"

# The subshell moves itself into the service's cgroup, then becomes the supervisor.
(echo "$BASHPID" >"$service/cgroup.procs" && exec "$VITRINE_BIN" serve --config "$work/vitrine.toml") \
    2>"$work/serve.log" &
serve=$!
finish() {
    kill -TERM "$serve" 2>/dev/null
    wait "$serve" 2>/dev/null
    # Each visualization's cgroup is removed when its sandbox ends.
    check "no visualization cgroup left after shutdown" \
        test -z "$(find "$service" -mindepth 2 -type d \( -name memhog -o -name spin -o -name forks \))"
    find "$service" -depth -mindepth 1 -type d -exec rmdir {} + 2>/dev/null
    rmdir "$service" 2>/dev/null
    echo "serve log (tail):"
    tail -n 12 "$work/serve.log" | sed 's/^/    /'
    exit "$fail"
}
trap finish EXIT

cg() { find "$service" -mindepth 2 -maxdepth 3 -type d -name "$1" | head -n1; }
running() { [[ $(status_field "$work" "$1" .state) == running && -n $(cg "$1") ]]; }
# add NAME SCRIPT TOML...: a new policy file; the daemon sees the directory change and loads it.
add() {
    dash_policy "$work/policies/$1.toml" "$@"
    ctl "$work" reload >/dev/null
}

wait_for "spin runs" 240 running spin || exit
check "the supervisor moved itself into a leaf of its delegated cgroup" \
    grep -qx "$serve" "$service/supervisor/cgroup.procs"
echo "spin's cgroup: $(cg spin)"

# cpu: the quota is written and the kernel throttles the loop; status reports the CPU time.
check "cpu.max of spin is 0.2 cores" grep -qx "20000 100000" "$(cg spin)/cpu.max"
throttled() { (($(awk '/^nr_throttled/ { print $2 }' "$(cg spin)/cpu.stat") > 0)); }
wait_for "the kernel throttled spin" 60 throttled && ok "cpu.stat: $(tr '\n' ' ' <"$(cg spin)/cpu.stat")"
cpu_reported() { [[ $(status_field "$work" spin '.stats.cpu_seconds > 0') == true ]]; }
wait_for "status reports spin's CPU time" 60 cpu_reported &&
    ok "status: spin used $(status_field "$work" spin .stats.cpu_seconds) s of CPU"
ctl "$work" stop spin

# memory: OOM kill, classified, counted, and the visualization restarted.
add memhog 'x=a; while :; do x=$x$x; done' "[limits]" 'memory = "32MiB"' \
    "[restart]" 'backoff_initial = "1s"' 'burst = 20'
oom_reported() { (($(status_field "$work" memhog '.oom_exits // 0') >= 1)); }
wait_for "memhog's OOM kill is reported" 240 oom_reported
check "memhog's last exit is an OOM kill" test "$(status_field "$work" memhog '.last_exit.type')" = oom
restarted() { [[ -n $(metric 'vitrine_visualization_restarts_total{name="memhog",reason="oom"}') ]]; }
wait_for "the restart after an OOM kill is in the metrics" 60 restarted &&
    ok "vitrine_visualization_restarts_total{name=\"memhog\",reason=\"oom\"} $(metric 'vitrine_visualization_restarts_total{name="memhog",reason="oom"}')"
memhog=$(cg memhog)
if [[ -n $memhog ]]; then
    check "memory.max of memhog is 32 MiB" grep -qx 33554432 "$memhog/memory.max"
    echo "memory.events: $(tr '\n' ' ' <"$memhog/memory.events")"
fi
events=$(timeout 20 "$VITRINE_BIN" events --json --socket "$work/control.sock" 2>/dev/null | grep '"memhog"')
check "an oom event was published" grep -q '"kind":"oom"' <<<"$events"
ctl "$work" stop memhog

# pids: the fork bomb hits pids.max and the kernel counts the refused forks.
add forks 'f() { f | f & }; f; sleep 1000' "[limits]" "pids = 16" "[restart]" 'stop_timeout = "1s"'
wait_for "forks runs" 240 running forks
forks=$(cg forks)
check "pids.max of forks is 16" grep -qx 16 "$forks/pids.max"
refused() { (($(awk '/^max/ { print $2 }' "$(cg forks)/pids.events") > 0)); }
wait_for "the kernel refused forks at pids.max" 120 refused && ok "pids.events: $(cat "$forks/pids.events")"
check "status reports at most 16 pids for forks" test "$(status_field "$work" forks '.stats.pids // 0')" -le 16

ctl "$work" status
