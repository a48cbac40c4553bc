//! Errors of [`crate::Handle`]: each names the operation it belongs to,
//! and says in IPVS's words what the kernel's errno meant for it.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::transport;
use crate::IpvsCmd;

/// What the handle was doing when an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Looking up the IPVS generic-netlink family.
    ResolveFamily,
    /// GET_INFO.
    GetInfo,
    /// The GET_SERVICE dump.
    ListServices,
    /// GET_SERVICE for one service.
    GetService,
    /// NEW_SERVICE.
    AddService,
    /// SET_SERVICE.
    EditService,
    /// DEL_SERVICE.
    DeleteService,
    /// The GET_DEST dump.
    ListDestinations,
    /// NEW_DEST.
    AddDestination,
    /// SET_DEST.
    EditDestination,
    /// DEL_DEST.
    DeleteDestination,
    /// FLUSH.
    Flush,
    /// ZERO of one service or all.
    Zero,
    /// GET_CONFIG.
    GetTimeouts,
    /// SET_CONFIG.
    SetTimeouts,
    /// NEW_DAEMON.
    StartDaemon,
    /// DEL_DAEMON.
    StopDaemon,
    /// The GET_DAEMON dump.
    ListDaemons,
    /// Reading the connection table (`/proc/net/ip_vs_conn`, [`crate::conn`]).
    ReadConnections,
    /// A raw request sent with [`crate::Handle::request`].
    Raw(IpvsCmd),
}

impl Operation {
    /// NEW_SERVICE or SET_SERVICE: the requests that name a scheduler.
    fn writes_a_service(self) -> bool {
        matches!(
            self,
            Operation::AddService
                | Operation::EditService
                | Operation::Raw(IpvsCmd::NewService | IpvsCmd::SetService)
        )
    }

    /// What `errno` means as the kernel's answer to this operation, in
    /// IPVS's words, for the errnos IPVS gives a meaning of its own
    /// (net/netfilter/ipvs/ip_vs_ctl.c); `None` for the others.
    fn reason(self, errno: i32) -> Option<&'static str> {
        use Operation::*;
        let daemon = matches!(
            self,
            StartDaemon | StopDaemon | Raw(IpvsCmd::NewDaemon | IpvsCmd::DelDaemon)
        );
        let dest = matches!(
            self,
            AddDestination
                | EditDestination
                | DeleteDestination
                | Raw(IpvsCmd::NewDest | IpvsCmd::SetDest | IpvsCmd::DelDest)
        );
        Some(match errno {
            libc::EEXIST if daemon => "a sync daemon of that state is already running",
            libc::EEXIST if dest => "the destination already exists",
            libc::EEXIST => "the service already exists",
            libc::ESRCH if daemon => "no sync daemon of that state is running",
            libc::ESRCH => "no such service",
            libc::ENOENT if self.writes_a_service() => {
                "no such scheduler or persistence engine (no ip_vs_NAME or ip_vs_pe_NAME module)"
            }
            libc::ENOENT if dest => "no such destination",
            libc::ERANGE if dest => "weight or thresholds out of range (a weight above 2^31 - 1, or a lower threshold above the upper one)",
            libc::EPERM => "permission denied (CAP_NET_ADMIN is required)",
            _ => return None,
        })
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Operation::ResolveFamily => "resolve the IPVS family",
            Operation::GetInfo => "get IPVS info",
            Operation::ListServices => "list services",
            Operation::GetService => "get service",
            Operation::AddService => "add service",
            Operation::EditService => "edit service",
            Operation::DeleteService => "delete service",
            Operation::ListDestinations => "list destinations",
            Operation::AddDestination => "add destination",
            Operation::EditDestination => "edit destination",
            Operation::DeleteDestination => "delete destination",
            Operation::Flush => "flush",
            Operation::Zero => "zero counters",
            Operation::GetTimeouts => "get timeouts",
            Operation::SetTimeouts => "set timeouts",
            Operation::StartDaemon => "start sync daemon",
            Operation::StopDaemon => "stop sync daemon",
            Operation::ListDaemons => "list sync daemons",
            Operation::ReadConnections => "read connections",
            Operation::Raw(cmd) => return write!(f, "IPVS command {cmd:?}"),
        };
        f.write_str(s)
    }
}

/// An error of an IPVS operation.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The kernel has no IPVS family: the `ip_vs` module is not loaded (or
    /// IPVS is not built).
    NotAvailable,
    /// The kernel refused for lack of `CAP_NET_ADMIN` (EPERM).
    PermissionDenied {
        /// The operation refused.
        op: Operation,
    },
    /// The kernel answered with an error number.
    Kernel {
        /// The operation refused.
        op: Operation,
        /// The positive errno, such as `libc::EEXIST`.
        errno: i32,
    },
    /// No reply came within the receive timeout.
    Timeout {
        /// The operation that waited.
        op: Operation,
        /// The timeout.
        after: Duration,
    },
    /// The socket failed.
    Io {
        /// The operation under way.
        op: Operation,
        /// The system error.
        source: io::Error,
    },
    /// A reply could not be decoded.
    Decode {
        /// The operation under way.
        op: Operation,
        /// What was wrong.
        message: String,
    },
    /// The reply to a pipelined request was dropped because the receive
    /// buffer overflowed (ENOBUFS): the kernel may or may not have
    /// applied it; read the table to know.
    ReplyLost {
        /// The operation whose reply was lost.
        op: Operation,
    },
    /// The network namespace of [`crate::Handle::in_netns`] could not be
    /// entered: the path is missing (`source.kind()` is `NotFound`), is no
    /// network namespace (`EINVAL`), or entering it is refused (`EPERM`).
    Namespace {
        /// The namespace file.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// A reply broke the netlink protocol (an unknown sequence number, a
    /// foreign port, an unexpected message).
    Protocol {
        /// The operation under way.
        op: Operation,
        /// What was wrong.
        message: String,
    },
}

impl Error {
    /// The kernel's errno, for [`Error::Kernel`] and
    /// [`Error::PermissionDenied`].
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            Error::PermissionDenied { .. } => Some(libc::EPERM),
            Error::Io { source, .. } | Error::Namespace { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Whether the kernel refused because what the request adds is there
    /// already (EEXIST): the service (NEW_SERVICE), the destination
    /// (NEW_DEST), or a sync daemon of that state (NEW_DAEMON).
    pub fn is_already_exists(&self) -> bool {
        self.kernel_errno() == Some(libc::EEXIST)
    }

    /// Whether the kernel refused because what the request names is not
    /// there. The kernel says so with two errnos: ESRCH for a service
    /// (every command that names one but NEW_SERVICE, a destination's
    /// included) and for a sync daemon to stop; ENOENT for a destination
    /// (SET_DEST, DEL_DEST). ENOENT from NEW_SERVICE or SET_SERVICE means
    /// a missing scheduler instead: [`Error::is_no_such_scheduler`].
    pub fn is_not_found(&self) -> bool {
        match (self.kernel_errno(), self.operation()) {
            (Some(libc::ESRCH), _) => true,
            (Some(libc::ENOENT), Some(op)) => !op.writes_a_service(),
            _ => false,
        }
    }

    /// Whether the kernel knows no scheduler (or persistence engine) of
    /// the name a NEW_SERVICE or SET_SERVICE gave: ENOENT from those two,
    /// after the kernel tried to load `ip_vs_NAME` (`ip_vs_pe_NAME`). The
    /// kernel answers both with the same errno.
    pub fn is_no_such_scheduler(&self) -> bool {
        match (self.kernel_errno(), self.operation()) {
            (Some(libc::ENOENT), Some(op)) => op.writes_a_service(),
            _ => false,
        }
    }

    /// Whether the kernel or the system refused for lack of privilege:
    /// `CAP_NET_ADMIN` in the socket's network namespace for every IPVS
    /// request (EPERM), or `CAP_SYS_ADMIN` to enter another namespace.
    pub fn is_permission(&self) -> bool {
        matches!(self.errno(), Some(libc::EPERM | libc::EACCES))
    }

    /// The errno of a kernel refusal ([`Error::Kernel`],
    /// [`Error::PermissionDenied`]), not of the socket.
    fn kernel_errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            Error::PermissionDenied { .. } => Some(libc::EPERM),
            _ => None,
        }
    }

    /// The operation that failed (none for [`Error::NotAvailable`] and
    /// [`Error::Namespace`]).
    pub fn operation(&self) -> Option<Operation> {
        match self {
            Error::NotAvailable | Error::Namespace { .. } => None,
            Error::PermissionDenied { op }
            | Error::Kernel { op, .. }
            | Error::Timeout { op, .. }
            | Error::ReplyLost { op }
            | Error::Io { op, .. }
            | Error::Decode { op, .. }
            | Error::Protocol { op, .. } => Some(*op),
        }
    }

    /// The transport's error `e`, met during `op`.
    pub(crate) fn at(op: Operation, e: transport::Error) -> Self {
        match e {
            transport::Error::Kernel(errno) => Error::from_errno(op, errno),
            transport::Error::Io(source) => Error::Io { op, source },
            transport::Error::Timeout(after) => Error::Timeout { op, after },
            transport::Error::Decode(message) => Error::Decode { op, message },
            transport::Error::Protocol(message) => Error::Protocol { op, message },
        }
    }

    pub(crate) fn from_errno(op: Operation, errno: i32) -> Self {
        if errno == libc::EPERM {
            Error::PermissionDenied { op }
        } else {
            Error::Kernel { op, errno }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotAvailable => f.write_str(
                "IPVS is not available: the kernel has no IPVS generic netlink family \
                 (is the ip_vs module loaded?)",
            ),
            Error::PermissionDenied { op } => {
                write!(f, "{op}: permission denied (CAP_NET_ADMIN is required)")
            }
            Error::Kernel { op, errno } => match (op.reason(*errno), errno_name(*errno)) {
                (Some(reason), Some(name)) => write!(f, "{op}: {reason} ({name})"),
                _ => write!(f, "{op}: {}", io::Error::from_raw_os_error(*errno)),
            },
            Error::Timeout { op, after } => {
                write!(f, "{op}: no reply from the kernel within {after:?}")
            }
            Error::Io { op, source } => write!(f, "{op}: {source}"),
            Error::ReplyLost { op } => write!(
                f,
                "{op}: the kernel's reply was lost (receive buffer overflow); the table tells whether it was applied"
            ),
            Error::Decode { op, message } => write!(f, "{op}: undecodable reply: {message}"),
            Error::Protocol { op, message } => write!(f, "{op}: netlink protocol error: {message}"),
            Error::Namespace { path, source } => {
                write!(f, "network namespace {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Namespace { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The symbolic name of the errnos [`Operation::reason`] words.
fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EEXIST => "EEXIST",
        libc::ESRCH => "ESRCH",
        libc::ENOENT => "ENOENT",
        libc::ERANGE => "ERANGE",
        libc::EPERM => "EPERM",
        _ => return None,
    })
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    /// What each predicate says of a kernel refusal, and the words
    /// `Display` uses, by operation and errno: the errnos IPVS returns
    /// (net/netfilter/ipvs/ip_vs_ctl.c; seen in the VM by
    /// vm-tests/tests/handle_ops.rs).
    #[test]
    fn kernel_errnos_in_ipvs_words() {
        use Operation::*;
        // (op, errno, exists, not found, no scheduler, permission, words)
        let table: &[(Operation, i32, bool, bool, bool, bool, &str)] = &[
            (AddService, libc::EEXIST, true, false, false, false, "add service: the service already exists (EEXIST)"),
            (AddDestination, libc::EEXIST, true, false, false, false, "add destination: the destination already exists (EEXIST)"),
            (StartDaemon, libc::EEXIST, true, false, false, false, "start sync daemon: a sync daemon of that state is already running (EEXIST)"),
            (EditService, libc::ESRCH, false, true, false, false, "edit service: no such service (ESRCH)"),
            (DeleteService, libc::ESRCH, false, true, false, false, "delete service: no such service (ESRCH)"),
            (AddDestination, libc::ESRCH, false, true, false, false, "add destination: no such service (ESRCH)"),
            (GetService, libc::ESRCH, false, true, false, false, "get service: no such service (ESRCH)"),
            (Zero, libc::ESRCH, false, true, false, false, "zero counters: no such service (ESRCH)"),
            (StopDaemon, libc::ESRCH, false, true, false, false, "stop sync daemon: no sync daemon of that state is running (ESRCH)"),
            (EditDestination, libc::ENOENT, false, true, false, false, "edit destination: no such destination (ENOENT)"),
            (DeleteDestination, libc::ENOENT, false, true, false, false, "delete destination: no such destination (ENOENT)"),
            (Raw(IpvsCmd::DelDest), libc::ENOENT, false, true, false, false, "IPVS command DelDest: no such destination (ENOENT)"),
            (AddService, libc::ENOENT, false, false, true, false, "add service: no such scheduler or persistence engine (no ip_vs_NAME or ip_vs_pe_NAME module) (ENOENT)"),
            (EditService, libc::ENOENT, false, false, true, false, "edit service: no such scheduler or persistence engine (no ip_vs_NAME or ip_vs_pe_NAME module) (ENOENT)"),
            (Raw(IpvsCmd::NewService), libc::ENOENT, false, false, true, false, "IPVS command NewService: no such scheduler or persistence engine (no ip_vs_NAME or ip_vs_pe_NAME module) (ENOENT)"),
            (AddDestination, libc::ERANGE, false, false, false, false, "add destination: weight or thresholds out of range (a weight above 2^31 - 1, or a lower threshold above the upper one) (ERANGE)"),
            (AddService, libc::EINVAL, false, false, false, false, "add service: Invalid argument (os error 22)"),
            (ListServices, libc::ENOMEM, false, false, false, false, "list services: Cannot allocate memory (os error 12)"),
        ];
        for &(op, errno, exists, not_found, no_sched, perm, words) in table {
            let e = Error::from_errno(op, errno);
            let what = format!("{op:?} {errno}");
            assert_eq!(e.errno(), Some(errno), "{what}");
            assert_eq!(e.operation(), Some(op), "{what}");
            assert_eq!(e.is_already_exists(), exists, "{what}");
            assert_eq!(e.is_not_found(), not_found, "{what}");
            assert_eq!(e.is_no_such_scheduler(), no_sched, "{what}");
            assert_eq!(e.is_permission(), perm, "{what}");
            assert_eq!(e.to_string(), words, "{what}");
        }
    }

    #[test]
    fn permission_and_the_errors_that_are_no_refusal() {
        let denied = Error::from_errno(Operation::ListServices, libc::EPERM);
        assert!(matches!(denied, Error::PermissionDenied { .. }));
        assert!(denied.is_permission());
        assert_eq!(denied.errno(), Some(libc::EPERM));
        assert!(!denied.is_not_found() && !denied.is_already_exists());
        let netns = Error::Namespace {
            path: "/run/netns/x".into(),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(netns.is_permission());
        assert!(
            !netns.is_not_found(),
            "a missing namespace file is no IPVS entry"
        );
        // The socket's own errors keep their source and mean nothing of
        // IPVS's table.
        let io_err = Error::Io {
            op: Operation::AddService,
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert!(!io_err.is_not_found() && !io_err.is_no_such_scheduler());
        let source = std::error::Error::source(&io_err).map(ToString::to_string);
        assert_eq!(
            source.as_deref(),
            Some("No such file or directory (os error 2)")
        );
        let timeout = Error::Timeout {
            op: Operation::Flush,
            after: Duration::from_secs(1),
        };
        assert_eq!(timeout.errno(), None);
        assert!(!timeout.is_permission() && !timeout.is_not_found());
    }
}
