#!/usr/bin/env bash
# Installs everything vitrine's build, demo and test lanes need on Debian 12, idempotently.
# Run as root (CI does). The Rust toolchain itself (>= 1.85, edition 2024) must already be on
# PATH: Debian's own rustc is too old, so install it with rustup first.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust >= 1.85 (https://rustup.rs) and re-run" >&2
    exit 1
fi

packages=(
    build-essential pkg-config
    libasound2-dev          # ALSA MIDI input (cargo feature `alsa`)
    liblo-tools             # oscsend/oscdump: real OSC peers, and a visualization for the demo
    python3                 # python -c visualizations in the sandbox tests
    python3-pip             # python-osc below
    nftables                # `nft -c` checks the firewall example in docs/
    bubblewrap              # the spawn benchmark's anchor
    iproute2                # network namespaces for peering tests
    openssl                 # s_client against the peering port
    prometheus              # promtool and a real scraper for the metrics tests
    alsa-utils              # amidi/aseqsend for MIDI tests (VM lane)
    avahi-utils             # avahi-browse sees vitrine's mDNS service
    avahi-daemon dbus       # a private avahi-daemon and bus in the peering test's namespace
    minisign                # signing fixtures and the deployment docs' workflow
    jq                      # scripts in tests/ and bench/
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: missing packages ${missing[*]}; run as root (sudo) to install them" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -q
    apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
fi

# python-osc (a real third-party OSC sender for the bundle tests) is only on PyPI. Debian's own
# python3 is "externally managed" (PEP 668), hence the fallback flag.
if ! python3 -c 'import pythonosc' 2>/dev/null; then
    python3 -m pip --version >/dev/null 2>&1 || apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends python3-pip
    python3 -m pip install -q python-osc 2>/dev/null ||
        python3 -m pip install -q --break-system-packages python-osc
fi
