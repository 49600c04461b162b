//! `rump_server -l` loads NetBSD's kernel libraries with `dlopen`; their
//! `rumpuser_*` references must bind to the hypercall layer linked into
//! the executable. An executable exports no dynamic symbols by default, so
//! hand the linker the list of entry points to export, taken from the
//! hypercall crate's table (`hypercall/src/exports.rs`, which the runtime
//! references so that none is dropped from the link).
//!
//! And name the executable `librumpuser.so.0` (`-soname`): NetBSD's
//! `librump.so` lists `librumpuser.so.0` as a needed library, and the
//! dynamic loader takes an object already loaded under that name as the
//! dependency — so NetBSD's own hypercall library is never loaded beside
//! ours, not even unused.

use std::path::PathBuf;

fn main() {
    let table = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .join("../hypercall/src/exports.rs");
    println!("cargo:rerun-if-changed={}", table.display());
    let text = std::fs::read_to_string(&table).expect("read hypercall/src/exports.rs");
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
    println!(
        "cargo:rustc-link-arg-bin=rump_server=-Wl,--dynamic-list={}",
        out.display()
    );
    println!("cargo:rustc-link-arg-bin=rump_server=-Wl,-soname,librumpuser.so.0");
    // The integration tests embed a NetBSD kernel too (tests/netbsd.rs),
    // exporting the layer the way an embedding program would.
    println!("cargo:rustc-link-arg-tests=-Wl,--export-dynamic-symbol=rumpuser_*");
}
