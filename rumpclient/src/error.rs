//! The client's error type.

use std::io;

use netbsd_abi::errno::{self, io_text, Errno};
use netbsd_abi::sp::ProtoError;

/// What went wrong talking to a rump kernel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `RUMP_SERVER` is not set.
    #[error("RUMP_SERVER not set")]
    NoServer,
    /// `RUMP_SERVER` is set but empty.
    #[error("RUMP_SERVER is empty (expected unix://PATH or tcp://ADDR:PORT)")]
    EmptyServer,
    /// The URL could not be understood.
    #[error("{url}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Connecting failed (no such socket, refused, ...).
    #[error("connect {url}: {}", io_text(.source))]
    Connect {
        /// The server URL.
        url: String,
        /// The socket error.
        source: io::Error,
    },
    /// The connection broke (server exited or dropped us).
    #[error("{url}: connection to server lost{}", lost_text(.source))]
    Lost {
        /// The server URL.
        url: String,
        /// The socket error, when there was one (`None`: the server
        /// closed the connection).
        source: Option<io::Error>,
    },
    /// The server said something this client does not understand.
    #[error("{url}: protocol error: {what}")]
    Protocol {
        /// The server URL.
        url: String,
        /// What was wrong with the server's answer.
        what: String,
    },
    /// The server refused a request with a protocol error.
    #[error("{url}: server refused: {error}")]
    Refused {
        /// The server URL.
        url: String,
        /// The protocol error it answered with.
        error: ProtoError,
    },
    /// An environment variable whose value is refused
    /// (`RUMPCLIENT_RETRYCONNECT=x: expected inftime, once, die or seconds`).
    #[error("{name}={value}: expected {expected}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it may be.
        expected: &'static str,
    },
    /// The system call failed with this NetBSD errno.
    #[error("{}", .0.description())]
    Errno(#[from] Errno),
}

/// What follows "connection to server lost": the host's reason, if any.
fn lost_text(e: &Option<io::Error>) -> String {
    e.as_ref()
        .map(|e| format!(": {}", io_text(e)))
        .unwrap_or_default()
}

impl Error {
    /// The NetBSD errno that best describes this error (`ENOTCONN` for a
    /// lost connection, `EPROTO` for a protocol error, ...).
    pub fn errno(&self) -> Errno {
        match self {
            Error::NoServer => Errno(errno::ENOENT),
            Error::EmptyServer => Errno(errno::EINVAL),
            Error::Url { .. } | Error::Env { .. } => Errno(errno::EINVAL),
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

impl PartialEq<Errno> for Error {
    fn eq(&self, other: &Errno) -> bool {
        matches!(self, Error::Errno(x) if x == other)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Connect { source, .. } => source,
            Error::Lost {
                source: Some(s), ..
            } => s,
            other => io::Error::from_raw_os_error(other.errno().to_host()),
        }
    }
}
