#!/usr/bin/env bash
# The test command of README.md (CI runs exactly this through .ci/run).
#
# Lanes, in order: formatting, lints, every workspace test (unit tests everywhere; the
# privileged integration tests run for real as root and skip with a printed reason otherwise),
# the VM lane (tests/vm/: a Debian 6.1 kernel under QEMU for cgroup v2, Landlock ABI 2 and ALSA
# MIDI ports), then the Debian package is built and its contents checked.
#
# The VM lane needs root. In CI (CI=true) it must run and pass; elsewhere it is skipped, with
# the reason printed, when not root, when VITRINE_SKIP_VM=1, or when the VM cannot be set up or
# booted on this machine.
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
echo "== vm lane"
vm_lane() {
    local t0=$SECONDS ci=${CI:-false} status=0
    skip() {
        if [[ $ci == true ]]; then
            echo "vm lane: FAILED in CI: $*" >&2
            return 1
        fi
        echo "vm lane: skipped: $*"
    }
    if [[ ${VITRINE_SKIP_VM:-0} == 1 ]]; then
        skip "VITRINE_SKIP_VM=1"
        return
    fi
    if [[ $(id -u) -ne 0 ]]; then
        skip "not root (tests/vm/setup installs packages; QEMU and the checks need root)"
        return
    fi
    tests/vm/setup || {
        skip "tests/vm/setup failed"
        return
    }
    echo "vm lane: setup took $((SECONDS - t0)) s"
    tests/vm/lane || status=$?
    echo "vm lane: $((SECONDS - t0)) s in all"
    case $status in
    0) ;;
    125) skip "the VM could not boot on this machine (twice)" ;;
    *) return "$status" ;;
    esac
}
vm_lane
echo "== package (release build, cargo-deb, contents checked)"
bash deploy/build-deb.sh
bash deploy/test-deb.sh
