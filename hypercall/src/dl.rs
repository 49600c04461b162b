//! The dynamic-linker bootstrap: `rumpuser_dl_bootstrap`.
//!
//! Walks every loaded ELF object (`dl_iterate_phdr`), reading each one's
//! own dynamic symbol table (no `dlsym`, so an object's link sets are never
//! confused with a dependency's), and hands the kernel:
//!
//! 1. once, through `symload(symtab, symsize, strtab, strsize)`: one
//!    symbol table gathered from the main program and every object whose
//!    path contains `librump` — the defined symbols whose names begin with
//!    `rump`, `RUMP` or `__`, each `Elf64_Sym` copied with its name offset
//!    rewritten into the new string table and its value made absolute
//!    (plus the object's load address); the tables are `malloc`ed and
//!    handed over for good;
//! 2. then, object by object: the `link_set_modules` entries (the array of
//!    `const struct modinfo *` between `__start_link_set_modules` and
//!    `__stop_link_set_modules`) to `modinit(start, count)`, and each entry
//!    of `link_set_rump_components` to `compload`.
//!
//! Objects are visited from the last loaded to the first, the likeliest
//! dependency order, as NetBSD does.

// This module walks the loader's ELF tables (program headers, dynamic
// sections, hash tables, symbols): each step is pointer arithmetic and a
// read of memory the loader mapped, as its unsafe fns' contracts say, so
// its unsafe blocks hold several such operations.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::ffi::{c_char, c_int, c_void, CStr};

/// `rump_modinit_fn`.
pub type ModinitFn = unsafe extern "C" fn(*const *const c_void, usize);
/// `rump_symload_fn`.
pub type SymloadFn = unsafe extern "C" fn(*mut c_void, u64, *mut c_char, u64) -> c_int;
/// `rump_compload_fn`.
pub type ComploadFn = unsafe extern "C" fn(*const c_void);

const DT_NULL: i64 = 0;
const DT_HASH: i64 = 4;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_STRSZ: i64 = 10;
const DT_GNU_HASH: i64 = 0x6fff_fef5;
const SHN_UNDEF: u16 = 0;

/// An ELF dynamic-section entry (`Elf64_Dyn`).
#[repr(C)]
struct ElfDyn {
    d_tag: i64,
    d_un: u64,
}

/// An ELF symbol (`Elf64_Sym`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ElfSym {
    /// Offset of the symbol's name in the string table.
    pub st_name: u32,
    /// Type and binding.
    pub st_info: u8,
    /// Visibility.
    pub st_other: u8,
    /// The section it is defined in.
    pub st_shndx: u16,
    /// Its value (an address, relative to the object's load address).
    pub st_value: u64,
    /// Its size in bytes.
    pub st_size: u64,
}

/// One loaded ELF object and its dynamic symbol table.
#[derive(Clone, Debug)]
pub struct LoadedObject {
    /// The path the loader knows it by ("" for the main program).
    pub name: String,
    /// The load bias (`l_addr`).
    pub base: usize,
    /// True for the first object, the main program.
    pub is_main: bool,
    symtab: *const ElfSym,
    nsyms: usize,
    strtab: *const u8,
    strsz: usize,
}

impl LoadedObject {
    /// The object's dynamic symbols.
    pub fn symbols(&self) -> &[ElfSym] {
        if self.symtab.is_null() || self.nsyms == 0 {
            return &[];
        }
        // SAFETY: the loader maps `nsyms` symbols at `symtab` for as long as
        // the object stays loaded.
        unsafe { std::slice::from_raw_parts(self.symtab, self.nsyms) }
    }

    /// The name of symbol `s` (empty if out of range).
    pub fn symbol_name(&self, s: &ElfSym) -> &[u8] {
        let off = s.st_name as usize;
        if self.strtab.is_null() || off >= self.strsz {
            return b"";
        }
        // SAFETY: the string table is `strsz` bytes, mapped while loaded.
        let tab = unsafe { std::slice::from_raw_parts(self.strtab, self.strsz) };
        let rest = &tab[off..];
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    /// The address of a symbol this object itself defines.
    pub fn lookup(&self, name: &str) -> Option<usize> {
        self.symbols()
            .iter()
            .find(|s| s.st_shndx != SHN_UNDEF && self.symbol_name(s) == name.as_bytes())
            .map(|s| self.base.wrapping_add(s.st_value as usize))
    }

    /// The entries of link set `set` (between `__start_<set>` and
    /// `__stop_<set>`) that this object defines.
    pub fn link_set(&self, set: &str) -> Option<&[*const c_void]> {
        let start = self.lookup(&format!("__start_{set}"))?;
        let stop = self.lookup(&format!("__stop_{set}"))?;
        let psz = std::mem::size_of::<*const c_void>();
        if stop < start || start % psz != 0 {
            return None;
        }
        let n = (stop - start) / psz;
        if n == 0 {
            return Some(&[]);
        }
        // SAFETY: the linker laid out `n` pointers between the two symbols
        // in this loaded object.
        Some(unsafe { std::slice::from_raw_parts(start as *const *const c_void, n) })
    }
}

/// The number of symbols in a DT_HASH table.
///
/// # Safety
/// `hash` points at a mapped SysV hash table.
unsafe fn sysv_hash_count(hash: *const u32) -> usize {
    // SAFETY: per the caller; word 1 is nchain, the symbol count.
    unsafe { *hash.add(1) as usize }
}

/// The number of symbols in a DT_GNU_HASH table: one past the highest
/// symbol any bucket's chain reaches.
///
/// # Safety
/// `gnu` points at a mapped GNU hash table of a 64-bit object.
unsafe fn gnu_hash_count(gnu: *const u32) -> usize {
    // SAFETY: per the caller: header words, then the bloom filter (64-bit
    // words), the buckets and the chains, all mapped.
    unsafe {
        let nbuckets = *gnu as usize;
        let symoffset = *gnu.add(1) as usize;
        let bloom_words = *gnu.add(2) as usize;
        let buckets = gnu.add(4 + bloom_words * 2);
        let chains = buckets.add(nbuckets);
        let mut last = 0usize;
        for i in 0..nbuckets {
            last = last.max(*buckets.add(i) as usize);
        }
        if last < symoffset {
            return symoffset;
        }
        let mut i = last;
        while *chains.add(i - symoffset) & 1 == 0 {
            i += 1;
        }
        i + 1
    }
}

unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: the loader passes a valid info record and our Vec.
    let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<LoadedObject>>()) };
    let base = info.dlpi_addr as usize;
    let name = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: the loader's NUL-terminated object name.
        unsafe { CStr::from_ptr(info.dlpi_name) }
            .to_string_lossy()
            .into_owned()
    };
    let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: the loader's program header table of dlpi_phnum entries.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
    };
    let (mut lo, mut hi) = (usize::MAX, 0usize);
    let mut dynamic = None;
    for ph in phdrs {
        if ph.p_type == libc::PT_LOAD {
            lo = lo.min(base.wrapping_add(ph.p_vaddr as usize));
            hi = hi.max(base.wrapping_add(ph.p_vaddr.wrapping_add(ph.p_memsz) as usize));
        } else if ph.p_type == libc::PT_DYNAMIC {
            dynamic = Some(base.wrapping_add(ph.p_vaddr as usize) as *const ElfDyn);
        }
    }
    // Dynamic-section pointers are absolute once the loader relocated them
    // (glibc does, except for read-only sections such as the vDSO's);
    // otherwise they are relative to the load bias.
    let adj = |p: u64| -> usize {
        let p = p as usize;
        if p >= lo && p < hi {
            p
        } else {
            base.wrapping_add(p)
        }
    };
    let is_main = out.is_empty();
    let mut obj = LoadedObject {
        name,
        base,
        is_main,
        symtab: std::ptr::null(),
        nsyms: 0,
        strtab: std::ptr::null(),
        strsz: 0,
    };
    if let Some(mut d) = dynamic {
        let (mut hash, mut gnu) = (None, None);
        // SAFETY: the dynamic section is a DT_NULL-terminated array mapped
        // with the object; the tables it names are mapped too.
        unsafe {
            while (*d).d_tag != DT_NULL {
                let v = (*d).d_un;
                match (*d).d_tag {
                    DT_SYMTAB => obj.symtab = adj(v) as *const ElfSym,
                    DT_STRTAB => obj.strtab = adj(v) as *const u8,
                    DT_STRSZ => obj.strsz = v as usize,
                    DT_HASH => hash = Some(adj(v) as *const u32),
                    DT_GNU_HASH => gnu = Some(adj(v) as *const u32),
                    _ => {}
                }
                d = d.add(1);
            }
            obj.nsyms = match (hash, gnu) {
                (Some(h), _) => sysv_hash_count(h),
                (None, Some(g)) => gnu_hash_count(g),
                _ => 0,
            };
        }
        if obj.symtab.is_null() || obj.strtab.is_null() {
            obj.nsyms = 0;
        }
    }
    out.push(obj);
    0
}

/// Every loaded object, in load order (the main program first).
pub fn objects() -> Vec<LoadedObject> {
    let mut v: Vec<LoadedObject> = Vec::new();
    // SAFETY: the callback only reads the loader's records and pushes to
    // the Vec passed as `data`.
    unsafe { libc::dl_iterate_phdr(Some(collect), (&mut v as *mut Vec<LoadedObject>).cast()) };
    v
}

/// The entries of link set `set` in every loaded object that has one:
/// (object name, entries), last-loaded object first.
pub fn link_set_entries(set: &str) -> Vec<(String, Vec<*const c_void>)> {
    objects()
        .iter()
        .rev()
        .filter_map(|o| o.link_set(set).map(|e| (o.name.clone(), e.to_vec())))
        .collect()
}

/// The kernel symbol table NetBSD's bootstrap hands to `symload`: raw
/// `Elf64_Sym` bytes and the string table they index.
pub fn kernel_symbols() -> (Vec<u8>, Vec<u8>) {
    let mut syms: Vec<u8> = Vec::new();
    let mut strs: Vec<u8> = Vec::new();
    for o in objects().iter().rev() {
        if !(o.is_main || o.name.contains("librump")) {
            continue;
        }
        for s in o.symbols() {
            if s.st_shndx == SHN_UNDEF || s.st_value == 0 {
                continue;
            }
            let name = o.symbol_name(s);
            if !(name.starts_with(b"rump") || name.starts_with(b"RUMP") || name.starts_with(b"__"))
            {
                continue;
            }
            let mut c = *s;
            c.st_name = strs.len() as u32;
            c.st_value = s.st_value.wrapping_add(o.base as u64);
            // SAFETY: ElfSym is plain old data with no padding.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    (&c as *const ElfSym).cast::<u8>(),
                    std::mem::size_of::<ElfSym>(),
                )
            };
            syms.extend_from_slice(bytes);
            strs.extend_from_slice(name);
            strs.push(0);
        }
    }
    (syms, strs)
}

/// The bootstrap with Rust callbacks: `symload(symtab, strtab)` once, then
/// for each object `modinit(modules)` and `compload(component)` per
/// component.
pub fn bootstrap(
    mut modinit: impl FnMut(&[*const c_void]),
    symload: impl FnOnce(&[u8], &[u8]),
    mut compload: impl FnMut(*const c_void),
) {
    let (syms, strs) = kernel_symbols();
    symload(&syms, &strs);
    for o in objects().iter().rev() {
        if let Some(m) = o.link_set("link_set_modules") {
            if !m.is_empty() {
                modinit(m);
            }
        }
        if let Some(c) = o.link_set("link_set_rump_components") {
            for &comp in c {
                compload(comp);
            }
        }
    }
}

/// A copy of `data` in `malloc`ed memory (handed to the kernel for good).
fn malloc_copy(data: &[u8]) -> *mut c_void {
    // SAFETY: malloc of at least one byte; checked for null.
    let p = unsafe { libc::malloc(data.len().max(1)) };
    if !p.is_null() {
        // SAFETY: `p` has room for data.len() bytes.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p.cast::<u8>(), data.len()) };
    }
    p
}

/// `rumpuser_dl_bootstrap(modinit, symload, compload)`.
///
/// # Safety
/// The callbacks are valid kernel functions (or null, then skipped).
#[no_mangle]
pub unsafe extern "C" fn rumpuser_dl_bootstrap(
    modinit: Option<ModinitFn>,
    symload: Option<SymloadFn>,
    compload: Option<ComploadFn>,
) {
    trace_hit!(rumpuser_dl_bootstrap);
    crate::guard("rumpuser_dl_bootstrap", || {
        bootstrap(
            |mods| {
                if let Some(f) = modinit {
                    // SAFETY: the kernel's callback with a live array.
                    unsafe { f(mods.as_ptr(), mods.len()) }
                }
            },
            |syms, strs| {
                if let Some(f) = symload {
                    let s = malloc_copy(syms);
                    let t = malloc_copy(strs);
                    if s.is_null() || t.is_null() {
                        tracing::error!(
                            "rumpuser_dl_bootstrap: out of memory for the symbol table"
                        );
                        return;
                    }
                    // SAFETY: the kernel's callback; the tables are its now.
                    unsafe { f(s, syms.len() as u64, t.cast(), strs.len() as u64) };
                }
            },
            |comp| {
                if let Some(f) = compload {
                    // SAFETY: the kernel's callback with a link-set entry.
                    unsafe { f(comp) }
                }
            },
        )
    })
}
