//! The sysproxy wire format (NetBSD's remote-syscall protocol), as pure
//! data: constants, the 24-byte frame header, the banner line and the
//! payload layouts, plus what both ends share to move frames: [`io`]
//! (sending) and [`reader`] (the frame reader). The server
//! (`rumpuser::sp`) and the client (`rumpclient`) both build on it, as
//! NetBSD's both build on `sp_common.c`.
//!
//! Every integer is little-endian (amd64). A frame is a header followed by
//! `len - HDRSZ` payload bytes; `len` counts the header too.

use crate::errno;

pub mod io;
pub mod reader;

/// Protocol version carried in the banner.
pub const PROTO_MAJOR: u32 = 0;
/// Protocol minor version carried in the banner.
pub const PROTO_MINOR: u32 = 4;

/// Size of the frame header.
pub const HDRSZ: usize = 24;
/// Largest frame (header included) this implementation accepts. NetBSD has
/// no cap; ours keeps a hostile peer from making us allocate without bound.
pub const MAX_FRAME: u64 = 64 << 20;
/// The banner buffer: the banner line, newline included, is at most
/// `MAXBANNER - 1` bytes (NetBSD reserves one byte for its NUL).
pub const MAXBANNER: usize = 96;
/// Words in the fork authentication cookie (128 bits).
pub const AUTHLEN: usize = 4;
/// Bytes in the fork authentication cookie.
pub const COOKIE_LEN: usize = AUTHLEN * 4;

/// Frame classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Class {
    /// A request (client to server or, for copies, server to client).
    Req = 0,
    /// The answer to a request, with the same request number.
    Resp = 1,
    /// A protocol error answer (the error in the header's `arg`).
    Error = 2,
}

impl Class {
    /// The class with wire value `v`, if there is one.
    pub fn from_u16(v: u16) -> Option<Class> {
        Some(match v {
            0 => Class::Req,
            1 => Class::Resp,
            2 => Class::Error,
            _ => return None,
        })
    }
}

/// Frame types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Type {
    /// The first request on a connection: who the client is (guest, fork, exec).
    Handshake = 0,
    /// A system call.
    Syscall = 1,
    /// Server asks the client for its memory.
    Copyin = 2,
    /// Server asks the client for a NUL-terminated string of its memory.
    Copyinstr = 3,
    /// Server writes to the client's memory.
    Copyout = 4,
    /// Server writes a string to the client's memory.
    Copyoutstr = 5,
    /// Server asks the client to map anonymous memory.
    Anonmmap = 6,
    /// Client asks for a fork cookie before `fork(2)`.
    Prefork = 7,
    /// Server raises a signal in the client.
    Raise = 8,
}

impl Type {
    /// The type with wire value `v`, if there is one.
    pub fn from_u16(v: u16) -> Option<Type> {
        Some(match v {
            0 => Type::Handshake,
            1 => Type::Syscall,
            2 => Type::Copyin,
            3 => Type::Copyinstr,
            4 => Type::Copyout,
            5 => Type::Copyoutstr,
            6 => Type::Anonmmap,
            7 => Type::Prefork,
            8 => Type::Raise,
            _ => return None,
        })
    }
}

/// Handshake kinds (the header's `u32` in a `HANDSHAKE` request).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Handshake {
    /// A new process.
    Guest = 0,
    /// Authentication (never accepted, as in NetBSD).
    Auth = 1,
    /// The child of a `fork(2)`, presenting its parent's cookie.
    Fork = 2,
    /// A process after `execve(2)`, with its new name.
    Exec = 3,
}

impl Handshake {
    /// The handshake type with wire value `v`, if there is one.
    pub fn from_u32(v: u32) -> Option<Handshake> {
        Some(match v {
            0 => Handshake::Guest,
            1 => Handshake::Auth,
            2 => Handshake::Fork,
            3 => Handshake::Exec,
            _ => return None,
        })
    }
}

/// Protocol errors, carried in the header's `u32` of an `ERROR` frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ProtoError {
    /// No error.
    None = 0,
    /// The server is busy: try again.
    TryAgain = 1,
    /// The client is not authenticated.
    Auth = 2,
    /// The fork cookie is unknown or used.
    InvalidPrefork = 3,
    /// The server could not create the process.
    RforkFailed = 4,
    /// The client is in the middle of an exec.
    InExec = 5,
    /// The server is out of memory.
    NoMem = 6,
    /// The request did not decode.
    MalformedRequest = 7,
}

impl ProtoError {
    /// The protocol error with wire value `v`, if there is one.
    pub fn from_u32(v: u32) -> Option<ProtoError> {
        Some(match v {
            0 => ProtoError::None,
            1 => ProtoError::TryAgain,
            2 => ProtoError::Auth,
            3 => ProtoError::InvalidPrefork,
            4 => ProtoError::RforkFailed,
            5 => ProtoError::InExec,
            6 => ProtoError::NoMem,
            7 => ProtoError::MalformedRequest,
            _ => return None,
        })
    }

    /// The NetBSD errno NetBSD's client reports for this protocol error.
    pub fn errno(self) -> i32 {
        match self {
            ProtoError::None => 0,
            ProtoError::TryAgain => errno::EAGAIN,
            ProtoError::Auth => errno::EPERM,
            ProtoError::InvalidPrefork => errno::ESRCH,
            ProtoError::RforkFailed => errno::EIO,
            ProtoError::InExec => errno::EBUSY,
            ProtoError::NoMem => errno::ENOMEM,
            ProtoError::MalformedRequest => errno::EINVAL,
        }
    }

    /// Errno for a raw error value, unknown values included (`EINVAL`).
    pub fn errno_of(v: u32) -> i32 {
        ProtoError::from_u32(v)
            .map(|e| e.errno())
            .unwrap_or(errno::EINVAL)
    }

    /// A short description, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ProtoError::None => "no error",
            ProtoError::TryAgain => "server busy, try again",
            ProtoError::Auth => "not authenticated",
            ProtoError::InvalidPrefork => "invalid fork cookie",
            ProtoError::RforkFailed => "server could not create a process",
            ProtoError::InExec => "client is in exec",
            ProtoError::NoMem => "server out of memory",
            ProtoError::MalformedRequest => "malformed request",
        }
    }
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A header exactly as read off the wire, before any validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RawHeader {
    /// Frame length, header included.
    pub len: u64,
    /// Request number: pairs an answer with its request.
    pub reqno: u64,
    /// Frame class, not yet checked.
    pub class: u16,
    /// Frame type, not yet checked.
    pub ty: u16,
    /// Syscall number, error, handshake type or signal, by frame type.
    pub arg: u32,
}

impl RawHeader {
    /// Read the 24 header bytes as they are.
    pub fn parse(b: &[u8; HDRSZ]) -> RawHeader {
        RawHeader {
            len: u64::from_le_bytes(b[0..8].try_into().unwrap()),
            reqno: u64::from_le_bytes(b[8..16].try_into().unwrap()),
            class: u16::from_le_bytes([b[16], b[17]]),
            ty: u16::from_le_bytes([b[18], b[19]]),
            arg: u32::from_le_bytes(b[20..24].try_into().unwrap()),
        }
    }

    /// The 24 bytes on the wire.
    pub fn encode(&self) -> [u8; HDRSZ] {
        let mut b = [0u8; HDRSZ];
        b[0..8].copy_from_slice(&self.len.to_le_bytes());
        b[8..16].copy_from_slice(&self.reqno.to_le_bytes());
        b[16..18].copy_from_slice(&self.class.to_le_bytes());
        b[18..20].copy_from_slice(&self.ty.to_le_bytes());
        b[20..24].copy_from_slice(&self.arg.to_le_bytes());
        b
    }

    /// Check the length and decode class and type.
    pub fn validate(&self) -> Result<Header, FrameError> {
        if self.len < HDRSZ as u64 {
            return Err(FrameError::TooShort {
                reqno: self.reqno,
                len: self.len,
            });
        }
        if self.len > MAX_FRAME {
            return Err(FrameError::TooLong {
                reqno: self.reqno,
                len: self.len,
            });
        }
        let class = Class::from_u16(self.class).ok_or(FrameError::UnknownClass {
            reqno: self.reqno,
            class: self.class,
        })?;
        // ERROR frames carry no meaningful type (NetBSD sends 0); accept any.
        let ty = match Type::from_u16(self.ty) {
            Some(t) => t,
            None if class == Class::Error => Type::Handshake,
            None => {
                return Err(FrameError::UnknownType {
                    reqno: self.reqno,
                    ty: self.ty,
                })
            }
        };
        Ok(Header {
            len: self.len,
            reqno: self.reqno,
            class,
            ty,
            arg: self.arg,
        })
    }
}

/// A validated header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Frame length, header included (at least [`HDRSZ`], at most [`MAX_FRAME`]).
    pub len: u64,
    /// Request number: pairs an answer with its request.
    pub reqno: u64,
    /// Frame class.
    pub class: Class,
    /// Frame type.
    pub ty: Type,
    /// Syscall number, error, handshake type or signal, by frame type.
    pub arg: u32,
}

impl Header {
    /// A header for a frame with `payload` bytes after it.
    pub fn new(class: Class, ty: Type, reqno: u64, arg: u32, payload: usize) -> Header {
        Header {
            len: (HDRSZ + payload) as u64,
            reqno,
            class,
            ty,
            arg,
        }
    }

    /// Payload bytes after the header.
    pub fn payload_len(&self) -> usize {
        (self.len as usize).saturating_sub(HDRSZ)
    }

    /// The header as raw fields.
    pub fn raw(&self) -> RawHeader {
        RawHeader {
            len: self.len,
            reqno: self.reqno,
            class: self.class as u16,
            ty: self.ty as u16,
            arg: self.arg,
        }
    }

    /// The 24 bytes on the wire.
    pub fn encode(&self) -> [u8; HDRSZ] {
        self.raw().encode()
    }

    /// Decode and validate the first `HDRSZ` bytes of `b`.
    pub fn decode(b: &[u8]) -> Result<Header, FrameError> {
        let h: &[u8; HDRSZ] =
            b.get(..HDRSZ)
                .and_then(|s| s.try_into().ok())
                .ok_or(FrameError::Incomplete {
                    have: b.len(),
                    need: HDRSZ,
                })?;
        RawHeader::parse(h).validate()
    }
}

/// Why a frame was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than needed are available (not an error on a stream:
    /// read more). `need` counts from the start of the frame.
    Incomplete {
        /// Bytes available.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
    /// `len` is smaller than the header itself.
    TooShort {
        /// The frame's request number.
        reqno: u64,
        /// The length it claimed.
        len: u64,
    },
    /// `len` exceeds [`MAX_FRAME`].
    TooLong {
        /// The frame's request number.
        reqno: u64,
        /// The length it claimed.
        len: u64,
    },
    /// A class this protocol does not define.
    UnknownClass {
        /// The frame's request number.
        reqno: u64,
        /// The class it carried.
        class: u16,
    },
    /// A type this protocol does not define.
    UnknownType {
        /// The frame's request number.
        reqno: u64,
        /// The type it carried.
        ty: u16,
    },
}

impl FrameError {
    /// The request number of the offending frame, when the header was read.
    pub fn reqno(&self) -> Option<u64> {
        match *self {
            FrameError::Incomplete { .. } => None,
            FrameError::TooShort { reqno, .. }
            | FrameError::TooLong { reqno, .. }
            | FrameError::UnknownClass { reqno, .. }
            | FrameError::UnknownType { reqno, .. } => Some(reqno),
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            FrameError::Incomplete { have, need } => {
                write!(f, "truncated frame ({have} of {need} bytes)")
            }
            FrameError::TooShort { len, .. } => write!(f, "frame length {len} shorter than header"),
            FrameError::TooLong { len, .. } => {
                write!(f, "frame length {len} exceeds limit {MAX_FRAME}")
            }
            FrameError::UnknownClass { class, .. } => write!(f, "unknown frame class {class}"),
            FrameError::UnknownType { ty, .. } => write!(f, "unknown frame type {ty}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// A whole frame borrowed from a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The validated header.
    pub hdr: Header,
    /// The payload: exactly `hdr.payload_len()` bytes.
    pub payload: &'a [u8],
}

/// Decode one frame from the start of `b`. Returns the frame and the bytes
/// it used; `Err(Incomplete)` when `b` holds only part of a valid frame.
pub fn decode_frame(b: &[u8]) -> Result<(Frame<'_>, usize), FrameError> {
    let hdr = Header::decode(b)?;
    let len = hdr.len as usize;
    if b.len() < len {
        return Err(FrameError::Incomplete {
            have: b.len(),
            need: len,
        });
    }
    Ok((
        Frame {
            hdr,
            payload: &b[HDRSZ..len],
        },
        len,
    ))
}

/// Build a whole frame: header followed by the concatenated `parts`.
pub fn encode_frame(class: Class, ty: Type, reqno: u64, arg: u32, parts: &[&[u8]]) -> Vec<u8> {
    let payload: usize = parts.iter().map(|p| p.len()).sum();
    let mut v = Vec::with_capacity(HDRSZ + payload);
    v.extend_from_slice(&Header::new(class, ty, reqno, arg, payload).encode());
    for p in parts {
        v.extend_from_slice(p);
    }
    v
}

// ---------------------------------------------------------------------------
// Banner

/// The banner line the server sends on accept:
/// `RUMPSP-<major>.<minor>-<ostype>-<osrelease>/<machine>\n`.
/// `None` when it would not fit in [`MAXBANNER`] (newline included, one
/// byte kept for NetBSD's terminating NUL).
pub fn format_banner(ostype: &str, osrelease: &str, machine: &str) -> Option<String> {
    let s = format!("RUMPSP-{PROTO_MAJOR}.{PROTO_MINOR}-{ostype}-{osrelease}/{machine}\n");
    if s.len() > MAXBANNER - 1 || s[..s.len() - 1].contains('\n') {
        return None;
    }
    Some(s)
}

/// A parsed banner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Banner {
    /// Protocol major version (must be [`PROTO_MAJOR`]).
    pub major: u32,
    /// Protocol minor version.
    pub minor: u32,
    /// The kernel's OS type (`NetBSD`).
    pub ostype: String,
    /// The kernel's release.
    pub osrelease: String,
    /// The machine (`amd64`).
    pub machine: String,
}

/// Why a banner was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BannerError {
    /// Longer than [`MAXBANNER`] allows.
    TooLong,
    /// No newline within [`MAXBANNER`] bytes.
    NoNewline,
    /// Does not start with `RUMPSP-`.
    NotSysproxy,
    /// A protocol version this client cannot speak.
    BadVersion,
    /// Any other deviation from the format.
    Malformed,
}

impl std::fmt::Display for BannerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BannerError::TooLong => "banner too long",
            BannerError::NoNewline => "banner not terminated by a newline",
            BannerError::NotSysproxy => "not a sysproxy server (bad banner)",
            BannerError::BadVersion => "unsupported sysproxy protocol version",
            BannerError::Malformed => "malformed banner",
        })
    }
}

impl std::error::Error for BannerError {}

/// Parse a banner line (newline included).
pub fn parse_banner(b: &[u8]) -> Result<Banner, BannerError> {
    if b.len() > MAXBANNER - 1 {
        return Err(BannerError::TooLong);
    }
    let line = match b.split_last() {
        Some((b'\n', rest)) => rest,
        _ => return Err(BannerError::NoNewline),
    };
    let line = std::str::from_utf8(line).map_err(|_| BannerError::Malformed)?;
    let rest = line
        .strip_prefix("RUMPSP-")
        .ok_or(BannerError::NotSysproxy)?;
    let (ver, rest) = rest.split_once('-').ok_or(BannerError::Malformed)?;
    let (maj, min) = ver.split_once('.').ok_or(BannerError::BadVersion)?;
    let major: u32 = maj.parse().map_err(|_| BannerError::BadVersion)?;
    let minor: u32 = min.parse().map_err(|_| BannerError::BadVersion)?;
    let (ostype, rest) = rest.split_once('-').ok_or(BannerError::Malformed)?;
    let (osrelease, machine) = rest.rsplit_once('/').ok_or(BannerError::Malformed)?;
    Ok(Banner {
        major,
        minor,
        ostype: ostype.to_string(),
        osrelease: osrelease.to_string(),
        machine: machine.to_string(),
    })
}

impl Banner {
    /// Whether a client speaking 0.4 can talk to this server.
    pub fn compatible(&self) -> bool {
        self.major == PROTO_MAJOR && self.minor >= PROTO_MINOR
    }
}

// ---------------------------------------------------------------------------
// URLs

/// Where a sysproxy server listens: `unix://PATH` or `tcp://ADDR:PORT`
/// (IPv4, `*` or `0` for any address; `[v6]:port` also accepted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Url {
    /// The path as given (possibly relative).
    Unix(String),
    /// A TCP address.
    Tcp(std::net::SocketAddr),
}

/// Why a URL was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError(pub String);

impl std::fmt::Display for UrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlError {}

/// Longest `unix://` path (`sizeof(sun_path) - 1`).
pub const UNIX_PATH_MAX: usize = 107;

/// Parse a sysproxy URL. `allow_wildcard` is true for servers (which may
/// bind to any address) and false for clients.
pub fn parse_url(url: &str, allow_wildcard: bool) -> Result<Url, UrlError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| UrlError(format!("invalid locator '{url}'")))?;
    match scheme {
        "unix" => {
            if rest.is_empty() {
                return Err(UrlError("empty unix socket path".into()));
            }
            if rest.len() > UNIX_PATH_MAX {
                return Err(UrlError("unix socket path too long".into()));
            }
            if rest.contains('\0') {
                return Err(UrlError("NUL in unix socket path".into()));
            }
            Ok(Url::Unix(rest.to_string()))
        }
        "tcp" | "tcp6" => parse_tcp(rest, allow_wildcard).map(Url::Tcp),
        _ => Err(UrlError(format!(
            "invalid identifier '{scheme}' in '{url}'"
        ))),
    }
}

fn parse_tcp(s: &str, allow_wildcard: bool) -> Result<std::net::SocketAddr, UrlError> {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    let (host, port) = if let Some(r) = s.strip_prefix('[') {
        let (h, p) = r
            .split_once("]:")
            .ok_or_else(|| UrlError("missing port specifier".into()))?;
        let ip: std::net::Ipv6Addr = h
            .parse()
            .map_err(|_| UrlError(format!("cannot parse address '{h}'")))?;
        (IpAddr::V6(ip), p)
    } else {
        let (h, p) = s
            .split_once(':')
            .ok_or_else(|| UrlError("missing port specifier".into()))?;
        let ip = if h == "*" || h == "0" {
            Ipv4Addr::UNSPECIFIED
        } else {
            h.parse()
                .map_err(|_| UrlError(format!("cannot parse address '{h}'")))?
        };
        (IpAddr::V4(ip), p)
    };
    // NetBSD tolerates a trailing "/..." after the port.
    let port = port.split('/').next().unwrap_or("");
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError(format!("bad port number '{port}'")));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| UrlError(format!("port {port} out of range")))?;
    if !allow_wildcard && host.is_unspecified() {
        return Err(UrlError(
            "client needs a specific address, not a wildcard".into(),
        ));
    }
    Ok(SocketAddr::new(host, port))
}

// ---------------------------------------------------------------------------
// Payloads

/// Syscall response: `struct rsp_sysresp { int error; register_t retval[2]; }`
/// — 4 bytes of error, 4 bytes of padding, two 8-byte values.
pub const SYSRESP_LEN: usize = 24;

/// A syscall response payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SysResp {
    /// NetBSD errno, 0 on success.
    pub error: i32,
    /// The syscall's two return values (`retval[1]` only for calls that return two).
    pub retval: [i64; 2],
}

impl SysResp {
    /// The [`SYSRESP_LEN`] bytes on the wire.
    pub fn encode(&self) -> [u8; SYSRESP_LEN] {
        let mut b = [0u8; SYSRESP_LEN];
        b[0..4].copy_from_slice(&self.error.to_le_bytes());
        b[8..16].copy_from_slice(&self.retval[0].to_le_bytes());
        b[16..24].copy_from_slice(&self.retval[1].to_le_bytes());
        b
    }

    /// Decode the first [`SYSRESP_LEN`] bytes; `None` if short.
    pub fn decode(b: &[u8]) -> Option<SysResp> {
        if b.len() < SYSRESP_LEN {
            return None;
        }
        Some(SysResp {
            error: i32::from_le_bytes(b[0..4].try_into().unwrap()),
            retval: [
                i64::from_le_bytes(b[8..16].try_into().unwrap()),
                i64::from_le_bytes(b[16..24].try_into().unwrap()),
            ],
        })
    }
}

/// Copy request header: `struct rsp_copydata { size_t len; void *addr; }`,
/// followed by the data for COPYOUT/COPYOUTSTR. COPYIN/COPYINSTR requests
/// carry just these 16 bytes; the client answers with a RESP frame whose
/// payload is the data (for COPYINSTR: up to and including the NUL, at
/// most `len` bytes).
pub const COPYDATA_LEN: usize = 16;

/// A copy request payload's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CopyData {
    /// Bytes to copy.
    pub len: u64,
    /// Address in the client's memory.
    pub addr: u64,
}

impl CopyData {
    /// The [`COPYDATA_LEN`] bytes on the wire.
    pub fn encode(&self) -> [u8; COPYDATA_LEN] {
        let mut b = [0u8; COPYDATA_LEN];
        b[0..8].copy_from_slice(&self.len.to_le_bytes());
        b[8..16].copy_from_slice(&self.addr.to_le_bytes());
        b
    }

    /// Decode the first [`COPYDATA_LEN`] bytes; `None` if short.
    pub fn decode(b: &[u8]) -> Option<CopyData> {
        if b.len() < COPYDATA_LEN {
            return None;
        }
        Some(CopyData {
            len: u64::from_le_bytes(b[0..8].try_into().unwrap()),
            addr: u64::from_le_bytes(b[8..16].try_into().unwrap()),
        })
    }
}

/// Handshake response payload: one `int` error (0 on success).
pub const HANDSHAKE_RESP_LEN: usize = 4;

/// Fork handshake payload: `struct handshake_fork { uint32_t auth[4]; int
/// cancel; }` — 20 bytes.
pub const HANDSHAKE_FORK_LEN: usize = 20;

/// The 128-bit fork cookie from a PREFORK response.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Cookie(pub [u8; COOKIE_LEN]);

impl std::fmt::Debug for Cookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cookie(..)")
    }
}

/// The fork handshake payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeFork {
    /// The cookie from the parent's PREFORK.
    pub cookie: Cookie,
    /// The child gives the fork up: the server forgets the cookie.
    pub cancel: bool,
}

impl HandshakeFork {
    /// The [`HANDSHAKE_FORK_LEN`] bytes on the wire.
    pub fn encode(&self) -> [u8; HANDSHAKE_FORK_LEN] {
        let mut b = [0u8; HANDSHAKE_FORK_LEN];
        b[..COOKIE_LEN].copy_from_slice(&self.cookie.0);
        b[16..20].copy_from_slice(&(self.cancel as i32).to_le_bytes());
        b
    }

    /// Exactly [`HANDSHAKE_FORK_LEN`] bytes, as NetBSD's server insists.
    pub fn decode(b: &[u8]) -> Option<HandshakeFork> {
        if b.len() != HANDSHAKE_FORK_LEN {
            return None;
        }
        let mut c = [0u8; COOKIE_LEN];
        c.copy_from_slice(&b[..COOKIE_LEN]);
        Some(HandshakeFork {
            cookie: Cookie(c),
            cancel: i32::from_le_bytes(b[16..20].try_into().unwrap()) != 0,
        })
    }
}

/// ANONMMAP request payload: `size_t` bytes wanted; response: `void *`.
pub const ANONMMAP_LEN: usize = 8;

/// Read a little-endian `u64` at the start of `b`.
pub fn u64_at(b: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?))
}

/// Read a little-endian `i32` at the start of `b`.
pub fn i32_at(b: &[u8]) -> Option<i32> {
    Some(i32::from_le_bytes(b.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constants_match_netbsd() {
        assert_eq!(HDRSZ, 24);
        assert_eq!(Type::Raise as u16, 8);
        assert_eq!(Type::Prefork as u16, 7);
        assert_eq!(Handshake::Exec as u32, 3);
        assert_eq!(ProtoError::MalformedRequest as u32, 7);
        assert_eq!(ProtoError::Auth.errno(), errno::EPERM);
    }

    #[test]
    fn banner_round_trip() {
        let b = format_banner("NetBSD", "7.99.34", "amd64").unwrap();
        assert_eq!(b, "RUMPSP-0.4-NetBSD-7.99.34/amd64\n");
        let p = parse_banner(b.as_bytes()).unwrap();
        assert_eq!(p.ostype, "NetBSD");
        assert_eq!(p.osrelease, "7.99.34");
        assert_eq!(p.machine, "amd64");
        assert!(p.compatible());
        assert!(format_banner(&"x".repeat(80), "1", "amd64").is_none());
        assert_eq!(
            parse_banner(b"HTTP/1.1 200\n"),
            Err(BannerError::NotSysproxy)
        );
        assert_eq!(
            parse_banner(b"RUMPSP-0.4-a-b/c"),
            Err(BannerError::NoNewline)
        );
    }

    #[test]
    fn header_layout() {
        let h = Header::new(Class::Resp, Type::Syscall, 0x0102030405060708, 20, 24);
        let b = h.encode();
        assert_eq!(&b[0..8], &48u64.to_le_bytes());
        assert_eq!(&b[8..16], &0x0102030405060708u64.to_le_bytes());
        assert_eq!(&b[16..18], &1u16.to_le_bytes());
        assert_eq!(&b[18..20], &1u16.to_le_bytes());
        assert_eq!(&b[20..24], &20u32.to_le_bytes());
        assert_eq!(Header::decode(&b), Ok(h));
    }

    #[test]
    fn decoder_rejects() {
        let mut r = RawHeader {
            len: 10,
            reqno: 5,
            class: 0,
            ty: 1,
            arg: 0,
        };
        assert_eq!(
            Header::decode(&r.encode()),
            Err(FrameError::TooShort { reqno: 5, len: 10 })
        );
        r.len = MAX_FRAME + 1;
        assert!(matches!(
            Header::decode(&r.encode()),
            Err(FrameError::TooLong { .. })
        ));
        r.len = 24;
        r.class = 3;
        assert!(matches!(
            Header::decode(&r.encode()),
            Err(FrameError::UnknownClass { .. })
        ));
        r.class = 0;
        r.ty = 9;
        assert!(matches!(
            Header::decode(&r.encode()),
            Err(FrameError::UnknownType { .. })
        ));
        assert!(matches!(
            Header::decode(&[0u8; 10]),
            Err(FrameError::Incomplete { .. })
        ));
        r.ty = 1;
        r.len = 40;
        assert_eq!(
            decode_frame(&r.encode()),
            Err(FrameError::Incomplete { have: 24, need: 40 })
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("unix://a.sock", false),
            Ok(Url::Unix("a.sock".into()))
        );
        assert_eq!(
            parse_url("unix:///tmp/x", false),
            Ok(Url::Unix("/tmp/x".into()))
        );
        assert_eq!(
            parse_url("tcp://127.0.0.1:1234", false),
            Ok(Url::Tcp("127.0.0.1:1234".parse().unwrap()))
        );
        assert_eq!(
            parse_url("tcp://[::1]:99", false),
            Ok(Url::Tcp("[::1]:99".parse().unwrap()))
        );
        assert_eq!(
            parse_url("tcp://*:80", true),
            Ok(Url::Tcp("0.0.0.0:80".parse().unwrap()))
        );
        assert!(parse_url("tcp://*:80", false).is_err());
        assert!(parse_url("tcp://1.2.3.4", true).is_err());
        assert!(parse_url("tcp://1.2.3.4:99999", true).is_err());
        assert!(parse_url("http://x", true).is_err());
        assert!(parse_url("/tmp/sock", true).is_err());
    }

    #[test]
    fn payloads() {
        let s = SysResp {
            error: 2,
            retval: [-1, 7],
        };
        let b = s.encode();
        assert_eq!(&b[4..8], &[0, 0, 0, 0]);
        assert_eq!(SysResp::decode(&b), Some(s));
        let c = CopyData {
            len: 3,
            addr: 0xdead,
        };
        assert_eq!(CopyData::decode(&c.encode()), Some(c));
        let f = HandshakeFork {
            cookie: Cookie([7; 16]),
            cancel: true,
        };
        assert_eq!(HandshakeFork::decode(&f.encode()), Some(f));
        assert_eq!(HandshakeFork::decode(&[0; 19]), None);
    }

    fn arb_class() -> impl Strategy<Value = Class> {
        prop_oneof![Just(Class::Req), Just(Class::Resp), Just(Class::Error)]
    }

    fn arb_type() -> impl Strategy<Value = Type> {
        (0u16..9).prop_map(|t| Type::from_u16(t).unwrap())
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_frame(&bytes);
            let _ = Header::decode(&bytes);
            let _ = parse_banner(&bytes);
            let _ = SysResp::decode(&bytes);
            let _ = CopyData::decode(&bytes);
            let _ = HandshakeFork::decode(&bytes);
        }

        #[test]
        fn decoder_accepts_only_valid(bytes in proptest::collection::vec(any::<u8>(), 24..64)) {
            if let Ok((f, used)) = decode_frame(&bytes) {
                prop_assert!(used >= HDRSZ && used <= bytes.len());
                prop_assert!(f.hdr.len as usize == used);
                prop_assert!(f.hdr.len <= MAX_FRAME);
            }
        }

        #[test]
        fn encode_decode_round_trip(
            class in arb_class(), ty in arb_type(), reqno in any::<u64>(), arg in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            trailing in proptest::collection::vec(any::<u8>(), 0..30),
        ) {
            let mut f = encode_frame(class, ty, reqno, arg, &[&payload]);
            let n = f.len();
            f.extend_from_slice(&trailing);
            let (fr, used) = decode_frame(&f).unwrap();
            prop_assert_eq!(used, n);
            prop_assert_eq!(fr.hdr.class, class);
            prop_assert_eq!(fr.hdr.ty, ty);
            prop_assert_eq!(fr.hdr.reqno, reqno);
            prop_assert_eq!(fr.hdr.arg, arg);
            prop_assert_eq!(fr.payload, &payload[..]);
            // Every strict prefix is incomplete, never an error or a frame.
            for cut in [0, 1, HDRSZ - 1, HDRSZ, n - 1] {
                if cut < n {
                    let incomplete = matches!(decode_frame(&f[..cut]), Err(FrameError::Incomplete { .. }));
                    prop_assert!(incomplete);
                }
            }
        }

        #[test]
        fn banner_round_trips(os in "[A-Za-z]{1,10}", rel in "[0-9.]{1,10}", mach in "[a-z0-9_]{1,10}") {
            let b = format_banner(&os, &rel, &mach).unwrap();
            let p = parse_banner(b.as_bytes()).unwrap();
            prop_assert_eq!(p.ostype, os);
            prop_assert_eq!(p.osrelease, rel);
            prop_assert_eq!(p.machine, mach);
        }
    }
}

// ---------------------------------------------------------------------------
// Extensions between our own client and server (negotiated)
//
// NetBSD's protocol needs a second round trip for every syscall that reads
// the caller's memory (the server's COPYIN request and the client's
// answer). Our client can instead send what the syscall will read *inline*
// with the request. This is used only when both ends are ours, and is
// negotiated so that NetBSD's programs never see it:
//
// 1. Request: our client's guest handshake payload is the program name,
//    its NUL, then [`EXT_MAGIC`] and a `u32` of [`Features`] bits wanted.
//    NetBSD's server NUL-terminates the payload and uses it as a C string
//    (`comm`), so it sees only the name, ignores the rest and answers
//    with its usual 4-byte handshake response.
// 2. Grant: our server, finding the magic after the name's NUL, answers
//    with the 4-byte error, then [`EXT_MAGIC`], then a `u32` of the
//    features granted (a subset of those asked) and a `u32` limit on
//    inline bytes per request ([`ExtGrant`]). A client that asked for
//    nothing (NetBSD's) gets the plain 4-byte response. Our client reads
//    a 4-byte response (NetBSD's server) as "no extensions".
// 3. Use: with [`Features::INLINE`] granted, a SYSCALL request may carry
//    [`SYSCALL_INLINE`] in its syscall-number field; its payload is then
//    an [`InlineHdr`], the argument block, and `nrec` records, each a
//    [`CopyData`] (`len`, `addr`) followed by `len` bytes: the caller's
//    memory at `addr`. The server serves a COPYIN or COPYINSTR that lies
//    inside one record from it, with no round trip; anything else goes
//    over the wire as usual; once the syscall copies out over a record,
//    that record is stale and no longer used. A flagged request on a
//    connection that was not granted the feature, or one whose records do
//    not add up to the payload, is a malformed request (the connection is
//    closed).
//
// Fork and exec handshakes carry no extension request (NetBSD's server
// checks the fork payload's size): such connections speak the plain
// protocol.

/// Marks an extension request or grant in a handshake payload.
pub const EXT_MAGIC: [u8; 8] = *b"RUMPRS\x01\x00";

/// Extension bits (see above).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Features(pub u32);

impl Features {
    /// No extension.
    pub const NONE: Features = Features(0);
    /// Syscall requests may carry inline copyin data.
    pub const INLINE: Features = Features(1);

    /// Whether every bit of `f` (at least one) is set.
    pub fn has(self, f: Features) -> bool {
        self.0 & f.0 == f.0 && f.0 != 0
    }
}

/// The extension request appended to a guest handshake's program name
/// (after its NUL).
pub fn ext_request(wanted: Features) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&EXT_MAGIC);
    b[8..].copy_from_slice(&wanted.0.to_le_bytes());
    b
}

/// The features a guest handshake payload asks for: after the first NUL,
/// [`EXT_MAGIC`] and a `u32`. `None` for a plain payload (NetBSD's).
pub fn parse_ext_request(payload: &[u8]) -> Option<Features> {
    let nul = payload.iter().position(|&b| b == 0)?;
    let rest = &payload[nul + 1..];
    if rest.len() < 12 || rest[..8] != EXT_MAGIC {
        return None;
    }
    Some(Features(u32::from_le_bytes(
        rest[8..12].try_into().unwrap(),
    )))
}

/// What our server grants, after the handshake response's `int` error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ExtGrant {
    /// What the connection may use.
    pub features: Features,
    /// Most inline bytes (records included) one request may carry.
    pub inline_max: u32,
}

/// Length of an extended handshake response (error, magic, grant).
pub const HANDSHAKE_EXT_RESP_LEN: usize = 4 + 8 + 8;

impl ExtGrant {
    /// The 16 bytes that follow the error in the handshake response.
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&EXT_MAGIC);
        b[8..12].copy_from_slice(&self.features.0.to_le_bytes());
        b[12..16].copy_from_slice(&self.inline_max.to_le_bytes());
        b
    }

    /// From a whole handshake response payload; `None` (no extensions)
    /// for NetBSD's 4-byte one.
    pub fn decode(resp: &[u8]) -> Option<ExtGrant> {
        let b = resp.get(4..4 + 16)?;
        if b[..8] != EXT_MAGIC {
            return None;
        }
        Some(ExtGrant {
            features: Features(u32::from_le_bytes(b[8..12].try_into().unwrap())),
            inline_max: u32::from_le_bytes(b[12..16].try_into().unwrap()),
        })
    }
}

/// Set in a SYSCALL request's syscall-number field: the payload is an
/// inline request (only on a connection granted [`Features::INLINE`]).
pub const SYSCALL_INLINE: u32 = 1 << 31;

/// Inline request header: `u32` argument block length, `u32` records.
pub const INLINE_HDR_LEN: usize = 8;

/// The header of an inline syscall request's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct InlineHdr {
    /// Length of the argument block that follows.
    pub arglen: u32,
    /// Number of records after it.
    pub nrec: u32,
}

impl InlineHdr {
    /// The [`INLINE_HDR_LEN`] bytes on the wire.
    pub fn encode(&self) -> [u8; INLINE_HDR_LEN] {
        let mut b = [0u8; INLINE_HDR_LEN];
        b[..4].copy_from_slice(&self.arglen.to_le_bytes());
        b[4..].copy_from_slice(&self.nrec.to_le_bytes());
        b
    }
}

/// Most records one inline request may carry.
pub const INLINE_MAX_RECORDS: usize = 8;

/// One inline record: the client's memory at `addr`, found at
/// `payload[off..off + len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct InlineRec {
    /// The address in the client's memory.
    pub addr: u64,
    /// Bytes.
    pub len: usize,
    /// Where they start in the payload.
    pub off: usize,
}

/// A decoded inline request: where the argument block and the records lie
/// in the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct InlineLayout {
    /// The argument block: (offset, length) in the payload.
    pub args: (usize, usize),
    /// Records in use.
    pub nrec: usize,
    /// The records; the first `nrec` are in use.
    pub recs: [InlineRec; INLINE_MAX_RECORDS],
}

impl InlineLayout {
    /// Check and locate an inline request's parts; `None` if they do not
    /// exactly fill the payload.
    pub fn decode(p: &[u8]) -> Option<InlineLayout> {
        let h = p.get(..INLINE_HDR_LEN)?;
        let arglen = u32::from_le_bytes(h[..4].try_into().unwrap()) as usize;
        let nrec = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
        if nrec > INLINE_MAX_RECORDS {
            return None;
        }
        let mut off = INLINE_HDR_LEN.checked_add(arglen)?;
        if off > p.len() {
            return None;
        }
        let mut l = InlineLayout {
            args: (INLINE_HDR_LEN, arglen),
            nrec,
            ..Default::default()
        };
        for r in l.recs.iter_mut().take(nrec) {
            let cd = CopyData::decode(p.get(off..)?)?;
            off += COPYDATA_LEN;
            let len = usize::try_from(cd.len).ok()?;
            if len > p.len() - off {
                return None;
            }
            cd.addr.checked_add(cd.len)?;
            *r = InlineRec {
                addr: cd.addr,
                len,
                off,
            };
            off += len;
        }
        if off != p.len() {
            return None;
        }
        Some(l)
    }

    /// The argument block.
    pub fn args<'a>(&self, p: &'a [u8]) -> &'a [u8] {
        &p[self.args.0..self.args.0 + self.args.1]
    }

    /// `len` bytes at client address `addr`, if one record holds them
    /// all; for a string (`COPYINSTR`, at most `len` bytes), up to and
    /// including its NUL, or `len` bytes without one — `None` when the
    /// record ends first (the client would fault there too).
    pub fn find<'a>(&self, p: &'a [u8], addr: u64, len: usize, string: bool) -> Option<&'a [u8]> {
        for r in &self.recs[..self.nrec] {
            let Some(o) = addr.checked_sub(r.addr) else {
                continue;
            };
            if o >= r.len as u64 {
                continue;
            }
            let o = o as usize;
            let avail = &p[r.off + o..r.off + r.len];
            if !string {
                return avail.get(..len);
            }
            let lim = len.min(avail.len());
            return match avail[..lim].iter().position(|&b| b == 0) {
                Some(i) => Some(&avail[..=i]),
                None if lim == len => Some(&avail[..lim]),
                None => None,
            };
        }
        None
    }
}

#[cfg(test)]
mod ext_tests {
    use super::*;

    #[test]
    fn handshake_extension_round_trip() {
        let mut p = b"prog\0".to_vec();
        p.extend(ext_request(Features::INLINE));
        assert_eq!(parse_ext_request(&p), Some(Features::INLINE));
        assert_eq!(parse_ext_request(b"prog\0"), None, "NetBSD's payload");
        assert_eq!(parse_ext_request(b"prog"), None);
        let g = ExtGrant {
            features: Features::INLINE,
            inline_max: 1 << 18,
        };
        let mut resp = 0i32.to_le_bytes().to_vec();
        resp.extend(g.encode());
        assert_eq!(resp.len(), HANDSHAKE_EXT_RESP_LEN);
        assert_eq!(ExtGrant::decode(&resp), Some(g));
        assert_eq!(
            ExtGrant::decode(&0i32.to_le_bytes()),
            None,
            "NetBSD's response"
        );
    }

    #[test]
    fn inline_layout_checks_and_finds() {
        let args = [7u8; 24];
        let path = b"/a/b\0";
        let data = [9u8; 100];
        let mut p = InlineHdr {
            arglen: 24,
            nrec: 2,
        }
        .encode()
        .to_vec();
        p.extend(args);
        p.extend(
            CopyData {
                len: path.len() as u64,
                addr: 1000,
            }
            .encode(),
        );
        p.extend(path);
        p.extend(
            CopyData {
                len: 100,
                addr: 5000,
            }
            .encode(),
        );
        p.extend(data);
        let l = InlineLayout::decode(&p).expect("valid");
        assert_eq!(l.args(&p), &args);
        assert_eq!(l.find(&p, 1000, 1024, true), Some(&path[..]));
        assert_eq!(l.find(&p, 1000, 2, true), Some(&b"/a"[..]));
        assert_eq!(l.find(&p, 5010, 90, false), Some(&data[..90]));
        assert_eq!(l.find(&p, 5010, 91, false), None, "past the record");
        assert_eq!(l.find(&p, 4999, 2, false), None);
        assert!(InlineLayout::decode(&p[..p.len() - 1]).is_none());
        let mut longer = p.clone();
        longer.push(0);
        assert!(InlineLayout::decode(&longer).is_none());
        let mut bad = p.clone();
        bad[4] = 200;
        assert!(InlineLayout::decode(&bad).is_none());
    }
}
