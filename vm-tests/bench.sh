#!/usr/bin/env bash
# The speed benchmark (vm-tests/tests/bench.rs): one VM boot, the real
# ipvsadm 1.31 against ipvsadm-rs on 1,000, 10,000 and 100,000 services of
# 4 real servers, and the live `--from-k8s` full sync of 10,000 Services of
# 4 endpoints against `ipvsadm-rs -R` (bench_k8s.rs), the time from a watch
# event to the kernel over 200 events (bench_event.rs), the address step
# alone as addresses and as local routes (bench_addresses.rs), and (full only) the
# live mode under 30 minutes of churn over 1,000 Services with its memory
# and descriptors sampled (k8s_live.rs, bench_soak_full; CI runs a 60 s
# soak among the VM tests). Prints the tables. Every row also gives our
# time over the floor, the raw netlink client nlfloor.c run on the same
# table in the same VM (restore: its `c` mode, 200 requests a datagram;
# listings: its `d` mode, the dump floor), when its source is there.
#
# Usage: vm-tests/bench.sh [smoke] [--write[=FILE]]
#   smoke          1,000 services only (CI runs this)
#   --write        also write the tables, with the date, the commit and the
#                  machine they were measured on, to docs/speed-latest.md
#                  (or FILE); BENCH_WRITE=FILE does the same
# NLFLOOR_SRC is the floor client's source (default
# ../shared/reference/floor/nlfloor.c beside the repository); where it is
# absent or does not build, the rows say "floor: n/a" and the run passes.
# VM_KERNEL picks the kernel, one at a time (see vm-tests/run.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
workspace="$(cd "$here/.." && pwd)"
mode=full
out=${BENCH_WRITE:-}
for arg in "$@"; do
    case $arg in
        smoke) mode=smoke ;;
        --write) out=$workspace/docs/speed-latest.md ;;
        --write=*) out=${arg#--write=} ;;
        *) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    esac
done
# One VM, so one table per benchmark: one kernel at a time (VM_KERNEL).
if [[ ${VM_KERNEL:-} == all || ${VM_KERNEL:-} == *[[:space:]]* ]]; then
    echo "bench.sh: one kernel at a time (VM_KERNEL='$VM_KERNEL' names several)" >&2
    exit 2
fi
which="bench_full bench_k8s_full bench_event_full bench_addresses_full bench_soak_full"
[[ $mode == smoke ]] && which="bench_smoke bench_k8s_smoke bench_event_smoke bench_addresses_smoke"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# The floor client, built static and staged into the VM as /extra/nlfloor.
source "$here/scripts/common.sh"
source "$here/scripts/host-setup.sh"
source "$here/scripts/build.sh"
require_root
install_host_packages
nlfloor_src=${NLFLOOR_SRC:-$workspace/../shared/reference/floor/nlfloor.c}
if build_nlfloor "$nlfloor_src" "$RUN_DIR/nlfloor/nlfloor"; then
    export VM_EXTRA="${VM_EXTRA:+$VM_EXTRA:}$RUN_DIR/nlfloor/nlfloor"
fi

started=$(date -u '+%Y-%m-%d %H:%M')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
VM_TIMEOUT=${VM_TIMEOUT:-7800} VM_TEST_ARGS="--ignored --nocapture --exact $which" \
    "$here/run.sh" tests >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
ended=$(date -u '+%Y-%m-%d %H:%M')
[[ ${ended% *} == "${started% *}" ]] && ended=${ended#* }
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# One table per benchmark binary, a blank line between them.
tables() {
    sed -n '/BENCH-TABLE-BEGIN/,/BENCH-TABLE-END/p' "$log" \
        | sed -e 's/.*BENCH-TABLE-BEGIN$//' -e '/^BENCH-TABLE-END$/d' | sed '1{/^$/d}'
}
tables
[[ -n $out ]] || exit 0

# The table whose header starts with $1, without its markers.
table() {
    awk -v head="$1" '
        /BENCH-TABLE-BEGIN$/ { inside = 1; keep = 0; first = 1; next }
        /^BENCH-TABLE-END$/ { inside = 0; next }
        inside && first { first = 0; keep = index($0, head) == 1 }
        inside && keep { print }' "$log"
}

# What the run was measured on.
commit=$(git -C "$workspace" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(git -C "$workspace" status --porcelain --untracked-files=no 2>/dev/null) ]] \
    || commit="$commit plus uncommitted changes"
os=$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-unknown}")
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
booted=$(sed -n 's/^\[vm-tests\] booting \([^ ]*\) (\([a-z]*\),.*/\1 under qemu \U\2/p' "$log" | tail -n1)
ran=$(sed -n 's/^\[vm-tests\] VM \(([^)]*) \)\{0,1\}ran \([0-9.]*s\) .*/\2/p' "$log" | tail -n1)

mkdir -p "$(dirname "$out")"
{
    echo "# Speed: the latest run"
    echo
    echo "<!-- Written by \`vm-tests/bench.sh --write\`; do not edit by hand. The method and the"
    echo "analysis are in [speed.md](speed.md). -->"
    echo
    echo "- Run: \`vm-tests/bench.sh\` ($mode), $started to $ended UTC; the VM ran ${ran:-?}."
    echo "- Commit: $commit."
    echo "- Host: $os, Linux $(uname -r), $(nproc) cores ($cpu), $mem of memory."
    echo "- Load average (1, 5, 15 min): $load_before before the run, $load_after after it."
    echo "- VM: ${booted:-unknown}, 1 vCPU, ${VM_MEM:-2048} MiB."
    echo
    echo "## Listings, restore and flush (\`vm-tests/tests/bench.rs\`)"
    echo
    table '| services |'
    echo
    echo "## Live sync from the fake API server (\`vm-tests/tests/bench_k8s.rs\`)"
    echo
    table '| Services (x4 endpoints) |'
    echo
    echo "## Event to kernel (\`vm-tests/tests/bench_event.rs\`)"
    echo
    table '| event to kernel,'
    echo
    echo "## The address step (\`vm-tests/tests/bench_addresses.rs\`)"
    echo
    table '| addresses bound |'
    if [[ $mode == full ]]; then
        echo
        echo "## Live mode under churn, 30 minutes (\`vm-tests/tests/k8s_live.rs\`, bench_soak_full)"
        echo
        table '| live soak |'
    fi
} >"$out"
echo "wrote $out" >&2
