//! NetBSD errno values and their translation to and from the host's.
//!
//! Values are NetBSD's `sys/errno.h`; the kernel and the wire speak these.
//! Host (Linux) errno is translated in one place, here.

pub const EPERM: i32 = 1;
pub const ENOENT: i32 = 2;
pub const ESRCH: i32 = 3;
pub const EINTR: i32 = 4;
pub const EIO: i32 = 5;
pub const ENXIO: i32 = 6;
pub const E2BIG: i32 = 7;
pub const ENOEXEC: i32 = 8;
pub const EBADF: i32 = 9;
pub const ECHILD: i32 = 10;
pub const EDEADLK: i32 = 11;
pub const ENOMEM: i32 = 12;
pub const EACCES: i32 = 13;
pub const EFAULT: i32 = 14;
pub const ENOTBLK: i32 = 15;
pub const EBUSY: i32 = 16;
pub const EEXIST: i32 = 17;
pub const EXDEV: i32 = 18;
pub const ENODEV: i32 = 19;
pub const ENOTDIR: i32 = 20;
pub const EISDIR: i32 = 21;
pub const EINVAL: i32 = 22;
pub const ENFILE: i32 = 23;
pub const EMFILE: i32 = 24;
pub const ENOTTY: i32 = 25;
pub const ETXTBSY: i32 = 26;
pub const EFBIG: i32 = 27;
pub const ENOSPC: i32 = 28;
pub const ESPIPE: i32 = 29;
pub const EROFS: i32 = 30;
pub const EMLINK: i32 = 31;
pub const EPIPE: i32 = 32;
pub const EDOM: i32 = 33;
pub const ERANGE: i32 = 34;
pub const EAGAIN: i32 = 35;
pub const EINPROGRESS: i32 = 36;
pub const EALREADY: i32 = 37;
pub const ENOTSOCK: i32 = 38;
pub const EDESTADDRREQ: i32 = 39;
pub const EMSGSIZE: i32 = 40;
pub const EPROTOTYPE: i32 = 41;
pub const ENOPROTOOPT: i32 = 42;
pub const EPROTONOSUPPORT: i32 = 43;
pub const ESOCKTNOSUPPORT: i32 = 44;
pub const EOPNOTSUPP: i32 = 45;
pub const EPFNOSUPPORT: i32 = 46;
pub const EAFNOSUPPORT: i32 = 47;
pub const EADDRINUSE: i32 = 48;
pub const EADDRNOTAVAIL: i32 = 49;
pub const ENETDOWN: i32 = 50;
pub const ENETUNREACH: i32 = 51;
pub const ENETRESET: i32 = 52;
pub const ECONNABORTED: i32 = 53;
pub const ECONNRESET: i32 = 54;
pub const ENOBUFS: i32 = 55;
pub const EISCONN: i32 = 56;
pub const ENOTCONN: i32 = 57;
pub const ESHUTDOWN: i32 = 58;
pub const ETOOMANYREFS: i32 = 59;
pub const ETIMEDOUT: i32 = 60;
pub const ECONNREFUSED: i32 = 61;
pub const ELOOP: i32 = 62;
pub const ENAMETOOLONG: i32 = 63;
pub const EHOSTDOWN: i32 = 64;
pub const EHOSTUNREACH: i32 = 65;
pub const ENOTEMPTY: i32 = 66;
pub const EPROCLIM: i32 = 67;
pub const EUSERS: i32 = 68;
pub const EDQUOT: i32 = 69;
pub const ESTALE: i32 = 70;
pub const EREMOTE: i32 = 71;
pub const EBADRPC: i32 = 72;
pub const ERPCMISMATCH: i32 = 73;
pub const EPROGUNAVAIL: i32 = 74;
pub const EPROGMISMATCH: i32 = 75;
pub const EPROCUNAVAIL: i32 = 76;
pub const ENOLCK: i32 = 77;
pub const ENOSYS: i32 = 78;
pub const EFTYPE: i32 = 79;
pub const EAUTH: i32 = 80;
pub const ENEEDAUTH: i32 = 81;
pub const EIDRM: i32 = 82;
pub const ENOMSG: i32 = 83;
pub const EOVERFLOW: i32 = 84;
pub const EILSEQ: i32 = 85;
pub const ENOTSUP: i32 = 86;
pub const ECANCELED: i32 = 87;
pub const EBADMSG: i32 = 88;
pub const ENODATA: i32 = 89;
pub const ENOSR: i32 = 90;
pub const ENOSTR: i32 = 91;
pub const ETIME: i32 = 92;
pub const ENOATTR: i32 = 93;
pub const EMULTIHOP: i32 = 94;
pub const ENOLINK: i32 = 95;
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
        let s = std::io::Error::from_raw_os_error(host).to_string();
        // std appends " (os error N)"; a Unix message has just the text.
        match s.find(" (os error") {
            Some(i) => s[..i].to_string(),
            None => s,
        }
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
