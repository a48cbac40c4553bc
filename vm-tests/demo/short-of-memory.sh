# IPVS on a machine short of memory, on Debian's 6.1 kernel: what the kernel
# does when the table outgrows memory. Not a test (it ends in the OOM
# killer); the evidence behind docs/reliability.md's "A machine short of memory":
#   VM_MEM=256 vm-tests/run.sh sh "$(cat vm-tests/demo/short-of-memory.sh)"
set +e
echo -1000 >/proc/self/oom_score_adj # this shell is never the OOM victim
services() { grep -c '^TCP' /proc/net/ip_vs; }
lines() { # -A lines for $1 services from 11.0.0.0 on
    awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++)
        printf "-A -t %d.%d.%d.%d:80 -s rr\n", 11 + int(i / 16777216),
            int(i / 65536) % 256, int(i / 256) % 256, i % 256 }'
}
echo "== $(uname -r); $(grep MemTotal /proc/meminfo)"
echo "== 1. fault injection"
mount -t debugfs none /sys/kernel/debug 2>/dev/null
ls /sys/kernel/debug | grep -E 'fail|fault' || echo "no failslab, fail_page_alloc or fail_function in debugfs"
echo "== 2. a memory cgroup (memory.max 16M) adding 50,000 services"
mount -t cgroup2 none /sys/fs/cgroup && echo +memory >/sys/fs/cgroup/cgroup.subtree_control
mkdir /sys/fs/cgroup/t && echo 16M >/sys/fs/cgroup/t/memory.max
lines 50000 | sh -c 'echo $$ >/sys/fs/cgroup/t/cgroup.procs; exec /bin/ipvsadm-rs -R'
echo "ipvsadm-rs -R exit $?; services $(services)"
echo "cgroup memory.current $(cat /sys/fs/cgroup/t/memory.current), peak $(cat /sys/fs/cgroup/t/memory.peak)"
grep -E '^(oom|oom_kill|max) ' /sys/fs/cgroup/t/memory.events
grep -E 'Slab|Percpu' /proc/meminfo
/sbin/ipvsadm -C
echo "== 3. each tool adds services until memory runs out"
for tool in /sbin/ipvsadm /bin/ipvsadm-rs; do
    grep MemAvailable /proc/meminfo
    lines 4000000 | sh -c 'echo 0 >/proc/self/oom_score_adj; exec "$0" -R' "$tool" >/tmp/out 2>&1
    echo "$tool -R: exit $?; services $(services); output: $(head -c 300 /tmp/out)"
    /sbin/ipvsadm -C
    echo "after -C: exit $?; services $(services)"
done
echo "== kernel log"
dmesg | grep -E 'Killed process|page allocation failure|ip_vs|IPVS' | sed 's/^\[[ 0-9.]*\] //' | head -20
