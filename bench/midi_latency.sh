#!/usr/bin/env bash
# MIDI added latency, ALSA → child through vitrine against reading the port directly (see
# bench/midi_latency.rs). Needs ALSA virtual MIDI ports, so it runs in the VM lane's guest:
# builds the release binaries on the host, then one boot with tests/vm/run. As root, after
# tests/vm/setup. Prints a Markdown table and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p vitrine -p vitrine-shim --bins
bench=$(cargo bench -p vitrine-midi --features alsa --bench midi_latency --no-run --message-format=json |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
target=${CARGO_TARGET_DIR:-target}
tests/vm/run env VITRINE_BIN="$(realpath "$target/release/vitrine")" "$bench"
