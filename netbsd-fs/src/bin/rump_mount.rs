//! rump_mount (and its names rump_ffs, rump_msdos, rump_cd9660, ...):
//! mount an image on the host through FUSE with NetBSD's own file system
//! code, NetBSD's rump kernel booted in this process.
//!
//!     rump_ffs [-f] [-o options] image mountpoint
//!     rump_mount [-t type|auto] [-f] [-o options] image mountpoint
//!
//! Returns once the mount is live (`-f`: stays in the foreground).
//! `umount mountpoint`, SIGTERM, SIGINT or SIGHUP halt NetBSD's kernel
//! through its own reboot path (sync, unmount) and exit 0.

use std::path::PathBuf;
use std::process::exit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};
use netbsd_abi::errno::io_text;
use netbsd_fs::sys::{NetbsdBackend, NetbsdSys};
use netbsd_fs::types::{self, mnt, FsType, TypeOpts};
use netbsd_fs::{components, part, probe};
use rumpfuse::{host, Options, RumpFuse, Syscalls};
use rumprun::getopt::{getopt_with, text, Order};
use rumprun::netbsd::NetbsdKernel;
use rumprun::tool::show;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// Where the image is mounted inside NetBSD's kernel.
const KMNT: &str = "/mnt";
/// The drive key the image is registered under.
const DEV: &str = "/dk";
/// NetBSD's `MAXPHYS`: no single read or write above it.
const MAXPHYS: usize = 64 << 10;

/// The program's name, for messages (set once from `argv[0]`, read by
/// every message, the exit handler's included).
static PROG: OnceLock<String> = OnceLock::new();

fn prog() -> &'static str {
    PROG.get().map(String::as_str).unwrap_or("rump_mount")
}

fn usage_text() -> String {
    if types::by_program(prog()).is_some() {
        format!(
            "usage: {} [-fr] [-o option[,option...]] image mountpoint",
            prog()
        )
    } else {
        format!(
            "usage: {} [-t type|auto] [-fr] [-o option[,option...]] image mountpoint",
            prog()
        )
    }
}

fn usage() -> ! {
    eprintln!("{}", usage_text());
    exit(1)
}

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("{}: {msg}", prog());
    exit(1)
}

#[derive(Default)]
struct Args {
    fg: bool,
    fstype: Option<String>,
    ro: bool,
    flags: i32,
    url: Option<String>,
    threads: usize,
    netbsd: Option<PathBuf>,
    part: Option<u32>,
    sector_size: Option<u32>,
    allow_other: Option<bool>,
    writeback: Option<bool>,
    fuse_opts: Vec<MountOption>,
    opts: Vec<(String, Option<String>)>,
    /// The image's host path (any bytes), or for a type without one
    /// (tmpfs) the name the mount shows.
    image: PathBuf,
    /// `image` for messages (`\xNN` for a byte that is not UTF-8).
    name: String,
    mnt: PathBuf,
}

fn parse() -> Args {
    let _ = PROG.set(rumprun::tool::progname("rump_mount"));
    // Bytes, not `String`s: an image or mount point may have any name.
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    rumprun::tool::help_and_version(prog(), &argv, || format!("{}\n", usage_text()));
    // The NetBSD names take their type from the name: no -t.
    let spec = if types::by_program(prog()).is_some() {
        "fdrho:"
    } else {
        "fdrht:o:"
    };
    // Options anywhere until `--` (`image mountpoint -o ro`), as the FUSE
    // mount tools take them.
    let p = getopt_with(&argv, spec, Order::Permute).unwrap_or_else(|e| {
        eprintln!("{}: {e}", prog());
        usage()
    });
    let mut a = Args {
        threads: 4,
        ..Default::default()
    };
    for (c, v) in &p.opts {
        match (c, v) {
            ('h', _) => rumprun::tool::print_help(&format!("{}\n", usage_text())),
            ('f' | 'd', _) => a.fg = true,
            ('r', _) => a.ro = true,
            ('o', Some(v)) => {
                let v = text("-o ", v).unwrap_or_else(|e| die(e));
                for o in v.split(',').filter(|x| !x.is_empty()) {
                    match o.split_once('=') {
                        Some((k, v)) => a.opts.push((k.to_string(), Some(v.to_string()))),
                        None => a.opts.push((o.to_string(), None)),
                    }
                }
            }
            ('t', Some(v)) => a.fstype = Some(text("-t ", v).unwrap_or_else(|e| die(e)).into()),
            // getopt returns only the letters of the spec.
            _ => usage(),
        }
    }
    match p.operands.as_slice() {
        [img, m] => {
            a.name = show(img.as_bytes());
            a.image = img.into();
            a.mnt = m.into();
        }
        _ => usage(),
    }
    a
}

/// Apply the generic options; the rest (type-specific) go to `to`.
fn options(a: &mut Args, t: &FsType, to: &mut TypeOpts) {
    for (k, v) in std::mem::take(&mut a.opts) {
        let o = match &v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        };
        match (k.as_str(), v.as_deref()) {
            ("ro", None) => a.ro = true,
            ("rw", None) => a.ro = false,
            ("noatime", None) => {
                a.flags |= mnt::NOATIME;
                a.fuse_opts.push(MountOption::NoAtime);
            }
            ("sync", None) => a.flags |= mnt::SYNCHRONOUS,
            ("async", None) => a.flags |= mnt::ASYNC,
            ("log", None) => a.flags |= mnt::LOG,
            ("nosuid", None) => {
                a.flags |= mnt::NOSUID;
                a.fuse_opts.push(MountOption::NoSuid);
            }
            ("nodev", None) => {
                a.flags |= mnt::NODEV;
                a.fuse_opts.push(MountOption::NoDev);
            }
            ("noexec", None) => {
                a.flags |= mnt::NOEXEC;
                a.fuse_opts.push(MountOption::NoExec);
            }
            ("rumpserver", Some(u)) if !u.is_empty() => a.url = Some(u.to_string()),
            ("threads", Some(n)) => match n.parse::<usize>() {
                Ok(n) if (1..=64).contains(&n) => a.threads = n,
                _ => die(format!("threads={n}: must be 1 to 64")),
            },
            ("netbsd", Some(d)) if !d.is_empty() => a.netbsd = Some(PathBuf::from(d)),
            ("part", Some(_)) => {}
            ("sectorsize", Some(n)) => match n.parse::<u32>() {
                Ok(n) if n.is_power_of_two() && (512..=65536).contains(&n) => {
                    a.sector_size = Some(n)
                }
                _ => die(format!(
                    "sectorsize={n}: expected a power of two from 512 to 65536"
                )),
            },
            ("writeback", None) => a.writeback = Some(true),
            ("nowriteback", None) => a.writeback = Some(false),
            ("allow_other", None) => a.allow_other = Some(true),
            ("noallow_other", None) => a.allow_other = Some(false),
            ("default_permissions" | "atime" | "suid" | "dev" | "exec" | "defaults", None) => {}
            (key, val) => match to.take(t.args, key, val) {
                Ok(true) => {}
                Ok(false) => die(format!("{o}: unknown option for {}", t.name)),
                Err(e) => die(e),
            },
        }
    }
}

/// Set once the host mount is gone (or never was): the exit handler then
/// leaves the mount point alone. Globals because an `atexit` handler
/// takes no argument.
static HOST_UNMOUNTED: AtomicBool = AtomicBool::new(true);
/// The host mount point, for the exit handler.
static MOUNTPOINT: OnceLock<PathBuf> = OnceLock::new();

/// At exit: a halt that came over sysproxy (`rump.halt`) ends the
/// process inside NetBSD's reboot path; take the host mount away with it
/// rather than leave a dead one.
extern "C" fn detach_at_exit() {
    if !HOST_UNMOUNTED.swap(true, Ordering::SeqCst) {
        if let Some(m) = MOUNTPOINT.get() {
            let _ = host::unmount(m);
        }
    }
}

fn main() {
    let mut a = parse();
    for (k, v) in &a.opts {
        if k == "part" {
            match v.as_deref().map(str::parse::<u32>) {
                Some(Ok(n)) if n >= 1 => a.part = Some(n),
                _ => die(format!(
                    "part={}: not a partition number (1, 2, ...)",
                    v.as_deref().unwrap_or("")
                )),
            }
        }
    }
    // Partition N of the image, or all of it.
    let extent = match a.part {
        Some(n) => {
            Some(part::find(&a.image, n).unwrap_or_else(|e| die(format!("{}: {e}", a.name))))
        }
        None => None,
    };
    let t: &'static FsType = match types::by_program(prog()) {
        Some(t) => t,
        None => match a.fstype.as_deref() {
            None | Some("auto") => {
                let head = probe::read_head(&a.image, extent.map_or(0, |e| e.offset))
                    .unwrap_or_else(|e| die(format!("{}: {}", a.name, io_text(&e))));
                match probe::probe(&head) {
                    Some(f) => {
                        println!("{}: {}: {} (-t {})", prog(), a.name, f.what, f.fstype);
                        types::by_name(f.fstype).unwrap_or_else(|| die(format!("{}: no component for {}", a.name, f.fstype)))
                    }
                    None => die(format!(
                        "{}: no file system recognized (FFS, ext2, FAT, ISO 9660, UDF, NTFS): give -t TYPE",
                        a.name
                    )),
                }
            }
            Some(n) => {
                types::by_name(n).unwrap_or_else(|| die(format!("{n}: unknown file system type")))
            }
        },
    };
    let mut topts = TypeOpts::default();
    options(&mut a, t, &mut topts);

    if t.name == "cd9660" {
        a.ro = true;
    }
    // NetBSD's UDF takes the drive's sector size as the image's: read it
    // from the image's anchor (`mkudffs -b 2048`) unless given.
    if t.name == "udf" && a.sector_size.is_none() {
        a.sector_size =
            probe::udf_sector_size(&a.image, extent.map_or(0, |e| e.offset)).filter(|&s| s != 512);
        if let Some(s) = a.sector_size {
            tracing::debug!("{}: UDF with {s}-byte sectors", a.name);
        }
    }
    let mut img_len = 0;
    if t.has_image {
        let md = std::fs::metadata(&a.image)
            .unwrap_or_else(|e| die(format!("{}: {}", a.name, io_text(&e))));
        if md.is_dir() {
            die(format!("{}: {}", a.name, host::strerror(libc::EISDIR)));
        }
        if let Err(e) = std::fs::File::open(&a.image) {
            die(format!("{}: {}", a.name, io_text(&e)));
        }
        if !a.ro
            && std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&a.image)
                .is_err()
        {
            // An image we may not write is served read-only.
            a.ro = true;
        }
        img_len = md.len();
    }
    // The image as NetBSD's kernel names it: a drive spec and the
    // kernel's host path are text, without commas (the spec's separator).
    let abs_img = if t.has_image {
        let p = std::fs::canonicalize(&a.image).unwrap_or_else(|_| a.image.clone());
        let s = p
            .into_os_string()
            .into_string()
            .unwrap_or_else(|p| die(format!("{}: not valid UTF-8", show(p.as_bytes()))));
        if s.contains(',') {
            die(format!(
                "{}: a comma in the image path is not supported",
                a.name
            ));
        }
        s
    } else {
        a.name.clone()
    };
    let mnt_abs = host::check_mountpoint(&a.mnt).unwrap_or_else(|m| die(m));

    // The components, found before anything starts.
    let dd = components::destdir(a.netbsd.as_deref()).unwrap_or_else(|e| die(e));
    let mut libs = Vec::new();
    for c in ["rump", "rumpkern_sysproxy"].iter().chain(t.libs) {
        libs.push(components::resolve(&dd, c).unwrap_or_else(|e| die(e)));
    }
    for c in t.optional {
        if let Ok(p) = components::resolve(&dd, c) {
            libs.push(p);
        }
    }

    // SAFETY: no thread exists yet: nothing above starts one (argument
    // parsing, file checks, finding the components), and the kernel boots
    // below.
    let ready = unsafe { host::background(a.fg) }.unwrap_or_else(|e| die(format!("fork: {e}")));
    let sigs = host::block_signals();

    let mut b = NetbsdKernel::builder();
    if let Some(s) = a.sector_size {
        b = b.sector_size(s);
    }
    for l in &libs {
        b = b.lib(&l.display().to_string());
    }
    if t.has_image {
        // Read-write: opened and locked here against a second server.
        if !a.ro {
            b = b.drive(&match extent {
                Some(e) => format!(
                    "key={DEV},hostpath={abs_img},offset={},size={},type=blk",
                    e.offset, e.size
                ),
                None => format!("key={DEV},hostpath={abs_img},size=host,type=blk"),
            });
        }
    }
    // SAFETY: the libraries are NetBSD's rump kernel components
    // (`lib/librumpNAME.so` of the NetBSD destdir the user named with -o
    // netbsd= or RUMP_NETBSD_DIR, found by `components::resolve`), built
    // for the v17 interface this layer implements; no other thread
    // touches the environment while they boot.
    let mut kernel = unsafe { b.boot() }.unwrap_or_else(|e| die(format!("{}: {e}", a.name)));
    let sys = Arc::new(NetbsdSys::new().unwrap_or_else(|e| die(e)));
    if t.has_image && a.ro {
        // Read-only: NetBSD's kernel opens the image itself, read-only
        // where it may not write it.
        let (off, size) = extent.map_or((0, img_len), |e| (e.offset, e.size));
        if let Err(e) = sys.register_blk(DEV, &abs_img, off, size) {
            die(format!("{}: {}", a.name, e.description()));
        }
    }
    if let Err(e) = sys.mkdir(KMNT.as_bytes(), 0o755) {
        die(format!("kernel {KMNT}: {}", e.description()));
    }
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let mut margs = types::build_args(t, DEV, &topts, uid, gid).unwrap_or_else(|e| die(e));
    let mut flags = a.flags;
    if a.ro {
        flags |= mnt::RDONLY;
    }
    // SAFETY: `margs` is the type's argument structure, its fspec pointer
    // at the drive key string it owns; both live across the call.
    let r = unsafe {
        sys.mount(
            t.name,
            KMNT.as_bytes(),
            flags,
            margs.as_mut_ptr(),
            margs.len(),
        )
    };
    if let Err(e) = r {
        die(format!(
            "{}: cannot mount as {}: {}",
            a.name,
            t.name,
            e.description()
        ));
    }
    let mut ro = a.ro;
    if let Ok(sv) = sys.statvfs(KMNT.as_bytes()) {
        if sv.flag & mnt::RDONLY as u64 != 0 {
            ro = true;
        }
    }
    if let Some(url) = &a.url {
        kernel.serve(url).unwrap_or_else(|e| die(e));
    }

    let single = a.url.is_none();
    let opts = Options {
        read_only: ro,
        ttl: if single {
            Duration::from_secs(60)
        } else {
            Duration::from_secs(1)
        },
        writeback: a.writeback.unwrap_or(single) && !ro,
    };
    let fs = RumpFuse::new(NetbsdBackend(sys.clone()), KMNT.as_bytes(), opts)
        .unwrap_or_else(|e| die(format!("{}: {}", a.name, e.description())))
        .max_io(MAXPHYS);
    let mut cfg = Config::default();
    let mut mo = vec![
        MountOption::FSName(abs_img),
        MountOption::Subtype(format!("rump_{}", t.name)),
        if ro { MountOption::RO } else { MountOption::RW },
        // NetBSD's kernel serves every caller as root: the host checks
        // permissions, as for rumpctl fuse.
        MountOption::DefaultPermissions,
    ];
    mo.extend(a.fuse_opts.iter().cloned());
    cfg.mount_options = mo;
    cfg.acl = if a.allow_other.unwrap_or(uid == 0) {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    cfg.n_threads = Some(a.threads);
    cfg.clone_fd = true;
    let session = match fuser::Session::new(fs, &mnt_abs, &cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "{}: {}: {}",
                prog(),
                show(a.mnt.as_os_str().as_bytes()),
                io_text(&e)
            );
            halt(&kernel, &sys, 1)
        }
    };
    let _ = MOUNTPOINT.set(mnt_abs.clone());
    HOST_UNMOUNTED.store(false, Ordering::SeqCst);
    // SAFETY: registers a plain extern "C" function with no arguments.
    unsafe { libc::atexit(detach_at_exit) };
    if let Err(e) = host::set_readahead(&mnt_abs) {
        tracing::debug!("{}: read-ahead left as it is: {e}", mnt_abs.display());
    }

    // SIGTERM, SIGINT, SIGHUP: unmount; the halt follows below.
    let m2 = mnt_abs.clone();
    std::thread::spawn(move || loop {
        let sig = host::wait_signal(&sigs);
        if let Err(m) = host::unmount(&m2) {
            eprintln!("{}: signal {sig}: {m}", prog());
        }
    });
    ready.ok();
    if let Err(e) = session.run() {
        eprintln!("{}: {}: {e}", prog(), show(mnt_abs.as_os_str().as_bytes()));
    }
    HOST_UNMOUNTED.store(true, Ordering::SeqCst);
    halt(&kernel, &sys, 0)
}

/// Unmount the file system in the kernel, then NetBSD's reboot path
/// (sync, unmount the rest, exit 0). With `status` non-zero (the host
/// mount failed), or when the unmount fails for another reason than files
/// still open (`EBUSY`: the reboot path syncs and unmounts those too),
/// sync and exit 1 instead.
fn halt(kernel: &NetbsdKernel, sys: &NetbsdSys, status: i32) -> ! {
    let mut st = status;
    match sys.unmount(KMNT.as_bytes(), 0) {
        Ok(()) => {}
        Err(e) if e.0 == netbsd_abi::errno::EBUSY => {}
        Err(e) => {
            eprintln!("{}: unmount: {}", prog(), e.description());
            st = 1;
        }
    }
    if st != 0 {
        // NetBSD's reboot exits 0: flush without it, then exit non-zero.
        let _ = sys.sync();
        exit(st);
    }
    // Exits the process (0) from NetBSD's reboot path; returns only on
    // an error.
    match kernel.reboot(0) {
        Ok(()) => exit(0),
        Err(e) => die(format!("halt: {e}")),
    }
}
