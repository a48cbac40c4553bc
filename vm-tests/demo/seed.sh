# The demo's seed scenario, run by /init in the VM (`run.sh demo`) with `sh -e`,
# before it lists the table with ipvsadm-rs and with the real ipvsadm.
# $IPVSADM is Debian's ipvsadm 1.31, $IPVSADM_RS ours: the table is written by ours.
tool=$IPVSADM_RS

$tool -A -t 10.97.97.97:80 -s rr
$tool -a -t 10.97.97.97:80 -r 10.244.1.39:80 -m
$tool -a -t 10.97.97.97:80 -r 10.244.1.40:80 -m
$tool -a -t 10.97.97.97:80 -r 10.244.2.33:80 -m
