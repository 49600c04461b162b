//! `rump_mount` boots NetBSD's kernel libraries in process with `dlopen`:
//! their `rumpuser_*` references must bind to the hypercall layer linked
//! into the executable. As for `rump_server` (runtime/build.rs): export
//! the 60 entry points named in the hypercall crate's table, and carry
//! the soname `librumpuser.so.0`, so NetBSD's `librump.so` takes this
//! executable as its needed hypercall library and NetBSD's own is never
//! loaded beside it.

use std::path::PathBuf;

fn main() {
    let table = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .join("../hypercall/src/exports.rs");
    println!("cargo:rerun-if-changed={}", table.display());
    let text = std::fs::read_to_string(&table).expect("read hypercall/src/exports.rs");
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
        "cargo:rustc-link-arg-bin=rump_mount=-Wl,--dynamic-list={}",
        out.display()
    );
    println!("cargo:rustc-link-arg-bin=rump_mount=-Wl,-soname,librumpuser.so.0");
}
