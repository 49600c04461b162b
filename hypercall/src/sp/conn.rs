//! One client connection: sending frames, waiting for responses by request
//! number, and the buffered frame reader.

use std::collections::HashMap;
use std::ffi::c_void;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::Thread;

use parking_lot::{Condvar, Mutex};

use netbsd_abi::sp::{self as wire, Class, CopyData, Header, SysResp, Type, HDRSZ};

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
}

impl Conn {
    pub fn new(id: usize, fd: OwnedFd) -> Conn {
        Conn {
            id,
            fd,
            send_lock: Mutex::new(()),
            waiters: Mutex::new(Waiters { next: 0, slots: HashMap::new(), dead: false }),
            state: AtomicU8::new(ST_NEW),
            mainlwp: AtomicPtr::new(std::ptr::null_mut()),
            pid: AtomicI32::new(0),
            active: AtomicUsize::new(1),
            active_cv: Condvar::new(),
            active_mx: Mutex::new(()),
            inexec: AtomicBool::new(false),
            running: Mutex::new(Vec::new()),
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    // --- activity counting -------------------------------------------------

    pub fn enter(&self) {
        self.active.fetch_add(1, Ordering::AcqRel);
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
        self.running.lock().push(Running { reqno, answered: false });
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
    pub fn send(&self, parts: &[&[u8]]) -> Result<(), ()> {
        let _g = self.send_lock.lock();
        send_all(self.raw_fd(), parts)
    }

    pub fn send_error(&self, reqno: u64, err: wire::ProtoError) -> Result<(), ()> {
        let h = Header::new(Class::Error, Type::Handshake, reqno, err as u32, 0);
        self.send(&[&h.encode()])
    }

    pub fn send_handshake_resp(&self, reqno: u64, error: i32) -> Result<(), ()> {
        let h = Header::new(Class::Resp, Type::Handshake, reqno, 0, wire::HANDSHAKE_RESP_LEN);
        self.send(&[&h.encode(), &error.to_le_bytes()])
    }

    pub fn send_sysresp(&self, reqno: u64, error: i32, retval: [i64; 2]) -> Result<(), ()> {
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
    pub fn request(&self, ty: Type, payload: &[u8], dest: &mut [u8]) -> Result<usize, ()> {
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
                return Err(());
            }
            let r = w.next;
            w.next = w.next.wrapping_add(1);
            w.slots.insert(r, slot.clone());
            r
        };
        let h = Header::new(Class::Req, ty, reqno, 0, payload.len());
        if self.send(&[&h.encode(), payload]).is_err() {
            let mut w = self.waiters.lock();
            if w.slots.remove(&reqno).is_some() {
                return Err(());
            }
            // The reader already took the slot: wait for it to finish
            // with our buffer before returning.
        }
        while slot.state.load(Ordering::Acquire) == SLOT_PENDING {
            std::thread::park();
        }
        match slot.state.load(Ordering::Acquire) {
            SLOT_DONE => Ok(slot.got.load(Ordering::Acquire)),
            _ => Err(()),
        }
    }

    /// Send a request that has no answer (COPYOUT, COPYOUTSTR, RAISE).
    pub fn notify(&self, ty: Type, arg: u32, parts: &[&[u8]]) -> Result<(), ()> {
        if self.waiters.lock().dead {
            return Err(());
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

    pub fn copyout(&self, ty: Type, src: &[u8], raddr: u64) -> Result<(), ()> {
        let cd = CopyData { len: src.len() as u64, addr: raddr };
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

    fn take_slot(&self, reqno: u64) -> Option<Arc<Slot>> {
        self.waiters.lock().slots.remove(&reqno)
    }
}

/// `sendmsg` every byte of `parts`, with `MSG_NOSIGNAL`.
pub(crate) fn send_all(fd: RawFd, parts: &[&[u8]]) -> Result<(), ()> {
    let mut iov: Vec<libc::iovec> = Vec::new();
    let mut small: [libc::iovec; 4] = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; 4];
    let iovs: &mut [libc::iovec] = if parts.len() <= 4 {
        for (i, p) in parts.iter().enumerate() {
            small[i] = libc::iovec { iov_base: p.as_ptr() as *mut c_void, iov_len: p.len() };
        }
        &mut small[..parts.len()]
    } else {
        iov.extend(parts.iter().map(|p| libc::iovec { iov_base: p.as_ptr() as *mut c_void, iov_len: p.len() }));
        &mut iov[..]
    };
    let mut first = 0;
    while first < iovs.len() && iovs[first].iov_len == 0 {
        first += 1;
    }
    while first < iovs.len() {
        // SAFETY: a zeroed msghdr is valid; we fill iov fields below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iovs[first..].as_mut_ptr();
        msg.msg_iovlen = iovs.len() - first;
        // SAFETY: the iovecs point into `parts`, alive for this call.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(());
        }
        if n == 0 {
            return Err(());
        }
        let mut n = n as usize;
        while first < iovs.len() && n >= iovs[first].iov_len {
            n -= iovs[first].iov_len;
            first += 1;
        }
        if first < iovs.len() {
            let v = &mut iovs[first];
            // SAFETY: n < iov_len, so the advanced pointer stays in bounds.
            v.iov_base = unsafe { (v.iov_base as *mut u8).add(n) } as *mut c_void;
            v.iov_len -= n;
        }
    }
    Ok(())
}

/// `read(2)`, retried on `EINTR`. 0 is end of file.
pub(crate) fn read_some(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut c_void, buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

const BUF: usize = 64 * 1024;

/// The reading side of a connection: owned by whichever thread currently
/// holds the reader role.
pub(crate) struct Reader {
    pub conn: Arc<Conn>,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Payload of the last request.
    pending: Vec<u8>,
}

/// What the reader found.
pub(crate) enum Input {
    /// A request from the client; its payload is `Reader::payload()`.
    Request(Header),
    /// End of file or a read error.
    Closed,
    /// A frame that can't be decoded: the error to send, then close.
    Bad(Option<u64>),
}

impl Reader {
    pub fn new(conn: Arc<Conn>) -> Reader {
        Reader { conn, buf: vec![0u8; BUF].into_boxed_slice(), start: 0, end: 0, pending: Vec::new() }
    }

    fn avail(&self) -> usize {
        self.end - self.start
    }

    /// Make at least `n` (≤ BUF) bytes available; false on EOF/error.
    fn fill(&mut self, n: usize) -> bool {
        debug_assert!(n <= BUF);
        if self.avail() >= n {
            return true;
        }
        if self.start + n > BUF {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.avail() < n {
            let fd = self.conn.raw_fd();
            match read_some(fd, &mut self.buf[self.end..]) {
                Ok(0) | Err(_) => return false,
                Ok(k) => self.end += k,
            }
        }
        true
    }

    /// Copy exactly `dst.len()` payload bytes into `dst`: first what is
    /// buffered, then straight from the socket.
    fn read_into(&mut self, dst: &mut [u8]) -> bool {
        let k = self.avail().min(dst.len());
        dst[..k].copy_from_slice(&self.buf[self.start..self.start + k]);
        self.start += k;
        let mut off = k;
        while off < dst.len() {
            let rest = dst.len() - off;
            if rest < BUF / 4 {
                // Small remainder: one read into the buffer may also pick
                // up the next frame.
                if !self.fill(rest) {
                    return false;
                }
                dst[off..].copy_from_slice(&self.buf[self.start..self.start + rest]);
                self.start += rest;
                return true;
            }
            match read_some(self.conn.raw_fd(), &mut dst[off..]) {
                Ok(0) | Err(_) => return false,
                Ok(n) => off += n,
            }
        }
        true
    }

    /// Discard `n` payload bytes.
    fn skip(&mut self, mut n: usize) -> bool {
        while n > 0 {
            if self.avail() == 0 && !self.fill(1) {
                return false;
            }
            let k = self.avail().min(n);
            self.start += k;
            n -= k;
        }
        true
    }

    /// The payload of the request last returned by [`Reader::next`].
    pub fn payload(&self) -> &[u8] {
        &self.pending
    }

    /// Read frames until a request arrives (returned with its payload
    /// available through `payload()`), routing responses on the way.
    pub fn next(&mut self) -> Input {
        loop {
            if self.pending.capacity() > 1 << 20 {
                self.pending = Vec::new();
            }
            self.pending.clear();
            if !self.fill(HDRSZ) {
                return Input::Closed;
            }
            let raw = wire::RawHeader::parse(self.buf[self.start..self.start + HDRSZ].try_into().unwrap());
            let hdr = match raw.validate() {
                Ok(h) => h,
                Err(e) => return Input::Bad(e.reqno()),
            };
            self.start += HDRSZ;
            let plen = hdr.payload_len();
            match hdr.class {
                Class::Req => {
                    self.pending.resize(plen, 0);
                    let mut p = std::mem::take(&mut self.pending);
                    let ok = self.read_into(&mut p);
                    self.pending = p;
                    if !ok {
                        return Input::Closed;
                    }
                    return Input::Request(hdr);
                }
                Class::Resp | Class::Error => {
                    if self.conn.state.load(Ordering::Acquire) == ST_NEW {
                        return Input::Bad(Some(hdr.reqno));
                    }
                    if !self.route(&hdr, plen) {
                        return Input::Closed;
                    }
                }
            }
        }
    }

    /// Deliver a response to its waiter (or drop it if nobody waits).
    fn route(&mut self, hdr: &Header, plen: usize) -> bool {
        let slot = match self.conn.take_slot(hdr.reqno) {
            Some(s) => s,
            None => return self.skip(plen),
        };
        if hdr.class == Class::Error {
            let ok = self.skip(plen);
            slot.finish(SLOT_ERROR);
            return ok;
        }
        let n = plen.min(slot.cap);
        // SAFETY: the waiter keeps `dest` (cap bytes) alive and untouched
        // until the slot leaves PENDING, which only happens below.
        let dst = unsafe { std::slice::from_raw_parts_mut(slot.dest, n) };
        let ok = self.read_into(dst) && self.skip(plen - n);
        slot.got.store(n, Ordering::Release);
        slot.finish(if ok { SLOT_DONE } else { SLOT_DEAD });
        ok
    }
}
