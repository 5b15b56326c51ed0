#!/usr/bin/env bash
# Runs inside the VM (tests/vm/lane passes the prebuilt binaries): the smoke check, the
# end-to-end checks of the real supervisor (MIDI, Landlock ABI 2, cgroup v2), the cgroup crate's
# tests in a delegated subtree, then every other test binary given as an argument, one test at a
# time because the MIDI tests unload and reload snd-virmidi. Each part prints its own time.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
echo "== boot: guest up for $(cut -d' ' -f1 /proc/uptime) s when the checks started"
failed=()
part() { # part NAME CMD...: runs one check, timed
    local name=$1 t0=$SECONDS
    shift
    echo "== $name"
    "$@" || failed+=("$name")
    echo "-- $name: $((SECONDS - t0)) s"
}
part smoke "$here/smoke.sh"
if [[ -n ${VITRINE_BIN:-} ]]; then
    part midi-e2e "$here/midi-e2e.sh"
    part serve-midi "$here/serve-midi.sh"
    part landlock "$here/landlock.sh"
    part cgroup-v2 "$here/cgroup-v2.sh"
fi
if [[ -n ${VITRINE_CGROUP_TESTS:-} ]]; then
    # shellcheck disable=SC2086 # one path per word
    part cgroup-tests "$here/../../crates/cgroup/tests/vm-delegated.sh" $VITRINE_CGROUP_TESTS
fi
for bin in "$@"; do
    part "$(basename "$bin")" "$bin" --test-threads=1
done
if ((${#failed[@]})); then
    echo "== failed: ${failed[*]}"
    exit 1
fi
echo "== every check passed"
