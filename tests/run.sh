#!/usr/bin/env bash
# The test command of README.md (CI runs exactly this through .ci/run).
#
# Lanes, in order: formatting, lints, every workspace test (unit tests everywhere; the
# privileged integration tests run for real as root and skip with a printed reason otherwise),
# then the Debian package is built and its contents checked.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh

echo "== fmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build (binaries the integration tests run)"
cargo build --workspace --bins --locked
echo "== tests"
cargo test --workspace --locked --no-fail-fast
echo "== package (release build, cargo-deb, contents checked)"
bash deploy/build-deb.sh
bash deploy/test-deb.sh
