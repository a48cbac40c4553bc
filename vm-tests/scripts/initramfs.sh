# Initramfs assembly. The VM's initramfs is two concatenated gzip'd cpio
# (newc) archives, which the kernel unpacks in order into one rootfs:
#   base.cpio.gz - busybox, kernel modules, Debian's ipvsadm, nft, tmux and
#                  their libraries, /etc files; cached, rebuilt only when
#                  its inputs change;
#   run.cpio.gz  - /init, our binaries, the mode and its arguments; every run.
# Sourced by run.sh after common.sh and host-setup.sh.
# shellcheck shell=bash

# Loaded by /init at boot, in this order. nlmon: the netlink tap through
# which vm-tests/tests/capture.rs records what the real ipvsadm sends. From
# nfnetlink on: nftables with the NAT, reject, ct and fib expressions of the
# packet path of `--from-k8s`, conntrack over netlink, and the bridge of the
# cluster lab (vm-tests/src/cluster.rs). Loaded at boot, so that no test
# depends on the kernel loading an nft expression on demand.
BOOT_MODULES=(
    crc32c_generic libcrc32c nf_defrag_ipv4 nf_defrag_ipv6 nf_conntrack ip_vs
    ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_lblc ip_vs_lblcr ip_vs_dh
    ip_vs_sh ip_vs_sed ip_vs_nq ip_vs_fo ip_vs_ovf ip_vs_mh
    veth dummy nlmon
    nfnetlink nf_tables nf_nat nft_chain_nat nft_nat nft_masq nft_redir
    nf_reject_ipv4 nf_reject_ipv6 nft_reject nft_reject_ipv4 nft_reject_ipv6
    nft_reject_inet nft_ct nft_fib nft_fib_ipv4 nft_fib_ipv6 nft_fib_inet
    nft_limit nft_log nft_numgen nf_conntrack_netlink bridge
)
# Shipped but not loaded: the kernel loads these on demand through
# /proc/sys/kernel/modprobe (busybox modprobe reading modules.dep).
AUTOLOAD_MODULES=(nf_conntrack_sip ip_vs_pe_sip ip_vs_ftp)

# Append to the global MODULE_FILES the modules.dep paths of module $1 and of
# its dependencies; return 1 when the module is built in (nothing to ship).
# Kernels from 6.12 on ship their modules compressed (.ko.xz); they are
# unpacked when staged, since busybox's insmod reads plain .ko files.
collect_module() {
    local name=$1 line
    if grep -q "/$name\.ko\$" "$MODULES_DIR/modules.builtin"; then
        return 1
    fi
    line=$(grep -m1 -E "/$name\.ko(\.xz|\.zst|\.gz)?:" "$MODULES_DIR/modules.dep") \
        || die "kernel module $name is neither built in nor in $KERNEL_PKG"
    line=${line/:/}
    # shellcheck disable=SC2206 # modules.dep paths contain no spaces
    MODULE_FILES+=($line)
}

# Copy the dynamically linked program $3 (a path inside the root $2) to
# $4 in the staging dir $1, with every shared object it loads as ldd
# resolves it: first from the root's library folders (the extracted Debian
# packages), then from the host (libc, the dynamic loader and what every
# Debian 12 system has; the host is Debian 12 as well). A library keeps its
# path inside the root. With an empty root $2, $3 is the host's program.
stage_program() {
    local stage=$1 root=$2 bin=$3 dest=$4 lib into
    local libpath=$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu
    [[ -x $root$bin ]] || die "no program $root$bin"
    install -D -m 0755 "$(readlink -f "$root$bin")" "$stage$dest"
    while read -r lib; do
        into=${lib#"$root"}
        [[ -e $stage$into ]] || install -D -m 0755 "$(readlink -f "$lib")" "$stage$into"
    done < <(LD_LIBRARY_PATH=$libpath ldd "$root$bin" \
        | sed -n -e 's/^.*=> \(\/[^ ]*\) (0x.*$/\1/p' -e 's/^[[:space:]]*\(\/[^ ]*\) (0x.*$/\1/p')
    [[ -e $stage/lib64/ld-linux-x86-64.so.2 ]] || die "ldd did not report the dynamic loader of $root$bin"
}

# Debian's ipvsadm, with its save and restore scripts (for the tests of our
# links of those names), into the staging dir $1.
stage_ipvsadm() {
    local stage=$1
    stage_program "$stage" "$IPVSADM_ROOT" /sbin/ipvsadm /sbin/ipvsadm
    install -m 0755 "$IPVSADM_ROOT/sbin/ipvsadm-save" "$IPVSADM_ROOT/sbin/ipvsadm-restore" "$stage/sbin/"
}

# Debian's nft 1.0.6 at /usr/sbin/nft, into the staging dir $1; the tests
# find it there ($NFT in the VM).
stage_nft() {
    local stage=$1
    stage_program "$stage" "$NFT_ROOT" /usr/sbin/nft /usr/sbin/nft
    LD_LIBRARY_PATH=$stage/usr/lib/x86_64-linux-gnu:$stage/lib/x86_64-linux-gnu \
        "$stage/usr/sbin/nft" --version >/dev/null 2>&1 || die "the staged nft does not run"
}

# Debian's tmux at /usr/bin/tmux, into the staging dir $1 (the test of
# `--top`'s screen, vm-tests/tests/top.rs), with the host's C.UTF-8 locale
# (libc-bin's, as Debian 12's libc): tmux refuses to start without a UTF-8
# locale, `-u` or not.
stage_tmux() {
    local stage=$1
    stage_program "$stage" "$TMUX_ROOT" /usr/bin/tmux /usr/bin/tmux
    [[ -d /usr/lib/locale/C.utf8 ]] || die "no /usr/lib/locale/C.utf8 on the host (libc-bin)"
    mkdir -p "$stage/usr/lib/locale"
    cp -r /usr/lib/locale/C.utf8 "$stage/usr/lib/locale/"
    LD_LIBRARY_PATH=$stage/usr/lib/x86_64-linux-gnu:$stage/lib/x86_64-linux-gnu \
        "$stage/usr/bin/tmux" -V >/dev/null 2>&1 || die "the staged tmux does not run"
}

# Build $CACHE_DIR/base-$KERNEL_PKG.cpio.gz (one per kernel) unless the
# cached one matches the current inputs. Sets BASE_INITRAMFS.
build_base_initramfs() {
    local base=$CACHE_DIR/base-$KERNEL_PKG.cpio.gz key
    BASE_INITRAMFS=$base
    key=$(
        {
            echo "$KERNEL_PKG"
            ls "$DEB_DIR"
            dpkg-query -W busybox-static netbase
            cat "${BASH_SOURCE[0]}"
        } | sha256sum | cut -d' ' -f1
    )
    if [[ -f $base && $(cat "$base.key" 2>/dev/null) == "$key" ]]; then
        return
    fi
    log "building base initramfs ($KVER)"

    # A full modules.dep of the extracted kernel, once, to resolve dependencies.
    if [[ ! -f $MODULES_DIR/modules.dep ]]; then
        busybox depmod -b "$KERNEL_DIR" "$KVER" || die "depmod of $KERNEL_PKG failed"
    fi

    local stage=$CACHE_DIR/base-stage-$KERNEL_PKG name file
    rm -rf "$stage"
    mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc/vmtest,proc,sys,dev,tmp,run,root,tests,extra}
    mknod -m 0600 "$stage/dev/console" c 5 1

    # Kernel modules: the wanted ones and their dependencies, with a
    # modules.dep regenerated for exactly this subset.
    MODULE_FILES=()
    : >"$stage/etc/vmtest/modules.load"
    for name in "${BOOT_MODULES[@]}"; do
        if collect_module "$name"; then
            echo "$name" >>"$stage/etc/vmtest/modules.load"
        else
            log "module $name is built into $KVER: not loaded"
        fi
    done
    for name in "${AUTOLOAD_MODULES[@]}"; do
        collect_module "$name" || log "module $name is built into $KVER: not shipped"
    done
    for file in $(printf '%s\n' "${MODULE_FILES[@]}" | sort -u); do
        case $file in
            *.ko.xz) mkdir -p "$(dirname "$stage/lib/modules/$KVER/$file")"
                xz -dc "$MODULES_DIR/$file" >"$stage/lib/modules/$KVER/${file%.xz}" ;;
            *.ko.zst) mkdir -p "$(dirname "$stage/lib/modules/$KVER/$file")"
                zstd -qdc "$MODULES_DIR/$file" >"$stage/lib/modules/$KVER/${file%.zst}" ;;
            *.ko.gz) mkdir -p "$(dirname "$stage/lib/modules/$KVER/$file")"
                gzip -dc "$MODULES_DIR/$file" >"$stage/lib/modules/$KVER/${file%.gz}" ;;
            *) install -D -m 0644 "$MODULES_DIR/$file" "$stage/lib/modules/$KVER/$file" ;;
        esac
    done
    cp "$MODULES_DIR/modules.builtin" "$MODULES_DIR/modules.order" "$stage/lib/modules/$KVER/"
    busybox depmod -b "$stage" "$KVER" || die "depmod of the module subset failed"

    # iproute2's ip (with `ip netns`, which busybox's applet lacks), from
    # the host, with the libraries it loads.
    stage_program "$stage" "" /usr/sbin/ip /sbin/ip

    # busybox, with a link per applet. Debian's busybox has no ipvsadm
    # applet, so /sbin/ipvsadm below is the real one.
    cp /bin/busybox "$stage/bin/busybox"
    for name in $(busybox --list-full); do
        [[ -e $stage/$name ]] || ln -s /bin/busybox "$stage/$name"
    done

    stage_ipvsadm "$stage"
    stage_nft "$stage"
    stage_tmux "$stage"

    cp /etc/services /etc/protocols "$stage/etc/"
    printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$stage/etc/hosts"
    printf 'passwd: files\ngroup: files\nhosts: files\nservices: files\nprotocols: files\n' \
        >"$stage/etc/nsswitch.conf"
    echo 'root:x:0:0:root:/root:/bin/sh' >"$stage/etc/passwd"
    echo 'root:x:0:' >"$stage/etc/group"

    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) \
        | gzip -1 >"$base.tmp"
    mv "$base.tmp" "$base"
    echo "$key" >"$base.key"
    rm -rf "$stage"
}

# Build $RUN_DIR/run.cpio.gz: /init, ipvsadm-rs, the test binaries
# (TEST_BINARIES, named NAME=PATH) in /tests, ipvs-netlink's examples
# (EXAMPLE_BINARIES) in /examples, the demo seed, the mode file and the extra
# files from VM_EXTRA. Arguments: the mode, then its arguments.
build_run_initramfs() {
    local mode=$1 stage=$RUN_DIR/run-stage entry file
    shift
    rm -rf "$stage"
    mkdir -p "$stage"/{bin,tests,extra,etc/vmtest}
    install -m 0755 "$VM_DIR/init/init" "$stage/init"
    install -m 0755 "$IPVSADM_RS_BIN" "$stage/bin/ipvsadm-rs"
    for entry in "${TEST_BINARIES[@]}"; do
        install -m 0755 "${entry#*=}" "$stage/tests/${entry%%=*}"
    done
    for entry in "${EXAMPLE_BINARIES[@]}"; do
        install -D -m 0755 "${entry#*=}" "$stage/examples/${entry%%=*}"
    done
    install -m 0755 "$VM_DIR/demo/seed.sh" "$stage/etc/vmtest/seed.sh"
    echo "$mode" >"$stage/etc/vmtest/mode"
    case $mode in
        tests) printf '%s\n' "--test-threads=1 ${VM_TEST_ARGS:-}" >"$stage/etc/vmtest/test-args" ;;
        sh) printf '%s\n' "$*" >"$stage/etc/vmtest/cmd" ;;
    esac
    if [[ -n ${VM_EXTRA:-} ]]; then
        local -a extras
        IFS=: read -r -a extras <<<"$VM_EXTRA"
        for file in "${extras[@]}"; do
            [[ -f $file ]] || die "VM_EXTRA: no such file: $file"
            cp -L "$file" "$stage/extra/"
        done
    fi
    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) \
        | gzip -1 >"$RUN_DIR/run.cpio.gz"
    rm -rf "$stage"
}
