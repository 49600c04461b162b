//! Requests to the client that the kernel makes during a syscall: copyin
//! (from the inline records the request carried, or over the wire),
//! copyout, anonymous memory and signals.

use super::*;

/// What copyin/copyinstr may take without a round trip: the inline
/// records of the syscall this thread runs for connection `conn`.
pub(super) struct InlineNow {
    pub(super) conn: usize,
    pub(super) layout: wire::InlineLayout,
    pub(super) data: ReqBuf,
}

thread_local! {
    pub(super) static INLINE: RefCell<Option<InlineNow>> = const { RefCell::new(None) };
}

/// Serve a copyin from the running syscall's inline records: `Some(n)`
/// bytes copied into `dst` (for a string: through its NUL, or all of
/// `dst`), `Some(usize::MAX)` (a fault) once the connection is closed,
/// or `None` when they are not there.
pub(super) fn copy_inline(
    h: ClientHandle,
    raddr: u64,
    dst: &mut [u8],
    string: bool,
) -> Option<usize> {
    INLINE.with(|i| {
        let g = i.borrow();
        let now = g.as_ref().filter(|n| n.conn == h.0)?;
        // A client that went away fails copies as on the wire (a syscall
        // may poll copyin to notice that).
        if CURRENT.with(|c| {
            c.borrow()
                .as_ref()
                .is_some_and(|(c, _)| c.closed.load(Ordering::Acquire))
        }) {
            return Some(usize::MAX);
        }
        let src = now.layout.find(&now.data, raddr, dst.len(), string)?;
        dst[..src.len()].copy_from_slice(src);
        Some(src.len())
    })
}

pub(crate) fn copyin(h: ClientHandle, raddr: u64, dst: &mut [u8]) -> Result<(), Errno> {
    if dst.is_empty() {
        return Ok(());
    }
    if let Some(n) = copy_inline(h, raddr, dst, false) {
        return if n == dst.len() {
            Ok(())
        } else {
            Err(Errno(EFAULT))
        };
    }
    let conn = lookup(h).ok_or(Errno(EFAULT))?;
    let cd = CopyData {
        len: dst.len() as u64,
        addr: raddr,
    }
    .encode();
    let want = dst.len();
    match upcalls::blocking(std::ptr::null_mut(), || {
        conn.request(Type::Copyin, &cd, dst)
    }) {
        Ok(n) if n == want => Ok(()),
        _ => Err(Errno(EFAULT)),
    }
}

pub(crate) fn copyinstr(h: ClientHandle, raddr: u64, dst: &mut [u8]) -> Result<usize, Errno> {
    if dst.is_empty() {
        return Ok(0);
    }
    if let Some(n) = copy_inline(h, raddr, dst, true) {
        return if n <= dst.len() {
            Ok(n)
        } else {
            Err(Errno(EFAULT))
        };
    }
    let conn = lookup(h).ok_or(Errno(EFAULT))?;
    let cd = CopyData {
        len: dst.len() as u64,
        addr: raddr,
    }
    .encode();
    upcalls::blocking(std::ptr::null_mut(), || {
        conn.request(Type::Copyinstr, &cd, dst)
    })
    .map_err(|_| Errno(EFAULT))
}

pub(crate) fn copyout(h: ClientHandle, src: &[u8], raddr: u64, ty: Type) -> Result<(), Errno> {
    if src.is_empty() {
        return Ok(());
    }
    let conn = lookup(h).ok_or(Errno(EFAULT))?;
    forget_inline_over(h, raddr, src.len());
    upcalls::blocking(std::ptr::null_mut(), || conn.copyout(ty, src, raddr))
        .map_err(|_| Errno(EFAULT))
}

/// A copyout over memory the running syscall got inline makes that copy
/// stale: from now on its copyins go over the wire (and see what the
/// client's memory holds then).
pub(super) fn forget_inline_over(h: ClientHandle, raddr: u64, len: usize) {
    INLINE.with(|i| {
        let mut g = i.borrow_mut();
        if let Some(now) = g.as_mut().filter(|n| n.conn == h.0) {
            let end = raddr.saturating_add(len as u64);
            let l = &mut now.layout;
            for r in l.recs[..l.nrec].iter_mut() {
                if raddr < r.addr.saturating_add(r.len as u64) && r.addr < end {
                    r.len = 0;
                }
            }
        }
    });
}

pub(crate) fn anonmmap(h: ClientHandle, len: usize) -> Result<u64, Errno> {
    let conn = lookup(h).ok_or(Errno(EFAULT))?;
    let mut out = [0u8; 8];
    let req = (len as u64).to_le_bytes();
    match upcalls::blocking(std::ptr::null_mut(), || {
        conn.request(Type::Anonmmap, &req, &mut out)
    }) {
        Ok(8) => match u64::from_le_bytes(out) {
            0 => Err(Errno(ENOMEM)),
            a => Ok(a),
        },
        _ => Err(Errno(EFAULT)),
    }
}

pub(crate) fn raise(h: ClientHandle, signo: i32) -> Result<(), Errno> {
    let conn = lookup(h).ok_or(Errno(ENOTCONN))?;
    upcalls::blocking(std::ptr::null_mut(), || {
        conn.notify(Type::Raise, signo as u32, &[])
    })
    .map_err(|_| Errno(ENOTCONN))
}

#[cfg(test)]
mod inline_tests {
    use super::*;

    /// Inline records serve copyins on the syscall's own thread and
    /// connection only, and a copyout over one makes it stale.
    #[test]
    fn inline_copies_and_staleness() {
        let data = [5u8; 64];
        let mut p = wire::InlineHdr { arglen: 0, nrec: 1 }.encode().to_vec();
        p.extend(
            CopyData {
                len: 64,
                addr: 0x1000,
            }
            .encode(),
        );
        p.extend(data);
        let layout = wire::InlineLayout::decode(&p).unwrap();
        let mut data = ReqBuf::new(Budget::unlimited());
        data.resize(p.len()).unwrap();
        data.copy_from_slice(&p);
        INLINE.with(|i| {
            *i.borrow_mut() = Some(InlineNow {
                conn: 7,
                layout,
                data,
            })
        });
        let mut dst = [0u8; 16];
        assert_eq!(
            copy_inline(ClientHandle(7), 0x1010, &mut dst, false),
            Some(16)
        );
        assert_eq!(dst, [5u8; 16]);
        assert_eq!(
            copy_inline(ClientHandle(8), 0x1010, &mut dst, false),
            None,
            "another connection's"
        );
        assert_eq!(
            copy_inline(ClientHandle(7), 0x1038, &mut dst, false),
            None,
            "runs past the record"
        );
        forget_inline_over(ClientHandle(7), 0x103f, 1);
        assert_eq!(
            copy_inline(ClientHandle(7), 0x1000, &mut dst, false),
            None,
            "stale after a copyout over it"
        );
        INLINE.with(|i| *i.borrow_mut() = None);
    }
}
