#!/bin/sh
# Build the Debian package of vitrine: a release build of `vitrine` and `vitrine-shim`, then
# cargo-deb with the metadata in supervisor/Cargo.toml. Prints the path of the .deb.
#
#   deploy/build-deb.sh            # builds target/debian/vitrine_<version>-1_<arch>.deb
#
# Honours CARGO_TARGET_DIR. Installs cargo-deb with `cargo install` when it is missing.
set -eu
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null 2>&1; then
    cargo install cargo-deb
fi
cargo build --release -p vitrine -p vitrine-shim
# The shim statically linked: every start and restart execs it and forks it twice, and without
# the dynamic loader and its mappings that is 0.5-1 ms less per start (bench/spawn.sh).
cargo rustc --release -p vitrine-shim --bin vitrine-shim -- -C target-feature=+crt-static
# --no-build: the release build above made both binaries; cargo-deb would only build one package.
cargo deb -p vitrine --no-build "$@"
