# Static musl builds of ipvsadm-rs and of the vm-tests test binaries.
# Sourced by run.sh after common.sh.
# shellcheck shell=bash

# Builds what run.sh's $MODE runs, nothing more: the demo needs the drop-in
# ipvsadm-rs (default features), `sh` the full binary (--features k8s), the
# tests the full binary, the test binaries and the libraries' examples. Sets
# IPVSADM_RS_BIN, TEST_BINARIES (entries NAME=PATH: one per integration-test
# file of vm-tests/tests/ plus the library's unit tests; none but in tests
# mode) and EXAMPLE_BINARIES (NAME=PATH, tests mode only).
build_binaries() {
    local json exe name features=(--features k8s)
    [[ $MODE == demo ]] && features=()
    log "cargo build ipvsadm-rs ($MUSL_TARGET, release${features[*]:+, ${features[*]}})"
    (cd "$WORKSPACE_DIR" && cargo build --quiet --release --target "$MUSL_TARGET" -p ipvsadm-rs "${features[@]}") \
        || die "cargo build of ipvsadm-rs failed"
    IPVSADM_RS_BIN="$WORKSPACE_DIR/target/$MUSL_TARGET/release/ipvsadm-rs"
    [[ -x $IPVSADM_RS_BIN ]] || die "cargo built no $IPVSADM_RS_BIN"
    TEST_BINARIES=()
    EXAMPLE_BINARIES=()
    [[ $MODE == tests ]] || return 0

    # The libraries' examples, run by the VM tests (examples.rs) from /examples/.
    log "cargo build ipvs-netlink's and ipvs-plan's examples ($MUSL_TARGET, release, tokio, serde)"
    (cd "$WORKSPACE_DIR" && cargo build --quiet --release --target "$MUSL_TARGET" -p ipvs-netlink -p ipvs-plan \
        --features ipvs-netlink/tokio,ipvs-plan/serde --examples) \
        || die "cargo build of the libraries' examples failed"
    for exe in list watch_async declare; do
        EXAMPLE_BINARIES+=("$exe=$WORKSPACE_DIR/target/$MUSL_TARGET/release/examples/$exe")
    done

    log "cargo test --no-run vm-tests ($MUSL_TARGET, release)"
    # Diagnostics are rendered on stderr; stdout is one JSON message a line.
    # VM_TESTS_BUILD=1 sets cfg(test_vm) (vm-tests/build.rs): without it
    # every VM test is ignored, as on a plain host.
    json=$(cd "$WORKSPACE_DIR" && VM_TESTS_BUILD=1 cargo test --quiet --release --target "$MUSL_TARGET" \
        -p vm-tests --no-run --message-format=json-render-diagnostics) \
        || die "cargo test --no-run of vm-tests failed"
    # Test executables are the compiler artifacts built with the test profile.
    while read -r exe; do
        name=$(basename "$exe")
        name=${name%-*} # drop cargo's -<hash> suffix
        # The host's reason to ignore a VM test is compiled in only without
        # cfg(test_vm): its presence would mean skipped tests in the VM.
        if grep -q 'runs in the test VM: vm-tests/run.sh tests' "$exe"; then
            die "$exe ignores its VM tests: built without cfg(test_vm) (VM_TESTS_BUILD=1)"
        fi
        TEST_BINARIES+=("$name=$exe")
    done < <(grep '"reason":"compiler-artifact"' <<<"$json" | grep '"test":true' \
        | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
    [[ ${#TEST_BINARIES[@]} -gt 0 ]] || die "cargo test --no-run built no vm-tests test binary"
}

# The floor client of vm-tests/bench.sh: nlfloor.c, a raw generic netlink
# client of IPVS kept outside the repository (a measuring tool, not part of
# the project), built static so that it runs in the VM. $1 is its source,
# $2 the binary to write. Returns 1, with a warning and nothing built, when
# the source is absent or does not build: the benchmark then reports
# "floor: n/a" and still passes.
build_nlfloor() {
    local src=$1 bin=$2
    rm -f "$bin"
    if [[ ! -f $src ]]; then
        log "no floor client at $src (NLFLOOR_SRC): the rows say floor: n/a"
        return 1
    fi
    log "gcc -static nlfloor ($src)"
    mkdir -p "$(dirname "$bin")"
    if ! gcc -static -O2 -o "$bin" "$src"; then
        log "warning: $src did not build: the rows say floor: n/a"
        rm -f "$bin"
        return 1
    fi
}
