//! Handles on the IPVS table of another network namespace.
//!
//! A netlink socket belongs to the network namespace it was created in,
//! whichever thread later uses it. [`Handle::in_netns`] therefore creates
//! the socket on a short-lived thread that enters the target namespace
//! with `setns(2)`, opens and binds the socket, and exits; the socket is
//! handed back to the caller. The caller's threads never change namespace.
//!
//! ```no_run
//! use ipvs_netlink::Handle;
//!
//! # fn main() -> Result<(), ipvs_netlink::Error> {
//! // A namespace made by `ip netns add blue` ...
//! let mut blue = Handle::in_named_netns("blue")?;
//! // ... or the namespace of a process.
//! let mut other = Handle::in_netns("/proc/1234/ns/net")?;
//! println!("{} and {}", blue.services()?.len(), other.services()?.len());
//! # Ok(())
//! # }
//! ```

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netlink_sys::Socket;
use nix::sched::{setns, CloneFlags};

use crate::error::{Error, Result};
use crate::handle::{open_sockets, Handle, Place, Sockets, DEFAULT_TIMEOUT};

/// Where `ip netns add NAME` puts the namespace named `NAME`.
pub const NETNS_RUN_DIR: &str = "/run/netns";

impl Handle {
    /// Opens a handle on the IPVS table of the network namespace at `path`:
    /// a namespace file such as `/proc/1234/ns/net`,
    /// `/proc/self/task/TID/ns/net` or a bind mount under `/run/netns`.
    ///
    /// The calling thread stays in its own namespace. Errors:
    /// [`Error::Namespace`] when `path` cannot be opened (its `source` is
    /// `NotFound` for a missing path) or is not a network namespace
    /// (`EINVAL`), or when entering it is refused (`EPERM`: entering a
    /// namespace needs `CAP_SYS_ADMIN`); then the errors of
    /// [`Handle::new`].
    pub fn in_netns(path: impl AsRef<Path>) -> Result<Self> {
        Self::in_netns_with_timeout(path, DEFAULT_TIMEOUT)
    }

    /// Like [`Handle::in_netns`] with a receive timeout of `timeout`.
    pub fn in_netns_with_timeout(path: impl AsRef<Path>, timeout: Duration) -> Result<Self> {
        let (main, bulk) = socket_in(path.as_ref())?;
        Handle::open(Sockets::open(Place::Opened(main, bulk))?, timeout)
    }

    /// Opens a handle in the namespace `ip netns` calls `name`
    /// (`/run/netns/<name>`). A name that is empty, `.`, `..` or contains
    /// `/` is refused with [`Error::Namespace`] (`InvalidInput`).
    pub fn in_named_netns(name: &str) -> Result<Self> {
        let path = named_netns_path(name)?;
        Self::in_netns(path)
    }
}

/// `/run/netns/<name>`, or an error for a name that is not a plain file
/// name.
pub(crate) fn named_netns_path(name: &str) -> Result<PathBuf> {
    let path = Path::new(NETNS_RUN_DIR).join(name);
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(Error::Namespace {
            path,
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "a namespace name is a file name under /run/netns",
            ),
        });
    }
    Ok(path)
}

/// Creates, binds and connects a generic-netlink socket inside the
/// namespace at `path`, on a thread of its own; the socket and its port.
pub(crate) fn socket_in(path: &Path) -> Result<((Socket, u32), (Socket, u32))> {
    on_thread_in(path, open_sockets)
}

/// Runs `work` on a short-lived thread that has entered the network
/// namespace at `path`: what it opens (a socket, a file under
/// `/proc/thread-self/net`) belongs to that namespace, and no other code
/// runs there, as the thread ends with `work`. The caller's threads never
/// change namespace.
pub(crate) fn on_thread_in<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns_error = |source: io::Error| Error::Namespace {
        path: path.to_path_buf(),
        source,
    };
    // Opened here so that a missing path is reported before any thread
    // starts; the file is only read by setns.
    let file = File::open(path).map_err(ns_error)?;
    let worker = std::thread::Builder::new()
        .name("ipvs-netns".into())
        .spawn(move || -> std::result::Result<Result<T>, io::Error> {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            Ok(work())
        })
        .map_err(ns_error)?;
    match worker.join() {
        Ok(Ok(done)) => done,
        Ok(Err(source)) => Err(ns_error(source)),
        Err(_) => Err(ns_error(io::Error::other(
            "the thread working in the namespace panicked",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns_kind(r: Result<Handle>) -> io::ErrorKind {
        match r {
            Err(Error::Namespace { source, .. }) => source.kind(),
            other => panic!("expected a namespace error, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_path_is_a_typed_not_found() {
        assert_eq!(
            ns_kind(Handle::in_netns("/nonexistent/ns/net")),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            ns_kind(Handle::in_named_netns("ipvs-rs-no-such-namespace")),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn names_with_slashes_or_dots_are_refused() {
        for name in ["", ".", "..", "a/b", "../etc"] {
            assert_eq!(
                ns_kind(Handle::in_named_netns(name)),
                io::ErrorKind::InvalidInput,
                "{name:?}"
            );
        }
    }

    #[test]
    fn a_file_that_is_no_namespace_is_refused_by_setns() {
        // setns(2) on a regular file: EINVAL (EPERM without CAP_SYS_ADMIN).
        let err = Handle::in_netns("/proc/self/status").unwrap_err();
        match err {
            Error::Namespace { path, source } => {
                assert_eq!(path, Path::new("/proc/self/status"));
                let errno = source.raw_os_error();
                assert!(
                    errno == Some(libc::EINVAL) || errno == Some(libc::EPERM),
                    "{source}"
                );
            }
            other => panic!("expected a namespace error, got {other:?}"),
        }
    }
}
