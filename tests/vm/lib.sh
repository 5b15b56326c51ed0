# Helpers shared by the VM lane's scripts (sourced, not run). They expect VITRINE_BIN.
# shellcheck shell=bash

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
fail=0

ok() { echo "ok:   $*"; }
bad() {
    echo "FAIL: $*"
    fail=1
}
# check WHAT CMD...: runs CMD, reports WHAT as ok or FAIL.
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}

# wait_for WHAT SECONDS CMD...: runs CMD until it succeeds, for at most SECONDS of wall-clock
# time. An emulated guest is slow, so the limits are generous; they only bound a hang, they
# measure nothing.
wait_for() {
    local what=$1 limit=$2
    local deadline=$((SECONDS + limit))
    shift 2
    while ((SECONDS < deadline)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    bad "timed out after ${limit}s waiting until $what"
    return 1
}

# A daemon configuration and policy directory in a fresh directory; prints the directory.
# The repository's presets and seccomp profiles are found next to the policy directory.
new_box() {
    local work
    work=$(mktemp -d /tmp/vitrine-vm.XXXXXX)
    mkdir -p "$work/policies" "$work/state"
    ln -s "$repo/policies/presets" "$work/presets"
    ln -s "$repo/policies/seccomp" "$work/seccomp"
    cat >"$work/vitrine.toml" <<TOML
policies = "$work/policies"
state_dir = "$work/state"
[osc]
listen = []
[control]
socket = "$work/control.sock"
[metrics]
listen = "127.0.0.1:10049"
[audit]
path = "$work/audit.jsonl"
TOML
    echo "$work"
}

# ctl WORK ARGS...: a client verb against the box's daemon.
ctl() {
    local work=$1
    shift
    "$VITRINE_BIN" "$@" --socket "$work/control.sock"
}

# A JSON field of `vitrine status NAME --json` (a jq filter on the one visualization).
status_field() {
    ctl "$1" status "$2" --json | jq -r ".[0] | $3"
}

# The value of one Prometheus sample, by its full line prefix (name and labels); empty if absent.
metric() {
    /usr/bin/python3 - "$1" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:10049/metrics", timeout=10).read().decode()
for line in text.splitlines():
    if line.startswith(sys.argv[1] + " "):
        print(line.rsplit(" ", 1)[1])
PY
}

# dash_policy FILE NAME SCRIPT [TOML...]: a policy running `dash -c SCRIPT` (no single quotes in
# it) as nobody, pinned by the sha256 of this machine's dash; extra TOML lines are appended, so
# bare keys land in [sandbox] and other tables (not in the base) may follow whole.
dash_policy() {
    local file=$1 name=$2 script=$3
    shift 3
    {
        cat <<TOML
[visualization]
name = "$name"
command = "/usr/bin/dash"
args = ["-c", '$script']
env = { PATH = "/usr/bin" }

[verify]
sha256 = "$(sha256sum /usr/bin/dash | cut -d' ' -f1)"

[filesystem]
presets = ["system-libs"]
exec = ["/usr/bin"]

[sandbox]
user = "nobody"
TOML
        printf '%s\n' "$@"
    } >"$file"
}
