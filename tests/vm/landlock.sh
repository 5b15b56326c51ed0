#!/usr/bin/env bash
# Inside the VM (Debian 6.1: Landlock ABI 2): a policy whose floor is above the kernel's ABI
# refuses to run with `landlock = "required"`, and runs with `best-effort` while saying what the
# kernel's Landlock cannot restrict. Needs VITRINE_BIN (tests/vm/lane sets it).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${VITRINE_BIN:?set VITRINE_BIN to the vitrine binary}"

abi=$(perl -e 'print syscall(444, 0, 0, 1)')
echo "kernel Landlock ABI: $abi"
if ((abi >= 3)); then
    echo "skipped: this kernel has Landlock ABI $abi, the check needs one below 3"
    exit 0
fi

work=$(new_box)
run() { # run MODE: vitrine run on a policy with landlock = MODE and landlock_min_abi = 3
    dash_policy "$work/policies/ll-$1.toml" "ll-$1" "echo the visualization ran" \
        "landlock = \"$1\"" "landlock_min_abi = 3"
    "$VITRINE_BIN" run "$work/policies/ll-$1.toml" --config "$work/vitrine.toml" \
        >"$work/$1.out" 2>"$work/$1.err"
    echo $? >"$work/$1.code"
    echo "vitrine run, landlock = \"$1\": exit $(cat "$work/$1.code")"
    sed 's/^/    /' "$work/$1.out" "$work/$1.err"
}

run required
check "required: refused (exit 1)" test "$(cat "$work/required.code")" = 1
check "required: the error names the kernel's ABI and the floor" \
    grep -q "Landlock ABI is $abi, below the policy's landlock_min_abi = 3" "$work/required.err"
check "required: the visualization never ran" test ! -s "$work/required.out"

run best-effort
check "best-effort: runs (exit 0)" test "$(cat "$work/best-effort.code")" = 0
check "best-effort: the visualization ran" grep -q "the visualization ran" "$work/best-effort.out"
check "best-effort: the start line reports Landlock ABI $abi" grep -q "landlock ABI $abi" "$work/best-effort.err"
check "best-effort: says what is missing" \
    grep -q "warning: Landlock ABI $abi cannot restrict truncating files (ABI 3), TCP bind and connect (ABI 4)" \
    "$work/best-effort.err"
exit "$fail"
