//! The client's error type.

use std::fmt;
use std::io;

use netbsd_abi::errno::{self, Errno};
use netbsd_abi::sp::ProtoError;

/// What went wrong talking to a rump kernel.
#[derive(Debug)]
pub enum Error {
    /// `RUMP_SERVER` is not set.
    NoServer,
    /// `RUMP_SERVER` is set but empty.
    EmptyServer,
    /// The URL could not be understood.
    Url { url: String, reason: String },
    /// Connecting failed (no such socket, refused, ...).
    Connect { url: String, source: io::Error },
    /// The connection broke (server exited or dropped us).
    Lost { url: String, source: Option<io::Error> },
    /// The server said something this client does not understand.
    Protocol { url: String, what: String },
    /// The server refused a request with a protocol error.
    Refused { url: String, error: ProtoError },
    /// The system call failed with this NetBSD errno.
    Errno(Errno),
}

/// The host's text for an I/O error, without Rust's "(os error N)".
pub(crate) fn io_text(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoServer => f.write_str("RUMP_SERVER not set"),
            Error::EmptyServer => f.write_str("RUMP_SERVER is empty (expected unix://PATH or tcp://ADDR:PORT)"),
            Error::Url { url, reason } => write!(f, "{url}: {reason}"),
            Error::Connect { url, source } => write!(f, "connect {url}: {}", io_text(source)),
            Error::Lost { url, source: Some(e) } => {
                write!(f, "{url}: connection to server lost: {}", io_text(e))
            }
            Error::Lost { url, source: None } => write!(f, "{url}: connection to server lost"),
            Error::Protocol { url, what } => write!(f, "{url}: protocol error: {what}"),
            Error::Refused { url, error } => write!(f, "{url}: server refused: {error}"),
            Error::Errno(e) => f.write_str(&e.description()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } => Some(source),
            Error::Lost { source: Some(e), .. } => Some(e),
            Error::Errno(e) => Some(e),
            _ => None,
        }
    }
}

impl Error {
    /// The NetBSD errno that best describes this error (`ENOTCONN` for a
    /// lost connection, `EPROTO` for a protocol error, ...).
    pub fn errno(&self) -> Errno {
        match self {
            Error::NoServer => Errno(errno::ENOENT),
            Error::EmptyServer => Errno(errno::EINVAL),
            Error::Url { .. } => Errno(errno::EINVAL),
            Error::Connect { source, .. } => match source.raw_os_error() {
                Some(h) => Errno::from_host(h),
                None => Errno(errno::EIO),
            },
            Error::Lost { .. } => Errno(errno::ENOTCONN),
            Error::Protocol { .. } => Errno(errno::EPROTO),
            Error::Refused { error, .. } => Errno(error.errno()),
            Error::Errno(e) => *e,
        }
    }

    /// True for a system call that failed with NetBSD errno `e`.
    pub fn is_errno(&self, e: i32) -> bool {
        matches!(self, Error::Errno(x) if x.0 == e)
    }

    /// True when the server can no longer be reached on this connection.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, Error::Lost { .. } | Error::Connect { .. })
    }
}

impl From<Errno> for Error {
    fn from(e: Errno) -> Error {
        Error::Errno(e)
    }
}

impl PartialEq<Errno> for Error {
    fn eq(&self, other: &Errno) -> bool {
        matches!(self, Error::Errno(x) if x == other)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Connect { source, .. } => source,
            Error::Lost { source: Some(s), .. } => s,
            other => io::Error::from_raw_os_error(other.errno().to_host()),
        }
    }
}
