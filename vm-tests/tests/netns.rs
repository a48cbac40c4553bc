//! `Handle::in_netns` / `Handle::in_named_netns` against the real kernel:
//! two other namespaces at once, each handle sees only its own table, and
//! no thread of the caller changes namespace.

use std::io;
use std::path::Path;

use ipvs_netlink::{Error, Handle, Service, ServiceId};
use vm_tests::{enter_fresh_netns, sa, sh, Netns};

fn my_netns() -> std::path::PathBuf {
    std::fs::read_link("/proc/thread-self/ns/net").unwrap()
}

/// A namespace bind-mounted at /run/netns/NAME, as `ip netns add` makes
/// it (busybox `unshare --net=FILE`); unmounted on drop.
struct Named(&'static str);

impl Named {
    fn new(name: &'static str) -> Self {
        sh(&format!(
            "mkdir -p /run/netns && touch /run/netns/{name} && unshare --net=/run/netns/{name} true"
        ));
        Named(name)
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = std::process::Command::new("sh")
            .args([
                "-c",
                &format!("umount /run/netns/{0}; rm -f /run/netns/{0}", self.0),
            ])
            .status();
    }
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn two_namespaces_at_once_each_sees_only_its_own_table() {
    enter_fresh_netns().unwrap();
    let home = my_netns();
    // Another thread of ours, started before: it must stay where it is.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let bystander = std::thread::spawn(move || {
        let before = my_netns();
        rx.recv().unwrap();
        (before, my_netns())
    });

    let by_pid = Netns::new();
    let named = Named::new("ipvs-rs-test");
    let mut here = Handle::new().unwrap();
    let mut a = Handle::in_netns(by_pid.path()).unwrap();
    let mut b = Handle::in_named_netns("ipvs-rs-test").unwrap();
    assert_eq!(my_netns(), home, "the calling thread moved");

    let (sa_, sb, sh_) = (
        ServiceId::tcp(sa("10.10.0.1:80")),
        ServiceId::udp(sa("10.10.0.2:53")),
        ServiceId::tcp(sa("10.10.0.3:443")),
    );
    a.add_service(&Service::new(sa_, "rr")).unwrap();
    b.add_service(&Service::new(sb, "wlc")).unwrap();
    here.add_service(&Service::new(sh_, "sh")).unwrap();
    let ids = |h: &mut Handle| -> Vec<ServiceId> {
        h.services().unwrap().into_iter().map(|s| s.id).collect()
    };
    assert_eq!(ids(&mut a), vec![sa_]);
    assert_eq!(ids(&mut b), vec![sb]);
    assert_eq!(ids(&mut here), vec![sh_]);

    // The real ipvsadm, run inside each namespace, agrees.
    assert_eq!(
        sh(&format!("nsenter -t {} -n ipvsadm -Sn", by_pid.pid())),
        "-A -t 10.10.0.1:80 -s rr\n"
    );
    assert_eq!(
        sh(&format!("nsenter --net=/run/netns/{} ipvsadm -Sn", named.0)),
        "-A -u 10.10.0.2:53 -s wlc\n"
    );
    assert_eq!(sh("ipvsadm -Sn"), "-A -t 10.10.0.3:443 -s sh\n");

    // A handle keeps working from any thread, in its own namespace.
    let t = std::thread::spawn(move || {
        a.flush().unwrap();
        a.services().unwrap()
    });
    assert_eq!(t.join().unwrap(), vec![]);
    assert_eq!(ids(&mut b), vec![sb]);
    assert_eq!(ids(&mut here), vec![sh_]);

    tx.send(()).unwrap();
    let (before, after) = bystander.join().unwrap();
    assert_eq!(before, after, "another thread moved");
    assert_eq!(my_netns(), home);
}

fn namespace_error(r: ipvs_netlink::Result<Handle>) -> (std::path::PathBuf, io::Error) {
    match r {
        Err(Error::Namespace { path, source }) => (path, source),
        other => panic!("expected a namespace error, got {other:?}"),
    }
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn missing_and_wrong_namespace_paths_are_typed_errors() {
    enter_fresh_netns().unwrap();
    let (path, e) = namespace_error(Handle::in_named_netns("no-such-ns"));
    assert_eq!(path, Path::new("/run/netns/no-such-ns"));
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    let (_, e) = namespace_error(Handle::in_netns("/proc/999999/ns/net"));
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    // A namespace file of another kind: setns refuses it.
    let (_, e) = namespace_error(Handle::in_netns("/proc/self/ns/uts"));
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    let (_, e) = namespace_error(Handle::in_named_netns("../proc/self/ns/net"));
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}
