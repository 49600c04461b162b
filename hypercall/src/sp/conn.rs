//! One client connection: sending frames, waiting for responses by request
//! number, and the buffered frame reader.

use std::collections::HashMap;
use std::ffi::c_void;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
use std::sync::Arc;
use std::thread::Thread;

use parking_lot::{Condvar, Mutex};

use netbsd_abi::sp::reader::{Fd, FrameReader, ReadError, SpinFd};
use netbsd_abi::sp::{self as wire, Class, CopyData, Header, SysResp, Type, HDRSZ};

use super::server::{Budget, ReqBuf, REQUEST_MAX};

pub(crate) const ST_NEW: u8 = 0;
pub(crate) const ST_RUNNING: u8 = 1;
pub(crate) const ST_DYING: u8 = 2;

const SLOT_PENDING: u32 = 0;
const SLOT_DONE: u32 = 1;
const SLOT_DEAD: u32 = 2;
const SLOT_ERROR: u32 = 3;

/// A kernel thread waiting for the client's answer to one request. The
/// reader writes at most `cap` bytes at `dest`, then publishes the state.
pub(crate) struct Slot {
    thread: Thread,
    state: AtomicU32,
    dest: *mut u8,
    cap: usize,
    got: AtomicUsize,
}

// SAFETY: `dest` is written only by the connection's reader while the slot
// is pending, and the waiting thread (which owns that memory) does not
// return before the state leaves PENDING (see `Conn::request`).
unsafe impl Send for Slot {}
// SAFETY: as above; every other field is atomic or immutable.
unsafe impl Sync for Slot {}

impl Slot {
    fn finish(&self, state: u32) {
        self.state.store(state, Ordering::Release);
        self.thread.unpark();
    }
}

struct Waiters {
    next: u64,
    slots: HashMap<u64, Arc<Slot>>,
    dead: bool,
}

/// A syscall in progress on this connection.
struct Running {
    reqno: u64,
    /// Already answered by `fini`: its real return is not sent.
    answered: bool,
}

pub(crate) struct Conn {
    pub id: usize,
    /// The server this connection belongs to.
    pub srv: Arc<super::server::Srv>,
    fd: OwnedFd,
    send_lock: Mutex<()>,
    waiters: Mutex<Waiters>,
    pub state: AtomicU8,
    pub mainlwp: AtomicPtr<c_void>,
    pub pid: AtomicI32,
    /// The reader plus every running syscall or exec job.
    active: AtomicUsize,
    active_cv: Condvar,
    active_mx: Mutex<()>,
    pub inexec: AtomicBool,
    running: Mutex<Vec<Running>>,
    /// The reader role and its buffer.
    pub rd: Mutex<RState>,
    /// Set once, by whoever first finds the connection closed or broken.
    pub closed: AtomicBool,
    /// When the reader role was left free while a syscall runs (0: not).
    pub free_since: AtomicU64,
    /// A pool reader is on its way to take the role.
    pub reader_queued: AtomicBool,
    /// Serializes handshake, prefork, exec and disconnect handling (they
    /// switch to the process's main lwp).
    pub ctl: Mutex<()>,
    /// When the connection was accepted ([`now_ns`]): the handshake
    /// deadline runs from here.
    pub accepted: u64,
    /// Shut down by the server (handshake deadline, or evicted to make
    /// room at the connection cap); no longer counts against the cap.
    pub evicted: AtomicBool,
    /// Protocol extensions granted in the handshake (`wire::Features`).
    pub features: AtomicU32,
}

impl Conn {
    pub fn new(id: usize, fd: OwnedFd, srv: Arc<super::server::Srv>) -> Conn {
        let rd = Mutex::new(RState::new(srv.budget.clone()));
        Conn {
            id,
            srv,
            fd,
            send_lock: Mutex::new(()),
            waiters: Mutex::new(Waiters {
                next: 0,
                slots: HashMap::new(),
                dead: false,
            }),
            state: AtomicU8::new(ST_NEW),
            mainlwp: AtomicPtr::new(std::ptr::null_mut()),
            pid: AtomicI32::new(0),
            active: AtomicUsize::new(1),
            active_cv: Condvar::new(),
            active_mx: Mutex::new(()),
            inexec: AtomicBool::new(false),
            running: Mutex::new(Vec::new()),
            rd,
            closed: AtomicBool::new(false),
            free_since: AtomicU64::new(0),
            reader_queued: AtomicBool::new(false),
            ctl: Mutex::new(()),
            accepted: now_ns(),
            evicted: AtomicBool::new(false),
            features: AtomicU32::new(0),
        }
    }

    /// Close a connection that has not handshaken (deadline passed, or
    /// room needed at the cap): its reader sees EOF and disconnects.
    /// False if it was evicted already.
    pub fn evict(&self) -> bool {
        if self.evicted.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.shutdown();
        true
    }

    /// The peer's user id (unix sockets), or `u32::MAX` when the socket
    /// does not say (TCP: anyone who can reach it counts as one user).
    pub fn peer_uid(&self) -> u32 {
        nix::sys::socket::getsockopt(&self.fd, nix::sys::socket::sockopt::PeerCredentials)
            .map_or(u32::MAX, |c| c.uid())
    }

    /// The server that owns this connection, as the connection sees it.
    fn owner(&self) -> &dyn Owner {
        &*self.srv
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    // --- activity counting -------------------------------------------------

    pub fn enter(&self) {
        self.active.fetch_add(1, Ordering::AcqRel);
    }

    /// Start one more activity unless the connection already has `max`
    /// beside itself: checked and counted in one step, so that two
    /// threads admitting requests at once (the reader and a copyin waiter
    /// that took over reading) cannot both pass the cap.
    pub fn try_enter(&self, max: usize) -> bool {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                (a <= max).then_some(a + 1)
            })
            .is_ok()
    }

    /// Activities now: the connection itself, plus every syscall (or
    /// exec) it has running.
    pub fn activities(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Drop one activity; true when it was the last (the connection is
    /// dead and its process may be released).
    pub fn leave(&self) -> bool {
        let last = self.active.fetch_sub(1, Ordering::AcqRel) == 1;
        let _g = self.active_mx.lock();
        self.active_cv.notify_all();
        last
    }

    /// Wait until at most `n` activities remain.
    pub fn wait_active_at_most(&self, n: usize) {
        let mut g = self.active_mx.lock();
        while self.active.load(Ordering::Acquire) > n {
            self.active_cv.wait(&mut g);
        }
    }

    // --- running syscalls (for fini) ----------------------------------------

    pub fn running_add(&self, reqno: u64) {
        self.running.lock().push(Running {
            reqno,
            answered: false,
        });
    }

    /// Forget a finished syscall; true if its answer was already sent.
    pub fn running_remove(&self, reqno: u64) -> bool {
        let mut r = self.running.lock();
        match r.iter().position(|x| x.reqno == reqno) {
            Some(i) => r.swap_remove(i).answered,
            None => false,
        }
    }

    /// Mark `reqno` (or, if `None`, the most recent running syscall) as
    /// answered early; returns the request number to answer.
    pub fn running_claim(&self, reqno: Option<u64>) -> Option<u64> {
        let mut r = self.running.lock();
        let x = match reqno {
            Some(q) => r.iter_mut().find(|x| x.reqno == q)?,
            None => r.last_mut()?,
        };
        if x.answered {
            return None;
        }
        x.answered = true;
        Some(x.reqno)
    }

    // --- sending ---------------------------------------------------------------

    /// Write one frame made of `parts` with a single `sendmsg` (looping only
    /// on a partial write). Blocking; `Err` means the connection is broken.
    pub fn send(&self, parts: &[&[u8]]) -> Result<(), ConnError> {
        let _g = self.send_lock.lock();
        send_all(self.fd(), parts)
    }

    pub fn send_error(&self, reqno: u64, err: wire::ProtoError) -> Result<(), ConnError> {
        let h = Header::new(Class::Error, Type::Handshake, reqno, err as u32, 0);
        self.send(&[&h.encode()])
    }

    pub fn send_handshake_resp(&self, reqno: u64, error: i32) -> Result<(), ConnError> {
        let h = Header::new(
            Class::Resp,
            Type::Handshake,
            reqno,
            0,
            wire::HANDSHAKE_RESP_LEN,
        );
        self.send(&[&h.encode(), &error.to_le_bytes()])
    }

    /// A handshake response with the extension grant after the error (only
    /// to a client that asked: see `wire::ExtGrant`).
    pub fn send_handshake_ext_resp(
        &self,
        reqno: u64,
        error: i32,
        g: wire::ExtGrant,
    ) -> Result<(), ConnError> {
        let h = Header::new(
            Class::Resp,
            Type::Handshake,
            reqno,
            0,
            wire::HANDSHAKE_EXT_RESP_LEN,
        );
        self.send(&[&h.encode(), &error.to_le_bytes(), &g.encode()])
    }

    pub fn send_sysresp(&self, reqno: u64, error: i32, retval: [i64; 2]) -> Result<(), ConnError> {
        let h = Header::new(Class::Resp, Type::Syscall, reqno, 0, wire::SYSRESP_LEN);
        let r = SysResp { error, retval };
        self.send(&[&h.encode(), &r.encode()])
    }

    /// Shut the socket both ways: the reader sees EOF, blocked writers fail.
    pub fn shutdown(&self) {
        // SAFETY: shutdown(2) on a descriptor we own; no memory involved.
        unsafe { libc::shutdown(self.raw_fd(), libc::SHUT_RDWR) };
    }

    // --- requests to the client --------------------------------------------------

    /// Send a request whose answer the client sends back (COPYIN,
    /// COPYINSTR, ANONMMAP) and wait for it; the answer's payload lands in
    /// `dest` (at most `dest.len()` bytes). Returns the payload size the
    /// client sent, capped at `dest.len()`.
    pub fn request(
        self: &Arc<Self>,
        ty: Type,
        payload: &[u8],
        dest: &mut [u8],
    ) -> Result<usize, ConnError> {
        let slot = Arc::new(Slot {
            thread: std::thread::current(),
            state: AtomicU32::new(SLOT_PENDING),
            dest: dest.as_mut_ptr(),
            cap: dest.len(),
            got: AtomicUsize::new(0),
        });
        let reqno = {
            let mut w = self.waiters.lock();
            if w.dead {
                return Err(ConnError::Closed);
            }
            let r = w.next;
            w.next = w.next.wrapping_add(1);
            w.slots.insert(r, slot.clone());
            r
        };
        let h = Header::new(Class::Req, ty, reqno, 0, payload.len());
        if let Err(e) = self.send(&[&h.encode(), payload]) {
            let mut w = self.waiters.lock();
            if w.slots.remove(&reqno).is_some() {
                return Err(e);
            }
            // The reader already took the slot: wait for it to finish
            // with our buffer before returning.
        }
        let done = || slot.state.load(Ordering::Acquire) != SLOT_PENDING;
        // A client that never answers must not pin this thread: past the
        // deadline the request is abandoned (a late answer is skipped, as
        // any answer nobody waits for) and the syscall fails.
        let deadline = now_ns().saturating_add(self.owner().copy_timeout_ns());
        let mut abandoned = false;
        while !done() {
            if !abandoned && now_ns() >= deadline {
                if self.take_slot(reqno).is_some() {
                    return Err(ConnError::TimedOut);
                }
                // The reader has taken our slot and is filling `dest`:
                // wait for it to finish with our buffer.
                abandoned = true;
            }
            match self.rd.try_lock() {
                Some(mut g) => {
                    // Nobody is reading: read our answer ourselves.
                    self.free_since.store(0, Ordering::Release);
                    // Usually the next frame is our answer: try to read its
                    // payload straight into `dest`.
                    let mut first = if ty == Type::Copyin
                        && !done()
                        && (abandoned || readable_before(self.raw_fd(), deadline))
                    {
                        g.read_direct(self, reqno, &slot)
                    } else {
                        None
                    };
                    let wait_until = (!abandoned).then_some(deadline);
                    while let Some(input) = first
                        .take()
                        .or_else(|| g.next_until(self, &done, wait_until))
                    {
                        match input {
                            Input::Request(hdr) => {
                                let empty = g.pending.sibling();
                                let payload = std::mem::replace(&mut g.pending, empty);
                                self.owner().dispatch(self.clone(), hdr, payload);
                            }
                            Input::Refused(r) => {
                                let _ = self.send_error(r, wire::ProtoError::NoMem);
                            }
                            Input::Closed | Input::Bad(_) => {
                                if let Input::Bad(Some(r)) = input {
                                    let _ = self.send_error(r, wire::ProtoError::MalformedRequest);
                                }
                                self.kill_waiters();
                                self.owner().broken(self.clone());
                                break;
                            }
                        }
                    }
                    drop(g);
                    // Our syscall goes on without a reader; let another
                    // waiter take over, and the watchdog know.
                    self.free_since.store(now_ns(), Ordering::Release);
                    self.wake_waiters();
                }
                None => {
                    std::thread::park_timeout(std::time::Duration::from_millis(1));
                }
            }
        }
        match slot.state.load(Ordering::Acquire) {
            SLOT_DONE => Ok(slot.got.load(Ordering::Acquire)),
            SLOT_ERROR => Err(ConnError::Refused),
            _ if abandoned => Err(ConnError::TimedOut),
            _ => Err(ConnError::Closed),
        }
    }

    /// Send a request that has no answer (COPYOUT, COPYOUTSTR, RAISE).
    pub fn notify(&self, ty: Type, arg: u32, parts: &[&[u8]]) -> Result<(), ConnError> {
        if self.waiters.lock().dead {
            return Err(ConnError::Closed);
        }
        let n: usize = parts.iter().map(|p| p.len()).sum();
        let h = Header::new(Class::Req, ty, self.next_reqno(), arg, n).encode();
        let mut v: [&[u8]; 4] = [&h, &[], &[], &[]];
        for (i, p) in parts.iter().take(3).enumerate() {
            v[i + 1] = p;
        }
        self.send(&v[..1 + parts.len().min(3)])
    }

    fn next_reqno(&self) -> u64 {
        let mut w = self.waiters.lock();
        let r = w.next;
        w.next = w.next.wrapping_add(1);
        r
    }

    pub fn copyout(&self, ty: Type, src: &[u8], raddr: u64) -> Result<(), ConnError> {
        let cd = CopyData {
            len: src.len() as u64,
            addr: raddr,
        };
        self.notify(ty, 0, &[&cd.encode(), src])
    }

    /// Mark the connection dead and wake every waiter (they fail).
    pub fn kill_waiters(&self) {
        let slots: Vec<Arc<Slot>> = {
            let mut w = self.waiters.lock();
            w.dead = true;
            w.slots.drain().map(|(_, s)| s).collect()
        };
        for s in slots {
            s.finish(SLOT_DEAD);
        }
    }

    /// Wake every waiter (one of them may need to take the reader role).
    pub fn wake_waiters(&self) {
        for s in self.waiters.lock().slots.values() {
            s.thread.unpark();
        }
    }

    fn take_slot(&self, reqno: u64) -> Option<Arc<Slot>> {
        self.waiters.lock().slots.remove(&reqno)
    }
}

/// `sendmsg` every byte of `parts` (shared with the client).
pub(crate) fn send_all(fd: BorrowedFd<'_>, parts: &[&[u8]]) -> Result<(), ConnError> {
    wire::io::send_all(fd, parts).map_err(ConnError::Send)
}

/// Why a frame could not go out, or a request to the client got no
/// answer. Kernel callers see each as `EFAULT`; the log can say which.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    /// The connection was shut down or found broken.
    #[error("connection closed")]
    Closed,
    /// Writing to the socket failed.
    #[error("send: {0}")]
    Send(std::io::Error),
    /// The client did not answer before the copy deadline.
    #[error("no answer before the copy deadline")]
    TimedOut,
    /// The client answered with an error frame (an address it refuses).
    #[error("refused by the client")]
    Refused,
}

const BUF: usize = wire::reader::BUF;
/// Buffered reads ask for at most this much (see `FrameReader::set_read_limit`).
const READ_LIMIT: usize = 4096;

/// The reading side of a connection: the frame reader shared with the
/// client library, and the last request's payload. Holding `Conn::rd`
/// (this state) is the *reader role*: whoever holds it reads frames and
/// routes answers.
pub(crate) struct RState {
    r: FrameReader,
    /// Spinning (bounded, adaptive) before blocking for the next frame.
    spin: wire::io::Spin,
    /// Payload of the last request, charged to the server's budget.
    pub pending: ReqBuf,
}

/// What a connection asks of the server that owns it, without calling into
/// the server's code: a request that a copy waiter read on its way is
/// handed over to be run elsewhere, a connection found broken is handed
/// back for teardown, and how long a copy request may wait for its answer.
pub(crate) trait Owner: Send + Sync {
    /// Run request `hdr` (its payload read already) on another thread.
    fn dispatch(&self, conn: Arc<Conn>, hdr: Header, payload: ReqBuf);
    /// `conn` is closed or broken: tear it down (on another thread).
    fn broken(&self, conn: Arc<Conn>);
    /// The copy request deadline, in nanoseconds.
    fn copy_timeout_ns(&self) -> u64;
}

/// Whether `fd` has bytes to read before `at` ([`now_ns`]) passes.
fn readable_before(fd: RawFd, at: u64) -> bool {
    loop {
        let left = at.saturating_sub(now_ns());
        if left == 0 {
            return false;
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.div_ceil(1_000_000).min(i32::MAX as u64) as i32;
        // SAFETY: one pollfd on the stack, for the length given.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        if n > 0 {
            return true;
        }
        if n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // An error the read itself will report.
            return true;
        }
    }
}

/// A socket read that waits for bytes only until `at` ([`now_ns`]), then
/// fails with `TimedOut` (a copy waiter's deadline).
struct DeadlineFd<'a> {
    fd: BorrowedFd<'a>,
    spin: &'a mut wire::io::Spin,
    at: u64,
}

impl netbsd_abi::sp::reader::Source for DeadlineFd<'_> {
    fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !readable_before(self.fd.as_raw_fd(), self.at) {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.spin.read_some(self.fd, buf)
    }
}

/// A request payload is read in steps of at least this much (see
/// `RState::read_payload`).
const PAYLOAD_CHUNK: usize = 256 << 10;

/// What the reader found.
pub(crate) enum Input {
    /// A request from the client; its payload is in `RState::pending`.
    Request(Header),
    /// End of file, a read error, or the connection was closed already.
    Closed,
    /// A frame that can't be decoded (or a payload larger than any
    /// request can be): the error to send, then close.
    Bad(Option<u64>),
    /// A request the server's budget had no room for: its payload was
    /// read and dropped; answer `NOMEM` and go on.
    Refused(u64),
}

/// How reading a request's payload ended.
enum Payload {
    Read,
    Closed,
    Refused,
}

impl RState {
    pub fn new(budget: Arc<Budget>) -> RState {
        let mut r = FrameReader::new();
        // A 64 KiB request's payload is read straight into `pending`.
        r.set_read_limit(READ_LIMIT);
        RState {
            r,
            spin: wire::io::Spin::new(),
            pending: ReqBuf::new(budget),
        }
    }

    fn read_into(&mut self, fd: BorrowedFd<'_>, dst: &mut [u8]) -> bool {
        self.r.read_into(&mut Fd(fd), dst).is_ok()
    }

    fn skip(&mut self, fd: BorrowedFd<'_>, n: usize) -> bool {
        self.r.skip(&mut Fd(fd), n).is_ok()
    }

    /// For a requester holding the reader role while its request `reqno`
    /// is pending, with nothing buffered: one `readv` takes the next
    /// frame's header into the buffer and what follows straight into the
    /// slot's destination, betting that the frame is the answer (saves a
    /// copy of the payload and a read). If it is, the answer is completed
    /// there; if not, the bytes are moved back into the buffer in stream
    /// order and framing goes on as usual (`None`). `Some(Closed)` on end
    /// of file or a read error.
    pub fn read_direct(&mut self, conn: &Conn, reqno: u64, slot: &Slot) -> Option<Input> {
        if conn.closed.load(Ordering::Acquire) {
            return Some(Input::Closed);
        }
        if slot.cap == 0 || conn.state.load(Ordering::Acquire) == ST_NEW {
            return None;
        }
        let fd = conn.fd();
        let hbuf = self.r.empty_buffer()?;
        let room = slot.cap.min(BUF - HDRSZ);
        let mut iov = [
            libc::iovec {
                iov_base: hbuf.as_mut_ptr() as *mut c_void,
                iov_len: HDRSZ,
            },
            libc::iovec {
                iov_base: slot.dest as *mut c_void,
                iov_len: room,
            },
        ];
        self.spin.wait_readable(fd);
        let n = loop {
            // SAFETY: the first iovec is our buffer (BUF >= HDRSZ bytes);
            // the second is the pending slot's destination, `cap >= room`
            // bytes that only the reader role (held by us) may write while
            // the slot is pending.
            let n = unsafe { libc::readv(fd.as_raw_fd(), iov.as_mut_ptr(), 2) };
            if n >= 0 {
                break n as usize;
            }
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return Some(Input::Closed);
            }
        };
        if n == 0 {
            return Some(Input::Closed);
        }
        let mut hb = [0u8; HDRSZ];
        hb.copy_from_slice(&hbuf[..HDRSZ]);
        if n <= HDRSZ {
            self.r.filled(n);
            return None;
        }
        let k = n - HDRSZ;
        let ours = match wire::RawHeader::parse(&hb).validate() {
            Ok(h) if h.class == Class::Resp && h.reqno == reqno => Some(h),
            _ => None,
        };
        let taken = ours.and_then(|h| conn.take_slot(reqno).map(|s| (h, s)));
        let Some((hdr, s)) = taken else {
            // Not our answer: put the bytes back behind the header.
            // SAFETY: `k <= room` bytes of the destination were just
            // written by readv; nobody else touches it while pending.
            let landed = unsafe { std::slice::from_raw_parts(slot.dest, k) };
            self.r.filled(HDRSZ);
            self.r.push_back(landed);
            return None;
        };
        let plen = hdr.payload_len();
        let want = plen.min(s.cap);
        self.r.filled(0);
        if k > want {
            // The answer was shorter than the room: the rest is the start
            // of the next frame.
            // SAFETY: as above; [want, k) lies inside what readv wrote.
            let extra = unsafe { std::slice::from_raw_parts(s.dest.wrapping_add(want), k - want) };
            self.r.push_back(extra);
        }
        let have = k.min(want);
        // SAFETY: the slot is ours now (taken), its destination `cap >=
        // want` bytes, untouched by anyone else until we finish it.
        let rest =
            unsafe { std::slice::from_raw_parts_mut(s.dest.wrapping_add(have), want - have) };
        let ok = self.read_into(fd, rest) && self.skip(fd, plen - want);
        s.got.store(want, Ordering::Release);
        s.finish(if ok { SLOT_DONE } else { SLOT_DEAD });
        if ok {
            None
        } else {
            Some(Input::Closed)
        }
    }

    /// Read frames until a request arrives (its payload then in
    /// `pending`), routing answers to their waiters on the way. `stop`
    /// is checked between frames: when it holds, returns `None` (the
    /// caller got what it was reading for).
    pub fn next(&mut self, conn: &Conn, stop: &dyn Fn() -> bool) -> Option<Input> {
        self.next_until(conn, stop, None)
    }

    /// [`RState::next`], but waiting for the next frame's header only
    /// until `deadline` ([`now_ns`]) when one is given: then `None`, with
    /// whatever part of a header arrived kept for the next reader.
    pub fn next_until(
        &mut self,
        conn: &Conn,
        stop: &dyn Fn() -> bool,
        deadline: Option<u64>,
    ) -> Option<Input> {
        let fd = conn.fd();
        loop {
            if conn.closed.load(Ordering::Acquire) {
                return Some(Input::Closed);
            }
            if stop() {
                return None;
            }
            self.pending.shrink_above(PAYLOAD_CHUNK);
            // Not cleared: `resize` below then zero-fills only what grows
            // (a run of equal-sized requests reuses the bytes as they are;
            // `read_into` overwrites them all).
            let got = match deadline {
                None => self.r.header(&mut SpinFd(fd, &mut self.spin)),
                Some(at) => self.r.header(&mut DeadlineFd {
                    fd,
                    spin: &mut self.spin,
                    at,
                }),
            };
            let hdr = match got {
                Ok(h) => h,
                Err(ReadError::Bad(e)) => return Some(Input::Bad(e.reqno())),
                Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => return None,
                Err(_) => return Some(Input::Closed),
            };
            let plen = hdr.payload_len();
            match hdr.class {
                Class::Req => {
                    if plen > REQUEST_MAX {
                        // No request is this large: refused before any
                        // of it is read or held.
                        return Some(Input::Bad(Some(hdr.reqno)));
                    }
                    return Some(match self.read_payload(fd, plen) {
                        Payload::Read => Input::Request(hdr),
                        Payload::Closed => Input::Closed,
                        Payload::Refused => Input::Refused(hdr.reqno),
                    });
                }
                Class::Resp | Class::Error => {
                    if conn.state.load(Ordering::Acquire) == ST_NEW {
                        return Some(Input::Bad(Some(hdr.reqno)));
                    }
                    if !self.route(conn, &hdr, plen) {
                        return Some(Input::Closed);
                    }
                }
            }
        }
    }

    /// Read a request's `plen` bytes of payload into `pending`, growing it
    /// only as bytes arrive: a header that claims a large payload and sends
    /// nothing commits one chunk. The buffer at most doubles what has
    /// arrived, so a real large request costs a few copies, not a
    /// frame-sized allocation made on the peer's word. Growth beyond the
    /// free part is charged to the server's budget first; when it has no
    /// room, the rest of the payload is read and dropped (`Refused`).
    fn read_payload(&mut self, fd: BorrowedFd<'_>, plen: usize) -> Payload {
        let done = |ok: bool| if ok { Payload::Read } else { Payload::Closed };
        // Not cleared when it fits: `resize` then zero-fills only what
        // grows (`read_into` overwrites every byte anyway).
        if plen <= PAYLOAD_CHUNK {
            if self.pending.resize(plen).is_err() {
                return self.refuse(fd, plen);
            }
            return done(self.r.read_into(&mut Fd(fd), &mut self.pending).is_ok());
        }
        self.pending.clear();
        while self.pending.len() < plen {
            let have = self.pending.len();
            let grow = (plen - have).min(have.max(PAYLOAD_CHUNK));
            if self.pending.resize(have + grow).is_err() {
                return self.refuse(fd, plen - have);
            }
            if self
                .r
                .read_into(&mut Fd(fd), &mut self.pending[have..])
                .is_err()
            {
                return Payload::Closed;
            }
        }
        Payload::Read
    }

    /// Drop the `left` bytes of a payload the budget has no room for.
    fn refuse(&mut self, fd: BorrowedFd<'_>, left: usize) -> Payload {
        self.pending.clear();
        if self.skip(fd, left) {
            Payload::Refused
        } else {
            Payload::Closed
        }
    }

    /// Deliver an answer to its waiter (or drop it if nobody waits).
    fn route(&mut self, conn: &Conn, hdr: &Header, plen: usize) -> bool {
        let fd = conn.fd();
        let slot = match conn.take_slot(hdr.reqno) {
            Some(s) => s,
            None => return self.skip(fd, plen),
        };
        if hdr.class == Class::Error {
            let ok = self.skip(fd, plen);
            slot.finish(SLOT_ERROR);
            return ok;
        }
        let n = plen.min(slot.cap);
        // SAFETY: the waiter keeps `dest` (cap bytes) alive and untouched
        // until the slot leaves PENDING, which only happens below.
        let dst = unsafe { std::slice::from_raw_parts_mut(slot.dest, n) };
        let ok = self.read_into(fd, dst) && self.skip(fd, plen - n);
        slot.got.store(n, Ordering::Release);
        slot.finish(if ok { SLOT_DONE } else { SLOT_DEAD });
        ok
    }
}

/// Monotonic nanoseconds (never 0).
pub(crate) fn now_ns() -> u64 {
    static T0: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    T0.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::FromRawFd;
    use std::os::unix::net::UnixStream;

    /// A running connection on one end of a socket pair, the other end
    /// standing for the client.
    fn pair() -> (Arc<Conn>, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        // SAFETY: `a`'s descriptor is handed over to the OwnedFd.
        let fd = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(a)) };
        let c = Arc::new(Conn::new(1, fd, super::super::server::Srv::detached()));
        c.state.store(ST_RUNNING, Ordering::Release);
        (c, b)
    }

    fn pending(c: &Conn, reqno: u64, dest: &mut [u8]) -> Arc<Slot> {
        let s = Arc::new(Slot {
            thread: std::thread::current(),
            state: AtomicU32::new(SLOT_PENDING),
            dest: dest.as_mut_ptr(),
            cap: dest.len(),
            got: AtomicUsize::new(0),
        });
        c.waiters.lock().slots.insert(reqno, s.clone());
        s
    }

    fn frame(class: Class, ty: Type, reqno: u64, payload: &[u8]) -> Vec<u8> {
        wire::encode_frame(class, ty, reqno, 0, &[payload])
    }

    #[test]
    fn read_direct_takes_the_answer_and_keeps_what_follows() {
        let (c, mut peer) = pair();
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
        let mut dest = vec![0u8; data.len()];
        let slot = pending(&c, 5, &mut dest);
        let mut bytes = frame(Class::Resp, Type::Copyin, 5, &data);
        bytes.extend(frame(Class::Req, Type::Syscall, 9, &[1, 2, 3]));
        peer.write_all(&bytes).unwrap();
        let mut g = c.rd.lock();
        assert!(g.read_direct(&c, 5, &slot).is_none());
        assert_eq!(slot.state.load(Ordering::Acquire), SLOT_DONE);
        assert_eq!(slot.got.load(Ordering::Acquire), data.len());
        match g.next(&c, &|| false) {
            Some(Input::Request(h)) => assert_eq!((h.reqno, &g.pending[..]), (9, &[1u8, 2, 3][..])),
            _ => panic!("request after the answer lost"),
        }
        drop(g);
        assert_eq!(dest, data);
    }

    #[test]
    fn read_direct_short_answer_and_foreign_frames() {
        let (c, mut peer) = pair();
        let mut dest = vec![0xeeu8; 100];
        let slot = pending(&c, 3, &mut dest);
        // A request from the client comes first: put back, read normally.
        peer.write_all(&frame(Class::Req, Type::Syscall, 8, &[4u8; 40]))
            .unwrap();
        let mut g = c.rd.lock();
        assert!(g.read_direct(&c, 3, &slot).is_none());
        assert_eq!(slot.state.load(Ordering::Acquire), SLOT_PENDING);
        match g.next(&c, &|| false) {
            Some(Input::Request(h)) => {
                assert_eq!((h.reqno, g.pending.to_vec()), (8, vec![4u8; 40]))
            }
            _ => panic!("first request lost"),
        }
        // Now the (short) answer, then a request in the same read.
        let mut bytes = frame(Class::Resp, Type::Copyin, 3, &[6u8; 10]);
        bytes.extend(frame(Class::Req, Type::Syscall, 11, &[5u8; 7]));
        peer.write_all(&bytes).unwrap();
        assert!(g.read_direct(&c, 3, &slot).is_none());
        assert_eq!(slot.state.load(Ordering::Acquire), SLOT_DONE);
        assert_eq!(slot.got.load(Ordering::Acquire), 10);
        match g.next(&c, &|| false) {
            Some(Input::Request(h)) => {
                assert_eq!((h.reqno, g.pending.to_vec()), (11, vec![5u8; 7]))
            }
            _ => panic!("request after the short answer lost"),
        }
        drop(g);
        assert_eq!(&dest[..10], &[6u8; 10]);
        // End of file.
        let slot2 = pending(&c, 4, &mut dest);
        drop(peer);
        assert!(matches!(
            c.rd.lock().read_direct(&c, 4, &slot2),
            Some(Input::Closed)
        ));
    }
}
