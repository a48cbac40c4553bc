//! ipvsadm's words for the kernel's errors: libipvs's `ipvs_strerror`,
//! which names the error of each operation, and glibc's `strerror` for
//! the rest (musl words them differently, and scripts match the words).

use ipvs_netlink::{Error, Operation};

/// The message libipvs prints for `errno` after `op`.
pub fn message(op: Option<Operation>, errno: i32) -> String {
    use Operation::*;
    let specific = match (op, errno) {
        (Some(AddService), libc::EEXIST) => Some("Service already exists"),
        (Some(AddService | EditService), libc::ENOENT) => {
            Some("Scheduler or persistence engine not found")
        }
        (Some(EditService | DeleteService | Zero), libc::ESRCH) => Some("No such service"),
        (Some(StartDaemon), libc::EEXIST) => Some("Daemon has already run"),
        (Some(StopDaemon), libc::ESRCH) => Some("No daemon is running"),
        (Some(AddDestination | EditDestination | DeleteDestination), libc::ESRCH) => {
            Some("Service not defined")
        }
        (Some(AddDestination), libc::EEXIST) => Some("Destination already exists"),
        (Some(EditDestination | DeleteDestination), libc::ENOENT) => Some("No such destination"),
        (Some(ListServices | ListDestinations | GetService), libc::ESRCH) => {
            Some("No such service")
        }
        (_, libc::EPERM) => Some("Permission denied (you must be root)"),
        (_, libc::EINVAL) => {
            Some("Invalid operation.  Possibly wrong module version, address not unicast, ...")
        }
        (_, libc::ENOPROTOOPT) => Some("Protocol not available"),
        (_, libc::ENOMEM) => Some("Memory allocation problem"),
        (_, libc::EOPNOTSUPP) => Some("Operation not supported with IPv6"),
        (_, libc::EAFNOSUPPORT) => Some("Operation not supported with specified address family"),
        (_, libc::EMSGSIZE) => Some("Module is wrong version"),
        _ => None,
    };
    match specific {
        Some(s) => s.to_owned(),
        None => strerror(errno),
    }
}

/// glibc's `strerror` texts for Linux errnos 0 to 133: ipvsadm is built
/// on glibc, and a static musl build would otherwise word some of them
/// differently ("Result not representable" for ERANGE).
const GLIBC_STRERROR: [&str; 134] = [
    "Success",
    "Operation not permitted",
    "No such file or directory",
    "No such process",
    "Interrupted system call",
    "Input/output error",
    "No such device or address",
    "Argument list too long",
    "Exec format error",
    "Bad file descriptor",
    "No child processes",
    "Resource temporarily unavailable",
    "Cannot allocate memory",
    "Permission denied",
    "Bad address",
    "Block device required",
    "Device or resource busy",
    "File exists",
    "Invalid cross-device link",
    "No such device",
    "Not a directory",
    "Is a directory",
    "Invalid argument",
    "Too many open files in system",
    "Too many open files",
    "Inappropriate ioctl for device",
    "Text file busy",
    "File too large",
    "No space left on device",
    "Illegal seek",
    "Read-only file system",
    "Too many links",
    "Broken pipe",
    "Numerical argument out of domain",
    "Numerical result out of range",
    "Resource deadlock avoided",
    "File name too long",
    "No locks available",
    "Function not implemented",
    "Directory not empty",
    "Too many levels of symbolic links",
    "Unknown error 41",
    "No message of desired type",
    "Identifier removed",
    "Channel number out of range",
    "Level 2 not synchronized",
    "Level 3 halted",
    "Level 3 reset",
    "Link number out of range",
    "Protocol driver not attached",
    "No CSI structure available",
    "Level 2 halted",
    "Invalid exchange",
    "Invalid request descriptor",
    "Exchange full",
    "No anode",
    "Invalid request code",
    "Invalid slot",
    "Unknown error 58",
    "Bad font file format",
    "Device not a stream",
    "No data available",
    "Timer expired",
    "Out of streams resources",
    "Machine is not on the network",
    "Package not installed",
    "Object is remote",
    "Link has been severed",
    "Advertise error",
    "Srmount error",
    "Communication error on send",
    "Protocol error",
    "Multihop attempted",
    "RFS specific error",
    "Bad message",
    "Value too large for defined data type",
    "Name not unique on network",
    "File descriptor in bad state",
    "Remote address changed",
    "Can not access a needed shared library",
    "Accessing a corrupted shared library",
    ".lib section in a.out corrupted",
    "Attempting to link in too many shared libraries",
    "Cannot exec a shared library directly",
    "Invalid or incomplete multibyte or wide character",
    "Interrupted system call should be restarted",
    "Streams pipe error",
    "Too many users",
    "Socket operation on non-socket",
    "Destination address required",
    "Message too long",
    "Protocol wrong type for socket",
    "Protocol not available",
    "Protocol not supported",
    "Socket type not supported",
    "Operation not supported",
    "Protocol family not supported",
    "Address family not supported by protocol",
    "Address already in use",
    "Cannot assign requested address",
    "Network is down",
    "Network is unreachable",
    "Network dropped connection on reset",
    "Software caused connection abort",
    "Connection reset by peer",
    "No buffer space available",
    "Transport endpoint is already connected",
    "Transport endpoint is not connected",
    "Cannot send after transport endpoint shutdown",
    "Too many references: cannot splice",
    "Connection timed out",
    "Connection refused",
    "Host is down",
    "No route to host",
    "Operation already in progress",
    "Operation now in progress",
    "Stale file handle",
    "Structure needs cleaning",
    "Not a XENIX named type file",
    "No XENIX semaphores available",
    "Is a named type file",
    "Remote I/O error",
    "Disk quota exceeded",
    "No medium found",
    "Wrong medium type",
    "Operation canceled",
    "Required key not available",
    "Key has expired",
    "Key has been revoked",
    "Key was rejected by service",
    "Owner died",
    "State not recoverable",
    "Operation not possible due to RF-kill",
    "Memory page has hardware error",
];

/// glibc's text for an errno (`Unknown error N` beyond its table).
pub fn strerror(errno: i32) -> String {
    usize::try_from(errno)
        .ok()
        .and_then(|i| GLIBC_STRERROR.get(i))
        .map(|s| (*s).to_owned())
        .unwrap_or_else(|| format!("Unknown error {errno}"))
}

/// The text for any handle error: the kernel's errno as ipvsadm words it,
/// anything else in our own words.
pub fn describe(e: &Error) -> String {
    match e.errno() {
        Some(errno) if matches!(e, Error::Kernel { .. } | Error::PermissionDenied { .. }) => {
            message(e.operation(), errno)
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_wording_not_musls() {
        assert_eq!(strerror(libc::ERANGE), "Numerical result out of range");
        assert_eq!(strerror(libc::ENETUNREACH), "Network is unreachable");
        assert_eq!(strerror(libc::ENODEV), "No such device");
        assert_eq!(strerror(9999), "Unknown error 9999");
        assert_eq!(
            message(Some(Operation::AddDestination), libc::EEXIST),
            "Destination already exists"
        );
        assert_eq!(
            message(Some(Operation::Flush), libc::EPERM),
            "Permission denied (you must be root)"
        );
    }
}
