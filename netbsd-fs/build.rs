//! `rump_mount` boots NetBSD's kernel libraries in process with `dlopen`:
//! their `rumpuser_*` references must bind to the hypercall layer linked
//! into the executable. As for `rump_server` (runtime/build.rs): export
//! the 60 entry points named in the hypercall crate's table, and carry
//! the soname `librumpuser.so.0`, so NetBSD's `librump.so` takes this
//! executable as its needed hypercall library and NetBSD's own is never
//! loaded beside it.

fn main() {
    // Written by the hypercall crate's build script from its table of
    // entry points (hypercall/build.rs).
    let list = std::env::var("DEP_RUMPUSER_DYNLIST").expect("the rumpuser crate's dynamic list");
    println!("cargo:rustc-link-arg-bin=rump_mount=-Wl,--dynamic-list={list}");
    println!("cargo:rustc-link-arg-bin=rump_mount=-Wl,-soname,librumpuser.so.0");
}
