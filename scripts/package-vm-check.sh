# The release artefacts against IPVS in the test VM: scripts/package.sh runs
# it with `vm-tests/run.sh sh` (busybox sh, in /tmp), with in /extra/:
#   installed.tar            what dpkg installed from the Debian package
#   ipvsadm-rs-*-rootfs.tar  the DaemonSet image's root file system
#   sync-1.json              a kubectl dump for --from-k8s
# Debian's ipvsadm (/sbin/ipvsadm and its scripts) is the truth, and the
# image's own nft reads the packet path back. Prints
# "PACKAGE-CHECK OK" and exits 0 when every check holds.
set -eu
fail() {
    echo "PACKAGE-CHECK FAIL: $*"
    exit 1
}
# Runs "$@", its stdout and stderr to file $1 followed by its exit status.
run_to() {
    out=$1
    shift
    status=0
    "$@" >"$out" 2>&1 || status=$?
    echo "(exit $status)" >>"$out"
}
same() {
    diff -u "$1" "$2" || fail "$3"
    cat "$2"
}

echo "== the Debian package's files, through the alternatives' links"
tar -x -C / -f /extra/installed.tar
for name in ipvsadm ipvsadm-save ipvsadm-restore; do
    [ "$(readlink "/usr/bin/$name")" = "/etc/alternatives/$name" ] || fail "/usr/bin/$name"
    [ "$(readlink "/etc/alternatives/$name")" = /usr/sbin/ipvsadm-rs ] || fail "/etc/alternatives/$name"
done
# The seed table, written by Debian's ipvsadm.
IPVSADM_RS=/sbin/ipvsadm sh -e /etc/vmtest/seed.sh
run_to real-list /sbin/ipvsadm -Ln
run_to pkg-list /usr/bin/ipvsadm -Ln
same real-list pkg-list "ipvsadm -Ln through the alternative differs from Debian's"
# Debian's script says #!/bin/bash; the VM's busybox sh runs it as well.
run_to real-save sh /sbin/ipvsadm-save -n
run_to pkg-save /usr/bin/ipvsadm-save -n
same real-save pkg-save "ipvsadm-save -n through the alternative differs from Debian's"
# ipvsadm-restore through the alternative: flush, then the saved rules.
/sbin/ipvsadm -A -t 10.1.1.1:80
grep -v '^(exit' real-save | /usr/bin/ipvsadm-restore
run_to restored-list /sbin/ipvsadm -Ln
same real-list restored-list "the table ipvsadm-restore (the alternative) restored differs"

echo "== the image's root file system, as a container runtime runs it"
/sbin/ipvsadm -C
img=/tmp/image
mkdir "$img"
tar -x -C "$img" -f /extra/ipvsadm-rs-*-rootfs.tar
ls -la "$img"
# The runtime's mount points, a read-only root, proc, sysfs and the state
# volume (daemonset.yaml's hostPath, which the kubelet creates as 0755
# with DirectoryOrCreate; a tmpfs would be 1777, which the state file
# refuses as writable by others); the network namespace is the VM's, as
# hostNetwork gives the node's.
mkdir -p "$img/proc" "$img/sys" "$img/dev" "$img/var/lib/ipvsadm-rs"
mount -o bind "$img" "$img"
mount -o remount,bind,ro "$img"
mount -t proc proc "$img/proc"
mount -t sysfs -o ro sysfs "$img/sys"
mount -t tmpfs -o mode=0755 tmpfs "$img/var/lib/ipvsadm-rs"
chroot "$img" /ipvsadm-rs --from-k8s - --node-name node-1 --state /var/lib/ipvsadm-rs/k8s-owned \
    --interface kube-ipvs0 </extra/sync-1.json || fail "--from-k8s in the image's root exited $?"
/sbin/ipvsadm -Ln
/sbin/ipvsadm -Ln | grep -q '^TCP  10.96.0.1:443 ' || fail "the sync created no 10.96.0.1:443"
ip -o addr show dev kube-ipvs0 | grep -q ' 10.96.0.1/32 ' || fail "kube-ipvs0 has no 10.96.0.1"
[ -s "$img/var/lib/ipvsadm-rs/k8s-owned" ] || fail "no state file in the state volume"
# The packet path, written by the image's own nft.
# The image has no /etc/protocols: nft names the protocol by its number.
chroot "$img" /usr/sbin/nft list table inet ipvs-rs | grep -Eq '10\.96\.0\.1 \. (tcp|6) \. 443 : goto cluster-ip' \
    || fail "the image's nft lists no packet-path element for 10.96.0.1:443"
run_to real-k8s /sbin/ipvsadm -Ln
run_to img-k8s chroot "$img" /ipvsadm-rs -Ln
same real-k8s img-k8s "ipvsadm-rs -Ln in the image differs from Debian's ipvsadm -Ln"
# --cleanup from the image: everything it created goes.
chroot "$img" /ipvsadm-rs --from-k8s --cleanup --state /var/lib/ipvsadm-rs/k8s-owned \
    || fail "--cleanup in the image's root exited $?"
/sbin/ipvsadm -Ln | grep -q '10.96.0.1:443' && fail "--cleanup left 10.96.0.1:443"
chroot "$img" /usr/sbin/nft list tables | grep -q ipvs-rs && fail "--cleanup left the table"
/sbin/ipvsadm -Ln
echo "PACKAGE-CHECK OK"
