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
    dynamic_list();
}

/// An executable that `dlopen`s NetBSD's kernel libraries (`rump_server
/// -l`, `rump_mount`) must export the hypercall layer for their
/// `rumpuser_*` references to bind to, and executables export no dynamic
/// symbols by default: write the linker's dynamic list of the 60 entry
/// points named in `src/exports.rs`, and hand its path to the crates that
/// depend on this one (`DEP_RUMPUSER_DYNLIST` in their build scripts).
fn dynamic_list() {
    use std::path::PathBuf;
    let table = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("src/exports.rs");
    println!("cargo:rerun-if-changed={}", table.display());
    let text = std::fs::read_to_string(&table).expect("read src/exports.rs");
    // Each entry is `ep!(NAME, PATH)`, on one line or spread over several
    // (as rustfmt lays out long ones): the name is the first token after
    // the macro's parenthesis.
    let names: Vec<&str> = text
        .split("ep!(")
        .skip(1)
        .filter_map(|rest| rest.split(',').next())
        .map(str::trim)
        .filter(|n| n.starts_with("rumpuser_"))
        .collect();
    assert_eq!(
        names.len(),
        60,
        "expected the 60 rumpuser v17 entry points in {}",
        table.display()
    );
    let mut list = String::from("{\n");
    for n in &names {
        list.push_str(&format!("  {n};\n"));
    }
    list.push_str("};\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("rumpuser.dynlist");
    std::fs::write(&out, list).expect("write the dynamic list");
    println!("cargo:dynlist={}", out.display());
}
