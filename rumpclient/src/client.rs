//! The connection to a rump kernel and the remote syscall loop.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memmap2::MmapMut;
use nix::sys::signal::Signal;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;
use parking_lot::Mutex;

use netbsd_abi::errno::{Errno, EFAULT};
use netbsd_abi::sp::{
    self as wire, Class, Cookie, CopyData, Handshake, HandshakeFork, Header, ProtoError, SysResp,
    Type, Url,
};
use netbsd_abi::syscall::encode_args;

use crate::error::Error;

pub use netbsd_abi::Region;

/// The address of a buffer, for an argument slot.
pub fn addr_of(b: &[u8]) -> u64 {
    b.as_ptr() as u64
}

/// Where the offset `addr..addr+len` falls inside a region starting at
/// `base` of `size` bytes.
fn within(base: u64, size: usize, addr: u64, len: u64) -> Option<usize> {
    let off = addr.checked_sub(base)?;
    let end = off.checked_add(len)?;
    if end <= size as u64 {
        Some(off as usize)
    } else {
        None
    }
}

/// The fork cookie from [`Client::prefork`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkCookie(pub Cookie);

struct Inner {
    /// Shared with the request in progress, which reads and writes it
    /// while it also updates the rest of `Inner`.
    fd: Arc<OwnedFd>,
    rb: FrameReader,
    next_reqno: u64,
    /// Anonymous memory the server asked for (ANONMMAP); ours until drop.
    maps: Vec<MmapMut>,
    broken: bool,
    /// Signals the server asked us to raise (host numbers), delivered after
    /// the current call returns.
    signals: Vec<i32>,
    /// Extensions the server granted (ours only; see `wire::ExtGrant`).
    ext: wire::ExtGrant,
    /// Messages we sent that the server waits for or answers: requests,
    /// and answers to its copyin/copyinstr/anonmmap requests.
    round_trips: u64,
    /// Spinning before blocking for the server's next frame.
    spin: netbsd_abi::sp::io::Spin,
}

/// A connection to a rump kernel: one kernel process.
///
/// `Client` is `Send + Sync`; calls from several threads are serialized
/// (one system call at a time per connection). Open more connections for
/// parallelism.
pub struct Client {
    inner: Mutex<Inner>,
    url: String,
    /// What a lost connection does (see [`Client::set_conn_retry`]).
    retry: Mutex<ConnRetry>,
    /// The name and extensions of the guest handshake, for a reconnect.
    comm: Mutex<Option<(String, bool)>>,
}

/// The name this program gives the server (NetBSD sends `getprogname()`).
pub fn progname() -> String {
    if let Ok(s) = std::fs::read_to_string("/proc/self/comm") {
        let s = s.trim_end_matches('\n');
        if !s.is_empty() {
            return s.to_string();
        }
    }
    argv0_name().unwrap_or_else(|| "???".into())
}

/// The last component of `argv[0]` (`rump.halt` as the user called it),
/// if there is one: the program's name for messages and for the server.
pub fn argv0_name() -> Option<String> {
    // args_os: an argv[0] that is not UTF-8 must not panic.
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .filter(|s| !s.is_empty())
}

use netbsd_abi::sp::io::send_all;
use netbsd_abi::sp::reader::{Fd, FrameReader, ReadError, SpinFd};

/// The environment variable that sets [`ConnRetry`] for
/// [`Client::from_env`] (and so for `rumpctl`): `inftime`, `once`, `die`, or
/// a number of seconds (0: no reconnect, the default). rumphijack calls it
/// `RUMPHIJACK_RETRYCONNECT`.
pub const RETRY_ENV: &str = "RUMPCLIENT_RETRYCONNECT";

/// What a client does when its connection to the server is lost, with the
/// semantics of NetBSD's `rumpclient_setconnretry`: the call that found
/// the connection gone reconnects (a new guest handshake: a new kernel
/// process, so descriptors and the working directory are not carried
/// over) and is then sent again whole on the new connection; if
/// reconnecting fails as the policy says, it fails with the lost
/// connection (`ENOTCONN`). Attempts back off: 0.1 s more each for the
/// first ten, then a second more each, at most 10 s apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConnRetry {
    /// No reconnect: the call fails (NetBSD's default, timeout 0).
    #[default]
    Never,
    /// Keep trying for at most this long (a positive timeout).
    For(Duration),
    /// Keep trying for ever (`RUMPCLIENT_RETRYCONN_INFTIME`).
    Forever,
    /// Try to reconnect once (`RUMPCLIENT_RETRYCONN_ONCE`).
    Once,
    /// Exit the process with status 1 (`RUMPCLIENT_RETRYCONN_DIE`).
    Die,
}

impl ConnRetry {
    /// Parse rumphijack's spelling: `inftime`, `once`, `die` or seconds.
    pub fn parse(s: &str) -> Option<ConnRetry> {
        Some(match s.trim() {
            "inftime" => ConnRetry::Forever,
            "once" => ConnRetry::Once,
            "die" => ConnRetry::Die,
            n => match n.parse::<u64>().ok()? {
                0 => ConnRetry::Never,
                n => ConnRetry::For(Duration::from_secs(n)),
            },
        })
    }

    /// [`RETRY_ENV`], if set.
    pub fn from_env() -> Result<Option<ConnRetry>, Error> {
        match std::env::var_os(RETRY_ENV) {
            None => Ok(None),
            Some(v) => {
                let v = v.to_string_lossy().into_owned();
                ConnRetry::parse(&v).map(Some).ok_or(Error::Env {
                    name: RETRY_ENV,
                    value: v,
                    expected: "inftime, once, die or a number of seconds",
                })
            }
        }
    }
}

/// The pause before reconnect attempt `n` (0 first).
fn backoff(n: u32) -> Duration {
    if n < 10 {
        Duration::from_millis(100 * n as u64)
    } else {
        Duration::from_secs((n as u64 - 9).min(10))
    }
}

/// The answer to one of our requests.
struct Answer {
    payload: Vec<u8>,
}

impl Client {
    /// Connect to the server at `url` and do the guest handshake with this
    /// program's name: the server gives us a fresh kernel process.
    pub fn connect(url: &str) -> Result<Client, Error> {
        Client::connect_as(url, &progname())
    }

    /// [`Client::connect`] with an explicit program name.
    pub fn connect_as(url: &str, comm: &str) -> Result<Client, Error> {
        let ext = std::env::var_os("RUMPCLIENT_NO_EXT").is_none_or(|v| v.is_empty() || v == "0");
        Client::connect_ext(url, comm, ext)
    }

    /// [`Client::connect`] speaking only the plain protocol, as NetBSD's
    /// client does (no extension asked for: every copyin is a round trip).
    pub fn connect_plain(url: &str) -> Result<Client, Error> {
        Client::connect_ext(url, &progname(), false)
    }

    fn connect_ext(url: &str, comm: &str, ext: bool) -> Result<Client, Error> {
        let c = Client::dial(url)?;
        *c.comm.lock() = Some((comm.to_string(), ext));
        let mut p = comm_bytes(comm);
        // Ask for our extensions after the name's NUL: NetBSD's server
        // reads the name as a C string and ignores the rest
        // (`RUMPCLIENT_NO_EXT=1` asks for none, to compare).
        if ext {
            p.extend_from_slice(&wire::ext_request(wire::Features::INLINE));
        }
        c.handshake(Handshake::Guest, &p)?;
        Ok(c)
    }

    /// Messages sent so far that cost a round trip: syscall (and other)
    /// requests, and answers to the server's copyin, copyinstr and
    /// anonmmap requests (copyouts cost none: nobody waits for them).
    pub fn round_trips(&self) -> u64 {
        self.inner.lock().round_trips
    }

    /// Whether the server lets syscall requests carry their input inline
    /// (our server, asked by [`Client::connect`]).
    pub fn inline_granted(&self) -> bool {
        self.inner.lock().ext.features.has(wire::Features::INLINE)
    }

    /// Connect to `RUMP_SERVER`, with the reconnect policy of
    /// `RUMPCLIENT_RETRYCONNECT` ([`RETRY_ENV`]). In a program started by
    /// [`Client::prepare_exec`]'s caller, take over the inherited
    /// connection with the exec handshake instead.
    pub fn from_env() -> Result<Client, Error> {
        let url = std::env::var("RUMP__PARSEDSERVER")
            .or_else(|_| std::env::var("RUMP_SERVER"))
            .map_err(|_| Error::NoServer)?;
        if url.is_empty() {
            return Err(Error::EmptyServer);
        }
        if let Ok(v) = std::env::var("RUMPCLIENT__EXECFD") {
            std::env::remove_var("RUMPCLIENT__EXECFD");
            let fd = take_execfd(&v).map_err(|reason| Error::Url {
                url: url.clone(),
                reason,
            })?;
            let c = Client::from_fd(fd, &url);
            c.handshake(Handshake::Exec, &comm_bytes(&progname()))?;
            return Ok(c);
        }
        let retry = ConnRetry::from_env()?;
        let c = Client::connect(&url)?;
        if let Some(r) = retry {
            c.set_conn_retry(r);
        }
        Ok(c)
    }

    /// Take over the kernel process prepared by [`Client::prefork`] in
    /// the parent (NetBSD's `rumpclient_fork_init`): a new connection with
    /// the fork handshake. The new process shares the prefork process's
    /// descriptor table.
    pub fn connect_fork(url: &str, cookie: &ForkCookie) -> Result<Client, Error> {
        let c = Client::dial(url)?;
        let hf = HandshakeFork {
            cookie: cookie.0,
            cancel: false,
        };
        c.handshake(Handshake::Fork, &hf.encode())?;
        Ok(c)
    }

    /// Give up a prepared fork: the server releases the prefork process.
    pub fn cancel_fork(url: &str, cookie: &ForkCookie) -> Result<(), Error> {
        let c = Client::dial(url)?;
        let hf = HandshakeFork {
            cookie: cookie.0,
            cancel: true,
        };
        let mut g = c.inner.lock();
        let h = Header::new(
            Class::Req,
            Type::Handshake,
            0,
            Handshake::Fork as u32,
            wire::HANDSHAKE_FORK_LEN,
        );
        send_all(g.fd.as_fd(), &[&h.encode(), &hf.encode()]).map_err(|e| c.lost(&mut g, e))
    }

    /// The URL this client is connected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn from_fd(fd: OwnedFd, url: &str) -> Client {
        let mut rb = FrameReader::new();
        // Copyout data (a pread's) is read straight into the caller's buffer.
        rb.set_read_limit(4096);
        Client {
            inner: Mutex::new(Inner {
                fd: Arc::new(fd),
                rb,
                next_reqno: 0,
                maps: Vec::new(),
                broken: false,
                signals: Vec::new(),
                ext: wire::ExtGrant::default(),
                round_trips: 0,
                spin: netbsd_abi::sp::io::Spin::new(),
            }),
            url: url.to_string(),
            retry: Mutex::new(ConnRetry::Never),
            comm: Mutex::new(None),
        }
    }

    /// What to do when the connection is lost: NetBSD's
    /// `rumpclient_setconnretry` (see [`ConnRetry`]). The default is
    /// [`ConnRetry::Never`]; [`Client::from_env`] takes [`RETRY_ENV`].
    pub fn set_conn_retry(&self, r: ConnRetry) {
        *self.retry.lock() = r;
    }

    /// Block until the server closes this connection or it fails; at once
    /// for one already lost. For a watcher with an idle connection of its
    /// own (`rumpctl fuse` ends its mount when its server goes away): a
    /// server never writes to an idle connection, so anything it sends
    /// is left unread and the wait goes on.
    pub fn wait_lost(&self) {
        let g = self.inner.lock();
        if g.broken {
            return;
        }
        let fd = g.fd.as_raw_fd();
        loop {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN | libc::POLLRDHUP,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the call; the descriptor stays
            // open while we hold the connection's lock.
            let n = unsafe { libc::poll(&mut p, 1, -1) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            if p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP | libc::POLLNVAL) != 0 {
                return;
            }
            let mut b = [0u8; 1];
            match nix::sys::socket::recv(
                fd,
                &mut b,
                nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => return,
                Ok(_) | Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(_) => return,
            }
        }
    }

    /// The policy [`Client::set_conn_retry`] set.
    pub fn conn_retry(&self) -> ConnRetry {
        *self.retry.lock()
    }

    /// The connection was lost (`lost`): reconnect as the policy says, or
    /// give `lost` back. Called with no lock held.
    fn reconnect(&self, lost: Error) -> Result<(), Error> {
        let policy = *self.retry.lock();
        let Some((comm, ext)) = self.comm.lock().clone() else {
            // Not made by a guest handshake (exec, fork): nothing to redo.
            return Err(lost);
        };
        match policy {
            ConnRetry::Never => return Err(lost),
            ConnRetry::Die => {
                tracing::error!("{lost}: exiting (reconnect policy: die)");
                std::process::exit(1)
            }
            _ => {}
        }
        let start = std::time::Instant::now();
        let mut said = None::<std::time::Instant>;
        let mut tries = 0u32;
        loop {
            if tries == 1 {
                if policy == ConnRetry::Once {
                    return Err(lost);
                }
                tracing::warn!("{}: connection lost, trying to reconnect ...", self.url);
                said = Some(std::time::Instant::now());
            } else if said.is_some_and(|t| t.elapsed() > Duration::from_secs(120)) {
                tracing::warn!("{}: still trying to reconnect ...", self.url);
                said = Some(std::time::Instant::now());
            }
            if let ConnRetry::For(limit) = policy {
                if start.elapsed() >= limit {
                    tracing::warn!(
                        "{}: reconnect failed, {} second timeout",
                        self.url,
                        limit.as_secs()
                    );
                    return Err(lost);
                }
            }
            std::thread::sleep(backoff(tries));
            tries += 1;
            if let Ok(new) = Client::connect_ext(&self.url, &comm, ext) {
                std::mem::swap(&mut *self.inner.lock(), &mut *new.inner.lock());
                if tries != 1 {
                    tracing::warn!("{}: reconnected", self.url);
                }
                return Ok(());
            }
        }
    }

    /// Connect and read the banner.
    fn dial(url: &str) -> Result<Client, Error> {
        let parsed = wire::parse_url(url, false).map_err(|e| Error::Url {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let connect_err = |e| Error::Connect {
            url: url.to_string(),
            source: e,
        };
        let fd: OwnedFd = match parsed {
            Url::Unix(p) => std::os::unix::net::UnixStream::connect(&p)
                .map_err(connect_err)?
                .into(),
            Url::Tcp(sa) => {
                let s = std::net::TcpStream::connect(sa).map_err(connect_err)?;
                let _ = s.set_nodelay(true);
                s.into()
            }
        };
        let c = Client::from_fd(fd, url);
        c.read_banner()?;
        Ok(c)
    }

    fn read_banner(&self) -> Result<wire::Banner, Error> {
        let mut g = self.inner.lock();
        let fd = g.fd.clone();
        set_rcvtimeo(&g.fd, Some(Duration::from_secs(30)));
        let mut line = Vec::new();
        let r = loop {
            let b = match g.rb.byte(&mut Fd(fd.as_fd())) {
                Ok(b) => b,
                Err(e) => break Err(e),
            };
            line.push(b);
            if b == b'\n' || line.len() >= wire::MAXBANNER - 1 {
                break Ok(());
            }
        };
        set_rcvtimeo(&g.fd, None);
        if let Err(e) = r {
            return Err(self.read_failed(&mut g, e, "reading banner"));
        }
        let b = wire::parse_banner(&line).map_err(|e| self.protocol(&mut g, e.to_string()))?;
        if !b.compatible() {
            return Err(self.protocol(
                &mut g,
                format!("server speaks protocol {}.{}", b.major, b.minor),
            ));
        }
        Ok(b)
    }

    fn handshake(&self, kind: Handshake, payload: &[u8]) -> Result<(), Error> {
        let a = self.transact(Type::Handshake, kind as u32, &[payload], &mut [])?;
        let err = wire::i32_at(&a.payload).ok_or_else(|| {
            let mut g = self.inner.lock();
            self.protocol(&mut g, "short handshake response".into())
        })?;
        if err != 0 {
            return Err(Error::Errno(Errno(err)));
        }
        if kind == Handshake::Guest {
            if let Some(g) = wire::ExtGrant::decode(&a.payload) {
                self.inner.lock().ext = g;
            }
        }
        Ok(())
    }

    fn lost(&self, g: &mut Inner, e: io::Error) -> Error {
        g.broken = true;
        Error::Lost {
            url: self.url.clone(),
            source: Some(e),
        }
    }

    fn read_failed(&self, g: &mut Inner, e: ReadError, _what: &str) -> Error {
        g.broken = true;
        match e {
            ReadError::Eof => Error::Lost {
                url: self.url.clone(),
                source: None,
            },
            ReadError::Io(e) => Error::Lost {
                url: self.url.clone(),
                source: Some(e),
            },
            ReadError::Bad(e) => Error::Protocol {
                url: self.url.clone(),
                what: e.to_string(),
            },
        }
    }

    fn protocol(&self, g: &mut Inner, what: String) -> Error {
        g.broken = true;
        Error::Protocol {
            url: self.url.clone(),
            what,
        }
    }

    /// Send one request and serve the server's requests until its answer
    /// arrives. Error frames become [`Error::Refused`].
    fn transact(
        &self,
        ty: Type,
        arg: u32,
        parts: &[&[u8]],
        regions: &mut [Region<'_>],
    ) -> Result<Answer, Error> {
        self.transact_with(ty, regions, |c, g, _| c.send_req(g, ty, arg, parts))
    }

    /// [`Client::transact`] whose request `send` makes from the regions
    /// themselves (inline input), before they are served from.
    fn transact_with(
        &self,
        ty: Type,
        regions: &mut [Region<'_>],
        send: impl Fn(&Self, &mut Inner, &[Region<'_>]) -> Result<u64, Error>,
    ) -> Result<Answer, Error> {
        loop {
            match self.transact_once(ty, regions, &send) {
                // A lost connection: reconnect as the policy says, then
                // send the whole request again (NetBSD's rumpclient does).
                Err(e @ Error::Lost { .. }) if ty != Type::Handshake => self.reconnect(e)?,
                r => return r,
            }
        }
    }

    fn transact_once(
        &self,
        ty: Type,
        regions: &mut [Region<'_>],
        send: &impl Fn(&Self, &mut Inner, &[Region<'_>]) -> Result<u64, Error>,
    ) -> Result<Answer, Error> {
        let mut g = self.inner.lock();
        let r = send(self, &mut g, regions)
            .and_then(|reqno| self.await_answer(&mut g, reqno, ty, regions));
        let sigs = std::mem::take(&mut g.signals);
        drop(g);
        for s in sigs.into_iter().filter_map(|s| Signal::try_from(s).ok()) {
            let _ = nix::sys::signal::raise(s);
        }
        r
    }

    /// Send one request frame made of `parts`; returns its number.
    fn send_req(&self, g: &mut Inner, ty: Type, arg: u32, parts: &[&[u8]]) -> Result<u64, Error> {
        if g.broken {
            return Err(Error::Lost {
                url: self.url.clone(),
                source: None,
            });
        }
        let reqno = g.next_reqno;
        g.next_reqno = g.next_reqno.wrapping_add(1);
        let plen: usize = parts.iter().map(|p| p.len()).sum();
        let h = Header::new(Class::Req, ty, reqno, arg, plen).encode();
        let mut small: [&[u8]; 2 + 2 + 2 * wire::INLINE_MAX_RECORDS] =
            [&[]; 2 + 2 + 2 * wire::INLINE_MAX_RECORDS];
        let mut heap: Vec<&[u8]> = Vec::new();
        let v: &[&[u8]] = if parts.len() < small.len() {
            small[0] = &h;
            small[1..=parts.len()].copy_from_slice(parts);
            &small[..=parts.len()]
        } else {
            heap.push(&h);
            heap.extend_from_slice(parts);
            &heap
        };
        let fd = g.fd.clone();
        send_all(fd.as_fd(), v).map_err(|e| self.lost(g, e))?;
        g.round_trips += 1;
        Ok(reqno)
    }

    /// Serve the server's requests until the answer to `reqno` arrives.
    fn await_answer(
        &self,
        g: &mut Inner,
        reqno: u64,
        ty: Type,
        regions: &mut [Region<'_>],
    ) -> Result<Answer, Error> {
        let fd = g.fd.clone();
        let mut fault = false;
        loop {
            let Inner { rb, spin, .. } = &mut *g;
            let hdr = match rb.header(&mut SpinFd(fd.as_fd(), spin)) {
                Ok(h) => h,
                Err(e) => return Err(self.read_failed(g, e, "reading response")),
            };
            let plen = hdr.payload_len();
            match hdr.class {
                Class::Resp | Class::Error => {
                    if hdr.reqno != reqno {
                        // Not ours (NetBSD ignores these too).
                        if let Err(e) = g.rb.skip(&mut Fd(fd.as_fd()), plen) {
                            return Err(self.read_failed(g, e, "skipping"));
                        }
                        continue;
                    }
                    if hdr.class == Class::Error {
                        let _ = g.rb.skip(&mut Fd(fd.as_fd()), plen);
                        let error =
                            ProtoError::from_u32(hdr.arg).unwrap_or(ProtoError::MalformedRequest);
                        return Err(Error::Refused {
                            url: self.url.clone(),
                            error,
                        });
                    }
                    let payload = match g.rb.read_vec(&mut Fd(fd.as_fd()), plen) {
                        Ok(p) => p,
                        Err(e) => return Err(self.read_failed(g, e, "reading response")),
                    };
                    if fault && ty == Type::Syscall {
                        // The server wrote outside the caller's regions.
                        return Ok(Answer {
                            payload: SysResp {
                                error: EFAULT,
                                retval: [-1, 0],
                            }
                            .encode()
                            .to_vec(),
                        });
                    }
                    return Ok(Answer { payload });
                }
                Class::Req => self.serve(g, &hdr, regions, &mut fault)?,
            }
        }
    }

    /// Serve one request from the server (a copy, anonmmap or raise).
    fn serve(
        &self,
        g: &mut Inner,
        hdr: &Header,
        regions: &mut [Region<'_>],
        fault: &mut bool,
    ) -> Result<(), Error> {
        let fd = g.fd.clone();
        let plen = hdr.payload_len();
        match hdr.ty {
            Type::Copyin | Type::Copyinstr => {
                let p =
                    g.rb.read_vec(&mut Fd(fd.as_fd()), plen)
                        .map_err(|e| self.read_failed(g, e, "copyin"))?;
                let Some(cd) = CopyData::decode(&p) else {
                    return Err(self.protocol(g, "short copyin request".into()));
                };
                let data =
                    find_readable(regions, &g.maps, cd.addr, cd.len, hdr.ty == Type::Copyinstr);
                let r = match data {
                    Some(d) => {
                        let h = Header::new(Class::Resp, Type::Copyin, hdr.reqno, 0, d.len());
                        g.round_trips += 1;
                        send_all(fd.as_fd(), &[&h.encode(), d])
                    }
                    None => {
                        let h = Header::new(
                            Class::Error,
                            Type::Handshake,
                            hdr.reqno,
                            ProtoError::MalformedRequest as u32,
                            0,
                        );
                        send_all(fd.as_fd(), &[&h.encode()])
                    }
                };
                r.map_err(|e| self.lost(g, e))
            }
            Type::Copyout | Type::Copyoutstr => {
                if plen < wire::COPYDATA_LEN {
                    return Err(self.protocol(g, "short copyout request".into()));
                }
                let mut cdb = [0u8; wire::COPYDATA_LEN];
                g.rb.read_into(&mut Fd(fd.as_fd()), &mut cdb)
                    .map_err(|e| self.read_failed(g, e, "copyout"))?;
                let cd = CopyData::decode(&cdb).unwrap();
                let n = plen - wire::COPYDATA_LEN;
                let n64 = n as u64;
                // The data length is what the frame carries; `cd.len` must agree.
                let ok = cd.len == n64;
                let mut maps = std::mem::take(&mut g.maps);
                let dst = if ok {
                    find_writable(regions, &mut maps, cd.addr, n64)
                } else {
                    None
                };
                let r = match dst {
                    Some(d) => g.rb.read_into(&mut Fd(fd.as_fd()), d),
                    None => {
                        *fault = true;
                        g.rb.skip(&mut Fd(fd.as_fd()), n)
                    }
                };
                g.maps = maps;
                r.map_err(|e| self.read_failed(g, e, "copyout"))
            }
            Type::Anonmmap => {
                let p =
                    g.rb.read_vec(&mut Fd(fd.as_fd()), plen)
                        .map_err(|e| self.read_failed(g, e, "anonmmap"))?;
                let len = wire::u64_at(&p).unwrap_or(0) as usize;
                let addr = match len {
                    0 => 0,
                    // A fresh private anonymous mapping, unmapped with the
                    // connection.
                    _ => match MmapMut::map_anon(len) {
                        Ok(mut m) => {
                            let a = m.as_mut_ptr() as u64;
                            g.maps.push(m);
                            a
                        }
                        Err(_) => 0,
                    },
                };
                let h = Header::new(Class::Resp, Type::Anonmmap, hdr.reqno, 0, 8);
                g.round_trips += 1;
                send_all(fd.as_fd(), &[&h.encode(), &addr.to_le_bytes()])
                    .map_err(|e| self.lost(g, e))
            }
            Type::Raise => {
                g.rb.skip(&mut Fd(fd.as_fd()), plen)
                    .map_err(|e| self.read_failed(g, e, "raise"))?;
                if let Some(s) = netbsd_abi::signal::to_host(hdr.arg as i32) {
                    g.signals.push(s);
                }
                Ok(())
            }
            _ => Err(self.protocol(g, format!("unexpected request type {:?}", hdr.ty))),
        }
    }

    /// Run NetBSD system call `num` with argument slots `args` (each an
    /// 8-byte slot, pointers being [`Region::addr`] values). Copy requests
    /// are served from `regions` only. Returns `retval[0..2]`.
    ///
    /// A syscall whose server side tried to write outside `regions` fails
    /// with `EFAULT` (the write itself is dropped).
    pub fn syscall(
        &self,
        num: i32,
        args: &[u64],
        regions: &mut [Region<'_>],
    ) -> Result<[i64; 2], Error> {
        let mut slots = [0u8; 64];
        let block: std::borrow::Cow<[u8]> = if args.len() <= 8 {
            for (i, a) in args.iter().enumerate() {
                slots[i * 8..i * 8 + 8].copy_from_slice(&a.to_le_bytes());
            }
            std::borrow::Cow::Borrowed(&slots[..args.len() * 8])
        } else {
            std::borrow::Cow::Owned(encode_args(args))
        };
        self.syscall_raw(num, &block, regions)
    }

    /// [`Client::syscall`] with a ready-made argument block. A server with
    /// as many of our syscalls running as it allows one client answers
    /// `TRYAGAIN`: the call is sent again after a short pause, as NetBSD's
    /// client does.
    pub fn syscall_raw(
        &self,
        num: i32,
        argblock: &[u8],
        regions: &mut [Region<'_>],
    ) -> Result<[i64; 2], Error> {
        let mut pause = std::time::Duration::from_micros(100);
        loop {
            match self.syscall_once(num, argblock, regions) {
                Err(Error::Refused {
                    error: ProtoError::TryAgain,
                    ..
                }) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(50));
                }
                r => return r,
            }
        }
    }

    fn syscall_once(
        &self,
        num: i32,
        argblock: &[u8],
        regions: &mut [Region<'_>],
    ) -> Result<[i64; 2], Error> {
        let a = match self.inline_parts(argblock, regions) {
            Some((ih, cds, n)) => {
                // Our server: what the syscall reads travels with the
                // request, so its copyins cost no round trip.
                let arg = num as u32 | wire::SYSCALL_INLINE;
                let sent = self.transact_with(Type::Syscall, regions, |c, g, regions| {
                    let mut parts: [&[u8]; 2 + 2 * wire::INLINE_MAX_RECORDS] =
                        [&[]; 2 + 2 * wire::INLINE_MAX_RECORDS];
                    parts[0] = &ih;
                    parts[1] = argblock;
                    let mut k = 2;
                    for (cd, r) in cds
                        .iter()
                        .zip(regions.iter().filter_map(|r| inline_bytes(r)))
                        .take(n)
                    {
                        parts[k] = cd;
                        parts[k + 1] = r;
                        k += 2;
                    }
                    c.send_req(g, Type::Syscall, arg, &parts[..k])
                });
                match sent {
                    // The server had no room for the inline bytes (its
                    // request budget is spent): the call never ran, so
                    // send it again without them, as a small request.
                    Err(Error::Refused {
                        error: ProtoError::NoMem,
                        ..
                    }) => self.transact(Type::Syscall, num as u32, &[argblock], regions)?,
                    r => r?,
                }
            }
            None => self.transact(Type::Syscall, num as u32, &[argblock], regions)?,
        };
        let r = SysResp::decode(&a.payload).ok_or_else(|| {
            let mut g = self.inner.lock();
            self.protocol(&mut g, "short syscall response".into())
        })?;
        if r.error != 0 {
            return Err(Error::Errno(Errno(r.error)));
        }
        Ok(r.retval)
    }

    /// For a server that takes inline input: the inline header and one
    /// record header per region to send (those [`inline_bytes`] picks),
    /// if there is any and they fit the server's limit.
    #[allow(clippy::type_complexity)]
    fn inline_parts(
        &self,
        argblock: &[u8],
        regions: &[Region<'_>],
    ) -> Option<(
        [u8; wire::INLINE_HDR_LEN],
        [[u8; wire::COPYDATA_LEN]; wire::INLINE_MAX_RECORDS],
        usize,
    )> {
        let ext = self.inner.lock().ext;
        if !ext.features.has(wire::Features::INLINE) {
            return None;
        }
        let mut cds = [[0u8; wire::COPYDATA_LEN]; wire::INLINE_MAX_RECORDS];
        let (mut n, mut bytes) = (0usize, 0usize);
        for b in regions.iter().filter_map(|r| inline_bytes(r)) {
            if n == wire::INLINE_MAX_RECORDS {
                return None;
            }
            bytes += b.len();
            cds[n] = CopyData {
                len: b.len() as u64,
                addr: b.as_ptr() as u64,
            }
            .encode();
            n += 1;
        }
        if n == 0 || bytes > ext.inline_max as usize {
            return None;
        }
        let ih = wire::InlineHdr {
            arglen: argblock.len() as u32,
            nrec: n as u32,
        }
        .encode();
        Some((ih, cds, n))
    }

    /// Ask the server to fork our kernel process ahead of a host `fork()`
    /// (NetBSD's `rumpclient_prefork`). The child passes the cookie to
    /// [`Client::connect_fork`].
    pub fn prefork(&self) -> Result<ForkCookie, Error> {
        let a = self.transact(Type::Prefork, 0, &[], &mut [])?;
        if a.payload.len() != wire::COOKIE_LEN {
            let mut g = self.inner.lock();
            return Err(self.protocol(&mut g, "bad prefork response".into()));
        }
        let mut c = [0u8; wire::COOKIE_LEN];
        c.copy_from_slice(&a.payload);
        Ok(ForkCookie(Cookie(c)))
    }

    /// The exec handshake on this connection: the kernel process stays,
    /// its threads are drained, and it takes the name `comm`.
    pub fn exec_handshake(&self, comm: &str) -> Result<(), Error> {
        self.handshake(Handshake::Exec, &comm_bytes(comm))
    }

    /// Get ready to `exec` a program that keeps this kernel process: the
    /// socket stays open across exec, and the returned environment
    /// variables tell the new program's [`Client::from_env`] to take it
    /// over with the exec handshake.
    ///
    /// The descriptor is this client's: from now on this process takes
    /// no inherited connection ([`Client::from_env`] refuses one), so that
    /// these variables cannot make a second owner of it here.
    pub fn prepare_exec(&self) -> Vec<(String, String)> {
        EXECFD_TAKEN.store(true, Ordering::SeqCst);
        let g = self.inner.lock();
        set_cloexec(g.fd.as_fd(), false);
        vec![
            (
                "RUMPCLIENT__EXECFD".into(),
                format!("{},-1", g.fd.as_raw_fd()),
            ),
            ("RUMP__PARSEDSERVER".into(), self.url.clone()),
        ]
    }
}

/// What of a region goes inline with a request: what the kernel may read
/// (an `InOut` region only when small: it is mostly written).
fn inline_bytes<'r>(r: &'r Region<'_>) -> Option<&'r [u8]> {
    match r {
        Region::In(b) if !b.is_empty() => Some(b),
        Region::InOut(b) if !b.is_empty() && b.len() <= 4096 => Some(b),
        _ => None,
    }
}

fn comm_bytes(comm: &str) -> Vec<u8> {
    let mut v: Vec<u8> = comm.bytes().filter(|&b| b != 0).collect();
    v.push(0);
    v
}

fn set_cloexec(fd: BorrowedFd<'_>, on: bool) {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let fd = fd.as_raw_fd();
    if let Ok(fl) = fcntl(fd, FcntlArg::F_GETFD) {
        let mut fl = FdFlag::from_bits_retain(fl);
        fl.set(FdFlag::FD_CLOEXEC, on);
        let _ = fcntl(fd, FcntlArg::F_SETFD(fl));
    }
}

/// Whether this process has taken its inherited connection: at most once,
/// whatever the environment says later. Process-wide as the inherited
/// descriptor is.
static EXECFD_TAKEN: AtomicBool = AtomicBool::new(false);

/// Take the descriptor `RUMPCLIENT__EXECFD` names (its first field), once
/// per process, and only if it is what an exec'ing client leaves: an open
/// socket without close-on-exec. Every descriptor this program opened
/// itself through Rust's standard library (and this crate) has
/// close-on-exec set, so a descriptor without it came through `exec` and
/// has no owner here.
fn take_execfd(v: &str) -> Result<OwnedFd, String> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use nix::sys::stat::{fstat, SFlag};
    let fd: RawFd = v
        .split(',')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&fd: &RawFd| fd >= 0)
        .ok_or_else(|| format!("bad RUMPCLIENT__EXECFD '{v}'"))?;
    let flags = fcntl(fd, FcntlArg::F_GETFD)
        .map_err(|e| format!("RUMPCLIENT__EXECFD {fd}: not an open descriptor ({e})"))?;
    if FdFlag::from_bits_retain(flags).contains(FdFlag::FD_CLOEXEC) {
        return Err(format!(
            "RUMPCLIENT__EXECFD {fd}: close-on-exec is set, so it was not inherited"
        ));
    }
    let st = fstat(fd).map_err(|e| format!("RUMPCLIENT__EXECFD {fd}: {e}"))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(format!("RUMPCLIENT__EXECFD {fd}: not a socket"));
    }
    if EXECFD_TAKEN.swap(true, Ordering::SeqCst) {
        return Err("RUMPCLIENT__EXECFD: the inherited connection was already taken".into());
    }
    // SAFETY: `fd` is open, came through exec (no close-on-exec, which
    // every descriptor opened in this program has), and is taken once:
    // nothing else in this process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_cloexec(fd.as_fd(), true);
    Ok(fd)
}

/// `SO_RCVTIMEO` on `fd`: `None` waits for ever.
fn set_rcvtimeo(fd: &OwnedFd, t: Option<Duration>) {
    let tv = match t {
        Some(d) => TimeVal::new(d.as_secs() as _, d.subsec_micros() as _),
        None => TimeVal::new(0, 0),
    };
    let _ = setsockopt(fd, sockopt::ReceiveTimeout, &tv);
}

/// The bytes a copyin (or copyinstr) of `len` bytes at `addr` may read.
fn find_readable<'r>(
    regions: &'r [Region<'_>],
    maps: &'r [MmapMut],
    addr: u64,
    len: u64,
    string: bool,
) -> Option<&'r [u8]> {
    let pick = |mem: &'r [u8]| -> Option<&'r [u8]> {
        let base = mem.as_ptr() as u64;
        if string {
            let off = addr.checked_sub(base)?;
            if off >= mem.len() as u64 {
                return None;
            }
            let avail = &mem[off as usize..];
            let lim = (len.min(avail.len() as u64)) as usize;
            match avail[..lim].iter().position(|&b| b == 0) {
                Some(i) => Some(&avail[..=i]),
                // Not terminated within the limit: send the limit, the
                // kernel reports ENAMETOOLONG; running off the region first
                // is a fault.
                None if lim as u64 == len => Some(&avail[..lim]),
                None => None,
            }
        } else {
            within(base, mem.len(), addr, len).map(|o| &mem[o..o + len as usize])
        }
    };
    for r in regions {
        if let Some(m) = r.readable() {
            if let Some(d) = pick(m) {
                return Some(d);
            }
        }
    }
    for m in maps {
        if let Some(d) = pick(m) {
            return Some(d);
        }
    }
    None
}

/// The bytes a copyout of `len` bytes to `addr` may write.
fn find_writable<'r>(
    regions: &'r mut [Region<'_>],
    maps: &'r mut [MmapMut],
    addr: u64,
    len: u64,
) -> Option<&'r mut [u8]> {
    for r in regions.iter_mut() {
        if let Some(m) = r.writable() {
            if let Some(o) = within(m.as_ptr() as u64, m.len(), addr, len) {
                return Some(&mut m[o..o + len as usize]);
            }
        }
    }
    for m in maps {
        if let Some(o) = within(m.as_ptr() as u64, m.len(), addr, len) {
            return Some(&mut m[o..o + len as usize]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_bound_every_copy() {
        let a = b"hello\0world".to_vec();
        let mut b = vec![0u8; 8];
        let (pa, pb) = (a.as_ptr() as u64, b.as_ptr() as u64);
        let mut regs = [Region::In(&a), Region::Out(&mut b)];
        assert_eq!(find_readable(&regs, &[], pa, 5, false), Some(&b"hello"[..]));
        assert_eq!(
            find_readable(&regs, &[], pa + 6, 5, false),
            Some(&b"world"[..])
        );
        assert_eq!(
            find_readable(&regs, &[], pa + 6, 6, false),
            None,
            "runs past the region"
        );
        assert_eq!(
            find_readable(&regs, &[], pb, 1, false),
            None,
            "write-only region"
        );
        assert_eq!(
            find_readable(&regs, &[], u64::MAX, 2, false),
            None,
            "address overflow"
        );
        // Strings stop at the NUL, at the limit, or fault past the region.
        assert_eq!(
            find_readable(&regs, &[], pa, 100, true),
            Some(&b"hello\0"[..])
        );
        assert_eq!(find_readable(&regs, &[], pa, 3, true), Some(&b"hel"[..]));
        assert_eq!(find_readable(&regs, &[], pa + 6, 100, true), None);
        assert!(find_writable(&mut regs, &mut [], pb, 8).is_some());
        assert!(find_writable(&mut regs, &mut [], pb + 1, 8).is_none());
        assert!(
            find_writable(&mut regs, &mut [], pa, 1).is_none(),
            "read-only region"
        );
    }

    #[test]
    fn client_is_send_and_sync() {
        fn f<T: Send + Sync>() {}
        f::<Client>();
        f::<Error>();
    }

    #[test]
    fn errors_read_like_unix() {
        let e = Error::Connect {
            url: "unix:///x.sock".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(
            e.to_string(),
            "connect unix:///x.sock: No such file or directory"
        );
        assert_eq!(
            Error::Errno(Errno(netbsd_abi::errno::ENOTEMPTY)).to_string(),
            "Directory not empty"
        );
        assert_eq!(Error::NoServer.to_string(), "RUMP_SERVER not set");
        assert!(Error::Errno(Errno(2)) == Errno(2));
    }

    /// `RUMPCLIENT__EXECFD` is taken only if it names an inherited socket
    /// (open, no close-on-exec), and once per process. (One test: the
    /// "taken" mark is process-wide.)
    #[test]
    fn the_exec_descriptor_is_validated_and_taken_once() {
        use std::io::{Read, Write};
        use std::os::fd::IntoRawFd;
        use std::os::unix::net::UnixStream;
        assert!(take_execfd("").is_err());
        assert!(take_execfd("x,-1").is_err());
        assert!(take_execfd("-1,-1").is_err());
        // Not open.
        assert!(take_execfd("1000000,-1")
            .unwrap_err()
            .contains("not an open"));
        // Opened by this program (close-on-exec): somebody's here.
        let (a, mut b) = UnixStream::pair().unwrap();
        let owned_here = a.as_raw_fd();
        let e = take_execfd(&format!("{owned_here},-1")).unwrap_err();
        assert!(e.contains("close-on-exec"), "{e}");
        // Not a socket.
        let (r, w) = nix::unistd::pipe().unwrap();
        set_cloexec(r.as_fd(), false);
        let e = take_execfd(&format!("{},-1", r.as_raw_fd())).unwrap_err();
        assert!(e.contains("not a socket"), "{e}");
        drop((r, w));
        // An inherited socket: taken, and usable.
        set_cloexec(a.as_fd(), false);
        let raw = a.into_raw_fd();
        let fd = take_execfd(&format!("{raw},-1")).unwrap();
        assert_eq!(fd.as_raw_fd(), raw);
        let mut s = UnixStream::from(fd);
        s.write_all(b"hi").unwrap();
        let mut got = [0u8; 2];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
        // Close-on-exec again, as for any descriptor of ours.
        let fl = nix::fcntl::fcntl(s.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(fl & libc::FD_CLOEXEC, 0);
        // Never a second time, even for another inherited socket.
        let (c, _d) = UnixStream::pair().unwrap();
        set_cloexec(c.as_fd(), false);
        let e = take_execfd(&format!("{},-1", c.as_raw_fd())).unwrap_err();
        assert!(e.contains("already taken"), "{e}");
    }
}
