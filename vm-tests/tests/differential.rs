//! `ipvsadm-rs` against the real ipvsadm 1.31: the same command line on
//! the same kernel state gives the same stdout, stderr and exit code, and
//! leaves the same table behind. Both run with argv[0] `ipvsadm`.
//!
//! Each case starts from a named table in fresh network namespaces: one
//! where the real ipvsadm runs, one where ipvsadm-rs runs. Every
//! mismatch is reported, then the test fails.

use vm_tests::{diff, enter_fresh_netns, ipvsadm, ipvsadm_rs, run_as, Outcome};

const SEED: &[&str] = &[
    "-A -t 10.97.97.97:80 -s rr",
    "-a -t 10.97.97.97:80 -r 10.244.1.39:80 -m",
    "-a -t 10.97.97.97:80 -r 10.244.1.40:80 -m",
    "-a -t 10.97.97.97:80 -r 10.244.2.33:80 -m",
];

const RICH: &[&str] = &[
    "-A -t 10.97.97.97:80 -s rr",
    "-a -t 10.97.97.97:80 -r 10.244.1.39:80 -m",
    "-a -t 10.97.97.97:80 -r 10.244.1.40:80 -m",
    "-a -t 10.97.97.97:80 -r 10.244.2.33:80 -m",
    "-A -t 192.168.10.1:443 -s wlc -p 600 -M 255.255.255.0",
    "-a -t 192.168.10.1:443 -r 192.168.20.2:443 -g -w 4",
    "-a -t 192.168.10.1:443 -r 10.0.0.2:8443 -m -w 0 -x 10 -y 2",
    "-A -t 10.0.0.1:22 -s lc",
    "-A -u 10.0.0.1:53 -s sh -b sh-fallback,sh-port -o",
    "-a -u 10.0.0.1:53 -r 10.0.0.53:53 -i -w 2",
    "-A --sctp-service 10.0.0.3:3868 -s rr",
    "-A -f 42 -s lc",
    "-a -f 42 -r 10.5.5.5:0 -g",
    "-A -f 4294967295 -s rr",
    "-A -f 7 -6 -s wrr -p 100 -M 64",
    "-A -t [2001:db8::1]:443 -s mh -b mh-port,mh-fallback",
    "-a -t [2001:db8::1]:443 -r [2001:db8::10]:443 -m -w 3",
    "-a -t [2001:db8::1]:443 -r [2001:db8:1234:5678:9abc:def0:1234:5678]:65535 -m",
    "-A -u 10.0.0.4:5060 -s rr -p 30 --pe sip",
    "-A -t 10.0.0.5:0 -s dh -p",
    "-A -t 10.0.0.6:80 -s sed -b flag-1,flag-3",
    "-a -t 10.0.0.6:80 -r 10.0.6.1 -i --tun-type gue --tun-port 6080 --tun-csum",
    "-a -t 10.0.0.6:80 -r 10.0.6.2 -i --tun-type gre --tun-csum",
    "-a -t 10.0.0.6:80 -r 10.0.6.3 -i --tun-type ipip -w 9",
    "-a -t 10.0.0.6:80 -r [2001:db8::66]:80 -i",
];

/// Commands that only read: run once per tool on the same table.
const READS: &[(&[&str], &str)] = &[
    (&[], ""),
    (&[], "-Ln"),
    (&[], "-L -n"),
    (&[], "-Sn"),
    (&[], "-S"),
    (&[], "-Lnc"),
    (&[], "-Lc -n --persistent-conn"),
    (&[], "-L --timeout"),
    (&[], "-L --daemon"),
    (SEED, "-Ln"),
    (SEED, "-ln"),
    (SEED, "--list --numeric"),
    (SEED, "-Sn"),
    (SEED, "--save -n"),
    (SEED, "-L -n -t 10.97.97.97:80"),
    (SEED, "-L -n -t 10.97.97.97"),
    (SEED, "-L -n -t 10.0.0.9:80"),
    (SEED, "-L -n -u 10.97.97.97:80"),
    (SEED, "-Ln --stats"),
    (SEED, "-Ln --rate"),
    (SEED, "-Ln --thresholds"),
    (SEED, "-Ln --persistent-conn"),
    (SEED, "-Ln --tun-info"),
    (SEED, "-Ln --stats --exact"),
    (SEED, "-Ln -X --rate"),
    (SEED, "-Ln --nosort"),
    (SEED, "-Ln --sort --sort"),
    (RICH, "-Ln"),
    (RICH, "-Ln --nosort"),
    (RICH, "-Sn"),
    (RICH, "-Sn --nosort"),
    (RICH, "-Ln --stats"),
    (RICH, "-Ln --rate"),
    (RICH, "-Ln --thresholds"),
    (RICH, "-Ln --persistent-conn"),
    (RICH, "-Ln --tun-info"),
    (RICH, "-Ln --exact"),
    (RICH, "-L -n -f 42"),
    (RICH, "-L -n -f 7 -6"),
    (RICH, "-L -n -f 7"),
    (RICH, "-L -n -t [2001:db8::1]:443"),
    (RICH, "-L -n --sctp-service 10.0.0.3:3868"),
    (RICH, "-L -n -u 10.0.0.1:53 --stats"),
    (RICH, "-L -n -t 10.0.0.6:80 --tun-info"),
    // The command line.
    (&[], "-n -L"),
    (&[], "-Q"),
    (&[], "foo"),
    (&[], "foo -L -n"),
    (&[], "-L -Q"),
    (&[], "-LQ"),
    (&[], "-L --foo"),
    (&[], "-L --foo=bar"),
    (&[], "-L --numeric=1"),
    (&[], "--lis"),
    (&[], "-list"),
    (&[], "-Ln -n"),
    (&[], "-L extra"),
    (&[], "-L -n -- -n"),
    (&[], "-L -A"),
    (&[], "-Ln -A"),
    (&[], "-L -h"),
    (&[], "-L -w 5"),
    (&[], "-L -c -t 10.0.0.1:80"),
    (&[], "-L --timeout --daemon"),
    (&[], "-L -c --stats"),
    (&[], "-L --timeout --stats"),
    (&[], "-L --daemon --persistent-conn"),
    (&[], "-L --timeout --persistent-conn"),
    (&[], "-L -s rr"),
    (&[], "-L -6"),
    (&[], "-h"),
    (&[], "--help"),
    (&[], "-v"),
    (&[], "--version"),
    (&[], "-hv"),
    (&[], "-S -t 10.0.0.1:80"),
    (&[], "-S -c"),
    (&[], "-R -n"),
];

/// Commands that write: each runs in its own namespaces, and the tables
/// left behind are compared too. The third field is stdin.
const WRITES: &[(&[&str], &str, &str)] = &[
    (&[], "-A", ""),
    (&[], "-A -t", ""),
    (&[], "-A -t 10.0.0.1", ""),
    (&[], "-A -t 10.0.0.1:80", ""),
    (&[], "-A -t 10.0.0.1:80 -s rr -p", ""),
    (&[], "-A -t 10.0.0.1 -p", ""),
    (&[], "-A -t 10.0.0.1:80 -p 0", ""),
    (&[], "-A -t 10.0.0.1:80 -p 2678400", ""),
    (&[], "-A -t 10.0.0.1:80 -p 2678401", ""),
    (&[], "-A -t 10.0.0.1:80 -p -s rr", ""),
    (&[], "-A -t 10.0.0.1:80 -p300", ""),
    (&[], "-A -t 10.0.0.1:80 --persistent=300", ""),
    (&[], "-A -t 10.0.0.1:80 --persistent", ""),
    (&[], "-A -t 10.0.0.1:80 -pn", ""),
    (&[], "-A -t 10.0.0.1:80 -p -M 255.255.255.0", ""),
    (&[], "-A -t 10.0.0.1:80 -M 255.255.0.0", ""),
    (&[], "-A -t 10.0.0.1:80 -p -M bad", ""),
    (&[], "-A -t [2001:db8::1]:80 -p -M 64", ""),
    (&[], "-A -t [2001:db8::1]:80 -p -M 129", ""),
    (&[], "-A -t [2001:db8::1]:80 -p -M 0", ""),
    (&[], "-A -M 64 -t [2001:db8::1]:80 -p", ""),
    (&[], "-A -t 2001:db8::1 -p", ""),
    (&[], "-A -t [2001:db8::1] -s rr", ""),
    (&[], "-A -t [2001:db8::1 -s rr", ""),
    (&[], "-A -t 12345 -s rr", ""),
    (&[], "-A -t 10.0.0.1:http -s rr", ""),
    (&[], "-A -u 10.0.0.1:domain -s rr", ""),
    (&[], "-A -u 10.0.0.1:nosuchservice -s rr", ""),
    (&[], "-A --sctp-service 10.0.0.1:80", ""),
    (&[], "-A -t localhost:80", ""),
    (&[], "-A -t 10.1:80", ""),
    (&[], "-A -t 0x0a000001:80", ""),
    (&[], "-A -t 10.0.0.1:65536", ""),
    (&[], "-A -t 10.0.0.1:-1", ""),
    (&[], "-A -t nosuchhost.invalid:80", ""),
    (&[], "-A -t10.0.0.1:80", ""),
    (&[], "-A -t=10.0.0.1:80", ""),
    (&[], "-A --tcp-service=10.0.0.1:80", ""),
    (&[], "-A --tcp-service 10.0.0.1:80 --scheduler=rr", ""),
    (&[], "-A -t 10.0.0.1:80 -s nosuch", ""),
    (&[], "-A -t 10.0.0.1:80 -s averyveryverylongschedulername", ""),
    (&[], "-A -t 10.0.0.1:80 -s rr -s wrr", ""),
    (&[], "-A -t 10.0.0.1:80 -o", ""),
    (&[], "-A -u 10.0.0.1:53 -o", ""),
    (&[], "-A -f 1 -o", ""),
    (&[], "-A -t 10.0.0.1:80 -b flag-1", ""),
    (&[], "-A -t 10.0.0.1:80 -s sh -b sh-port,sh-fallback", ""),
    (&[], "-A -t 10.0.0.1:80 -s rr -b sh-port", ""),
    (&[], "-A -t 10.0.0.1:80 -b bogus", ""),
    (&[], "-A -t 10.0.0.1:80 -b sh-port -s sh", ""),
    (&[], "-A -t 10.0.0.1:80 -s mh -b mh-port", ""),
    (&[], "-A -t 10.0.0.1:80 -s mh -b flag-3", ""),
    (&[], "-A -t 10.0.0.1:80 -b flag-1,,flag-2", ""),
    (&[], "-A -t 10.0.0.1:80 --pe sip -p", ""),
    (&[], "-A -u 10.0.0.1:5060 --pe sip -p 60", ""),
    (&[], "-A -u 10.0.0.1:5060 --pe nosuch -p 60", ""),
    (&[], "-A -f 42", ""),
    (&[], "-A -f 0", ""),
    (&[], "-A -f -1", ""),
    (&[], "-A -f 4294967295", ""),
    (&[], "-A -f 4294967296", ""),
    (&[], "-A -f abc", ""),
    (&[], "-A -f 7 -6", ""),
    (&[], "-A -6 -f 7", ""),
    (&[], "-A -f 7 -6 -6", ""),
    (&[], "-A -t 10.0.0.1:80 -t 10.0.0.2:80", ""),
    (&[], "-A -t 10.0.0.1:80 -f 3", ""),
    (&[], "-A -t 10.0.0.1:80 -r 10.0.0.2", ""),
    (&[], "-A -t 10.0.0.1:80 -n", ""),
    (&[], "-A -t 10.0.0.1:80 -w 3", ""),
    (&[], "-A -t 10.0.0.1:80 extra", ""),
    (&[], "--add-service -t 10.0.0.1:80", ""),
    (SEED, "-A -t 10.97.97.97:80", ""),
    (SEED, "-E -t 10.97.97.97:80", ""),
    (SEED, "-E -t 10.97.97.97:80 -s rr -p 100", ""),
    (SEED, "-E -t 10.0.0.9:80 -s rr", ""),
    (SEED, "-E -t 10.97.97.97:80 -s nosuch", ""),
    (SEED, "-D -t 10.97.97.97:80", ""),
    (SEED, "-D -t 10.0.0.9:80", ""),
    (SEED, "-D -t 10.97.97.97:80 -s rr", ""),
    (SEED, "-D", ""),
    (SEED, "-C", ""),
    (SEED, "--clear", ""),
    (SEED, "-C -n", ""),
    (SEED, "-C -t 10.97.97.97:80", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3:8080 -m -w 5", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3:8080 -g", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -i -w 0", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.1.39:80 -m", ""),
    (SEED, "-a -t 10.0.0.9:80 -r 10.244.3.3 -m", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -m -w 65535", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -m -w 65536", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -m -w 999999", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -m -w 2147483647", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -m -w 2147483648", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -m -w -1", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -m -w x", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -m -x 10 -y 20", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -m -x 20 -y 10", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -m -x abc", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -m -y 2147483648", ""),
    (SEED, "-a -t 10.97.97.97:80 -r [2001:db8::5]:80 -m", ""),
    (SEED, "-a -t 10.97.97.97:80 -r [2001:db8::5]:80 -i", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -m --tun-type gue", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -i --tun-type gue", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -i --tun-type gue --tun-port 6080", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -i --tun-type gue --tun-port 6080 --tun-csum --tun-remcsum", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -i --tun-type gue --tun-port 6080 --tun-nocsum", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -i --tun-type gre --tun-port 1", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -i --tun-type gre --tun-csum", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -i --tun-type gre --tun-remcsum", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -i --tun-type ipip --tun-nocsum", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -i --tun-type foo", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -i --tun-port 0", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -i --tun-port 6080", ""),
    (SEED, "-a -t 10.97.97.97:80", ""),
    (SEED, "-a -r 10.244.3.3 -t 10.97.97.97:80 -m", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3:http -m", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -m -g", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -m -r 10.244.3.4", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 12345 -m", ""),
    (SEED, "-a -t 10.97.97.97:80 -r 10.244.3.3 -m -s rr", ""),
    (SEED, "-e -t 10.97.97.97:80 -r 10.244.1.39:80 -w 3", ""),
    (SEED, "-e -t 10.97.97.97:80 -r 10.244.1.39:80 -m -w 3 -x 9 -y 1", ""),
    (SEED, "-e -t 10.97.97.97:80 -r 10.244.9.9:80 -m", ""),
    (SEED, "-e -t 10.0.0.9:80 -r 10.244.1.39:80 -m", ""),
    (SEED, "-d -t 10.97.97.97:80 -r 10.244.1.39:80", ""),
    (SEED, "-d -t 10.97.97.97:80 -r 10.244.1.39", ""),
    (SEED, "-d -t 10.97.97.97:80 -r 10.244.9.9", ""),
    (SEED, "-d -t 10.0.0.9:80 -r 10.244.1.39", ""),
    (SEED, "-d -t 10.97.97.97:80 -r 10.244.1.39:80 -m", ""),
    (SEED, "-d -t 10.97.97.97:80", ""),
    (SEED, "-Z", ""),
    (SEED, "-Z -t 10.97.97.97:80", ""),
    (SEED, "-Z -t 10.0.0.9:80", ""),
    (SEED, "-Z -t 0.0.0.0:0", ""),
    (SEED, "-Z -n", ""),
    (RICH, "-f 42 -A", ""),
    (RICH, "-a -f 42 -r 10.5.5.6 -g", ""),
    (RICH, "-a -f 42 -r 10.5.5.6:99 -m", ""),
    (RICH, "-a -f 42 -r [2001:db8::7] -m", ""),
    (RICH, "-a -f 7 -6 -r [2001:db8::7]:80 -m", ""),
    (RICH, "-e -u 10.0.0.1:53 -r 10.0.0.53:53 -i --tun-type gre --tun-csum", ""),
    (RICH, "-D -f 4294967295", ""),
    (RICH, "-C", ""),
    (&[], "--set 900 120 300", ""),
    (&[], "--set 0 0 0", ""),
    (&[], "--set 1 2", ""),
    (&[], "--set a b c", ""),
    (&[], "--set 1 2 3 4", ""),
    (&[], "--set 1 2 3 -n", ""),
    (&[], "--set 2678401 1 1", ""),
    (&[], "--start-daemon master", ""),
    (&[], "--start-daemon foo", ""),
    (&[], "--stop-daemon foo", ""),
    (&[], "--stop-daemon master", ""),
    (&[], "--start-daemon", ""),
    (&[], "--start-daemon master --mcast-interface lo --syncid 300", ""),
    (&[], "--start-daemon master --mcast-interface lo --syncid 7", ""),
    (&[], "--start-daemon backup --mcast-interface lo --mcast-group 239.1.1.1 --mcast-port 9000 --mcast-ttl 2 --sync-maxlen 1400", ""),
    (&[], "--start-daemon master --mcast-interface lo --mcast-group 10.0.0.1", ""),
    (&[], "--start-daemon master --mcast-interface lo --mcast-group ff02::1", ""),
    (&[], "--start-daemon master --mcast-interface lo --mcast-group fe80::1", ""),
    (&[], "--start-daemon master --mcast-interface lo --mcast-port 0", ""),
    (&[], "--start-daemon master --mcast-interface lo --mcast-ttl 256", ""),
    (&[], "--start-daemon master --mcast-interface lo --sync-maxlen 65508", ""),
    (&[], "--start-daemon master --mcast-interface nosuchif", ""),
    (&[], "--stop-daemon master --mcast-interface lo", ""),
    (&[], "--start-daemon master -n", ""),
    (&[], "-R", "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1 -m\n"),
    (&[], "-R", "ipvsadm -A -t 10.0.0.1:80 -s rr\n\n   \n-a -t 10.0.0.1:80 -r 10.0.1.1 -m ipvsadm -w 2\n"),
    (&[], "-R", "-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80\n"),
    (&[], "-R", "-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.1:80 -s rr\n"),
    (&[], "-R", "-A -t 10.0.0.1:80 -s rr\n# a comment\n-A -t 10.0.0.2:80\n"),
    (&[], "-R", "-A -t 10.0.0.1:80 -s rr\n-R\n-A -t 10.0.0.2:80\n"),
    (&[], "-R", "-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80 -w 3\n-A -t 10.0.0.3:80\n"),
    (&[], "-R", "-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80 -s\n-A -t 10.0.0.3:80\n"),
    (&[], "-R", "-A -t 10.0.0.1:80 -s rr\n-h\n-A -t 10.0.0.3:80\n"),
    (&[], "-R", "-A -t 10.0.0.1:80 -s rr\r\n-A\t-t 10.0.0.2:80\r\n"),
    (&[], "-R", "-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80"),
    (&[], "-R", "-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80  "),
    (&[], "-R", "-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80 "),
    (&[], "-R", ""),
    (&[], "-R", "-L -n\n-S -n\n"),
    (SEED, "-R", "-C\n-A -t 10.0.0.1:80\n"),
    (SEED, "-R", "-D -t 10.9.9.9:80\n-a -t 10.97.97.97:80 -r 10.1.1.1 -m\n"),
    // A NUL byte ends its word (strdup stops there); a word that starts
    // with one is empty.
    (&[], "-R", "-A -t 10.0.0.1:80\0junk -s rr\0x\n-A -t 10.0.0.2:80 -s wlc\0\n"),
    (&[], "-R", "\0\0 -A -t 10.0.0.1:80\n-A -t 10.0.0.2:80 \0\n-A -t 10.0.0.3:80\n"),
    // An IPv4 address in brackets loses its port.
    (&[], "-A -t [10.0.0.1]:80", ""),
    (&[], "-A -t [10.0.0.1]", ""),
    (&[], "-A -u [10.0.0.1]:53 -s rr", ""),
];

fn apply(lines: &[&str]) {
    for line in lines {
        let args: Vec<&str> = line.split_whitespace().collect();
        let out = run_as(&ipvsadm(), "ipvsadm", &args, b"");
        assert_eq!(out.code, Some(0), "setup `ipvsadm {line}` failed:\n{out}");
    }
}

/// The table as the real ipvsadm sees it: rules, thresholds, timeouts,
/// daemons.
fn snapshot() -> String {
    let mut s = String::new();
    for args in [
        &["-Sn"][..],
        &["-Ln", "--thresholds"][..],
        &["-L", "--timeout"][..],
        &["-L", "--daemon"][..],
    ] {
        let out = run_as(&ipvsadm(), "ipvsadm", args, b"");
        s.push_str(&out.to_string());
    }
    s
}

fn words(cmd: &str) -> Vec<&str> {
    cmd.split_whitespace().collect()
}

fn mismatch(cmd: &str, stdin: &str, theirs: &Outcome, ours: &Outcome) -> String {
    format!(
        "`ipvsadm {cmd}` (stdin {stdin:?}) differs (- ipvsadm, + ipvsadm-rs):\n{}",
        diff(&theirs.to_string(), &ours.to_string())
    )
}

fn report(failures: Vec<String>, total: usize) {
    println!("{} of {total} cases identical", total - failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn read_commands_give_the_same_bytes() {
    enter_fresh_netns().unwrap();
    let mut failures = Vec::new();
    let mut current: Option<*const [&str]> = None;
    for (setup, cmd) in READS {
        if current != Some(*setup as *const _) {
            enter_fresh_netns().unwrap();
            apply(setup);
            current = Some(*setup as *const _);
        }
        let args = words(cmd);
        let theirs = run_as(&ipvsadm(), "ipvsadm", &args, b"");
        let ours = run_as(&ipvsadm_rs(), "ipvsadm", &args, b"");
        if theirs != ours {
            failures.push(mismatch(cmd, "", &theirs, &ours));
        }
    }
    report(failures, READS.len());
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn write_commands_give_the_same_bytes_and_tables() {
    let mut failures = Vec::new();
    for (setup, cmd, stdin) in WRITES {
        let args = words(cmd);
        enter_fresh_netns().unwrap();
        apply(setup);
        let theirs = run_as(&ipvsadm(), "ipvsadm", &args, stdin.as_bytes());
        let their_table = snapshot();
        enter_fresh_netns().unwrap();
        apply(setup);
        let ours = run_as(&ipvsadm_rs(), "ipvsadm", &args, stdin.as_bytes());
        let our_table = snapshot();
        if theirs != ours {
            failures.push(mismatch(cmd, stdin, &theirs, &ours));
        } else if their_table != our_table {
            failures.push(format!(
                "`ipvsadm {cmd}` (stdin {stdin:?}) leaves a different table (- ipvsadm, + ipvsadm-rs):\n{}",
                diff(&their_table, &our_table)
            ));
        }
    }
    report(failures, WRITES.len());
}

/// Debian's `ipvsadm-save` and `ipvsadm-restore` scripts against our
/// binary invoked through links of those names.
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn save_and_restore_links_behave_as_debians_scripts() {
    let dir = std::path::Path::new("/tmp/links");
    std::fs::create_dir_all(dir).unwrap();
    for name in ["ipvsadm-save", "ipvsadm-restore"] {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(ipvsadm_rs(), &link).unwrap();
    }
    let script = |name: &str| {
        let p = std::path::PathBuf::from("/sbin").join(name);
        assert!(p.exists(), "Debian's {name} is missing from the VM");
        p
    };
    let rules =
        "# saved by hand\n-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1 -m\n# the end\n";
    let cases: &[(&str, &[&str], &str)] = &[
        ("ipvsadm-save", &[], ""),
        ("ipvsadm-save", &["-n"], ""),
        ("ipvsadm-save", &["-x"], ""),
        ("ipvsadm-restore", &[], rules),
        (
            "ipvsadm-restore",
            &[],
            "-A -t 10.0.0.1:80\n-A -t 10.0.0.1:80\n",
        ),
    ];
    let mut failures = Vec::new();
    for (name, args, stdin) in cases {
        enter_fresh_netns().unwrap();
        apply(SEED);
        // The scripts say #!/bin/bash; the VM has busybox sh, which runs
        // them as well.
        let script = script(name);
        let mut sh_args = vec![script.to_str().unwrap()];
        sh_args.extend_from_slice(args);
        let theirs = run_as(&"/bin/sh".into(), "sh", &sh_args, stdin.as_bytes());
        let their_table = snapshot();
        enter_fresh_netns().unwrap();
        apply(SEED);
        let ours = run_as(&dir.join(name), name, args, stdin.as_bytes());
        let our_table = snapshot();
        let cmd = format!("{name} {}", args.join(" "));
        if theirs != ours {
            failures.push(mismatch(&cmd, stdin, &theirs, &ours));
        } else if their_table != our_table {
            failures.push(format!(
                "`{cmd}` leaves a different table:\n{}",
                diff(&their_table, &our_table)
            ));
        }
    }
    report(failures, cases.len());
}
