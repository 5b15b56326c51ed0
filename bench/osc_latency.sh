#!/bin/sh
# OSC added latency vs direct loopback and vs a plain forwarder (bench/osc_latency.rs,
# interleaved, two CPU layouts, three repeats), then validated throughput through the relay on
# one CPU (bench/osc_relay_throughput.rs); prints Markdown tables with the load average next to
# each run.
set -eu
cd "$(dirname "$0")/.."
cargo build --release -p vitrine
# Absolute: cargo runs each bench from its own crate's directory.
target="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)"
VITRINE_BIN="$target/release/vitrine" cargo bench -p vitrine-osc --bench osc_latency
VITRINE_BIN="$target/release/vitrine" cargo bench -p vitrine-osc --bench osc_relay_throughput
