#!/usr/bin/env bash
# Captures the netlink bytes of every base-protocol exchange with the VM's
# real kernel (vm-tests/tests/capture.rs) and stores them as
# ipvs-netlink/tests/fixtures/<name>.hex: one datagram per line, "> " for
# what was sent, "< " for what the kernel answered. Names under ipvsadm/
# hold what the real ipvsadm 1.31 sent and received (an nlmon tap), the
# others what our handle did (its tracer).
#
# Usage: vm-tests/capture-fixtures.sh [TEST_FILTER]
#   TEST_FILTER defaults to "capture_" (every capture test); e.g.
#   capture_ipvsadm_requests recaptures only ipvsadm's side. Only the
#   fixtures the run printed are replaced.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/../ipvs-netlink/tests/fixtures"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
VM_TEST_ARGS="--ignored --nocapture ${1:-capture_}" "$here/run.sh" tests | tee "$log" >/dev/null
grep -q 'FIXTURE ' "$log" || { echo "no fixtures in the VM's output" >&2; exit 1; }
grep -o 'FIXTURE .*' "$log" | tr -d '\r' | cut -d' ' -f2 | sort -u | while read -r name; do
    mkdir -p "$(dirname "$out/$name")"
    rm -f "$out/$name.hex"
done
grep -o 'FIXTURE .*' "$log" | tr -d '\r' | while read -r _ name dir hex; do
    case $dir in sent) mark='>' ;; received) mark='<' ;; *) continue ;; esac
    echo "$mark $hex" >>"$out/$name.hex"
done
ls -R "$out"
