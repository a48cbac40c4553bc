# Shared paths and helpers for the VM test harness. Sourced, never run.
# shellcheck shell=bash disable=SC2034 # the variables are used by the other scripts

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORKSPACE_DIR=$(cd "$VM_DIR/.." && pwd)
# VM_CACHE_DIR shares one download cache between checkouts; VM_RUN_DIR
# keeps concurrent runs apart.
CACHE_DIR="${VM_CACHE_DIR:-$VM_DIR/.cache}"
DEB_DIR="$CACHE_DIR/debs"        # downloaded .deb files
KERNEL_ROOT="$CACHE_DIR/kernel"  # extracted kernel package (one subdir per package)
USERLAND_ROOT="$CACHE_DIR/userland" # extracted ipvsadm and its libraries
RUN_DIR="${VM_RUN_DIR:-$CACHE_DIR/run}" # per-run artefacts: initramfs, console/results logs
MUSL_TARGET=x86_64-unknown-linux-musl

log() { printf '[vm-tests] %s\n' "$*" >&2; }
die() { printf '[vm-tests] error: %s\n' "$*" >&2; exit 1; }

# The harness installs packages, downloads with apt and creates device nodes.
require_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages with apt-get)"
}

# Run `apt-get update` at most once per harness run, and only when needed.
APT_UPDATED=0
apt_update_once() {
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        apt-get update -qq || die "apt-get update failed"
        APT_UPDATED=1
    fi
}

# True when the package lists are empty (fresh machine or image).
apt_lists_empty() {
    ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null
}
