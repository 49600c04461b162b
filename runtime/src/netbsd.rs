//! Hosting NetBSD's own rump kernel components (docs/design.md, "Hosting
//! NetBSD's own components").
//!
//! NetBSD's kernel, built upstream with `buildrump.sh` as shared libraries
//! (`librump.so`, `librumpvfs.so`, `librumpfs_ext2fs.so`, …), runs on this
//! project's hypercall layer instead of NetBSD's `librumpuser`:
//!
//! 1. [`load_libraries`] `dlopen`s the components with
//!    `RTLD_NOW | RTLD_GLOBAL`, in rounds, until all are loaded or a round
//!    makes no progress (a component whose dependencies are not loaded yet
//!    fails with an undefined symbol and is retried in the next round).
//!    A name is looked for as [`find_library`] says: a path as it is;
//!    `rumpvfs` or `librumpvfs.so` in `$RUMP_NETBSD_DIR/lib`, then in the
//!    `lib/` of this program's install prefix, else through the dynamic
//!    loader's search path (`LD_LIBRARY_PATH`). `rump` (the
//!    base kernel) and `rumpkern_sysproxy` (the remote-syscall component)
//!    are always loaded, as NetBSD's `rump_server` links them in.
//! 2. The components' `rumpuser_*` references bind to the entry points of
//!    the `rumpuser` crate linked into *this executable*: the executable
//!    must export them (`rump_server` does: see `runtime/build.rs`). An
//!    embedding program links with `-Wl,--export-dynamic-symbol=rumpuser_*`
//!    (or a `--dynamic-list`) and calls [`NetbsdKernel`]; [`boot`] checks
//!    with `dlsym` that every one of the 60 entry points resolves to this
//!    copy of the layer, and refuses to boot otherwise.
//! 3. NetBSD's `rump_init()` boots the kernel; it calls our
//!    `rumpuser_init(17, &hyperup)` itself, so our layer carries NetBSD's
//!    upcalls and the built-in kernel is not booted at all. Kernel modules
//!    (`-m`) are loaded as NetBSD's `rump_server` does (the module file is
//!    registered as an etfs file, then `modctl(MODCTL_LOAD)`), then host
//!    drives (`-d`) with `rump_pub_etfs_register_withsize` (a
//!    `disklabel=` partition looked up first). NetBSD's drive layer has
//!    one sector size for all drives, read at boot from
//!    `RUMP_BLKSECTSHIFT`: drive specs' `sectorsize=` set it, and must
//!    agree.
//! 4. `rump_init_server(url)` starts NetBSD's sysproxy component, which
//!    calls our `rumpuser_sp_init`: clients are served by our sysproxy
//!    server, with NetBSD's syscalls behind it.
//!
//! The halt is NetBSD's own: a client's `reboot(2)` (or [`NetbsdKernel::
//! reboot`]) runs NetBSD's `cpu_reboot`, which syncs the file systems
//! unless `RB_NOSYNC`, then calls our `rumpuser_sp_fini` (the halting
//! caller gets its answer) and our `rumpuser_exit` — `RUMPUSER_PANIC`
//! (abort, a core by the host's rules) for `RB_DUMP`. With `RB_HALT` NetBSD
//! does not exit: the halting thread stays in the kernel for good, and our
//! sysproxy layer has stopped serving ([`rumpuser::sp::is_finished`]).
//!
//! Where NetBSD's kernel differs from our halt contract (docs/design.md): `RB_DUMP` aborts *without*
//! syncing first, and with `RB_HALT` too (no forked dumper: the process
//! dies); a flush failure is not reported to the halting caller.
//!
//! One NetBSD kernel per process, booted once: NetBSD's kernel cannot be
//! unloaded or booted twice.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io::Seek;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use libloading::os::unix::{Library as DlLibrary, RTLD_GLOBAL, RTLD_NOW};
use netbsd_abi::reboot::{RB_DUMP, RB_HALT};
use netbsd_abi::Errno;
use rumpkern::{DriveError, DriveFault, DriveSize, DriveSpec, DriveType};

use crate::Error;

/// Components NetBSD's `rump_server` links in, loaded whether named or not.
pub const IMPLICIT_LIBS: [&str; 2] = ["rump", "rumpkern_sysproxy"];

/// NetBSD's `enum rump_etfs_type`.
const RUMP_ETFS_REG: c_int = 0;
const RUMP_ETFS_BLK: c_int = 1;
const RUMP_ETFS_CHR: c_int = 2;

/// NetBSD's `RUMP_MODCTL_LOAD` and `struct rump_modctl_load`.
const RUMP_MODCTL_LOAD: c_int = 0;
#[repr(C)]
struct ModctlLoad {
    ml_filename: *const c_char,
    ml_flags: c_int,
    ml_props: *const c_char,
    ml_propslen: usize,
}

/// Where `-m` modules are registered while they load (as NetBSD does).
const MODULE_KEY: &CStr = c"/module.mod";

/// A loaded component library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Library {
    /// The name it was asked for (`rumpvfs`, `librumpvfs.so`, a path).
    pub name: String,
    /// The file the loader found.
    pub path: String,
}

extern "C" {
    fn dlinfo(handle: *mut c_void, request: c_int, info: *mut c_void) -> c_int;
}
/// `RTLD_DI_LINKMAP`: `dlinfo` yields the object's `struct link_map *`.
const RTLD_DI_LINKMAP: c_int = 2;
/// The start of glibc's `struct link_map`.
#[repr(C)]
struct LinkMap {
    l_addr: usize,
    l_name: *const c_char,
}

/// The path the loader found for `handle`.
///
/// # Safety
/// `handle` is a live `dlopen` handle.
unsafe fn handle_path(handle: *mut c_void) -> Option<String> {
    let mut lm: *const LinkMap = std::ptr::null();
    // SAFETY: `handle` is live per the caller; dlinfo writes one pointer.
    if unsafe {
        dlinfo(
            handle,
            RTLD_DI_LINKMAP,
            (&mut lm as *mut *const LinkMap).cast(),
        )
    } != 0
        || lm.is_null()
    {
        return None;
    }
    // SAFETY: the loader's link map entry, alive while the object is
    // loaded.
    let n = unsafe { (*lm).l_name };
    // SAFETY: its NUL-terminated name, as long-lived.
    (!n.is_null()).then(|| unsafe { CStr::from_ptr(n) }.to_string_lossy().into_owned())
}

/// The global scope: the executable and every library loaded with
/// `RTLD_GLOBAL` (`dlopen(NULL)`), for the life of the process.
fn global_scope() -> &'static DlLibrary {
    // Process-wide as the dynamic linker's global scope is.
    static G: std::sync::OnceLock<DlLibrary> = std::sync::OnceLock::new();
    G.get_or_init(DlLibrary::this)
}

/// The short component name of a `-l` argument: `rumpvfs` for `rumpvfs`,
/// `librumpvfs.so`, `librumpvfs.so.0` or `/x/librumpvfs.so`.
pub fn component_name(lib: &str) -> &str {
    let base = lib.rsplit('/').next().unwrap_or(lib);
    let base = base
        .strip_prefix("lib")
        .filter(|_| base.contains(".so"))
        .unwrap_or(base);
    match base.find(".so") {
        Some(i) => &base[..i],
        None => base,
    }
}

/// How to point at NetBSD's components, for messages.
pub const HOW: &str =
    "set RUMP_NETBSD_DIR to a buildrump.sh destdir (its lib/ holds librump*.so), \
                       or give the libraries' paths";

/// What booting, serving or halting NetBSD's kernel refuses, each a
/// one-line message.
#[derive(Clone, Debug, thiserror::Error)]
pub enum NetbsdError {
    /// Component libraries that would not load.
    #[error(transparent)]
    Load(LoadError),
    /// An entry point the loaded components lack.
    #[error("{0}: not found in the loaded NetBSD components")]
    Missing(String),
    /// Our `rumpuser_*` entry points are not the ones the loader binds.
    #[error(
        "{when}: {missing} of the {total} rumpuser_* hypercalls (first {first}) do not resolve to \
         this program's hypercall layer: link the executable with \
         -Wl,--export-dynamic-symbol='rumpuser_*' (rump_server does)",
        total = rumpuser::exports::ENTRY_POINTS.len()
    )]
    Exports {
        /// When the check ran.
        when: &'static str,
        /// How many do not resolve.
        missing: usize,
        /// The first of them.
        first: String,
    },
    /// A `RUMP_BLKSECTSHIFT` value out of range.
    #[error("{SECTSHIFT_ENV}={0}: expected a sector shift from 9 (512 bytes) to 16")]
    SectorShift(String),
    /// A sector size that is no power of two from 512 to 65536.
    #[error("sector size {0}: expected a power of two from 512 to 65536")]
    SectorSize(u32),
    /// No CPU asked for.
    #[error("ncpu must be at least 1")]
    NoCpu,
    /// A `-m` module file that does not exist.
    #[error("-m {0}: no such module file")]
    NoModule(String),
    /// NetBSD's kernel lives in process-wide libraries: one per process.
    #[error("a NetBSD kernel was already booted in this process")]
    AlreadyBooted,
    /// `rump_init` failed.
    #[error("rump_init: {}", .0.description())]
    Init(Errno),
    /// A sysproxy URL that does not parse.
    #[error("{url}: {why}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// `rump_init_server` failed.
    #[error("{url}: {}", .errno.description())]
    Serve {
        /// The URL.
        url: String,
        /// Why.
        errno: Errno,
    },
    /// A kernel module that would not load.
    #[error("-m {path}: {step}: {}", .errno.description())]
    Module {
        /// The module's host file.
        path: String,
        /// The step that failed.
        step: &'static str,
        /// Why.
        errno: Errno,
    },
    /// A second halt while one runs.
    #[error("a halt is already in progress")]
    HaltInProgress,
    /// NetBSD's `reboot(2)` returned.
    #[error("reboot: {}", .0.description())]
    Reboot(Errno),
    /// No thread for the halt.
    #[error("reboot: thread: {0}")]
    RebootThread(std::sync::Arc<std::io::Error>),
    /// The halt's thread ended without a word.
    #[error("reboot: the halting thread vanished")]
    HaltingThreadVanished,
}

/// Component libraries that would not load: each `-l` name with the
/// loader's reason, and the directories searched when a file was not
/// found at all.
#[derive(Clone, Debug)]
pub struct LoadError {
    /// Each library and why.
    pub libs: Vec<(String, String)>,
    /// When a file was not found: the `RUMP_NETBSD_DIR` directories
    /// searched (the message then says how to point at a build).
    pub not_in: Option<Vec<PathBuf>>,
}

impl std::error::Error for LoadError {}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot load NetBSD component library: ")?;
        for (i, (lib, why)) in self.libs.iter().enumerate() {
            let sep = if i > 0 { "; " } else { "" };
            write!(f, "{sep}-l {lib}: {why}")?;
        }
        if let Some(dirs) = &self.not_in {
            for d in dirs {
                write!(f, " (not in {})", d.display())?;
            }
            write!(f, ": {HOW}")?;
        }
        Ok(())
    }
}

/// A copied destdir may hold its library symlinks as small text files
/// naming the target in the same directory (`librump.so` containing
/// `librump.so.0.0`): the file they lead to (a few hops), or `p` itself.
pub fn follow_stubs(p: &Path) -> PathBuf {
    let mut p = p.to_path_buf();
    for _ in 0..4 {
        match stub_target(&p) {
            Some(next) => p = next,
            None => break,
        }
    }
    p
}

/// The file a text-file stub at `p` names, if `p` is one.
fn stub_target(p: &Path) -> Option<PathBuf> {
    let m = std::fs::metadata(p).ok()?;
    if !m.is_file() || m.len() == 0 || m.len() > 255 {
        return None;
    }
    let t = std::fs::read(p).ok()?;
    // An ELF object is never a stub.
    if t.starts_with(b"\x7fELF") {
        return None;
    }
    let t = std::str::from_utf8(&t).ok()?.trim();
    if t.is_empty() || t.contains('/') || t.contains('\0') {
        return None;
    }
    Some(p.with_file_name(t))
}

/// The directories `-l` names are looked for in, before the dynamic
/// loader's path: `$RUMP_NETBSD_DIR/lib`, then the `lib/` beside this
/// program's `bin/` (an install prefix), each with where it came from.
pub fn search_dirs() -> Vec<(PathBuf, &'static str)> {
    let mut v = Vec::new();
    if let Some(d) = std::env::var_os("RUMP_NETBSD_DIR").filter(|d| !d.is_empty()) {
        v.push((PathBuf::from(d).join("lib"), "RUMP_NETBSD_DIR"));
    }
    if let Some(prefix) = std::env::current_exe()
        .ok()
        .and_then(|e| std::fs::canonicalize(e).ok())
        .and_then(|e| e.parent()?.parent().map(Path::to_path_buf))
    {
        v.push((prefix.join("lib"), "install prefix"));
    }
    v
}

/// The file to load for `-l name`: a path (containing `/`) as it is, its
/// text-file stubs followed; else `libNAME.so` (or `name` when it has
/// `.so` in it) in [`search_dirs`]. `None`: leave it to the dynamic
/// loader's path (`LD_LIBRARY_PATH`, the system's).
pub fn find_library(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(follow_stubs(Path::new(name)));
    }
    let file = if name.contains(".so") {
        name.to_string()
    } else {
        format!("lib{name}.so")
    };
    search_dirs()
        .into_iter()
        .map(|(d, _)| follow_stubs(&d.join(&file)))
        .find(|p| p.is_file())
}

/// Why one library did not load.
struct LoadFailure {
    /// The loader's message (it names the file).
    msg: String,
    /// No file was found for it outside the loader's own path.
    unfound: bool,
}

/// Try to load one library: the file [`find_library`] finds, else the
/// loader's path (as given, then, for a bare name such as `rumpvfs`, as
/// `librumpvfs.so`).
fn open_one(name: &str) -> Result<Library, LoadFailure> {
    let found = find_library(name);
    let files: Vec<String> = match &found {
        Some(p) => vec![p.display().to_string()],
        None if !name.contains(".so") => vec![name.to_string(), format!("lib{name}.so")],
        None => vec![name.to_string()],
    };
    let mut err = String::new();
    for f in &files {
        if f.contains('\0') {
            return Err(LoadFailure {
                msg: format!("{f}: name contains a NUL byte"),
                unfound: false,
            });
        }
        // SAFETY: loading a NetBSD component runs its ELF constructors,
        // which only register link-set entries; the library is kept for
        // the life of the process (the kernel is never unloaded).
        match unsafe { DlLibrary::open(Some(f.as_str()), RTLD_NOW | RTLD_GLOBAL) } {
            Ok(lib) => {
                // Never dlclose: NetBSD's kernel cannot be unloaded, so
                // the handle is given up for good.
                let h = lib.into_raw();
                // SAFETY: `h` was just opened and is never closed.
                let path = unsafe { handle_path(h) }.unwrap_or_else(|| f.clone());
                return Ok(Library {
                    name: name.to_string(),
                    path,
                });
            }
            Err(e) => err = e.to_string(),
        }
    }
    Err(LoadFailure {
        msg: err,
        unfound: found.is_none(),
    })
}

/// Load NetBSD component libraries (plus [`IMPLICIT_LIBS`] not named),
/// with `RTLD_NOW | RTLD_GLOBAL`, in rounds until all are loaded or a
/// round loads none. A name is found as [`find_library`] says. The error
/// names every library left and the loader's last word on it, and how to
/// point at a build when a library was not found.
///
/// # Safety
/// Loading a library runs its initialisers, and the loaded components call
/// this process's `rumpuser_*` functions and each other by name with the
/// prototypes NetBSD's headers give: every name must be a NetBSD rump
/// kernel component library (`librump*.so`) built for the `rumpuser.h`
/// v17 interface this layer implements, whose constructors are sound to
/// run in this process now.
pub unsafe fn load_libraries(names: &[String]) -> Result<Vec<Library>, Error> {
    let named: Vec<&str> = names.iter().map(|n| component_name(n)).collect();
    let mut want: Vec<String> = IMPLICIT_LIBS
        .iter()
        .filter(|i| !named.contains(i))
        .map(|i| i.to_string())
        .collect();
    want.extend(names.iter().cloned());
    load_rounds(&want)
}

/// Load `want` in rounds (see [`load_libraries`]).
fn load_rounds(want: &[String]) -> Result<Vec<Library>, Error> {
    let mut errors: Vec<Option<LoadFailure>> = want.iter().map(|_| None).collect();
    let mut pending: Vec<usize> = (0..want.len()).collect();
    let mut loaded = Vec::new();
    loop {
        let before = pending.len();
        pending.retain(|&i| match open_one(&want[i]) {
            Ok(l) => {
                loaded.push(l);
                false
            }
            Err(e) => {
                errors[i] = Some(e);
                true
            }
        });
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    if pending.is_empty() {
        return Ok(loaded);
    }
    let mut unfound = false;
    let libs: Vec<(String, String)> = pending
        .iter()
        .map(|&i| {
            let (msg, u) = errors[i]
                .as_ref()
                .map_or(("not loaded", false), |e| (e.msg.as_str(), e.unfound));
            unfound |= u;
            (want[i].clone(), msg.to_string())
        })
        .collect();
    let not_in = if unfound {
        Some(
            search_dirs()
                .into_iter()
                .filter(|(_, from)| *from == "RUMP_NETBSD_DIR")
                .map(|(d, _)| d)
                .collect(),
        )
    } else {
        None
    };
    Err(NetbsdError::Load(LoadError { libs, not_in }).into())
}

/// The address of `name` in the global scope (the executable and every
/// library loaded with `RTLD_GLOBAL`).
pub fn symbol(name: &str) -> Option<*mut c_void> {
    // SAFETY: the address is only returned as an untyped pointer.
    let p = unsafe { global_scope().get::<*mut c_void>(name.as_bytes()) }.ok()?;
    (!p.is_null()).then_some(*p)
}

/// The function `name` of the loaded NetBSD components, as a `T`.
///
/// # Safety
/// `T` is the function pointer type of NetBSD's prototype for `name`.
unsafe fn need<T: Copy>(name: &str) -> Result<T, Error> {
    // SAFETY: per the caller, `T` is the symbol's type; the components
    // stay loaded for the life of the process, so the copy stays valid.
    let f = unsafe { global_scope().get::<T>(name.as_bytes()) };
    f.map(|f| *f)
        .map_err(|_| NetbsdError::Missing(name.to_string()).into())
}

/// The thread's errno after a failed NetBSD `rump_sys_*` call: the kernel
/// sets it through our `rumpuser_seterrno`, as a NetBSD value.
fn sys_errno() -> Errno {
    Errno(nix::errno::Errno::last_raw())
}

/// The entry points of our layer the dynamic linker does not resolve to
/// this copy, as an error (or Ok when all 60 do).
fn check_exports(when: &'static str) -> Result<(), Error> {
    let missing = rumpuser::exports::check_exported();
    if missing.is_empty() {
        return Ok(());
    }
    Err(NetbsdError::Exports {
        when,
        missing: missing.len(),
        first: missing[0].to_string(),
    }
    .into())
}

/// Process-wide: NetBSD's kernel lives in shared libraries whose state
/// is the process's, so a process boots at most one.
static BOOTED: AtomicBool = AtomicBool::new(false);

/// Builds and boots a NetBSD rump kernel from component libraries.
#[derive(Default, Clone, Debug)]
pub struct NetbsdBuilder {
    libs: Vec<String>,
    drives: Vec<String>,
    modules: Vec<String>,
    ncpu: Option<usize>,
    memlimit: Option<u64>,
    sector_size: Option<u32>,
    verbose: bool,
}

/// The environment variable NetBSD's drive layer takes its sector size
/// from, as a shift (`11` for 2048 bytes), once at boot.
pub const SECTSHIFT_ENV: &str = "RUMP_BLKSECTSHIFT";

impl NetbsdBuilder {
    /// A component library (`rumpvfs`, `librumpfs_ffs.so`, or a path).
    pub fn lib(mut self, name: &str) -> Self {
        self.libs.push(name.to_string());
        self
    }
    /// A host drive, in `rump_server -d` syntax (`dd`-style sizes).
    pub fn drive(mut self, spec: &str) -> Self {
        self.drives.push(spec.to_string());
        self
    }
    /// A NetBSD kernel module file to load after boot.
    pub fn module(mut self, path: &str) -> Self {
        self.modules.push(path.to_string());
        self
    }
    /// Virtual CPUs (`RUMP_NCPU`).
    pub fn ncpu(mut self, n: usize) -> Self {
        self.ncpu = Some(n);
        self
    }
    /// The kernel's memory limit in bytes (`RUMP_MEMLIMIT`).
    pub fn memlimit(mut self, bytes: u64) -> Self {
        self.memlimit = Some(bytes);
        self
    }
    /// Boot messages (`RUMP_VERBOSE`).
    pub fn verbose(mut self, v: bool) -> Self {
        self.verbose = v;
        self
    }
    /// The sector size every drive declares (a power of two from 512;
    /// NetBSD's drive layer has one for all drives, fixed at boot): for
    /// drives registered after boot. Drive specs' `sectorsize=` must
    /// agree with it.
    pub fn sector_size(mut self, bytes: u32) -> Self {
        self.sector_size = Some(bytes);
        self
    }

    /// The kernel's sector size: the one asked for, the drives' (which
    /// must agree) or `RUMP_BLKSECTSHIFT`'s, else 512.
    fn choose_sector_size(&self, drives: &[DriveSpec]) -> Result<u32, Error> {
        let env = match std::env::var(SECTSHIFT_ENV) {
            Ok(v) => match v.trim().parse::<u32>() {
                Ok(n @ 9..=16) => Some(1u32 << n),
                _ => return Err(NetbsdError::SectorShift(v).into()),
            },
            Err(_) => None,
        };
        let mut have: Option<u32> = self.sector_size.or(env);
        for d in drives {
            let Some(want) = d.sector_size else { continue };
            match have {
                Some(s) if s != want => {
                    return Err(Error::Drive(DriveError::new(
                        &d.key,
                        DriveFault::SectorSize { want, have: s },
                    )))
                }
                Some(_) => {}
                None => have = Some(want),
            }
        }
        let s = have.unwrap_or(rumpkern::etfs::DEFAULT_SECTOR_SIZE);
        if !s.is_power_of_two() || !(512..=rumpkern::etfs::MAX_SECTOR_SIZE).contains(&s) {
            return Err(NetbsdError::SectorSize(s).into());
        }
        Ok(s)
    }

    /// Load the components and boot them (`rump_init`), then load the
    /// modules and register the drives. Once per process.
    ///
    /// The settings reach NetBSD's kernel through the environment
    /// (`RUMP_NCPU`, `RUMP_MEMLIMIT`, `RUMP_VERBOSE`), which this sets:
    /// call it before the program starts threads that read the
    /// environment.
    ///
    /// # Safety
    /// As [`load_libraries`] for the libraries and modules named: NetBSD
    /// rump kernel components of the v17 interface, whose functions
    /// (`rump_init`, `rump_pub_*`, ...) this calls by name with NetBSD's
    /// prototypes. And, since NetBSD's kernel reads its settings from the
    /// environment this sets, no other thread reads or writes the
    /// environment meanwhile.
    pub unsafe fn boot(self) -> Result<NetbsdKernel, Error> {
        if self.ncpu == Some(0) {
            return Err(NetbsdError::NoCpu.into());
        }
        let drives = self
            .drives
            .iter()
            .map(|s| DriveSpec::parse(s).map_err(Error::DriveSpec))
            .collect::<Result<Vec<_>, _>>()?;
        let sector_size = self.choose_sector_size(&drives)?;
        for m in &self.modules {
            if !std::path::Path::new(m).is_file() {
                return Err(NetbsdError::NoModule(m.clone()).into());
            }
        }
        if BOOTED.swap(true, Ordering::SeqCst) {
            return Err(NetbsdError::AlreadyBooted.into());
        }
        check_exports("before loading NetBSD components")?;
        // SAFETY: this function's contract: the caller named NetBSD
        // components of the interface this layer implements.
        let libs = unsafe { load_libraries(&self.libs)? };
        check_exports("after loading NetBSD components")?;

        if let Some(n) = self.ncpu {
            std::env::set_var("RUMP_NCPU", n.to_string());
        }
        if let Some(m) = self.memlimit {
            // NetBSD's kernel takes plain bytes or a k/m/g suffix.
            std::env::set_var("RUMP_MEMLIMIT", m.to_string());
        }
        if self.verbose {
            std::env::set_var("RUMP_VERBOSE", "1");
        }
        if sector_size != rumpkern::etfs::DEFAULT_SECTOR_SIZE
            || std::env::var_os(SECTSHIFT_ENV).is_some()
        {
            // NetBSD's drive layer asks for it through rumpuser_getparam,
            // which reads the environment.
            std::env::set_var(SECTSHIFT_ENV, sector_size.trailing_zeros().to_string());
        }

        // SAFETY: NetBSD's `int rump_init(void)`.
        let init = unsafe { need::<unsafe extern "C" fn() -> c_int>("rump_init")? };
        // SAFETY: boots the kernel once (BOOTED) on our hypercall layer.
        let e = unsafe { init() };
        if e != 0 {
            return Err(NetbsdError::Init(Errno(e)).into());
        }
        let k = NetbsdKernel {
            libs,
            url: None,
            halting: AtomicBool::new(false),
            sector_size,
        };
        for m in &self.modules {
            k.load_module(m)?;
        }
        for d in &drives {
            k.add_drive(d)?;
        }
        Ok(k)
    }
}

/// A NetBSD rump kernel booted in this process.
pub struct NetbsdKernel {
    libs: Vec<Library>,
    url: Option<String>,
    /// A halt through [`NetbsdKernel::reboot`] is under way.
    halting: AtomicBool,
    sector_size: u32,
}

impl NetbsdKernel {
    /// A [`NetbsdBuilder`] with every setting at its default.
    pub fn builder() -> NetbsdBuilder {
        NetbsdBuilder::default()
    }

    /// The component libraries loaded, in load order.
    pub fn libraries(&self) -> &[Library] {
        &self.libs
    }

    /// The URL being served, if any.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// Serve the kernel to sysproxy clients on `url`: NetBSD's
    /// `rump_init_server`, which starts our sysproxy server.
    pub fn serve(&mut self, url: &str) -> Result<(), Error> {
        netbsd_abi::sp::parse_url(url, true).map_err(|e| NetbsdError::Url {
            url: url.to_string(),
            why: e.to_string(),
        })?;
        // SAFETY: NetBSD's `int rump_init_server(const char *)`.
        let f =
            unsafe { need::<unsafe extern "C" fn(*const c_char) -> c_int>("rump_init_server")? };
        let c = CString::new(url).map_err(|_| NetbsdError::Url {
            url: url.to_string(),
            why: "contains NUL".into(),
        })?;
        // SAFETY: a NUL-terminated URL, valid for the call.
        let e = unsafe { f(c.as_ptr()) };
        if e != 0 {
            return Err(NetbsdError::Serve {
                url: url.to_string(),
                errno: Errno(e),
            }
            .into());
        }
        self.url = Some(url.to_string());
        Ok(())
    }

    /// Register a host drive (`-d` syntax, already parsed): a
    /// `disklabel=` partition is looked up, the host file is created (mode
    /// 0644) and extended to `offset + size` as needed, then registered
    /// with `rump_pub_etfs_register_withsize`. A `sectorsize=` other than
    /// the kernel's ([`NetbsdKernel::sector_size`]) is refused: NetBSD's
    /// drive layer has one sector size for all drives, fixed at boot.
    pub fn add_drive(&self, d: &DriveSpec) -> Result<(), Error> {
        let err = |fault| Error::Drive(DriveError::new(&d.key, fault));
        if let Some(want) = d.sector_size.filter(|&s| s != self.sector_size) {
            return Err(err(DriveFault::SectorSize {
                want,
                have: self.sector_size,
            }));
        }
        let d = &d.resolved()?;
        let host = |e: std::io::Error| {
            err(DriveFault::Host {
                path: d.hostpath.clone(),
                errno: Errno::from(e),
            })
        };
        let create = matches!(d.size, DriveSize::Bytes(_));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .mode(0o644)
            .open(&d.hostpath)
            .map_err(host)?;
        let md = f.metadata().map_err(host)?;
        if md.is_dir() {
            return Err(err(DriveFault::IsDir {
                path: d.hostpath.clone(),
            }));
        }
        lock_image(&f, &md).map_err(|_| {
            err(DriveFault::Locked {
                path: d.hostpath.clone(),
            })
        })?;
        let size = match d.size {
            DriveSize::Bytes(n) => n,
            // `resolved` turned a label into bytes; size=host otherwise.
            DriveSize::Host | DriveSize::Disklabel(_) => {
                // A block device's size too (not the hypercall layer's
                // getfileinfo: this thread is not in the kernel).
                let len = (&f).seek(std::io::SeekFrom::End(0)).map_err(host)?;
                if len <= d.offset {
                    return Err(err(DriveFault::OffsetOutside {
                        path: d.hostpath.clone(),
                        offset: d.offset,
                        len,
                    }));
                }
                len - d.offset
            }
        };
        let end = d
            .offset
            .checked_add(size)
            .ok_or(err(DriveFault::TooLarge))?;
        if md.is_file() && md.len() < end {
            f.set_len(end).map_err(|e| {
                err(DriveFault::Extend {
                    path: d.hostpath.clone(),
                    need: end,
                    errno: Errno::from(e),
                })
            })?;
        }
        // Keep the open file (and its lock) for the life of the process.
        held_images()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(f);
        let ty = match d.kind {
            DriveType::Blk => RUMP_ETFS_BLK,
            DriveType::Chr => RUMP_ETFS_CHR,
            DriveType::Reg => RUMP_ETFS_REG,
        };
        type RegFn = unsafe extern "C" fn(*const c_char, *const c_char, c_int, u64, u64) -> c_int;
        // SAFETY: NetBSD's `int rump_pub_etfs_register_withsize(const char
        // *key, const char *hostpath, enum rump_etfs_type, uint64_t begin,
        // uint64_t size)`.
        let reg = unsafe { need::<RegFn>("rump_pub_etfs_register_withsize")? };
        let key = CString::new(d.key.as_str()).map_err(|_| err(DriveFault::BadKey))?;
        let hostpath = CString::new(d.hostpath.as_str()).map_err(|_| {
            err(DriveFault::Host {
                path: d.hostpath.clone(),
                errno: Errno(netbsd_abi::errno::EINVAL),
            })
        })?;
        // SAFETY: NUL-terminated strings valid for the call; the kernel
        // copies them.
        let e = unsafe { reg(key.as_ptr(), hostpath.as_ptr(), ty, d.offset, size) };
        if e != 0 {
            return Err(err(DriveFault::Register {
                call: "rump_pub_etfs_register_withsize",
                errno: Errno(e),
            }));
        }
        Ok(())
    }

    /// The sector size of every drive of this kernel (NetBSD's drive
    /// layer reads it once, at boot, from `RUMP_BLKSECTSHIFT`).
    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }

    /// Load the NetBSD kernel module in host file `path`, as NetBSD's
    /// `rump_server -m` does: register it as an etfs file, `modctl(LOAD)`
    /// it, unregister it.
    pub fn load_module(&self, path: &str) -> Result<(), Error> {
        let what = |step: &'static str, errno: Errno| NetbsdError::Module {
            path: path.to_string(),
            step,
            errno,
        };
        type RegFn = unsafe extern "C" fn(*const c_char, *const c_char, c_int) -> c_int;
        type UnregFn = unsafe extern "C" fn(*const c_char) -> c_int;
        type ModctlFn = unsafe extern "C" fn(c_int, *mut c_void) -> c_int;
        // SAFETY: NetBSD's prototypes: `int rump_pub_etfs_register(const
        // char *, const char *, enum rump_etfs_type)`, `int
        // rump_pub_etfs_remove(const char *)`, `int rump_sys_modctl(int,
        // void *)`.
        let reg = unsafe { need::<RegFn>("rump_pub_etfs_register")? };
        // SAFETY: as above.
        let unreg = unsafe { need::<UnregFn>("rump_pub_etfs_remove")? };
        // SAFETY: as above.
        let modctl = unsafe { need::<ModctlFn>("rump___sysimpl_modctl")? };
        let host =
            CString::new(path).map_err(|_| what("path", Errno(netbsd_abi::errno::EINVAL)))?;
        // SAFETY: NUL-terminated strings valid for the call.
        let e = unsafe { reg(MODULE_KEY.as_ptr(), host.as_ptr(), RUMP_ETFS_REG) };
        if e != 0 {
            return Err(what("etfs register", Errno(e)).into());
        }
        let mut ml = ModctlLoad {
            ml_filename: MODULE_KEY.as_ptr(),
            ml_flags: 0,
            ml_props: std::ptr::null(),
            ml_propslen: 0,
        };
        // SAFETY: a valid `struct modctl_load` for the call's duration.
        let rv = unsafe { modctl(RUMP_MODCTL_LOAD, (&mut ml as *mut ModctlLoad).cast()) };
        let err = (rv == -1).then(sys_errno);
        // SAFETY: as above.
        unsafe { unreg(MODULE_KEY.as_ptr()) };
        match err {
            Some(e) => Err(what("module load failed", e).into()),
            None => Ok(()),
        }
    }

    /// NetBSD's `getpid(2)` in this process's own kernel process (a
    /// direct, in-process system call).
    pub fn getpid(&self) -> Result<i32, Errno> {
        // SAFETY: NetBSD's `pid_t rump_sys_getpid(void)`.
        let f = unsafe { need::<unsafe extern "C" fn() -> c_int>("rump___sysimpl_getpid") }
            .map_err(|_| Errno(netbsd_abi::errno::ENOSYS))?;
        // SAFETY: NetBSD's syscall entry schedules itself.
        let rv = unsafe { f() };
        if rv == -1 {
            Err(sys_errno())
        } else {
            Ok(rv)
        }
    }

    /// True once the kernel halted through NetBSD's `RB_HALT` path (our
    /// sysproxy layer was shut down by `rumpuser_sp_fini`) and the process
    /// stays up.
    pub fn halted(&self) -> bool {
        rumpuser::sp::is_finished()
    }

    /// Halt with NetBSD `RB_*` flags through NetBSD's own `reboot(2)`
    /// (`rump_sys_reboot(flags, NULL)`, which schedules itself on the
    /// kernel): unless `RB_NOSYNC`, file systems are synced; then our
    /// `rumpuser_sp_fini` and `rumpuser_exit`. Without `RB_HALT` (or with
    /// `RB_DUMP`) the process exits (or aborts) and this does not return
    /// but on an error. With `RB_HALT`, the call runs on a thread of its
    /// own, which NetBSD keeps in the kernel for good; this returns once
    /// the halt has shut sysproxy down.
    pub fn reboot(&self, flags: i32) -> Result<(), Error> {
        type RebootFn = unsafe extern "C" fn(c_int, *mut c_char) -> c_int;
        // SAFETY: NetBSD's `int rump_sys_reboot(int, char *)`.
        let f = unsafe { need::<RebootFn>("rump___sysimpl_reboot")? };
        if self.halting.swap(true, Ordering::SeqCst) {
            return Err(NetbsdError::HaltInProgress.into());
        }
        if flags & RB_HALT == 0 || flags & RB_DUMP != 0 {
            // SAFETY: NetBSD's syscall entry schedules itself.
            let rv = unsafe { f(flags, std::ptr::null_mut()) };
            let e = if rv == -1 { sys_errno() } else { Errno(0) };
            self.halting.store(false, Ordering::SeqCst);
            return Err(NetbsdError::Reboot(e).into());
        }
        let (tx, rx) = std::sync::mpsc::channel::<Errno>();
        std::thread::Builder::new()
            .name("rump-halt".into())
            .spawn(move || {
                // SAFETY: NetBSD's syscall entry schedules itself.
                let rv = unsafe { f(flags, std::ptr::null_mut()) };
                let _ = tx.send(if rv == -1 { sys_errno() } else { Errno(0) });
            })
            .map_err(|e| NetbsdError::RebootThread(std::sync::Arc::new(e)))?;
        loop {
            if rumpuser::sp::is_finished() {
                return Ok(());
            }
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(e) => {
                    self.halting.store(false, Ordering::SeqCst);
                    return Err(NetbsdError::Reboot(e).into());
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(NetbsdError::HaltingThreadVanished.into())
                }
            }
        }
    }
}

/// Drive images locked by this process (see [`lock_image`]).
fn held_images() -> &'static std::sync::Mutex<Vec<std::fs::File>> {
    // Process-wide: OFD locks are the process's, and so is the one NetBSD
    // kernel it may boot (see `BOOTED`).
    static H: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    &H
}

/// Lock a drive image against a second server, as the built-in kernel
/// does: an OFD write lock on the whole file (a second drive of ours on
/// the same file is covered by the first one's). `Err` when another
/// process holds a conflicting lock; file systems that lock nothing pass.
fn lock_image(
    f: &std::fs::File,
    md: &std::fs::Metadata,
) -> Result<(), vfs_cache::host::ImageLocked> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let mine = held_images()
        .lock()
        .map(|v| {
            v.iter().any(|h| {
                h.metadata()
                    .map(|m| (m.dev(), m.ino()) == (md.dev(), md.ino()))
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false);
    if mine {
        return Ok(());
    }
    vfs_cache::host::lock_image(f.as_fd(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_names() {
        assert_eq!(component_name("rumpvfs"), "rumpvfs");
        assert_eq!(component_name("librumpvfs.so"), "rumpvfs");
        assert_eq!(component_name("librumpvfs.so.0"), "rumpvfs");
        assert_eq!(component_name("/x/y/librump.so"), "rump");
        assert_eq!(component_name("rump"), "rump");
        assert_eq!(
            component_name("librumpkern_sysproxy.so.0.0"),
            "rumpkern_sysproxy"
        );
    }

    #[test]
    fn missing_library_is_named_with_the_loader_error_and_the_way_out() {
        let e = load_rounds(&["rumpfs_nonexistent_xyz".to_string()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("-l rumpfs_nonexistent_xyz: librumpfs_nonexistent_xyz.so: cannot open shared object file"), "{e}");
        assert!(e.ends_with(HOW), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn one_sector_size_for_all_drives() {
        let spec = |s: &str| DriveSpec::parse(s).unwrap();
        let b = NetbsdBuilder::default();
        let d2k = spec("key=/a,hostpath=a,size=4m,sectorsize=2048");
        let d512 = spec("key=/b,hostpath=b,size=4m,sectorsize=512");
        let plain = spec("key=/c,hostpath=c,size=4m");
        if std::env::var_os(SECTSHIFT_ENV).is_none() {
            assert_eq!(
                b.choose_sector_size(std::slice::from_ref(&plain)).unwrap(),
                512
            );
            assert_eq!(
                b.choose_sector_size(&[plain.clone(), d2k.clone()]).unwrap(),
                2048
            );
            let e = b
                .choose_sector_size(&[d2k.clone(), d512.clone()])
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                "drive /b: sectorsize=512, but the kernel's drives have 2048-byte sectors \
                 (one sector size for all drives)"
            );
        }
        let b = b.sector_size(2048);
        assert_eq!(b.choose_sector_size(&[plain, d2k]).unwrap(), 2048);
        assert!(matches!(
            b.choose_sector_size(&[d512]),
            Err(Error::Drive(DriveError {
                fault: DriveFault::SectorSize {
                    want: 512,
                    have: 2048
                },
                ..
            }))
        ));
    }

    #[test]
    fn stubs_are_followed() {
        let t = std::env::temp_dir().join(format!("netbsd-stubs-{}", std::process::id()));
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(t.join("librumpx.so.0.0"), b"\x7fELF....").unwrap();
        std::fs::write(t.join("librumpx.so"), b"librumpx.so.0\n").unwrap();
        std::fs::write(t.join("librumpx.so.0"), b"librumpx.so.0.0").unwrap();
        assert_eq!(
            follow_stubs(&t.join("librumpx.so")),
            t.join("librumpx.so.0.0")
        );
        assert_eq!(
            find_library(t.join("librumpx.so").to_str().unwrap()),
            Some(t.join("librumpx.so.0.0"))
        );
        std::fs::remove_dir_all(&t).unwrap();
    }
}
