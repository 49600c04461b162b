//! Socket helpers both ends of sysproxy share: one `sendmsg` per frame
//! (header and payload gathered), and reads retried on `EINTR`.

use std::ffi::c_void;
use std::io;
use std::os::fd::RawFd;

/// `sendmsg` every byte of `parts`, with `MSG_NOSIGNAL` (a vanished peer
/// is an error, not a signal). Up to four parts go without allocating.
pub fn send_all(fd: RawFd, parts: &[&[u8]]) -> io::Result<()> {
    let iov_of = |p: &&[u8]| libc::iovec { iov_base: p.as_ptr() as *mut c_void, iov_len: p.len() };
    let mut heap: Vec<libc::iovec> = Vec::new();
    let mut small = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; 4];
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
        // SAFETY: the iovecs point into `parts`, alive for this call.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
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
pub fn read_some(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut c_void, buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn gathers_every_part_in_order() {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let parts: Vec<Vec<u8>> = (0..7).map(|i| vec![i as u8; i * 3]).collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        send_all(a.as_raw_fd(), &refs).expect("send");
        send_all(a.as_raw_fd(), &refs[..2]).expect("send small");
        drop(a);
        let mut got = vec![];
        let mut buf = [0u8; 16];
        loop {
            let n = read_some(b.as_raw_fd(), &mut buf).expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let mut want = parts.concat();
        want.extend(parts[..2].concat());
        assert_eq!(got, want);
    }
}
