#!/usr/bin/env bash
# Captures the netlink bytes of every base-protocol exchange with the VM's
# real kernel (vm-tests/tests/capture.rs) and stores them as
# ipvs-netlink/tests/fixtures/<name>.hex: one datagram per line, "> " for
# what we sent, "< " for what the kernel answered.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/../ipvs-netlink/tests/fixtures"
mkdir -p "$out"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
VM_TEST_ARGS="--ignored --nocapture capture_fixtures" "$here/run.sh" tests | tee "$log" >/dev/null
grep -q 'FIXTURE ' "$log" || { echo "no fixtures in the VM's output" >&2; exit 1; }
rm -f "$out"/*.hex
grep -o 'FIXTURE .*' "$log" | tr -d '\r' | while read -r _ name dir hex; do
    case $dir in sent) mark='>' ;; received) mark='<' ;; *) continue ;; esac
    echo "$mark $hex" >>"$out/$name.hex"
done
ls "$out"
