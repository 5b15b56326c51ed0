#!/usr/bin/env bash
# The main job of README.md: build vitrine, start the supervisor on the shipped example policy
# that runs liblo's `oscdump` (a real third-party OSC program) in the full sandbox, drive it
# with liblo's `oscsend` as a controller, and operate it from the CLI. Needs root (namespaces,
# cgroups). Everything lives in a temporary directory; Ctrl-C or the end of the demo stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

bash tests/setup.sh
cargo build --workspace --bins --locked
vitrine=$repo/target/debug/vitrine

work=$(mktemp -d /tmp/vitrine-demo.XXXXXX)
mkdir -p "$work/policies" "$work/state"
cp policies/examples/oscdump.toml "$work/policies/"
# Presets and seccomp profiles are found in <policy dir>/../presets and ../seccomp.
ln -s "$repo/policies/presets" "$work/presets"
ln -s "$repo/policies/seccomp" "$work/seccomp"
cat > "$work/vitrine.toml" <<TOML
policies = "$work/policies"
state_dir = "$work/state"
[osc]
listen = ["127.0.0.1:9000"]
[control]
socket = "$work/control.sock"
[metrics]
listen = "127.0.0.1:10049"
[audit]
path = "$work/audit.jsonl"
TOML

"$vitrine" serve --config "$work/vitrine.toml" &
serve=$!
cleanup() {
    kill -TERM "$serve" 2>/dev/null || true
    wait "$serve" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ctl() { "$vitrine" "$@" --socket "$work/control.sock"; }
for _ in $(seq 100); do
    ctl status oscdump 2>/dev/null | grep -q running && break
    sleep 0.2
done

echo "== vitrine status"
ctl status
echo
echo "== a controller sends OSC (the second value is clamped to the range, the third rejected)"
oscsend 127.0.0.1 9000 /oscdump/level f 0.25
oscsend 127.0.0.1 9000 /oscdump/level f 7.5
oscsend 127.0.0.1 9000 /oscdump/note i 300
oscsend 127.0.0.1 9000 /oscdump/text s "hello from a controller"
oscsend 127.0.0.1 9000 '/oscdump/{level,bang}' f 0.5
sleep 1
echo
echo "== vitrine logs oscdump (what the sandboxed oscdump printed)"
ctl logs oscdump
echo
echo "== metrics (excerpt)"
python3 - <<'PY'
import urllib.request
text = urllib.request.urlopen("http://127.0.0.1:10049/metrics", timeout=5).read().decode()
for line in text.splitlines():
    if line.startswith(("vitrine_visualization_up", "vitrine_osc_forwarded_total", "vitrine_osc_rejected_total", "vitrine_sandbox_layer_enforced")) and not line.endswith(" 0"):
        print(line)
PY
echo
echo "== vitrine restart oscdump, then status"
ctl restart oscdump
ctl status oscdump
echo
kill -TERM "$serve"; wait "$serve" || true
echo "== vitrine audit verify (after a clean shutdown)"
"$vitrine" audit verify "$work/audit.jsonl"
