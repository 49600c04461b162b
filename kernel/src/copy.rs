//! copyin/copyout: moving syscall data between the kernel and the calling
//! process's memory. A sysproxy client's memory is reached with copy
//! requests over its connection, which checks them against what the
//! client registered. A local process's memory is this host process's
//! own: the kernel reaches only the regions its caller lent for the
//! running call ([`Lend`]), checked the same way, so a safe caller cannot
//! make the kernel touch memory it does not own.
//!
//! Copies are the kernel's own business: from outside, in safe code, a
//! process's memory cannot be written at an arbitrary address.
//!
//! ```compile_fail,E0624
//! #![forbid(unsafe_code)]
//! let _ = rumpkern::copy::Memory::Local.copyout(b"boom", 0x10);
//! ```
//!
//! (The method is private, E0624: the type itself is public, so that is
//! the only reason; stable rustdoc does not check the error code.)
//!
//! ```
//! #![forbid(unsafe_code)]
//! let _memory = rumpkern::copy::Memory::Local;
//! ```

use std::cell::RefCell;
use std::marker::PhantomData;

use netbsd_abi::errno::*;
use netbsd_abi::Errno;
use rumpuser::sp::ClientHandle;

/// Whose memory a process's addresses refer to.
#[derive(Clone, Copy, Debug)]
pub enum Memory {
    /// This host process's address space, as lent for the running call.
    Local,
    /// A sysproxy client, by the handle the sysproxy server passed to
    /// `lwproc_rfork`.
    Remote(ClientHandle),
}

/// What a local caller lent the kernel for the call running on this
/// thread.
#[derive(Clone)]
enum Lent {
    /// Nothing: every local copy fails with `EFAULT`.
    Nothing,
    /// These byte ranges: (start, end, writable).
    Regions(Vec<(u64, u64, bool)>),
    /// Anything: an `unsafe` caller vouched for every address.
    Unchecked,
}

thread_local! {
    static LENT: RefCell<Lent> = const { RefCell::new(Lent::Nothing) };
}

/// The memory a typed local call lends the kernel: each argument pointer
/// is made from a borrowed slice, which stays borrowed (so alive, and for
/// `buf_mut` unaliased) as long as the `Lend` lives.
pub struct Lend<'a> {
    regions: RefCell<Vec<(u64, u64, bool)>>,
    /// Invariant in `'a`: every slice lent must stay borrowed for the
    /// whole life of the `Lend` (a covariant lifetime could shrink at each
    /// call and let a slice go while its address is still lent).
    _borrow: PhantomData<std::cell::Cell<&'a mut ()>>,
}

impl<'a> Default for Lend<'a> {
    fn default() -> Self {
        Lend::new()
    }
}

impl<'a> Lend<'a> {
    /// An empty lending: the kernel may reach nothing until regions are lent.
    pub fn new() -> Lend<'a> {
        Lend {
            regions: RefCell::new(Vec::new()),
            _borrow: PhantomData,
        }
    }

    fn add(&self, p: *const u8, len: usize, writable: bool) -> u64 {
        let a = p as usize as u64;
        if len > 0 {
            self.regions
                .borrow_mut()
                .push((a, a.saturating_add(len as u64), writable));
        }
        a
    }

    /// A string the kernel reads, with its NUL.
    pub fn cstr(&self, s: &'a std::ffi::CStr) -> u64 {
        let b = s.to_bytes_with_nul();
        self.add(b.as_ptr(), b.len(), false)
    }

    /// A buffer the kernel reads.
    pub fn buf<T: Copy>(&self, b: &'a [T]) -> u64 {
        self.add(b.as_ptr().cast(), std::mem::size_of_val(b), false)
    }

    /// A buffer the kernel writes (and may read).
    pub fn buf_mut<T: Copy>(&self, b: &'a mut [T]) -> u64 {
        self.add(
            b.as_mut_ptr().cast::<u8>().cast_const(),
            std::mem::size_of_val(b),
            true,
        )
    }

    /// Lend these regions to the kernel for the call run by `f` on this
    /// thread.
    pub(crate) fn during<R>(&self, f: impl FnOnce() -> R) -> R {
        with_lent(Lent::Regions(self.regions.borrow().clone()), f)
    }
}

/// Run `f` (a local call) with every address its arguments hold taken as
/// valid.
///
/// # Safety
/// Every address the call reaches must be valid for the accesses it makes
/// (reads of the lengths given, writes of the sizes NetBSD documents) for
/// the duration of `f`.
pub(crate) unsafe fn unchecked<R>(f: impl FnOnce() -> R) -> R {
    with_lent(Lent::Unchecked, f)
}

fn with_lent<R>(l: Lent, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Lent>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(l) = self.0.take() {
                LENT.with(|c| *c.borrow_mut() = l);
            }
        }
    }
    let old = LENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), l));
    let _restore = Restore(Some(old));
    f()
}

/// Whether `[uaddr, uaddr + len)` lies in one lent region (a writable one
/// if `write`); `EFAULT` otherwise.
fn check_local(uaddr: u64, len: usize, write: bool) -> Result<(), Errno> {
    let end = uaddr.checked_add(len as u64).ok_or(Errno(EFAULT))?;
    LENT.with(|c| match &*c.borrow() {
        Lent::Unchecked => Ok(()),
        Lent::Nothing => Err(Errno(EFAULT)),
        Lent::Regions(r) => {
            if r.iter()
                .any(|&(s, e, w)| s <= uaddr && end <= e && (w || !write))
            {
                Ok(())
            } else {
                Err(Errno(EFAULT))
            }
        }
    })
}

/// How many bytes from `uaddr` (at most `max`) a lent region lets the
/// kernel read: a string is read no further.
fn readable_from(uaddr: u64, max: usize) -> usize {
    LENT.with(|c| match &*c.borrow() {
        Lent::Unchecked => max,
        Lent::Nothing => 0,
        Lent::Regions(r) => r
            .iter()
            .filter(|&&(s, e, _)| s <= uaddr && uaddr < e)
            .map(|&(_, e, _)| (e - uaddr).min(max as u64) as usize)
            .max()
            .unwrap_or(0),
    })
}

impl Memory {
    /// The sysproxy client handle, null for local memory.
    pub fn client(&self) -> ClientHandle {
        match self {
            Memory::Local => ClientHandle::NULL,
            Memory::Remote(c) => *c,
        }
    }

    /// Fill `buf` from user address `uaddr`.
    pub(crate) fn copyin(&self, uaddr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if buf.is_empty() {
            return Ok(());
        }
        if uaddr == 0 || uaddr.checked_add(buf.len() as u64).is_none() {
            return Err(Errno(EFAULT));
        }
        match self {
            Memory::Local => {
                check_local(uaddr, buf.len(), false)?;
                // SAFETY: `uaddr..+len` lies in a region the caller lent
                // for this call (a live borrowed slice), or an unsafe
                // caller vouched for it; checked just above.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        uaddr as usize as *const u8,
                        buf.as_mut_ptr(),
                        buf.len(),
                    );
                }
                Ok(())
            }
            Memory::Remote(c) => remote::copyin(*c, uaddr, buf),
        }
    }

    /// Write `buf` to user address `uaddr`.
    pub(crate) fn copyout(&self, buf: &[u8], uaddr: u64) -> Result<(), Errno> {
        if buf.is_empty() {
            return Ok(());
        }
        if uaddr == 0 || uaddr.checked_add(buf.len() as u64).is_none() {
            return Err(Errno(EFAULT));
        }
        match self {
            Memory::Local => {
                check_local(uaddr, buf.len(), true)?;
                // SAFETY: as in `copyin`, in a region lent writable (an
                // exclusively borrowed slice) or vouched for.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        buf.as_ptr(),
                        uaddr as usize as *mut u8,
                        buf.len(),
                    );
                }
                Ok(())
            }
            Memory::Remote(c) => remote::copyout(*c, buf, uaddr),
        }
    }

    /// A NUL-terminated string of at most `max` bytes including the NUL,
    /// returned without it. Longer: `ENAMETOOLONG`.
    pub(crate) fn copyinstr(&self, uaddr: u64, max: usize) -> Result<Vec<u8>, Errno> {
        if uaddr == 0 {
            return Err(Errno(EFAULT));
        }
        match self {
            Memory::Local => {
                let room = readable_from(uaddr, max);
                let mut out = Vec::new();
                for i in 0..room as u64 {
                    let a = uaddr.checked_add(i).ok_or(Errno(EFAULT))?;
                    // SAFETY: `a` is below `uaddr + room`, inside a lent
                    // region (or vouched for); we stop at the NUL.
                    let b = unsafe { *(a as usize as *const u8) };
                    if b == 0 {
                        return Ok(out);
                    }
                    out.push(b);
                }
                Err(Errno(if room < max { EFAULT } else { ENAMETOOLONG }))
            }
            Memory::Remote(c) => remote::copyinstr(*c, uaddr, max),
        }
    }

    /// Read a little-endian `u64` at `uaddr`.
    pub(crate) fn copyin_u64(&self, uaddr: u64) -> Result<u64, Errno> {
        let mut b = [0u8; 8];
        self.copyin(uaddr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// Copies to and from a sysproxy client: copy requests over its
/// connection (the virtual CPU is released while they wait).
mod remote {
    use super::*;

    pub fn copyin(client: ClientHandle, uaddr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        rumpuser::sp::copyin(client, uaddr, buf)
    }

    pub fn copyout(client: ClientHandle, buf: &[u8], uaddr: u64) -> Result<(), Errno> {
        rumpuser::sp::copyout(client, buf, uaddr)
    }

    pub fn copyinstr(client: ClientHandle, uaddr: u64, max: usize) -> Result<Vec<u8>, Errno> {
        let mut buf = vec![0u8; max];
        let n = rumpuser::sp::copyinstr(client, uaddr, &mut buf)?;
        let got = &buf[..n.min(max)];
        match got.iter().position(|&b| b == 0) {
            Some(z) => {
                buf.truncate(z);
                Ok(buf)
            }
            None => Err(Errno(ENAMETOOLONG)),
        }
    }
}
