#!/usr/bin/env bash
# Run code against a real IPVS kernel: Debian 12's kernel booted under qemu
# with a small initramfs (busybox, IPVS modules, Debian's ipvsadm 1.31, our
# static musl binaries).
#
# Usage: vm-tests/run.sh [tests | demo | sh 'COMMAND LINE']
#   tests (default)  run every vm-tests test binary in the VM (libtest output,
#                    a PASS/FAIL line per binary and a summary)
#   demo             seed a table with vm-tests/demo/seed.sh, then compare
#                    `ipvsadm-rs -Ln` with the real `ipvsadm -Ln`
#   sh 'CMD...'      run a shell command line in the VM and print its output
#
# Environment:
#   VM_TEST_ARGS  extra libtest arguments (whitespace-separated) after
#                 --test-threads=1, e.g. a test name filter
#   VM_EXTRA      colon-separated host files copied into the VM's /extra/
#   VM_TIMEOUT    seconds before the whole VM run is killed (default 1500)
#   VM_KVM=1      use KVM instead of TCG emulation
#   VM_MEM        the VM's memory in MiB (default 2048)
#   VM_CACHE_DIR  the download and build cache (default vm-tests/.cache)
#   VM_RUN_DIR    this run's initramfs and logs (default $VM_CACHE_DIR/run);
#                 give concurrent runs different ones
#
# Inside the VM: IPVSADM=/sbin/ipvsadm (Debian's), IPVSADM_RS=/bin/ipvsadm-rs.
# Needs root and a Debian 12 host with apt and rustup; installs what is
# missing and caches downloads and builds under vm-tests/.cache/.
# Exits 0 only when the VM reported "VMTEST-EXIT 0" on its results port.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/scripts"
source "$SCRIPTS/common.sh"
source "$SCRIPTS/host-setup.sh"
source "$SCRIPTS/build.sh"
source "$SCRIPTS/initramfs.sh"

# The last console lines, without SeaBIOS's terminal escape sequences.
show_console_tail() {
    tail -n 40 "$CONSOLE_LOG" | sed -e 's/\x1bc//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' >&2
}

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
    exit 2
}

MODE=${1:-tests}
[[ $# -gt 0 ]] && shift
case $MODE in
    tests | demo) [[ $# -eq 0 ]] || usage ;;
    sh) [[ $# -gt 0 ]] || usage ;;
    *) usage ;;
esac
VM_TIMEOUT=${VM_TIMEOUT:-1500}
[[ $VM_TIMEOUT =~ ^[0-9]+$ ]] || die "VM_TIMEOUT must be a number of seconds, not '$VM_TIMEOUT'"
VM_MEM=${VM_MEM:-2048}
[[ $VM_MEM =~ ^[0-9]+$ ]] || die "VM_MEM must be a number of MiB, not '$VM_MEM'"

require_root
install_host_packages
fetch_kernel
fetch_ipvsadm
build_binaries
mkdir -p "$RUN_DIR"
build_base_initramfs
build_run_initramfs "$MODE" "$@"
cat "$CACHE_DIR/base.cpio.gz" "$RUN_DIR/run.cpio.gz" >"$RUN_DIR/initramfs.cpio.gz"

if [[ ${VM_KVM:-0} == 1 ]]; then
    ACCEL=(-accel kvm -cpu host)
else
    ACCEL=(-accel tcg -cpu max)
fi

CONSOLE_LOG=$RUN_DIR/console.log
RESULTS_LOG=$RUN_DIR/results.log
log "booting $KERNEL_PKG (${ACCEL[1]}, timeout ${VM_TIMEOUT}s); console: $CONSOLE_LOG"
# Serial port 0 is the kernel console (to a file); port 1 carries the results
# and is streamed to stdout. No network device: the VM talks to nothing.
started=$EPOCHREALTIME
set +e
timeout --foreground -k 10 "$VM_TIMEOUT" qemu-system-x86_64 \
    "${ACCEL[@]}" -m "$VM_MEM" -smp 1 -nographic -monitor none -no-reboot -nic none \
    -kernel "$VMLINUZ" -initrd "$RUN_DIR/initramfs.cpio.gz" \
    -append "console=ttyS0 quiet panic=-1" \
    -serial "file:$CONSOLE_LOG" -serial stdio </dev/null | tee "$RESULTS_LOG"
qemu_status=${PIPESTATUS[0]}
set -e
elapsed=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')

if [[ $qemu_status -eq 124 || $qemu_status -eq 137 ]]; then
    log "VM killed after the ${VM_TIMEOUT}s timeout; last console lines:"
    show_console_tail
    exit 1
fi
[[ $qemu_status -eq 0 ]] || die "qemu failed (exit $qemu_status); see $CONSOLE_LOG"

exit_line=$(grep -ao 'VMTEST-EXIT [0-9]*$' "$RESULTS_LOG" | tail -n1 || true)
if [[ -z $exit_line ]]; then
    log "the VM reported no final status (VMTEST-EXIT); last console lines:"
    show_console_tail
    exit 1
fi
code=${exit_line#VMTEST-EXIT }
log "VM ran ${elapsed}s (boot to poweroff); mode $MODE exited $code"
[[ $code == 0 ]]
