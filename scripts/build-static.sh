#!/usr/bin/env bash
# Builds the static musl release binary of ipvsadm-rs and prints its path
# and size. Extra arguments go to cargo: without them it is the drop-in
# ipvsadm alone; `--features k8s` adds --from-k8s, as the release artefacts
# (scripts/package.sh) have it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=x86_64-unknown-linux-musl
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
cargo build --release --locked --target "$target" -p ipvsadm-rs "$@"
bin=target/$target/release/ipvsadm-rs
file "$bin" 2>/dev/null || true
printf '%s: %s bytes\n' "$bin" "$(stat -c %s "$bin")"
