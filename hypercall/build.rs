//! Builds the two pieces of the C ABI that are C: the variadic
//! `rumpuser_dprintf` body (stable Rust cannot define C variadics; see
//! `src/cons.rs`) and the thread start trampoline (see `src/thread.rs`).

fn main() {
    println!("cargo:rerun-if-changed=csrc/dprintf.c");
    println!("cargo:rerun-if-changed=csrc/thread.c");
    cc::Build::new()
        .file("csrc/dprintf.c")
        .file("csrc/thread.c")
        .flag_if_supported("-fvisibility=hidden")
        .flag_if_supported("-fasynchronous-unwind-tables")
        .warnings(true)
        .compile("rumpuser_c");
    // librumpuser.so carries NetBSD's soname, so programs linked against
    // it record `librumpuser.so.0` and `cargo xtask install` can ship it
    // as lib/librumpuser.so.0 with the librumpuser.so link.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librumpuser.so.0");
}
