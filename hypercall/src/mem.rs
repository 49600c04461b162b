//! Memory: `rumpuser_malloc`/`free`, `rumpuser_anonmmap`/`unmap`.

use std::ffi::{c_int, c_void};
use std::ptr::NonNull;

use crate::errno::{Errno, EFAULT, EINVAL, ENOMEM};

/// Allocate `size` bytes aligned to `alignment` (0: pointer alignment; a
/// power of two, rounded up to pointer alignment).
pub fn malloc(size: usize, alignment: usize) -> Result<NonNull<c_void>, Errno> {
    let ptrsz = std::mem::size_of::<*mut c_void>();
    let align = alignment.max(ptrsz);
    if !align.is_power_of_two() {
        return Err(Errno(EINVAL));
    }
    let mut mem: *mut c_void = std::ptr::null_mut();
    // posix_memalign(0) may return null; ask for at least one byte so a
    // success is always a real pointer.
    // SAFETY: `mem` is a valid out-parameter; `align` is a power of two
    // multiple of sizeof(void *).
    let rv = unsafe { libc::posix_memalign(&mut mem, align, size.max(1)) };
    if rv != 0 {
        return Err(Errno::from_host(rv));
    }
    NonNull::new(mem).ok_or(Errno(ENOMEM))
}

/// Free memory from [`malloc`].
///
/// # Safety
/// `ptr` is null or came from [`malloc`] / `rumpuser_malloc` and is not used
/// after this call.
pub unsafe fn free(ptr: *mut c_void) {
    // SAFETY: per the caller's promise.
    unsafe { libc::free(ptr) }
}

/// Map `size` bytes of anonymous memory, read/write (and executable if
/// `exec`), near address `prefaddr` if possible (0: anywhere; only a hint),
/// aligned to `1 << alignbit` bytes when `alignbit` is non-zero.
pub fn anonmmap(
    prefaddr: usize,
    size: usize,
    alignbit: u32,
    exec: bool,
) -> Result<NonNull<c_void>, Errno> {
    if size == 0 {
        return Err(Errno(EINVAL));
    }
    let prot = libc::PROT_READ | libc::PROT_WRITE | if exec { libc::PROT_EXEC } else { 0 };
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(0)
        .max(4096) as usize;
    let align = if alignbit == 0 {
        page
    } else {
        1usize.checked_shl(alignbit).ok_or(Errno(EINVAL))?.max(page)
    };
    let extra = align - page;
    let size_pages = size.checked_add(page - 1).ok_or(Errno(ENOMEM))? & !(page - 1);
    let total = size_pages.checked_add(extra).ok_or(Errno(ENOMEM))?;
    // SAFETY: an anonymous private mapping; the hint address is only a hint.
    let mem = unsafe {
        libc::mmap(
            prefaddr as *mut c_void,
            total,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        return Err(crate::errno::last());
    }
    if extra == 0 {
        return NonNull::new(mem).ok_or(Errno(ENOMEM));
    }
    // Trim the over-allocation to the requested alignment.
    let start = mem as usize;
    let aligned = (start + align - 1) & !(align - 1);
    let head = aligned - start;
    let tail = total - head - size_pages;
    if head > 0 {
        // SAFETY: the range lies inside the mapping just made, page aligned.
        unsafe { libc::munmap(mem, head) };
    }
    if tail > 0 {
        // SAFETY: as above.
        unsafe { libc::munmap((aligned + size_pages) as *mut c_void, tail) };
    }
    NonNull::new(aligned as *mut c_void).ok_or(Errno(ENOMEM))
}

/// Unmap memory from [`anonmmap`].
///
/// # Safety
/// The range came from [`anonmmap`] and nothing uses it afterwards.
pub unsafe fn unmap(addr: *mut c_void, len: usize) {
    // SAFETY: per the caller's promise.
    unsafe { libc::munmap(addr, len) };
}

/// An owned anonymous mapping, unmapped on drop.
pub struct AnonMap {
    ptr: NonNull<c_void>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value.
unsafe impl Send for AnonMap {}
// SAFETY: shared access only hands out `&[u8]`.
unsafe impl Sync for AnonMap {}

impl AnonMap {
    /// A zero-filled read/write mapping of `len` bytes.
    pub fn new(len: usize) -> Result<AnonMap, Errno> {
        Ok(AnonMap {
            ptr: anonmmap(0, len, 0, false)?,
            len,
        })
    }
    /// The start of the mapping.
    pub fn as_ptr(&self) -> *mut c_void {
        self.ptr.as_ptr()
    }
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The mapping's bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes for our lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast(), self.len) }
    }
    /// The mapping's bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` writable bytes, borrowed uniquely.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast(), self.len) }
    }
}

impl Drop for AnonMap {
    fn drop(&mut self) {
        // SAFETY: we own the mapping.
        unsafe { unmap(self.ptr.as_ptr(), self.len) }
    }
}

/// `rumpuser_malloc(size, alignment, &mem)`.
///
/// # Safety
/// `memp` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_malloc(
    size: usize,
    alignment: c_int,
    memp: *mut *mut c_void,
) -> c_int {
    trace_hit!(rumpuser_malloc);
    if memp.is_null() || alignment < 0 {
        return if memp.is_null() { EFAULT } else { EINVAL };
    }
    match malloc(size, alignment as usize) {
        Ok(p) => {
            // SAFETY: checked non-null; the caller promises validity.
            unsafe { *memp = p.as_ptr() };
            0
        }
        Err(e) => e.0,
    }
}

/// `rumpuser_free(ptr, size)`.
///
/// # Safety
/// `ptr` is null or came from `rumpuser_malloc`.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_free(ptr: *mut c_void, _size: usize) {
    trace_hit!(rumpuser_free);
    // SAFETY: per the caller's promise.
    unsafe { free(ptr) }
}

/// `rumpuser_anonmmap(prefaddr, size, alignbit, exec, &mem)`.
///
/// # Safety
/// `memp` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_anonmmap(
    prefaddr: *mut c_void,
    size: usize,
    alignbit: c_int,
    exec: c_int,
    memp: *mut *mut c_void,
) -> c_int {
    trace_hit!(rumpuser_anonmmap);
    if memp.is_null() {
        return EFAULT;
    }
    if !(0..64).contains(&alignbit) {
        return EINVAL;
    }
    match anonmmap(prefaddr as usize, size, alignbit as u32, exec != 0) {
        Ok(p) => {
            // SAFETY: checked non-null; the caller promises validity.
            unsafe { *memp = p.as_ptr() };
            0
        }
        Err(e) => e.0,
    }
}

/// `rumpuser_unmap(addr, len)`.
///
/// # Safety
/// The range came from `rumpuser_anonmmap`.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_unmap(addr: *mut c_void, len: usize) {
    trace_hit!(rumpuser_unmap);
    // SAFETY: per the caller's promise.
    unsafe { unmap(addr, len) }
}
