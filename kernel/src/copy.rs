//! copyin/copyout: moving syscall data between the kernel and the calling
//! process's memory. A sysproxy client's memory is reached with copy
//! requests over its connection; a local process's memory is this host
//! process's own, addressed by plain pointers its embedder passed.

use std::ffi::c_void;

use netbsd_abi::errno::*;
use netbsd_abi::Errno;

/// Whose memory a process's addresses refer to.
#[derive(Clone, Copy, Debug)]
pub enum Memory {
    /// This host process's address space.
    Local,
    /// A sysproxy client: the opaque handle the sysproxy server passed to
    /// `lwproc_rfork`.
    Remote(*mut c_void),
}

// SAFETY: the remote handle is an opaque token owned by the sysproxy
// server, which accepts it from any thread; we never dereference it.
unsafe impl Send for Memory {}
// SAFETY: as above.
unsafe impl Sync for Memory {}

impl Memory {
    /// The sysproxy client handle, null for local memory.
    pub fn client(&self) -> *mut c_void {
        match self {
            Memory::Local => std::ptr::null_mut(),
            Memory::Remote(c) => *c,
        }
    }

    /// Fill `buf` from user address `uaddr`.
    pub fn copyin(&self, uaddr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if buf.is_empty() {
            return Ok(());
        }
        if uaddr == 0 || uaddr.checked_add(buf.len() as u64).is_none() {
            return Err(Errno(EFAULT));
        }
        match self {
            Memory::Local => {
                // SAFETY: a local process's addresses are pointers its
                // embedder passed to `LocalProc::syscall` (an unsafe
                // function whose contract makes them valid for the
                // lengths given) or that the typed wrappers made from live
                // slices; non-null and not wrapping, checked above.
                unsafe {
                    std::ptr::copy_nonoverlapping(uaddr as usize as *const u8, buf.as_mut_ptr(), buf.len());
                }
                Ok(())
            }
            Memory::Remote(c) => remote::copyin(*c, uaddr, buf),
        }
    }

    /// Write `buf` to user address `uaddr`.
    pub fn copyout(&self, buf: &[u8], uaddr: u64) -> Result<(), Errno> {
        if buf.is_empty() {
            return Ok(());
        }
        if uaddr == 0 || uaddr.checked_add(buf.len() as u64).is_none() {
            return Err(Errno(EFAULT));
        }
        match self {
            Memory::Local => {
                // SAFETY: as in `copyin`: the caller of the local syscall
                // guaranteed `uaddr` is writable for `buf.len()` bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(buf.as_ptr(), uaddr as usize as *mut u8, buf.len());
                }
                Ok(())
            }
            Memory::Remote(c) => remote::copyout(*c, buf, uaddr),
        }
    }

    /// A NUL-terminated string of at most `max` bytes including the NUL,
    /// returned without it. Longer: `ENAMETOOLONG`.
    pub fn copyinstr(&self, uaddr: u64, max: usize) -> Result<Vec<u8>, Errno> {
        if uaddr == 0 {
            return Err(Errno(EFAULT));
        }
        match self {
            Memory::Local => {
                let mut out = Vec::new();
                for i in 0..max as u64 {
                    let a = uaddr.checked_add(i).ok_or(Errno(EFAULT))?;
                    // SAFETY: the local caller guaranteed the string is
                    // readable up to and including its NUL; we stop there.
                    let b = unsafe { *(a as usize as *const u8) };
                    if b == 0 {
                        return Ok(out);
                    }
                    out.push(b);
                }
                Err(Errno(ENAMETOOLONG))
            }
            Memory::Remote(c) => remote::copyinstr(*c, uaddr, max),
        }
    }

    /// Read a little-endian `u64` at `uaddr`.
    pub fn copyin_u64(&self, uaddr: u64) -> Result<u64, Errno> {
        let mut b = [0u8; 8];
        self.copyin(uaddr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// Copies to and from a sysproxy client: copy requests over its
/// connection (the virtual CPU is released while they wait).
mod remote {
    use super::*;

    pub fn copyin(client: *mut c_void, uaddr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        rumpuser::sp::copyin(client, uaddr, buf)
    }

    pub fn copyout(client: *mut c_void, buf: &[u8], uaddr: u64) -> Result<(), Errno> {
        rumpuser::sp::copyout(client, buf, uaddr)
    }

    pub fn copyinstr(client: *mut c_void, uaddr: u64, max: usize) -> Result<Vec<u8>, Errno> {
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
