# Host preparation: packages, Rust target, and the Debian packages that go
# into the VM (kernel, ipvsadm). Sourced by run.sh after common.sh.
# shellcheck shell=bash

# gcc, libc6-dev and linux-libc-dev build the static floor client of
# vm-tests/bench.sh (build_nlfloor in build.sh: glibc's static libc and the
# kernel's uapi headers, which musl-gcc does not see).
HOST_PACKAGES=(qemu-system-x86 busybox-static cpio netbase musl-tools iproute2 xz-utils
    gcc libc6-dev linux-libc-dev)

# Install the host tools that are missing; a no-op when all are present.
install_host_packages() {
    local missing=() pkg
    for pkg in "${HOST_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "installing ${missing[*]}"
        apt_update_once
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
    fi
    if ! rustup target list --installed | grep -qx "$MUSL_TARGET"; then
        log "rustup target add $MUSL_TARGET"
        rustup target add "$MUSL_TARGET" >/dev/null 2>&1 || die "rustup target add $MUSL_TARGET failed"
    fi
}

# Download the named packages into $DEB_DIR unless already there; sets
# DEB_FILES to their paths, in argument order. apt-get runs as root without
# its sandbox user, who may not be able to write into the work tree.
download_debs() {
    local pkg file
    DEB_FILES=()
    mkdir -p "$DEB_DIR"
    for pkg in "$@"; do
        file=$(compgen -G "$DEB_DIR/${pkg}_*.deb" | head -n1 || true)
        if [[ -z $file ]]; then
            log "apt-get download $pkg"
            if ! (cd "$DEB_DIR" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >/dev/null 2>&1); then
                # Stale or missing package lists: refresh once and retry.
                apt_update_once
                (cd "$DEB_DIR" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >/dev/null) \
                    || die "apt-get download $pkg failed"
            fi
            file=$(compgen -G "$DEB_DIR/${pkg}_*.deb" | head -n1) || die "downloaded $pkg but found no .deb"
        fi
        DEB_FILES+=("$file")
    done
}

# Download the packages $3... and extract them all into $2, once: the
# marker $1/.extracted says it was done (the folder $1 is made anew).
extract_once() {
    local top=$1 into=$2 deb
    shift 2
    [[ -f $top/.extracted ]] && return
    download_debs "$@"
    log "extracting $*"
    rm -rf "$top"
    mkdir -p "$into"
    for deb in "${DEB_FILES[@]}"; do
        dpkg-deb -x "$deb" "$into"
    done
    touch "$top/.extracted"
}

# The kernels the harness knows by their line: Debian 12's own (6.1) and
# the 6.12 LTS line that bookworm-security carries. Any other choice is a
# package name (a metapackage such as linux-image-6.12-amd64, or a
# versioned one such as linux-image-6.1.0-57-amd64).
kernel_metapackage() {
    case $1 in
        6.1) echo linux-image-amd64 ;;
        6.12) echo linux-image-6.12-amd64 ;;
        linux-image-*) echo "$1" ;;
        *) die "VM_KERNEL: '$1' is not 6.1, 6.12 or a linux-image-* package name" ;;
    esac
}

# The kernels VM_KERNEL asks for, one per line: a blank-separated list of
# choices, or "all" for every line the harness knows (default: 6.1).
kernel_choices() {
    local choice
    for choice in ${VM_KERNEL:-6.1}; do
        if [[ $choice == all ]]; then
            printf '%s\n' 6.1 6.12
        else
            printf '%s\n' "$choice"
        fi
    done | awk '!seen[$0]++'
}

# Resolve the versioned kernel package behind the choice $1 (see
# kernel_metapackage), download and extract it (never installed on the
# host). Sets KERNEL_PKG, KERNEL_DIR, KVER, VMLINUZ and MODULES_DIR.
fetch_kernel() {
    local meta
    meta=$(kernel_metapackage "$1")
    apt_lists_empty && apt_update_once
    KERNEL_PKG=$(apt-cache depends "$meta" 2>/dev/null \
        | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)
    if [[ -z $KERNEL_PKG && $meta =~ ^linux-image-[0-9].*-amd64$ ]]; then
        KERNEL_PKG=$meta # already a versioned package
    fi
    [[ -n $KERNEL_PKG ]] || die "cannot resolve the kernel package behind $meta (apt-cache depends $meta)"
    KERNEL_DIR="$KERNEL_ROOT/$KERNEL_PKG"
    extract_once "$KERNEL_DIR" "$KERNEL_DIR" "$KERNEL_PKG"
    KVER=${KERNEL_PKG#linux-image-}
    VMLINUZ="$KERNEL_DIR/boot/vmlinuz-$KVER"
    MODULES_DIR="$KERNEL_DIR/lib/modules/$KVER"
    [[ -f $VMLINUZ ]] || die "no $VMLINUZ in $KERNEL_PKG"
    [[ -d $MODULES_DIR ]] || die "no $MODULES_DIR in $KERNEL_PKG"
}

# Download and extract Debian's ipvsadm and the shared libraries it needs
# beyond libc (the host's libc is Debian 12's too and is copied from the
# host by the initramfs builder). Sets IPVSADM_ROOT.
IPVSADM_PACKAGES=(ipvsadm libpopt0 libnl-3-200 libnl-genl-3-200)
fetch_ipvsadm() {
    IPVSADM_ROOT="$USERLAND_ROOT/root"
    extract_once "$USERLAND_ROOT" "$IPVSADM_ROOT" "${IPVSADM_PACKAGES[@]}"
    [[ -x $IPVSADM_ROOT/sbin/ipvsadm ]] || die "no sbin/ipvsadm in the ipvsadm package"
}

# Download and extract Debian's nft (package nftables) and the shared
# libraries it loads beyond libc and what every Debian 12 system has (the
# rest, libbsd, libtinfo and the like, the initramfs builder takes from the
# host as it takes libc). Sets NFT_ROOT.
NFT_PACKAGES=(nftables libnftables1 libnftnl11 libmnl0 libjansson4 libgmp10 libxtables12 libedit2)
fetch_nftables() {
    NFT_ROOT="$CACHE_DIR/userland-nft/root"
    extract_once "$CACHE_DIR/userland-nft" "$NFT_ROOT" "${NFT_PACKAGES[@]}"
    [[ -x $NFT_ROOT/usr/sbin/nft ]] || die "no usr/sbin/nft in the nftables package"
}

# Download and extract Debian's tmux and the libraries it loads beyond libc
# and what every Debian 12 system has: the test of `--top`'s screen drives
# it through tmux (send-keys, capture-pane). Sets TMUX_ROOT.
TMUX_PACKAGES=(tmux libevent-core-2.1-7 libutempter0)
fetch_tmux() {
    TMUX_ROOT="$CACHE_DIR/userland-tmux/root"
    extract_once "$CACHE_DIR/userland-tmux" "$TMUX_ROOT" "${TMUX_PACKAGES[@]}"
    [[ -x $TMUX_ROOT/usr/bin/tmux ]] || die "no usr/bin/tmux in the tmux package"
}
