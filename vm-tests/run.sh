#!/usr/bin/env bash
# Run code against a real IPVS kernel: Debian 12's kernel booted under qemu
# with a small initramfs (busybox, IPVS and nftables modules, Debian's
# ipvsadm 1.31, nft 1.0.6 and tmux 3.3a, our static musl binaries).
#
# Usage: vm-tests/run.sh [tests | demo | sh 'COMMAND LINE']
#   tests (default)  run every vm-tests test binary in the VM (libtest output,
#                    a PASS/FAIL line per binary and a summary)
#   demo             seed a table with vm-tests/demo/seed.sh, then compare
#                    `ipvsadm-rs -Ln` with the real `ipvsadm -Ln`
#   sh 'CMD...'      run a shell command line in the VM and print its output
#
# Environment:
#   VM_KERNEL     the kernel(s) to boot: 6.1 (Debian 12's, the default),
#                 6.12 (the 6.12 LTS line of bookworm-security), a
#                 linux-image-* package name, or several of them
#                 blank-separated ("6.1 6.12", or "all"). Each is cached;
#                 with several, one VM per kernel runs at the same time
#                 (each on one vCPU), their output lines prefixed with
#                 [KERNEL], and the run passes only if every VM passes
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
# Inside the VM: IPVSADM=/sbin/ipvsadm (Debian's), IPVSADM_RS=/bin/ipvsadm-rs,
# NFT=/usr/sbin/nft (Debian's nftables 1.0.6).
# Needs root and a Debian 12 host with apt and rustup; installs what is
# missing and caches downloads and builds under vm-tests/.cache/.
# Exits 0 only when the VM reported "VMTEST-EXIT 0" on its results port.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/scripts"
source "$SCRIPTS/common.sh"
source "$SCRIPTS/host-setup.sh"
source "$SCRIPTS/build.sh"
source "$SCRIPTS/initramfs.sh"

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
mapfile -t KERNEL_CHOICES < <(kernel_choices)
fetch_ipvsadm
fetch_nftables
fetch_tmux
build_binaries
mkdir -p "$RUN_DIR"
build_run_initramfs "$MODE" "$@"

if [[ ${VM_KVM:-0} == 1 ]]; then
    ACCEL=(-accel kvm -cpu host)
else
    ACCEL=(-accel tcg -cpu max)
fi

# Boots the kernel fetched last (KERNEL_PKG, VMLINUZ) with its base
# initramfs and this run's, in $1 (its own folder of logs); streams the
# results to stdout, each line prefixed with $2; returns 0 only when the
# VM reported "VMTEST-EXIT 0".
boot_vm() {
    local dir=$1 prefix=$2 started qemu_status elapsed exit_line code
    local console_log=$dir/console.log results_log=$dir/results.log
    mkdir -p "$dir"
    cat "$BASE_INITRAMFS" "$RUN_DIR/run.cpio.gz" >"$dir/initramfs.cpio.gz"
    log "${prefix}booting $KERNEL_PKG (${ACCEL[1]}, timeout ${VM_TIMEOUT}s); console: $console_log"
    # Serial port 0 is the kernel console (to a file); port 1 carries the
    # results and is streamed to stdout. No network device: the VM talks
    # to nothing.
    started=$EPOCHREALTIME
    set +e
    timeout --foreground -k 10 "$VM_TIMEOUT" qemu-system-x86_64 \
        "${ACCEL[@]}" -m "$VM_MEM" -smp 1 -nographic -monitor none -no-reboot -nic none \
        -kernel "$VMLINUZ" -initrd "$dir/initramfs.cpio.gz" \
        -append "console=ttyS0 quiet panic=-1" \
        -serial "file:$console_log" -serial stdio </dev/null | tee "$results_log" \
        | if [[ -n $prefix ]]; then sed -u "s/^/$prefix/"; else cat; fi
    qemu_status=${PIPESTATUS[0]}
    set -e
    elapsed=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    # The last console lines, without SeaBIOS's terminal escape sequences.
    if [[ $qemu_status -eq 124 || $qemu_status -eq 137 ]]; then
        log "${prefix}VM killed after the ${VM_TIMEOUT}s timeout; last console lines:"
        tail -n 40 "$console_log" | sed -e 's/\x1bc//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' >&2
        return 1
    fi
    if [[ $qemu_status -ne 0 ]]; then
        log "${prefix}qemu failed (exit $qemu_status); see $console_log"
        return 1
    fi
    exit_line=$(grep -ao 'VMTEST-EXIT [0-9]*$' "$results_log" | tail -n1 || true)
    if [[ -z $exit_line ]]; then
        log "${prefix}the VM reported no final status (VMTEST-EXIT); last console lines:"
        tail -n 40 "$console_log" | sed -e 's/\x1bc//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' >&2
        return 1
    fi
    code=${exit_line#VMTEST-EXIT }
    log "${prefix}VM ($KVER) ran ${elapsed}s (boot to poweroff); mode $MODE exited $code"
    [[ $code == 0 ]]
}

if [[ ${#KERNEL_CHOICES[@]} -eq 1 ]]; then
    fetch_kernel "${KERNEL_CHOICES[0]}"
    build_base_initramfs
    boot_vm "$RUN_DIR" ""
    exit
fi
# Several kernels: one VM each, at the same time.
pids=()
names=()
for choice in "${KERNEL_CHOICES[@]}"; do
    fetch_kernel "$choice"
    build_base_initramfs
    boot_vm "$RUN_DIR/$KERNEL_PKG" "[$choice] " &
    pids+=($!)
    names+=("$choice ($KERNEL_PKG)")
done
failed=()
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed+=("${names[$i]}")
done
if [[ ${#failed[@]} -gt 0 ]]; then
    log "failed on: ${failed[*]}"
    exit 1
fi
log "passed on every kernel: ${names[*]}"
