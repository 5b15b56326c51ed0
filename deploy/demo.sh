#!/usr/bin/env bash
# The main job of README.md: build vitrine and show it working on the shipped example policies.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh
cargo build --workspace --bins --locked
vitrine=target/debug/vitrine

echo "== vitrine policy check policies/"
"$vitrine" policy check policies/examples
echo
echo "== vitrine policy explain policies/examples/oscdump.toml"
"$vitrine" policy explain policies/examples/oscdump.toml
