#!/usr/bin/env bash
# Runs inside the VM (tests/vm/lane passes the prebuilt test binaries): the smoke check, then
# every binary, one test at a time because the MIDI tests unload and reload snd-virmidi.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
echo "== boot: guest up for $(cut -d' ' -f1 /proc/uptime) s when the checks started"
failed=0
echo "== smoke"
"$here/smoke.sh" || failed=1
if [[ -n ${VITRINE_BIN:-} ]]; then
    echo "== midi-e2e"
    "$here/midi-e2e.sh" || failed=1
fi
for bin in "$@"; do
    echo "== $(basename "$bin")"
    "$bin" --test-threads=1 || failed=1
done
exit "$failed"
