#!/usr/bin/env bash
# The speed benchmark (vm-tests/tests/bench.rs): one VM boot, the real
# ipvsadm 1.31 against ipvsadm-rs on 1,000, 10,000 and 100,000 services of
# 4 real servers, and the live `--from-k8s` full sync of 10,000 Services of
# 4 endpoints against `ipvsadm-rs -R` (bench_k8s.rs). Prints the tables;
# `bench.sh smoke` runs 1,000 only.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
which="bench_full bench_k8s_full"
[[ ${1:-} == smoke ]] && which="bench_smoke bench_k8s_smoke"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
VM_TIMEOUT=${VM_TIMEOUT:-5400} VM_TEST_ARGS="--ignored --nocapture --exact $which" \
    "$here/run.sh" tests >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
# One table per benchmark binary, a blank line between them.
sed -n '/BENCH-TABLE-BEGIN/,/BENCH-TABLE-END/p' "$log" | sed -e 's/.*BENCH-TABLE-BEGIN$//' -e '/^BENCH-TABLE-END$/d' | sed '1{/^$/d}'
