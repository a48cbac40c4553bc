#!/usr/bin/env bash
# Runs every test of the project: formatting, clippy with warnings denied,
# the unit and cross-crate tests, then the tests on a real kernel in a VM
# (vm-tests/run.sh, which installs what it needs on a fresh Debian 12), the
# release artefacts (scripts/package.sh: built, installed, run in the VM).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

step() { printf '\n==> %s\n' "$*"; }

for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" ||
        rustup component add "$component"
done

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --locked
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
step "the declared MSRV: the library crates built and their unit tests run with Rust $msrv"
# rust-version of the workspace, held for the crates a user depends on
# (ipvs-netlink with every feature, ipvs-plan, ipvsadm-compat); the
# binaries are built with the current toolchain. docs/dependencies.md has
# the cost (the toolchain: about 70 s and 550 MB, once).
rustup run "$msrv" rustc --version >/dev/null 2>&1 ||
    rustup toolchain install "$msrv" --profile minimal
cargo "+$msrv" test --locked --lib -p ipvs-netlink -p ipvs-plan -p ipvsadm-compat --all-features
step "host tools of the host tests (nft, ip: conntrack entries made in a network namespace)"
missing=()
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if [[ ${#missing[@]} -gt 0 && $(id -u) -eq 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
step "unit, property, fixture and fake-kernel tests"
# As root, as here, the fuzz-corpus replays that need a network namespace
# run on a thread that makes one, and fail rather than skip without it.
cargo test --locked
step "ipvsadm-rs with every feature (--from-k8s, --metrics, --top): its tests"
# The default build is the drop-in alone; the features' own tests need them on.
cargo test --locked -p ipvsadm-rs --features k8s
step "fuzz smoke: every target ${FUZZ_SECONDS:-20} s under AFL++ (fuzz/run.sh)"
fuzz/run.sh "${FUZZ_SECONDS:-20}"
step "tests on a real kernel: 6.1 and 6.12, one VM each at once (VM)"
VM_KERNEL="${VM_KERNEL:-all}" vm-tests/run.sh tests
step "release artefacts: static binary, .deb (dpkg in a chroot), image root file system, both in the VM, publish dry runs"
scripts/package.sh
step "benchmark at smoke size (1,000 services; vm-tests/bench.sh for the full one)"
vm-tests/bench.sh smoke
