#!/usr/bin/env bash
# Inside the VM: MIDI from an ALSA port reaches a sandboxed visualization under `vitrine serve`.
# The visualization is liblo's oscdump (an unmodified OSC program) on the udp transport; its
# policy has a [midi] table and declares no OSC parameter: /midi is implied. Notes and control
# changes sent into the snd-virmidi port with amidi arrive as validated OSC; SysEx (not allowed
# by default) and a note on a channel the policy does not list are dropped and counted in
# vitrine_midi_messages_total; `vitrine status` shows the port; unplugging the card and
# plugging it back reconnects, and MIDI flows again. Needs VITRINE_BIN (tests/vm/lane sets it).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${VITRINE_BIN:?set VITRINE_BIN to the vitrine binary}"

dev=$(amidi -l | awk '/Virtual Raw MIDI/ { print $2; exit }')
[[ -n $dev ]] || { bad "no virmidi raw MIDI device"; exit 1; }
port="Virtual Raw MIDI 0-0:VirMIDI 0-0"

work=$(new_box)
sed -n '/^\[visualization\]/,/^\[osc\]/p' "$repo/policies/examples/oscdump.toml" |
    sed -e 's/^name = "oscdump"/name = "midiviz"/' -e '/^\[osc\]/d' >"$work/policies/midiviz.toml"
cat >>"$work/policies/midiviz.toml" <<'TOML'
[osc]
prefix = "/midiviz"

[midi]
inputs = ["Virtual Raw MIDI*"]
channels = [1]
messages = ["note", "cc"]
TOML

"$VITRINE_BIN" serve --config "$work/vitrine.toml" 2>"$work/serve.log" &
serve=$!
finish() {
    kill -TERM "$serve" 2>/dev/null
    wait "$serve" 2>/dev/null
    echo "serve log (tail):"
    tail -n 20 "$work/serve.log" | sed 's/^/    /'
    exit "$fail"
}
trap finish EXIT

connects() { status_field "$work" midiviz '.midi[0].connects // 0'; }
connected() { [[ $(status_field "$work" midiviz '.midi[0].connected') == true ]]; }
disconnected() { ! connected; }
midi_lines() { ctl "$work" logs midiviz 2>/dev/null | grep -c ' /midi m MIDI'; }
lines_at_least() { (($(midi_lines) >= $1)); }

wait_for "midiviz runs with its MIDI port connected" 300 connected || exit
ctl "$work" status
# Note on ch1 (passes), note on ch2 (channel not listed), CC ch1 (passes), SysEx (refused).
amidi -p "$dev" -S "90 3C 64 91 3C 64 B0 07 7F F0 7D 01 02 F7"
wait_for "two MIDI messages reached the sandboxed oscdump" 120 lines_at_least 2
logs=$(ctl "$work" logs midiviz)
echo "oscdump printed:"
grep ' /midi' <<<"$logs" | sed 's/^/    /'
check "the note arrived as validated OSC" grep -q '/midi m MIDI \[0x00 0x90 0x3c 0x64\]' <<<"$logs"
check "the control change arrived as validated OSC" grep -q '/midi m MIDI \[0x00 0xb0 0x07 0x7f\]' <<<"$logs"
check "the channel 2 note did not arrive" test "$(midi_lines)" -eq 2
check "no SysEx arrived" test "$(grep -c /midi/sysex <<<"$logs")" -eq 0

labels="name=\"midiviz\",port=\"$port\""
echo "metrics:"
/usr/bin/python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:10049/metrics").read().decode())' |
    grep -E '^vitrine_(midi_messages_total|osc_forwarded_total|osc_received_total)' | grep -v ' 0$' | sed 's/^/    /'
check "vitrine_midi_messages_total accepted = 2" test "$(metric "vitrine_midi_messages_total{$labels,result=\"accepted\"}")" = 2
check "the disallowed channel is counted" test "$(metric "vitrine_midi_messages_total{$labels,result=\"channel\"}")" = 1
check "the refused SysEx is counted" test "$(metric "vitrine_midi_messages_total{$labels,result=\"sysex-refused\"}")" = 1
check "vitrine_osc_forwarded_total counts the MIDI delivered" test "$(metric 'vitrine_osc_forwarded_total{name="midiviz"}')" = 2

# Unplug: the card leaves its driver, as when a USB cable is pulled; then it comes back.
driver=/sys/bus/platform/drivers/snd_virmidi
echo snd_virmidi.0 >"$driver/unbind"
wait_for "status shows the port disconnected" 60 disconnected
echo snd_virmidi.0 >"$driver/bind"
wait_for "the port is connected again" 60 connected
check "status counts the reconnection" test "$(connects)" -ge 2
dev=$(amidi -l | awk '/Virtual Raw MIDI/ { print $2; exit }')
amidi -p "$dev" -S "90 40 64"
wait_for "a note after the replug reached oscdump" 60 lines_at_least 3
table=$(ctl "$work" status)
echo "$table"
check "status lists the port as connected" grep -qF "midiviz: midi \"$port\" connected" <<<"$table"
