#!/bin/sh
# Check a built vitrine .deb: the files it installs, its control data and maintainer scripts.
#
#   deploy/test-deb.sh [PATH.deb]   # default: the newest target/debian/vitrine_*.deb
#
# Exit 0 when every check passes; prints each missing or wrong item and exits 1 otherwise.
set -eu
cd "$(dirname "$0")/.."

deb="${1:-}"
if [ -z "$deb" ]; then
    deb=$(ls -t "${CARGO_TARGET_DIR:-target}"/debian/vitrine_*.deb 2>/dev/null | head -n1 || true)
fi
[ -n "$deb" ] && [ -f "$deb" ] || { echo "test-deb: no .deb found (run deploy/build-deb.sh)"; exit 1; }

fail=0
contents=$(dpkg-deb -c "$deb")
expect_file() {
    if ! printf '%s\n' "$contents" | grep -Eq "[[:space:]]\./$1\$"; then
        echo "missing: /$1"
        fail=1
    fi
}
expect_mode() {
    if ! printf '%s\n' "$contents" | grep -E "[[:space:]]\./$2\$" | grep -q "^$1 "; then
        echo "wrong mode (want $1): /$2"
        fail=1
    fi
}

expect_mode -rwxr-xr-x usr/bin/vitrine
expect_mode -rwxr-xr-x usr/bin/vitrine-shim
expect_file usr/lib/systemd/system/vitrine.service
expect_file usr/lib/sysusers.d/vitrine.conf
expect_file usr/lib/tmpfiles.d/vitrine.conf
expect_mode -rw-r--r-- etc/vitrine/vitrine.toml
expect_file etc/vitrine/policies/README
expect_file usr/share/vitrine/presets/system-libs.toml
expect_file usr/share/vitrine/seccomp/default.json
expect_file usr/share/vitrine/grafana/vitrine.json
expect_file usr/share/doc/vitrine/threat-model.md
expect_file usr/share/doc/vitrine/deployment.md
expect_file usr/share/doc/vitrine/ports.md
expect_file usr/share/doc/vitrine/examples/nftables.conf
expect_file usr/share/doc/vitrine/examples/prometheus.yml
expect_file usr/share/doc/vitrine/copyright
# Every shipped preset, profile and example made it in.
for f in policies/presets/*.toml policies/seccomp/*.json; do
    expect_file "usr/share/vitrine/${f#policies/}"
done
for f in policies/examples/*.toml; do
    expect_file "usr/share/doc/vitrine/examples/${f#policies/examples/}"
done

control=$(mktemp -d)
trap 'rm -rf "$control"' EXIT
dpkg-deb -e "$deb" "$control"
grep -q '^Package: vitrine$' "$control/control" || { echo "control: Package is not vitrine"; fail=1; }
grep -q '^Depends:.*systemd' "$control/control" || { echo "control: no dependency on systemd"; fail=1; }
grep -qx '/etc/vitrine/vitrine.toml' "$control/conffiles" || { echo "conffiles: vitrine.toml missing"; fail=1; }
grep -q 'systemd-sysusers.*vitrine.conf' "$control/postinst" || { echo "postinst: no sysusers"; fail=1; }
grep -q 'systemd-tmpfiles --create vitrine.conf' "$control/postinst" || { echo "postinst: no tmpfiles"; fail=1; }
grep -q 'deb-systemd-helper' "$control/postinst" || { echo "postinst: the unit is not enabled"; fail=1; }

# The unit as installed passes systemd's own checks.
if command -v systemd-analyze >/dev/null 2>&1; then
    tree=$(mktemp -d)
    dpkg-deb -x "$deb" "$tree"
    sed "s|/usr/bin/vitrine|$tree/usr/bin/vitrine|" "$tree/usr/lib/systemd/system/vitrine.service" >"$control/vitrine.service"
    if ! systemd-analyze verify "$control/vitrine.service"; then
        echo "systemd-analyze verify failed"
        fail=1
    fi
    "$tree/usr/bin/vitrine" --version >/dev/null || { echo "the packaged vitrine does not run"; fail=1; }
    rm -rf "$tree"
fi

if [ "$fail" -ne 0 ]; then
    echo "test-deb: $deb FAILED"
    exit 1
fi
echo "test-deb: $deb ok ($(printf '%s\n' "$contents" | wc -l) entries)"
