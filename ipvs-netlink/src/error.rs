//! Errors of [`crate::Handle`]: each names the operation it belongs to.

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
    /// A raw request sent with [`crate::Handle::request`].
    Raw(IpvsCmd),
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
            Error::Kernel { op, errno } => {
                write!(f, "{op}: {}", io::Error::from_raw_os_error(*errno))
            }
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

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
