#!/usr/bin/env bash
# Checks that the VM lane gives what it promises. Run it as: tests/vm/run tests/vm/smoke.sh
# Prints what it found and exits non-zero on the first promise that does not hold.
set -uo pipefail

fail=0
check() {
    local what=$1
    shift
    if "$@"; then
        echo "ok:   $what"
    else
        echo "FAIL: $what"
        fail=1
    fi
}

echo "guest uptime at start: $(cut -d' ' -f1 /proc/uptime) s"
echo "kernel: $(uname -r)"

# landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) returns the ABI version
# (syscall 444 on x86_64); perl is in every Debian base system, unlike a particular python.
abi=$(perl -e 'my $v = syscall(444, 0, 0, 1); print $v')
echo "landlock abi: $abi"
check "Landlock is enabled (ABI >= 1)" test "$abi" -ge 1

echo "lsm: $(cat /sys/kernel/security/lsm)"
controllers=$(cat /sys/fs/cgroup/cgroup.controllers)
echo "cgroup.controllers: $controllers"
echo "cgroup.subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
check "cgroup2 is mounted at /sys/fs/cgroup" grep -q "^cgroup2 /sys/fs/cgroup cgroup2" /proc/mounts
for c in cpu cpuset memory pids io; do
    check "cgroup v2 controller $c" grep -qw "$c" <<<"$controllers"
done

echo "aconnect -l:"
aconnect -l | sed 's/^/    /'
check "snd-virmidi sequencer port present" bash -c 'aconnect -l | grep -q "VirMIDI"'
check "snd-seq-dummy port present" bash -c 'aconnect -l | grep -q "Midi Through"'
check "virmidi raw MIDI device present" bash -c 'amidi -l | grep -q "Virtual Raw MIDI"'

exit "$fail"
