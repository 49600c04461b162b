//! Console output: `rumpuser_putchar` (stdout) and `rumpuser_dprintf`
//! (stderr, variadic).
//!
//! Stable Rust cannot define a C-variadic function, and a `cdylib` exports
//! only symbols defined in Rust. So the body of `rumpuser_dprintf` is C
//! (`csrc/dprintf.c`, a hidden `rumpuser__dprintf_impl`), and the exported
//! `rumpuser_dprintf` is a naked Rust function that jumps there with every
//! register and the stack untouched: the C function sees the caller's
//! variadic arguments exactly as passed.

use std::ffi::{c_char, c_int};

extern "C" {
    fn rumpuser__dprintf_impl(fmt: *const c_char, ...);
}

/// `rumpuser_dprintf(const char *fmt, ...)`: `vfprintf(stderr, ...)`.
///
/// # Safety
/// `fmt` is a printf format whose conversions match the arguments passed.
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn rumpuser_dprintf(fmt: *const c_char) {
    #[cfg(target_arch = "x86_64")]
    core::arch::naked_asm!("jmp {f}", f = sym rumpuser__dprintf_impl);
    #[cfg(target_arch = "aarch64")]
    core::arch::naked_asm!("b {f}", f = sym rumpuser__dprintf_impl);
}

/// Write one byte of console output to stdout (flushed at end of line).
pub fn putchar(c: u8) {
    // SAFETY: putchar on the process's own stdout stream.
    unsafe { libc::putchar(c as c_int) };
    if c == b'\n' {
        // SAFETY: fflush(NULL) flushes the process's own streams.
        unsafe { libc::fflush(std::ptr::null_mut()) };
    }
}

/// Write a string of console output (through the same stdio stream as
/// `rumpuser_putchar`).
pub fn print(s: &str) {
    for b in s.bytes() {
        putchar(b)
    }
}

/// A message on stderr from the layer itself (the sysproxy server's
/// notes): through the log queue, so that a full or unread standard
/// error never blocks the thread that writes it.
pub fn dprint(s: &str) {
    crate::log::push(s.as_bytes().to_vec());
}

/// `rumpuser_putchar(int)`.
#[no_mangle]
pub extern "C" fn rumpuser_putchar(c: c_int) {
    trace_hit!(rumpuser_putchar);
    putchar(c as u8)
}
