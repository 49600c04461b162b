//! Builds the one piece of the C ABI that stable Rust cannot define: the
//! variadic `rumpuser_dprintf` (see `src/cons.rs` for how it is exported).

fn main() {
    println!("cargo:rerun-if-changed=csrc/dprintf.c");
    cc::Build::new()
        .file("csrc/dprintf.c")
        .flag_if_supported("-fvisibility=hidden")
        .warnings(true)
        .compile("rumpuser_dprintf");
}
