//! Which schedulers the running kernel can give a virtual service.
//!
//! IPVS has no request that lists its schedulers: the kernel loads
//! `ip_vs_NAME` on demand (`request_module`) when a service names `NAME`,
//! and a name it cannot load fails the write ("Scheduler not found",
//! `ENOENT`). So the answer comes from where the module would come from:
//! `/sys/module/ip_vs_NAME` (loaded, or built in with parameters), the
//! kernel's `modules.builtin`, and its `modules.dep` (every module
//! installed for the running release, wherever its file sits). Where none
//! of those can be read (a container without `/lib/modules`), the answer
//! is [`Availability::Unknown`], never a guess.
//!
//! ```
//! use ipvs_netlink::scheduler::{availability, Availability};
//!
//! // Longer than the kernel's 15 bytes: no module can have that name.
//! assert_eq!(availability("round-robin-please"), Availability::Missing);
//! match availability("rr") {
//!     Availability::Missing => println!("this kernel cannot load rr"),
//!     Availability::Unknown => println!("cannot tell here"),
//!     found => println!("rr: {found:?}"),
//! }
//! ```

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The schedulers of the mainline kernel's `net/netfilter/ipvs/`
/// (`ip_vs_NAME.c`), as of Linux 6.12.
pub const KNOWN: [&str; 14] = [
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

/// Whether a scheduler can be used on this machine, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// `/sys/module/ip_vs_NAME` exists: loaded (or built in).
    Loaded,
    /// Listed in the running kernel's `modules.builtin` or `modules.dep`:
    /// the kernel loads it on first use.
    Installed,
    /// The running kernel's module lists were read and do not have it, or
    /// the name cannot be a scheduler's (the kernel's limit is 15 bytes).
    Missing,
    /// Nothing could be read to tell (no `/lib/modules/RELEASE`).
    Unknown,
}

impl Availability {
    /// `true` unless the scheduler is known to be [`Availability::Missing`].
    pub fn may_work(&self) -> bool {
        *self != Availability::Missing
    }
}

/// Where the answer is read from: the root of `/sys/module` and the
/// running kernel's module directory (`/lib/modules/RELEASE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// `/sys/module`.
    pub sys_module: PathBuf,
    /// `/lib/modules/$(uname -r)`.
    pub modules: PathBuf,
}

impl Sources {
    /// This machine's: `/sys/module` and `/lib/modules/` of the running
    /// release (`uname -r`).
    pub fn running() -> Sources {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        Sources {
            sys_module: PathBuf::from("/sys/module"),
            modules: Path::new("/lib/modules").join(release),
        }
    }
}

/// [`availability_in`] this machine's [`Sources::running`].
pub fn availability(name: &str) -> Availability {
    availability_in(&Sources::running(), name)
}

/// Whether scheduler `name` is loaded, installed or missing according to
/// `sources`.
pub fn availability_in(sources: &Sources, name: &str) -> Availability {
    // IP_VS_SCHEDNAME_MAXLEN is 16 with the terminating NUL; a module
    // name is letters, digits and '_' (the kernel would look for a file
    // of that name).
    if name.is_empty()
        || name.len() > 15
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Availability::Missing;
    }
    let module = format!("ip_vs_{}", name.replace('-', "_"));
    if sources.sys_module.join(&module).is_dir() {
        return Availability::Loaded;
    }
    let mut read_any = false;
    for list in ["modules.builtin", "modules.dep"] {
        let Ok(file) = fs::File::open(sources.modules.join(list)) else {
            continue;
        };
        read_any = true;
        if lists(BufReader::new(file), &module) {
            return Availability::Installed;
        }
    }
    if read_any {
        Availability::Missing
    } else {
        Availability::Unknown
    }
}

/// Whether a `modules.builtin` or `modules.dep` names `module`: a line
/// whose first path (before `:` in modules.dep) ends in `/MODULE.ko`,
/// compressed or not.
fn lists(list: impl BufRead, module: &str) -> bool {
    list.lines().map_while(Result::ok).any(|line| {
        let path = line.split(':').next().unwrap_or_default();
        let file = path.rsplit('/').next().unwrap_or_default();
        let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
            .iter()
            .find_map(|ext| file.strip_suffix(ext));
        // Module file names use '-' and '_' interchangeably.
        stem.is_some_and(|s| s.replace('-', "_") == module)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake root laid out as a Debian kernel lays its files out.
    fn root(builtin: &str, dep: Option<&str>, loaded: &[&str]) -> (tempdir::Dir, Sources) {
        let dir = tempdir::Dir::new();
        let sources = Sources {
            sys_module: dir.path().join("sys/module"),
            modules: dir.path().join("lib/modules/6.1.0-57-amd64"),
        };
        fs::create_dir_all(&sources.sys_module).unwrap();
        fs::create_dir_all(&sources.modules).unwrap();
        fs::write(sources.modules.join("modules.builtin"), builtin).unwrap();
        if let Some(dep) = dep {
            fs::write(sources.modules.join("modules.dep"), dep).unwrap();
        }
        for m in loaded {
            fs::create_dir_all(sources.sys_module.join(m)).unwrap();
        }
        (dir, sources)
    }

    // Lines as Debian 12's 6.1 and 6.12 kernels write them.
    const DEP: &str = "kernel/net/netfilter/ipvs/ip_vs_rr.ko: kernel/net/netfilter/ipvs/ip_vs.ko kernel/net/netfilter/nf_conntrack.ko\n\
        kernel/net/netfilter/ipvs/ip_vs_wlc.ko.xz: kernel/net/netfilter/ipvs/ip_vs.ko.xz\n\
        kernel/net/netfilter/ipvs/ip_vs.ko:\n";

    #[test]
    fn reads_loaded_installed_builtin_and_missing() {
        let (_d, s) = root(
            "kernel/net/netfilter/ipvs/ip_vs_sh.ko\n",
            Some(DEP),
            &["ip_vs_mh"],
        );
        assert_eq!(availability_in(&s, "mh"), Availability::Loaded);
        assert_eq!(availability_in(&s, "rr"), Availability::Installed);
        assert_eq!(availability_in(&s, "wlc"), Availability::Installed);
        assert_eq!(availability_in(&s, "sh"), Availability::Installed);
        assert_eq!(availability_in(&s, "twos"), Availability::Missing);
        // A dependency named after ':' is not the module itself.
        assert_eq!(availability_in(&s, ""), Availability::Missing);
        assert_eq!(availability_in(&s, "nf_conntrack"), Availability::Missing);
    }

    #[test]
    fn names_no_module_can_have_are_missing_without_reading() {
        let (_d, s) = root("", None, &[]);
        for bad in [
            "",
            "../../etc",
            "a/b",
            "sixteen-letters!",
            "abcdefghijklmnop",
        ] {
            assert_eq!(availability_in(&s, bad), Availability::Missing, "{bad}");
        }
    }

    #[test]
    fn nothing_to_read_is_unknown_not_missing() {
        let dir = tempdir::Dir::new();
        let s = Sources {
            sys_module: dir.path().join("nothing"),
            modules: dir.path().join("nothing"),
        };
        assert_eq!(availability_in(&s, "rr"), Availability::Unknown);
        assert!(availability_in(&s, "rr").may_work());
    }

    /// A directory removed on drop (std only).
    mod tempdir {
        use std::path::{Path, PathBuf};
        use std::sync::atomic::{AtomicU32, Ordering};

        pub struct Dir(PathBuf);

        impl Dir {
            pub fn new() -> Dir {
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "ipvs-netlink-sched-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &Path {
                &self.0
            }
        }

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}
