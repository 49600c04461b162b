//! Every C entry point of the hypercall interface, in one table.
//!
//! A program that links this crate as an rlib and loads NetBSD's kernel
//! libraries with `dlopen` (the runtime's `rump_server -l`) must export
//! the `rumpuser_*` symbols from its executable. Two things stand in the
//! way: the linker drops functions nothing references, and an executable
//! exports no dynamic symbols by default. Referencing [`ENTRY_POINTS`]
//! (e.g. with [`keep`]) keeps every entry point in the link; the program
//! then exports them with `-Wl,--dynamic-list=FILE` (a list of
//! [`ENTRY_POINTS`]' names) or `-Wl,--export-dynamic-symbol=rumpuser_*`.
//! [`check_exported`] verifies at run time that the dynamic linker
//! resolves each name to this copy of the layer.

use std::ffi::c_void;

/// One exported C function.
pub struct EntryPoint {
    /// The C symbol name (`rumpuser_*`).
    pub name: &'static str,
    /// This copy's function, to compare with what the dynamic linker resolves.
    pub addr: *const c_void,
}

// SAFETY: a name and a function address, both immutable.
unsafe impl Sync for EntryPoint {}

macro_rules! ep {
    ($name:ident, $path:path) => {
        EntryPoint {
            name: stringify!($name),
            addr: $path as *const c_void,
        }
    };
}

/// Every `rumpuser_*` function of `rumpuser.h` v17, in the order of
/// [`crate::trace::NAMES`].
#[used]
pub static ENTRY_POINTS: [EntryPoint; 60] = [
    ep!(rumpuser_init, crate::rumpuser_init),
    ep!(rumpuser_malloc, crate::mem::rumpuser_malloc),
    ep!(rumpuser_free, crate::mem::rumpuser_free),
    ep!(rumpuser_anonmmap, crate::mem::rumpuser_anonmmap),
    ep!(rumpuser_unmap, crate::mem::rumpuser_unmap),
    ep!(rumpuser_open, crate::file::rumpuser_open),
    ep!(rumpuser_close, crate::file::rumpuser_close),
    ep!(rumpuser_getfileinfo, crate::file::rumpuser_getfileinfo),
    ep!(rumpuser_bio, crate::bio::rumpuser_bio),
    ep!(rumpuser_iovread, crate::file::rumpuser_iovread),
    ep!(rumpuser_iovwrite, crate::file::rumpuser_iovwrite),
    ep!(rumpuser_syncfd, crate::file::rumpuser_syncfd),
    ep!(rumpuser_clock_gettime, crate::clock::rumpuser_clock_gettime),
    ep!(rumpuser_clock_sleep, crate::clock::rumpuser_clock_sleep),
    ep!(rumpuser_getparam, crate::param::rumpuser_getparam),
    ep!(rumpuser_seterrno, crate::errno::rumpuser_seterrno),
    ep!(rumpuser_kill, crate::exit::rumpuser_kill),
    ep!(rumpuser_exit, crate::exit::rumpuser_exit),
    ep!(rumpuser_putchar, crate::cons::rumpuser_putchar),
    ep!(rumpuser_dprintf, crate::cons::rumpuser_dprintf),
    ep!(rumpuser_getrandom, crate::random::rumpuser_getrandom),
    ep!(
        rumpuser_thread_create,
        crate::thread::rumpuser_thread_create
    ),
    ep!(rumpuser_thread_exit, crate::thread::rumpuser_thread_exit),
    ep!(rumpuser_thread_join, crate::thread::rumpuser_thread_join),
    ep!(rumpuser_curlwpop, crate::curlwp::rumpuser_curlwpop),
    ep!(rumpuser_curlwp, crate::curlwp::rumpuser_curlwp),
    ep!(rumpuser_mutex_init, crate::locks::rumpuser_mutex_init),
    ep!(rumpuser_mutex_enter, crate::locks::rumpuser_mutex_enter),
    ep!(
        rumpuser_mutex_enter_nowrap,
        crate::locks::rumpuser_mutex_enter_nowrap
    ),
    ep!(
        rumpuser_mutex_tryenter,
        crate::locks::rumpuser_mutex_tryenter
    ),
    ep!(rumpuser_mutex_exit, crate::locks::rumpuser_mutex_exit),
    ep!(rumpuser_mutex_destroy, crate::locks::rumpuser_mutex_destroy),
    ep!(rumpuser_mutex_owner, crate::locks::rumpuser_mutex_owner),
    ep!(rumpuser_rw_init, crate::locks::rumpuser_rw_init),
    ep!(rumpuser_rw_enter, crate::locks::rumpuser_rw_enter),
    ep!(rumpuser_rw_tryenter, crate::locks::rumpuser_rw_tryenter),
    ep!(rumpuser_rw_tryupgrade, crate::locks::rumpuser_rw_tryupgrade),
    ep!(rumpuser_rw_downgrade, crate::locks::rumpuser_rw_downgrade),
    ep!(rumpuser_rw_exit, crate::locks::rumpuser_rw_exit),
    ep!(rumpuser_rw_destroy, crate::locks::rumpuser_rw_destroy),
    ep!(rumpuser_rw_held, crate::locks::rumpuser_rw_held),
    ep!(rumpuser_cv_init, crate::locks::rumpuser_cv_init),
    ep!(rumpuser_cv_destroy, crate::locks::rumpuser_cv_destroy),
    ep!(rumpuser_cv_wait, crate::locks::rumpuser_cv_wait),
    ep!(
        rumpuser_cv_wait_nowrap,
        crate::locks::rumpuser_cv_wait_nowrap
    ),
    ep!(rumpuser_cv_timedwait, crate::locks::rumpuser_cv_timedwait),
    ep!(rumpuser_cv_signal, crate::locks::rumpuser_cv_signal),
    ep!(rumpuser_cv_broadcast, crate::locks::rumpuser_cv_broadcast),
    ep!(
        rumpuser_cv_has_waiters,
        crate::locks::rumpuser_cv_has_waiters
    ),
    ep!(rumpuser_dl_bootstrap, crate::dl::rumpuser_dl_bootstrap),
    ep!(
        rumpuser_daemonize_begin,
        crate::daemonize::rumpuser_daemonize_begin
    ),
    ep!(
        rumpuser_daemonize_done,
        crate::daemonize::rumpuser_daemonize_done
    ),
    ep!(rumpuser_sp_init, crate::sp::c_abi::rumpuser_sp_init),
    ep!(rumpuser_sp_copyin, crate::sp::c_abi::rumpuser_sp_copyin),
    ep!(
        rumpuser_sp_copyinstr,
        crate::sp::c_abi::rumpuser_sp_copyinstr
    ),
    ep!(rumpuser_sp_copyout, crate::sp::c_abi::rumpuser_sp_copyout),
    ep!(
        rumpuser_sp_copyoutstr,
        crate::sp::c_abi::rumpuser_sp_copyoutstr
    ),
    ep!(rumpuser_sp_anonmmap, crate::sp::c_abi::rumpuser_sp_anonmmap),
    ep!(rumpuser_sp_raise, crate::sp::c_abi::rumpuser_sp_raise),
    ep!(rumpuser_sp_fini, crate::sp::c_abi::rumpuser_sp_fini),
];

/// Keep every entry point in the final link (call it from any code path
/// the program keeps).
#[inline(never)]
pub fn keep() -> &'static [EntryPoint] {
    std::hint::black_box(&ENTRY_POINTS[..])
}

/// The names the dynamic linker does not resolve to this copy of the
/// layer (`dlsym(RTLD_DEFAULT, name)`): empty when the program exports
/// them all and nothing loaded earlier shadows them.
pub fn check_exported() -> Vec<&'static str> {
    // The global scope: the program, what it was linked with, and every
    // library loaded with RTLD_GLOBAL.
    let global = libloading::os::unix::Library::this();
    keep()
        .iter()
        .filter(|e| {
            // SAFETY: the address is only compared, never called.
            let p = unsafe { global.get::<*const c_void>(e.name.as_bytes()) };
            !p.is_ok_and(|p| std::ptr::eq(*p, e.addr))
        })
        .map(|e| e.name)
        .collect()
}
