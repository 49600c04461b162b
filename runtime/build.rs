//! `rump_server -l` loads NetBSD's kernel libraries with `dlopen`; their
//! `rumpuser_*` references must bind to the hypercall layer linked into
//! the executable. An executable exports no dynamic symbols by default, so
//! hand the linker the list of entry points to export, which the hypercall
//! crate's build script writes from its table (`DEP_RUMPUSER_DYNLIST`).
//!
//! And name the executable `librumpuser.so.0` (`-soname`): NetBSD's
//! `librump.so` lists `librumpuser.so.0` as a needed library, and the
//! dynamic loader takes an object already loaded under that name as the
//! dependency — so NetBSD's own hypercall library is never loaded beside
//! ours, not even unused.

fn main() {
    // Written by the hypercall crate's build script from its table of
    // entry points (hypercall/build.rs).
    let list = std::env::var("DEP_RUMPUSER_DYNLIST").expect("the rumpuser crate's dynamic list");
    println!("cargo:rustc-link-arg-bin=rump_server=-Wl,--dynamic-list={list}");
    println!("cargo:rustc-link-arg-bin=rump_server=-Wl,-soname,librumpuser.so.0");
    // The integration tests embed a NetBSD kernel too (tests/netbsd.rs),
    // exporting the layer the way an embedding program would.
    println!("cargo:rustc-link-arg-tests=-Wl,--export-dynamic-symbol=rumpuser_*");
}
