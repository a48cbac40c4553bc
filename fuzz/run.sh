#!/usr/bin/env bash
# Runs every fuzz target under AFL++ (cargo-afl, stable toolchain) for a
# bounded time and prints the executions of each; exits non-zero if any
# target crashed or hung. Installs cargo-afl (and with it AFL++) if missing.
#
#   fuzz/run.sh [seconds per target, default 20] [target...]
#
# Each target runs in a network namespace of its own (`unshare -n`, so a
# host name the fuzzer makes up is never looked up on the network); that
# needs root, as the VM tests do. Findings go to $FUZZ_OUT (default
# fuzz/out/, not checked in): a crash is out/<target>/default/crashes/id:*,
# to be replayed with `cargo test -p ipvs-tests --test fuzz_corpus` after
# copying it to fuzz/corpus/<target>/ and made a regression test. A target
# with a dictionary (fuzz/dict/<target>.dict, AFL++ format) gets it with -x.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

seconds=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(netlink_packet handle_reply argv restore conn_line k8s_json)
out=${FUZZ_OUT:-$PWD/out}

if ! cargo afl --version >/dev/null 2>&1; then
    echo "==> installing cargo-afl (builds AFL++)"
    cargo install cargo-afl --locked --quiet
fi
# cargo-afl builds AFL++ when it is installed; a later toolchain needs it
# built again.
cargo afl config --build >/dev/null 2>&1 || true

echo "==> building the targets with AFL++ instrumentation"
cargo afl build --release --locked --quiet

# afl-fuzz refuses to run when cores go to a helper program or the CPU
# governor is not `performance`; neither matters for a bounded smoke run.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export AFL_NO_UI=1 AFL_NO_AFFINITY=1
export AFL_FAST_CAL=1

failed=0
printf '\n%-16s %12s %10s %8s %8s %7s %6s\n' target executions execs/s corpus edges crashes hangs
for t in "${targets[@]}"; do
    rm -rf "${out:?}/$t"
    mkdir -p "$out/$t"
    # A target's dictionary of tokens, if it has one.
    dict=()
    [ ! -f "dict/$t.dict" ] || dict=(-x "dict/$t.dict")
    # -V: stop after that many seconds; -t: 2 s per input before a hang.
    if ! unshare -n cargo afl fuzz -i "corpus/$t" -o "$out/$t" -V "$seconds" -t 2000 \
        "${dict[@]}" -- "target/release/$t" >"$out/$t.log" 2>&1; then
        echo "afl-fuzz failed on $t:" >&2
        tail -20 "$out/$t.log" >&2
        failed=1
        continue
    fi
    stats="$out/$t/default/fuzzer_stats"
    get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
    printf '%-16s %12s %10s %8s %8s %7s %6s\n' "$t" "$(get execs_done)" \
        "$(get execs_per_sec)" "$(get corpus_count)" "$(get edges_found)" \
        "$(get saved_crashes)" "$(get saved_hangs)"
    if [ "$(get saved_crashes)" != 0 ] || [ "$(get saved_hangs)" != 0 ]; then
        failed=1
        ls "$out/$t/default/crashes" "$out/$t/default/hangs" >&2 || true
    fi
done
exit $failed
