#!/usr/bin/env bash
# Makes docs/top-view.svg, the docs' picture of `ipvsadm-rs --top`: runs the
# VM test `the_screenshot_is_the_screen` (vm-tests/tests/top.rs: the counted
# table under traffic, paused, captured by tmux with its attributes and drawn
# by vm_tests::screenshot, its text checked against tmux's plain capture) and
# keeps the image it prints.
#
# Usage: scripts/screenshot.sh [OUT]   (OUT defaults to docs/top-view.svg)
# Environment: VM_KERNEL (default 6.1), VM_RUN_DIR, as vm-tests/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/top-view.svg}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
VM_KERNEL=${VM_KERNEL:-6.1} VM_TEST_ARGS="--nocapture the_screenshot_is_the_screen" \
    vm-tests/run.sh tests >"$log" 2>&1 || { tail -40 "$log" >&2; exit 1; }
# The image, between the test's markers (a VM line prefix, if any, cut).
sed -n '/--- top-view.svg ---/,/--- end of top-view.svg ---/p' "$log" \
    | sed -e '1d' -e '$d' -e 's/^\[[^]]*\] //' -e 's/\r$//' >"$out.tmp"
grep -q '^<svg ' "$out.tmp" && grep -q '^</svg>' "$out.tmp" \
    || { echo "screenshot.sh: no image in the test's output" >&2; rm -f "$out.tmp"; exit 1; }
mv "$out.tmp" "$out"
echo "wrote $out"
