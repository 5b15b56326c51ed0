#!/usr/bin/env bash
# Inside the VM: `vitrine midi monitor` (the supervisor's MIDI bridge, ALSA feature on) reads
# the virmidi port; notes and control changes sent with amidi come out as OSC /midi packets
# under the policy's prefix, and a disallowed channel is dropped and counted.
# Needs VITRINE_BIN (tests/vm/lane sets it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${VITRINE_BIN:?set VITRINE_BIN to the vitrine binary}"
dev=$(amidi -l | awk '/Virtual Raw MIDI/ { print $2; exit }')
[[ -n $dev ]] || { echo "FAIL: no virmidi raw MIDI device"; exit 1; }

out=$(mktemp)
err=$(mktemp)
"$VITRINE_BIN" midi monitor "$here/fixtures/midi-e2e.toml" --count 2 >"$out" 2>"$err" &
pid=$!

# Wait (as long as a slow emulated guest needs) until the bridge subscribed to the port.
for _ in $(seq 600); do
    aconnect -l | grep -q "Connecting To" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
aconnect -l | grep -q "Connecting To" || {
    echo "FAIL: the bridge never connected"
    cat "$err"
    exit 1
}

# Note on ch1 (passes), note on ch2 (channel not allowed), CC ch1 (passes).
amidi -p "$dev" -S "90 3C 64 91 3C 64 B0 07 7F"
status=0
wait "$pid" || status=$?
echo "monitor exit $status; stdout:"
sed 's/^/    /' "$out"
echo "stderr:"
sed 's/^/    /' "$err"

expected=$'port 0 /midi-e2e/midi 90 3c 64\nport 0 /midi-e2e/midi b0 07 7f'
fail=0
[[ $status -eq 0 ]] || { echo "FAIL: monitor exited $status"; fail=1; }
[[ $(cat "$out") == "$expected" ]] || { echo "FAIL: unexpected messages"; fail=1; }
grep -q "accepted=2 dropped: channel=1" "$err" || { echo "FAIL: the ch2 note was not counted"; fail=1; }
((fail)) || echo "ok:   MIDI through the supervisor's bridge, channel filter counted"
exit "$fail"
