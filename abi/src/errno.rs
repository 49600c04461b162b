//! NetBSD errno values and their translation to and from the host's.
//!
//! Values are NetBSD's `sys/errno.h`; the kernel and the wire speak these.
//! Host (Linux) errno is translated in one place, here.

/// "Operation not permitted".
pub const EPERM: i32 = 1;
/// "No such file or directory".
pub const ENOENT: i32 = 2;
/// "No such process".
pub const ESRCH: i32 = 3;
/// "Interrupted system call".
pub const EINTR: i32 = 4;
/// "Input/output error".
pub const EIO: i32 = 5;
/// "No such device or address".
pub const ENXIO: i32 = 6;
/// "Argument list too long".
pub const E2BIG: i32 = 7;
/// "Exec format error".
pub const ENOEXEC: i32 = 8;
/// "Bad file descriptor".
pub const EBADF: i32 = 9;
/// "No child processes".
pub const ECHILD: i32 = 10;
/// "Resource deadlock avoided".
pub const EDEADLK: i32 = 11;
/// "Cannot allocate memory".
pub const ENOMEM: i32 = 12;
/// "Permission denied".
pub const EACCES: i32 = 13;
/// "Bad address".
pub const EFAULT: i32 = 14;
/// "Block device required".
pub const ENOTBLK: i32 = 15;
/// "Device or resource busy".
pub const EBUSY: i32 = 16;
/// "File exists".
pub const EEXIST: i32 = 17;
/// "Invalid cross-device link".
pub const EXDEV: i32 = 18;
/// "No such device".
pub const ENODEV: i32 = 19;
/// "Not a directory".
pub const ENOTDIR: i32 = 20;
/// "Is a directory".
pub const EISDIR: i32 = 21;
/// "Invalid argument".
pub const EINVAL: i32 = 22;
/// "Too many open files in system".
pub const ENFILE: i32 = 23;
/// "Too many open files".
pub const EMFILE: i32 = 24;
/// "Inappropriate ioctl for device".
pub const ENOTTY: i32 = 25;
/// "Text file busy".
pub const ETXTBSY: i32 = 26;
/// "File too large".
pub const EFBIG: i32 = 27;
/// "No space left on device".
pub const ENOSPC: i32 = 28;
/// "Illegal seek".
pub const ESPIPE: i32 = 29;
/// "Read-only file system".
pub const EROFS: i32 = 30;
/// "Too many links".
pub const EMLINK: i32 = 31;
/// "Broken pipe".
pub const EPIPE: i32 = 32;
/// "Numerical argument out of domain".
pub const EDOM: i32 = 33;
/// "Numerical result out of range".
pub const ERANGE: i32 = 34;
/// "Resource temporarily unavailable".
pub const EAGAIN: i32 = 35;
/// "Operation now in progress".
pub const EINPROGRESS: i32 = 36;
/// "Operation already in progress".
pub const EALREADY: i32 = 37;
/// "Socket operation on non-socket".
pub const ENOTSOCK: i32 = 38;
/// "Destination address required".
pub const EDESTADDRREQ: i32 = 39;
/// "Message too long".
pub const EMSGSIZE: i32 = 40;
/// "Protocol wrong type for socket".
pub const EPROTOTYPE: i32 = 41;
/// "Protocol not available".
pub const ENOPROTOOPT: i32 = 42;
/// "Protocol not supported".
pub const EPROTONOSUPPORT: i32 = 43;
/// "Socket type not supported".
pub const ESOCKTNOSUPPORT: i32 = 44;
/// "Operation not supported".
pub const EOPNOTSUPP: i32 = 45;
/// "Protocol family not supported".
pub const EPFNOSUPPORT: i32 = 46;
/// "Address family not supported by protocol".
pub const EAFNOSUPPORT: i32 = 47;
/// "Address already in use".
pub const EADDRINUSE: i32 = 48;
/// "Cannot assign requested address".
pub const EADDRNOTAVAIL: i32 = 49;
/// "Network is down".
pub const ENETDOWN: i32 = 50;
/// "Network is unreachable".
pub const ENETUNREACH: i32 = 51;
/// "Network dropped connection on reset".
pub const ENETRESET: i32 = 52;
/// "Software caused connection abort".
pub const ECONNABORTED: i32 = 53;
/// "Connection reset by peer".
pub const ECONNRESET: i32 = 54;
/// "No buffer space available".
pub const ENOBUFS: i32 = 55;
/// "Transport endpoint is already connected".
pub const EISCONN: i32 = 56;
/// "Transport endpoint is not connected".
pub const ENOTCONN: i32 = 57;
/// "Cannot send after transport endpoint shutdown".
pub const ESHUTDOWN: i32 = 58;
/// "Too many references: cannot splice".
pub const ETOOMANYREFS: i32 = 59;
/// "Connection timed out".
pub const ETIMEDOUT: i32 = 60;
/// "Connection refused".
pub const ECONNREFUSED: i32 = 61;
/// "Too many levels of symbolic links".
pub const ELOOP: i32 = 62;
/// "File name too long".
pub const ENAMETOOLONG: i32 = 63;
/// "Host is down".
pub const EHOSTDOWN: i32 = 64;
/// "No route to host".
pub const EHOSTUNREACH: i32 = 65;
/// "Directory not empty".
pub const ENOTEMPTY: i32 = 66;
/// Too many processes (a per-user process limit was hit).
pub const EPROCLIM: i32 = 67;
/// "Too many users".
pub const EUSERS: i32 = 68;
/// "Disk quota exceeded".
pub const EDQUOT: i32 = 69;
/// "Stale file handle".
pub const ESTALE: i32 = 70;
/// "Object is remote".
pub const EREMOTE: i32 = 71;
/// RPC struct is bad (NetBSD only; no host counterpart).
pub const EBADRPC: i32 = 72;
/// RPC version wrong (NetBSD only).
pub const ERPCMISMATCH: i32 = 73;
/// RPC program not available (NetBSD only).
pub const EPROGUNAVAIL: i32 = 74;
/// Program version wrong (NetBSD only).
pub const EPROGMISMATCH: i32 = 75;
/// Bad procedure for program (NetBSD only).
pub const EPROCUNAVAIL: i32 = 76;
/// "No locks available".
pub const ENOLCK: i32 = 77;
/// "Function not implemented".
pub const ENOSYS: i32 = 78;
/// Inappropriate file type or format (NetBSD only): what a mount of an image that is not the file system asked for returns.
pub const EFTYPE: i32 = 79;
/// Authentication error (NetBSD only).
pub const EAUTH: i32 = 80;
/// Need authenticator (NetBSD only).
pub const ENEEDAUTH: i32 = 81;
/// "Identifier removed".
pub const EIDRM: i32 = 82;
/// "No message of desired type".
pub const ENOMSG: i32 = 83;
/// "Value too large for defined data type".
pub const EOVERFLOW: i32 = 84;
/// "Invalid or incomplete multibyte or wide character".
pub const EILSEQ: i32 = 85;
/// "Operation not supported".
pub const ENOTSUP: i32 = 86;
/// "Operation canceled".
pub const ECANCELED: i32 = 87;
/// "Bad message".
pub const EBADMSG: i32 = 88;
/// "No data available".
pub const ENODATA: i32 = 89;
/// "Out of streams resources".
pub const ENOSR: i32 = 90;
/// "Device not a stream".
pub const ENOSTR: i32 = 91;
/// "Timer expired".
pub const ETIME: i32 = 92;
/// Attribute not found (NetBSD only; Linux reports ENODATA).
pub const ENOATTR: i32 = 93;
/// "Multihop attempted".
pub const EMULTIHOP: i32 = 94;
/// "Link has been severed".
pub const ENOLINK: i32 = 95;
/// "Protocol error".
pub const EPROTO: i32 = 96;

/// Pairs (host errno, NetBSD errno) for every name both systems define.
const PAIRS: &[(i32, i32)] = &[
    (libc::EPERM, EPERM),
    (libc::ENOENT, ENOENT),
    (libc::ESRCH, ESRCH),
    (libc::EINTR, EINTR),
    (libc::EIO, EIO),
    (libc::ENXIO, ENXIO),
    (libc::E2BIG, E2BIG),
    (libc::ENOEXEC, ENOEXEC),
    (libc::EBADF, EBADF),
    (libc::ECHILD, ECHILD),
    (libc::EDEADLK, EDEADLK),
    (libc::ENOMEM, ENOMEM),
    (libc::EACCES, EACCES),
    (libc::EFAULT, EFAULT),
    (libc::ENOTBLK, ENOTBLK),
    (libc::EBUSY, EBUSY),
    (libc::EEXIST, EEXIST),
    (libc::EXDEV, EXDEV),
    (libc::ENODEV, ENODEV),
    (libc::ENOTDIR, ENOTDIR),
    (libc::EISDIR, EISDIR),
    (libc::EINVAL, EINVAL),
    (libc::ENFILE, ENFILE),
    (libc::EMFILE, EMFILE),
    (libc::ENOTTY, ENOTTY),
    (libc::ETXTBSY, ETXTBSY),
    (libc::EFBIG, EFBIG),
    (libc::ENOSPC, ENOSPC),
    (libc::ESPIPE, ESPIPE),
    (libc::EROFS, EROFS),
    (libc::EMLINK, EMLINK),
    (libc::EPIPE, EPIPE),
    (libc::EDOM, EDOM),
    (libc::ERANGE, ERANGE),
    (libc::EAGAIN, EAGAIN),
    (libc::EINPROGRESS, EINPROGRESS),
    (libc::EALREADY, EALREADY),
    (libc::ENOTSOCK, ENOTSOCK),
    (libc::EDESTADDRREQ, EDESTADDRREQ),
    (libc::EMSGSIZE, EMSGSIZE),
    (libc::EPROTOTYPE, EPROTOTYPE),
    (libc::ENOPROTOOPT, ENOPROTOOPT),
    (libc::EPROTONOSUPPORT, EPROTONOSUPPORT),
    (libc::ESOCKTNOSUPPORT, ESOCKTNOSUPPORT),
    (libc::EOPNOTSUPP, EOPNOTSUPP),
    (libc::EPFNOSUPPORT, EPFNOSUPPORT),
    (libc::EAFNOSUPPORT, EAFNOSUPPORT),
    (libc::EADDRINUSE, EADDRINUSE),
    (libc::EADDRNOTAVAIL, EADDRNOTAVAIL),
    (libc::ENETDOWN, ENETDOWN),
    (libc::ENETUNREACH, ENETUNREACH),
    (libc::ENETRESET, ENETRESET),
    (libc::ECONNABORTED, ECONNABORTED),
    (libc::ECONNRESET, ECONNRESET),
    (libc::ENOBUFS, ENOBUFS),
    (libc::EISCONN, EISCONN),
    (libc::ENOTCONN, ENOTCONN),
    (libc::ESHUTDOWN, ESHUTDOWN),
    (libc::ETOOMANYREFS, ETOOMANYREFS),
    (libc::ETIMEDOUT, ETIMEDOUT),
    (libc::ECONNREFUSED, ECONNREFUSED),
    (libc::ELOOP, ELOOP),
    (libc::ENAMETOOLONG, ENAMETOOLONG),
    (libc::EHOSTDOWN, EHOSTDOWN),
    (libc::EHOSTUNREACH, EHOSTUNREACH),
    (libc::ENOTEMPTY, ENOTEMPTY),
    (libc::EUSERS, EUSERS),
    (libc::EDQUOT, EDQUOT),
    (libc::ESTALE, ESTALE),
    (libc::EREMOTE, EREMOTE),
    (libc::ENOLCK, ENOLCK),
    (libc::ENOSYS, ENOSYS),
    (libc::EIDRM, EIDRM),
    (libc::ENOMSG, ENOMSG),
    (libc::EOVERFLOW, EOVERFLOW),
    (libc::EILSEQ, EILSEQ),
    (libc::ENOTSUP, ENOTSUP),
    (libc::ECANCELED, ECANCELED),
    (libc::EBADMSG, EBADMSG),
    (libc::ENODATA, ENODATA),
    (libc::ENOSR, ENOSR),
    (libc::ENOSTR, ENOSTR),
    (libc::ETIME, ETIME),
    (libc::EMULTIHOP, EMULTIHOP),
    (libc::ENOLINK, ENOLINK),
    (libc::EPROTO, EPROTO),
];
// NetBSD-only names (no host counterpart): EPROCLIM, EBADRPC, ERPCMISMATCH, EPROGUNAVAIL, EPROGMISMATCH, EPROCUNAVAIL, EFTYPE, EAUTH, ENEEDAUTH, ENOATTR

/// A NetBSD errno value. Every `Result` in the runtime carries one of these,
/// so nothing needs to guess which numbering an `i32` uses.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// Translate a host errno. Unknown host values become `EINVAL`, as
    /// NetBSD's own hypercall layer does.
    pub fn from_host(host: i32) -> Errno {
        Errno(host_to_netbsd(host))
    }

    /// The calling thread's last host error, translated.
    pub fn last_host() -> Errno {
        Errno::from_host(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }

    /// The host errno for this NetBSD value (for messages on the host).
    pub fn to_host(self) -> i32 {
        netbsd_to_host(self.0)
    }

    /// The host's text for this error ("No such file or directory").
    pub fn description(self) -> String {
        // NetBSD-only values keep NetBSD's meaning rather than a host
        // approximation.
        let own = match self.0 {
            EFTYPE => Some("Inappropriate file type or format"),
            EAUTH => Some("Authentication error"),
            ENEEDAUTH => Some("Need authenticator"),
            ENOATTR => Some("Attribute not found"),
            EPROCLIM => Some("Too many processes"),
            EBADRPC => Some("RPC struct is bad"),
            ERPCMISMATCH => Some("RPC version wrong"),
            EPROGUNAVAIL => Some("RPC prog. not avail"),
            EPROGMISMATCH => Some("Program version wrong"),
            EPROCUNAVAIL => Some("Bad procedure for program"),
            _ => None,
        };
        if let Some(t) = own {
            return t.to_string();
        }
        let host = self.to_host();
        if host == 0 {
            return format!("NetBSD error {}", self.0);
        }
        strerror(host)
    }
}

/// The host's text for host errno `host` ("No such file or directory"),
/// as a Unix message has it: without the " (os error N)" std appends.
pub fn strerror(host: i32) -> String {
    let s = std::io::Error::from_raw_os_error(host).to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The text of a host I/O error for a message: [`strerror`] of its errno,
/// or its own text when it has none.
pub fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => strerror(n),
        None => e.to_string(),
    }
}

impl std::fmt::Debug for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Errno({} {})", self.0, name(self.0).unwrap_or("?"))
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description())
    }
}

impl std::error::Error for Errno {}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Errno {
        match e.raw_os_error() {
            Some(h) => Errno::from_host(h),
            None => Errno(EIO),
        }
    }
}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> std::io::Error {
        std::io::Error::from_raw_os_error(e.to_host())
    }
}

/// Host errno → NetBSD errno; 0 stays 0; anything unknown is `EINVAL`.
pub fn host_to_netbsd(host: i32) -> i32 {
    if host == 0 {
        return 0;
    }
    PAIRS
        .iter()
        .find(|p| p.0 == host)
        .map(|p| p.1)
        .unwrap_or(EINVAL)
}

/// NetBSD errno → host errno; NetBSD-only values map to the closest host
/// meaning, else `EINVAL`.
pub fn netbsd_to_host(nb: i32) -> i32 {
    if nb == 0 {
        return 0;
    }
    if let Some(p) = PAIRS.iter().find(|p| p.1 == nb) {
        return p.0;
    }
    match nb {
        ENOATTR => libc::ENODATA,
        EAUTH | ENEEDAUTH => libc::EACCES,
        _ => libc::EINVAL,
    }
}

/// The symbolic name of a NetBSD errno value.
pub fn name(nb: i32) -> Option<&'static str> {
    NAMES.iter().find(|p| p.1 == nb).map(|p| p.0)
}

const NAMES: &[(&str, i32)] = &[
    ("EPERM", EPERM),
    ("ENOENT", ENOENT),
    ("ESRCH", ESRCH),
    ("EINTR", EINTR),
    ("EIO", EIO),
    ("ENXIO", ENXIO),
    ("E2BIG", E2BIG),
    ("ENOEXEC", ENOEXEC),
    ("EBADF", EBADF),
    ("ECHILD", ECHILD),
    ("EDEADLK", EDEADLK),
    ("ENOMEM", ENOMEM),
    ("EACCES", EACCES),
    ("EFAULT", EFAULT),
    ("ENOTBLK", ENOTBLK),
    ("EBUSY", EBUSY),
    ("EEXIST", EEXIST),
    ("EXDEV", EXDEV),
    ("ENODEV", ENODEV),
    ("ENOTDIR", ENOTDIR),
    ("EISDIR", EISDIR),
    ("EINVAL", EINVAL),
    ("ENFILE", ENFILE),
    ("EMFILE", EMFILE),
    ("ENOTTY", ENOTTY),
    ("ETXTBSY", ETXTBSY),
    ("EFBIG", EFBIG),
    ("ENOSPC", ENOSPC),
    ("ESPIPE", ESPIPE),
    ("EROFS", EROFS),
    ("EMLINK", EMLINK),
    ("EPIPE", EPIPE),
    ("EDOM", EDOM),
    ("ERANGE", ERANGE),
    ("EAGAIN", EAGAIN),
    ("EINPROGRESS", EINPROGRESS),
    ("EALREADY", EALREADY),
    ("ENOTSOCK", ENOTSOCK),
    ("EDESTADDRREQ", EDESTADDRREQ),
    ("EMSGSIZE", EMSGSIZE),
    ("EPROTOTYPE", EPROTOTYPE),
    ("ENOPROTOOPT", ENOPROTOOPT),
    ("EPROTONOSUPPORT", EPROTONOSUPPORT),
    ("ESOCKTNOSUPPORT", ESOCKTNOSUPPORT),
    ("EOPNOTSUPP", EOPNOTSUPP),
    ("EPFNOSUPPORT", EPFNOSUPPORT),
    ("EAFNOSUPPORT", EAFNOSUPPORT),
    ("EADDRINUSE", EADDRINUSE),
    ("EADDRNOTAVAIL", EADDRNOTAVAIL),
    ("ENETDOWN", ENETDOWN),
    ("ENETUNREACH", ENETUNREACH),
    ("ENETRESET", ENETRESET),
    ("ECONNABORTED", ECONNABORTED),
    ("ECONNRESET", ECONNRESET),
    ("ENOBUFS", ENOBUFS),
    ("EISCONN", EISCONN),
    ("ENOTCONN", ENOTCONN),
    ("ESHUTDOWN", ESHUTDOWN),
    ("ETOOMANYREFS", ETOOMANYREFS),
    ("ETIMEDOUT", ETIMEDOUT),
    ("ECONNREFUSED", ECONNREFUSED),
    ("ELOOP", ELOOP),
    ("ENAMETOOLONG", ENAMETOOLONG),
    ("EHOSTDOWN", EHOSTDOWN),
    ("EHOSTUNREACH", EHOSTUNREACH),
    ("ENOTEMPTY", ENOTEMPTY),
    ("EPROCLIM", EPROCLIM),
    ("EUSERS", EUSERS),
    ("EDQUOT", EDQUOT),
    ("ESTALE", ESTALE),
    ("EREMOTE", EREMOTE),
    ("EBADRPC", EBADRPC),
    ("ERPCMISMATCH", ERPCMISMATCH),
    ("EPROGUNAVAIL", EPROGUNAVAIL),
    ("EPROGMISMATCH", EPROGMISMATCH),
    ("EPROCUNAVAIL", EPROCUNAVAIL),
    ("ENOLCK", ENOLCK),
    ("ENOSYS", ENOSYS),
    ("EFTYPE", EFTYPE),
    ("EAUTH", EAUTH),
    ("ENEEDAUTH", ENEEDAUTH),
    ("EIDRM", EIDRM),
    ("ENOMSG", ENOMSG),
    ("EOVERFLOW", EOVERFLOW),
    ("EILSEQ", EILSEQ),
    ("ENOTSUP", ENOTSUP),
    ("ECANCELED", ECANCELED),
    ("EBADMSG", EBADMSG),
    ("ENODATA", ENODATA),
    ("ENOSR", ENOSR),
    ("ENOSTR", ENOSTR),
    ("ETIME", ETIME),
    ("ENOATTR", ENOATTR),
    ("EMULTIHOP", EMULTIHOP),
    ("ENOLINK", ENOLINK),
    ("EPROTO", EPROTO),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_host_errno_translates() {
        // Every host errno 1..=133 (Linux) maps to a defined NetBSD value.
        for h in 1..=133 {
            let nb = host_to_netbsd(h);
            assert!(name(nb).is_some(), "host {h} -> {nb}");
        }
        assert_eq!(host_to_netbsd(libc::EAGAIN), 35);
        assert_eq!(host_to_netbsd(libc::ENOSYS), 78);
        assert_eq!(host_to_netbsd(libc::ENOTEMPTY), 66);
        assert_eq!(host_to_netbsd(libc::ETIMEDOUT), 60);
        assert_eq!(host_to_netbsd(0), 0);
        assert_eq!(host_to_netbsd(9999), EINVAL);
    }

    #[test]
    fn round_trip_for_shared_names() {
        for &(h, nb) in PAIRS {
            assert_eq!(host_to_netbsd(netbsd_to_host(nb)), host_to_netbsd(h));
        }
        assert_eq!(Errno(ENOENT).description(), "No such file or directory");
        assert_eq!(
            Errno(EFTYPE).description(),
            "Inappropriate file type or format"
        );
    }
}
