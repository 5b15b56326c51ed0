#!/usr/bin/env bash
# Runs cgroup test binaries inside a delegated cgroup v2 subtree, the situation systemd's
# `Delegate=yes` creates for vitrine.service: the parent enabled the controllers for the
# service's cgroup, and the supervisor has to move itself into a leaf before it may enable them
# for its own children. Each binary gets a fresh "service" cgroup and is its only process.
#
# Usage (VM lane, which boots a cgroup v2 kernel):
#   cargo test -p vitrine-cgroup --no-run      # prints the test binaries
#   tests/vm/run crates/cgroup/tests/vm-delegated.sh BINARY...
set -euo pipefail

root=/sys/fs/cgroup
if [[ ! -e $root/cgroup.controllers ]]; then
    echo "skipped: $root is not cgroup v2"
    exit 0
fi
for c in memory cpu cpuset pids; do
    echo "+$c" >"$root/cgroup.subtree_control"
done

status=0
i=0
for binary in "$@"; do
    i=$((i + 1))
    service=$root/vitrine-delegated-$i.service
    mkdir "$service"
    echo "== $binary in $service"
    # The subshell moves itself into the service cgroup, then becomes the test binary.
    (echo "$BASHPID" >"$service/cgroup.procs" && exec "$binary" --test-threads=2) || status=1
    echo "cgroups left in $service:"
    find "$service" -mindepth 1 -type d | sed 's/^/  /'
    # Only the supervisor leaf (and empty base directories) may remain.
    find "$service" -depth -mindepth 1 -type d -exec rmdir {} + || status=1
    rmdir "$service" || status=1
done
exit "$status"
