#!/bin/sh
# OSC added latency vs direct loopback (see bench/osc_latency.rs); prints a Markdown table.
set -eu
cd "$(dirname "$0")/.."
cargo build --release -p vitrine
target="${CARGO_TARGET_DIR:-target}"
VITRINE_BIN="$target/release/vitrine" cargo bench -p vitrine-osc --bench osc_latency
