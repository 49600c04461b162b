//! Socket helpers both ends of sysproxy share: one `sendmsg` per frame
//! (header and payload gathered), and reads retried on `EINTR`.

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `sendmsg` every byte of `parts`, with `MSG_NOSIGNAL` (a vanished peer
/// is an error, not a signal). Up to four parts go without allocating.
pub fn send_all(fd: BorrowedFd<'_>, parts: &[&[u8]]) -> io::Result<()> {
    let iov_of = |p: &&[u8]| libc::iovec {
        iov_base: p.as_ptr() as *mut c_void,
        iov_len: p.len(),
    };
    let mut heap: Vec<libc::iovec> = Vec::new();
    let mut small = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 4];
    let iovs: &mut [libc::iovec] = if parts.len() <= small.len() {
        for (slot, p) in small.iter_mut().zip(parts) {
            *slot = iov_of(p);
        }
        &mut small[..parts.len()]
    } else {
        heap.extend(parts.iter().map(iov_of));
        &mut heap[..]
    };
    let mut first = 0;
    loop {
        while first < iovs.len() && iovs[first].iov_len == 0 {
            first += 1;
        }
        if first == iovs.len() {
            return Ok(());
        }
        // SAFETY: a zeroed msghdr is valid; only its iov fields are set.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iovs[first..].as_mut_ptr();
        msg.msg_iovlen = iovs.len() - first;
        // SAFETY: the iovecs point into `parts`, alive for this call; `fd`
        // is borrowed, so open.
        let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let mut n = n as usize;
        while first < iovs.len() && n >= iovs[first].iov_len {
            n -= iovs[first].iov_len;
            first += 1;
        }
        if first < iovs.len() {
            let v = &mut iovs[first];
            // SAFETY: n < iov_len, so the advanced pointer stays in the part.
            v.iov_base = unsafe { (v.iov_base as *mut u8).add(n) } as *mut c_void;
            v.iov_len -= n;
        }
    }
}

/// `read(2)`, retried on `EINTR`. 0 is end of file.
pub fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of its length; `fd` is
        // borrowed, so open.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr() as *mut c_void, buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

// ---------------------------------------------------------------------------
// Adaptive spinning before blocking

/// Longest spin before a blocking read. A cross-CPU wake-up of a blocked
/// thread costs ~60 µs on the 2-CPU VM this was measured on, more than a
/// whole null syscall; a peer that answers within this long is caught
/// spinning instead.
pub const SPIN_MAX_NS: u64 = 60_000;
/// After a spin that ended in a block, this many waits (doubling with
/// each further miss) block at once before a spin is tried again.
const BACKOFF_MIN: u32 = 4;
const BACKOFF_MAX: u32 = 1024;

/// Whether spinning can pay at all: only when this thread may run on
/// more than one CPU (pinned to one, a spinner only delays the peer it
/// waits for). Taken when the state is made.
fn may_spin() -> bool {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid set of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    // SAFETY: CPU_COUNT reads the set filled above.
    r == 0 && unsafe { libc::CPU_COUNT(&set) } >= 2
}

/// Per-connection spin state: spin (bounded) before blocking while that
/// has paid lately, block at once (exponentially longer) while it has
/// not — so an idle connection costs one bounded spin, then nothing.
/// `RUMP_SPIN_NS` sets the bound (0: never spin).
#[derive(Debug, Clone)]
pub struct Spin {
    limit_ns: u64,
    /// Waits left to block at once, and the next backoff.
    skip: u32,
    backoff: u32,
    /// Waits that spinning satisfied (statistics).
    pub spun_ok: u64,
    /// Spins that ended in blocking anyway (statistics).
    pub spun_miss: u64,
}

impl Default for Spin {
    fn default() -> Spin {
        Spin::new()
    }
}

impl Spin {
    /// Spin state with the bound from `RUMP_SPIN_NS` (read here, once per connection).
    pub fn new() -> Spin {
        let limit_ns = std::env::var("RUMP_SPIN_NS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(SPIN_MAX_NS)
            .min(10_000_000);
        let limit_ns = if limit_ns > 0 && may_spin() {
            limit_ns
        } else {
            0
        };
        Spin {
            limit_ns,
            skip: 0,
            backoff: BACKOFF_MIN,
            spun_ok: 0,
            spun_miss: 0,
        }
    }

    /// Never spin.
    pub fn off() -> Spin {
        Spin {
            limit_ns: 0,
            skip: 0,
            backoff: BACKOFF_MIN,
            spun_ok: 0,
            spun_miss: 0,
        }
    }

    /// Whether the next wait should spin first.
    fn should_spin(&mut self) -> bool {
        if self.limit_ns == 0 {
            return false;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        true
    }

    fn hit(&mut self) {
        self.spun_ok += 1;
        self.backoff = BACKOFF_MIN;
    }

    fn miss(&mut self) {
        self.spun_miss += 1;
        self.skip = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Read some bytes of `fd` into `buf` (like [`read_some`]), first
    /// polling without blocking for up to the spin bound if spinning has
    /// paid lately.
    pub fn read_some(&mut self, fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
        if !buf.is_empty() && self.should_spin() {
            let t = std::time::Instant::now();
            loop {
                // SAFETY: `buf` is valid for writes of its length; `fd` is
                // borrowed, so open.
                let n = unsafe {
                    libc::recv(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr() as *mut c_void,
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n >= 0 {
                    self.hit();
                    return Ok(n as usize);
                }
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => {}
                    // Not a socket (a pipe in a test) or broken: let the
                    // plain read report it.
                    _ => break,
                }
                if t.elapsed().as_nanos() as u64 >= self.limit_ns {
                    self.miss();
                    break;
                }
                std::hint::spin_loop();
            }
        }
        read_some(fd, buf)
    }

    /// Wait until `fd` has bytes to read (spinning as [`Spin::read_some`]
    /// does, without taking any); returns at once when spinning does not
    /// pay, leaving the blocking to the caller's read.
    pub fn wait_readable(&mut self, fd: BorrowedFd<'_>) {
        if !self.should_spin() {
            return;
        }
        let t = std::time::Instant::now();
        let mut b = [0u8; 1];
        loop {
            // SAFETY: one byte of a live local; MSG_PEEK leaves it queued;
            // `fd` is borrowed, so open.
            let n = unsafe {
                libc::recv(
                    fd.as_raw_fd(),
                    b.as_mut_ptr() as *mut c_void,
                    1,
                    libc::MSG_DONTWAIT | libc::MSG_PEEK,
                )
            };
            if n >= 0 {
                self.hit();
                return;
            }
            let e = io::Error::last_os_error().raw_os_error();
            if !matches!(e, Some(libc::EAGAIN) | Some(libc::EINTR)) {
                return;
            }
            if t.elapsed().as_nanos() as u64 >= self.limit_ns {
                self.miss();
                return;
            }
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn gathers_every_part_in_order() {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let parts: Vec<Vec<u8>> = (0..7).map(|i| vec![i as u8; i * 3]).collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        send_all(a.as_fd(), &refs).expect("send");
        send_all(a.as_fd(), &refs[..2]).expect("send small");
        drop(a);
        let mut got = vec![];
        let mut buf = [0u8; 16];
        loop {
            let n = read_some(b.as_fd(), &mut buf).expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let mut want = parts.concat();
        want.extend(parts[..2].concat());
        assert_eq!(got, want);
    }

    #[test]
    fn spin_backs_off_and_recovers() {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let mut sp = Spin::new();
        sp.limit_ns = 20_000;
        // Nothing comes: the spin misses, then waits skip spinning.
        sp.wait_readable(b.as_fd());
        assert_eq!(sp.spun_miss, 1);
        assert!(sp.skip >= BACKOFF_MIN);
        for _ in 0..sp.skip {
            assert!(!sp.should_spin());
        }
        // Data ready: a spin hits at once and reads it.
        send_all(a.as_fd(), &[b"xyz"]).expect("send");
        let mut buf = [0u8; 8];
        assert_eq!(sp.read_some(b.as_fd(), &mut buf).expect("read"), 3);
        assert_eq!((sp.spun_ok, &buf[..3]), (1, &b"xyz"[..]));
        assert_eq!(Spin::off().limit_ns, 0);
    }
}
