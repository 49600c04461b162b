//! rump_ext2fs: mount an ext2 image on the host through FUSE, with the
//! built-in kernel's ext2 in this process.
//!
//!     rump_ext2fs [-f] [-o opts] image mountpoint
//!
//! Options may follow the operands (`image mountpoint -o ro`) until `--`.
//! Returns once the mount is live (`-f`: stays in the foreground). Unmount
//! (`umount mountpoint`, `fusermount3 -u`), SIGTERM or SIGINT run the halt:
//! the kernel's caches are flushed to the image and the process exits 0.
//! `-o rumpserver=URL` also serves the kernel over sysproxy (`rumpctl`,
//! `rump.halt [-dhn]`, which unmounts the FUSE mount).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};
use netbsd_abi::errno::io_text;
use netbsd_abi::fcntl::MNT_RDONLY;
use netbsd_abi::Syscalls;
use rumpfuse::{host, LocalBackend, Options, RumpFuse};
use rumprun::getopt::{getopt_with, text, Order};
use rumprun::{tool, Rump};

const PROG: &str = "rump_ext2fs";
/// Where the image is mounted inside the kernel.
const KMNT: &str = "/mnt";

const SYNOPSIS: &str = "[-frv] [-o option[,option...]] image mountpoint";

fn usage() -> ! {
    eprintln!("usage: {PROG} {SYNOPSIS}");
    exit(1)
}

fn help() -> String {
    format!(
        "usage: {PROG} {SYNOPSIS}\n\
         Mount the ext2 file system in image on mountpoint through FUSE, with a rump kernel's ext2.\n\
         \x20 -f          stay in the foreground (-d likewise)\n\
         \x20 -r          read-only (-o ro)\n\
         \x20 -v          verbose (again for more; RUMP_VERBOSE likewise)\n\
         \x20 -o options  ro, rw, rumpserver=URL, threads=N, writeback, nowriteback,\n\
         \x20             default_permissions, allow_other, noallow_other, noatime,\n\
         \x20             nosuid, nodev, noexec\n\
         Unmounting, SIGTERM, SIGINT or SIGHUP flush the image and end the program. See rump_ext2fs(8).\n"
    )
}

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("{PROG}: {msg}");
    exit(1)
}

#[derive(Default)]
struct Args {
    fg: bool,
    ro: bool,
    url: Option<String>,
    threads: usize,
    allow_other: Option<bool>,
    writeback: Option<bool>,
    host_perms: bool,
    fuse_opts: Vec<MountOption>,
    verbosity: usize,
    image: String,
    mnt: PathBuf,
}

fn parse() -> Args {
    use std::ffi::OsString;
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    tool::help_and_version(PROG, &argv, help);
    let mut a = Args {
        threads: 4,
        ..Default::default()
    };
    // Options anywhere (`image mountpoint -o ro`, as fuse2fs takes them).
    let p = getopt_with(&argv, "fdrvo:", Order::Permute).unwrap_or_else(|e| {
        eprintln!("{PROG}: {e}");
        usage()
    });
    let mut opts = Vec::new();
    for (c, v) in &p.opts {
        match (c, v) {
            ('f' | 'd', _) => a.fg = true,
            ('r', _) => a.ro = true,
            ('v', _) => a.verbosity += 1,
            ('o', Some(v)) => {
                let v = text("-o ", v).unwrap_or_else(|e| die(e));
                opts.extend(v.split(',').filter(|x| !x.is_empty()).map(String::from));
            }
            // getopt returns only the letters of the spec.
            _ => usage(),
        }
    }
    let pos = p.operands;
    for o in opts {
        let (k, v) = match o.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (o.clone(), None),
        };
        match (k.as_str(), v) {
            ("ro", None) => a.ro = true,
            ("rw", None) => a.ro = false,
            ("rumpserver", Some(u)) if !u.is_empty() => a.url = Some(u),
            ("threads", Some(n)) => match n.parse::<usize>() {
                Ok(n) if (1..=64).contains(&n) => a.threads = n,
                _ => die(format!("threads={n}: must be 1 to 64")),
            },
            ("writeback", None) => a.writeback = Some(true),
            ("nowriteback", None) => a.writeback = Some(false),
            ("default_permissions", None) => a.host_perms = true,
            ("allow_other", None) => a.allow_other = Some(true),
            ("noallow_other", None) => a.allow_other = Some(false),
            ("noatime", None) => a.fuse_opts.push(MountOption::NoAtime),
            ("nosuid", None) => a.fuse_opts.push(MountOption::NoSuid),
            ("nodev", None) => a.fuse_opts.push(MountOption::NoDev),
            ("noexec", None) => a.fuse_opts.push(MountOption::NoExec),
            ("atime" | "suid" | "dev" | "exec" | "async" | "defaults", None) => {}
            _ => die(format!("{o}: unknown mount option")),
        }
    }
    match pos.as_slice() {
        [img, m] => {
            // The image goes into a drive spec, which is text.
            a.image = text("", img)
                .map(str::to_string)
                .unwrap_or_else(|e| die(format!("image {e}")));
            a.mnt = m.into();
        }
        _ => usage(),
    }
    a
}

fn main() {
    let a = parse();
    let img = Path::new(&a.image);
    let md =
        std::fs::metadata(img).unwrap_or_else(|e| die(format!("{}: {}", a.image, io_text(&e))));
    if md.is_dir() {
        die(format!("{}: {}", a.image, host::strerror(libc::EISDIR)));
    }
    // Its own messages say what failed; the kernel's log (and the
    // warnings in it, which repeat them) only with -v.
    if tool::verbosity(a.verbosity) > 0 {
        tool::init_logging(PROG, tool::verbosity(a.verbosity));
    }
    let mnt = host::check_mountpoint(&a.mnt).unwrap_or_else(|m| die(m));
    let mut ro = a.ro;
    if !ro
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(img)
            .is_err()
    {
        // An image we may not write is served read-only.
        ro = true;
    }

    // The kernel's RUMP_* settings, refused as their flags would be.
    let cfg = rumprun::KernelConfig::from_env().unwrap_or_else(|e| die(e));

    // SAFETY: no thread exists yet: nothing above starts one (argument
    // parsing and file checks), and the kernel boots below.
    let ready = unsafe { host::background(a.fg) }.unwrap_or_else(|e| die(format!("fork: {e}")));
    let sigs = host::block_signals();

    let spec = format!("key=/dk,hostpath={},size=host,type=blk", a.image);
    // Virtual CPUs as for any kernel (RUMP_NCPU, else the host's): kernel
    // locks give up the CPU while they wait, so FUSE threads beyond the
    // CPUs queue for one instead of wedging.
    let mut rump = Rump::builder()
        .config(cfg)
        .verbose(tool::verbosity(a.verbosity) > 0)
        .drive(&spec)
        .boot()
        .unwrap_or_else(|e| die(format!("{}: {e}", a.image)));
    let p = rump
        .process()
        .unwrap_or_else(|e| die(format!("kernel: {}", e.description())));
    p.mkdir(KMNT, 0o755)
        .unwrap_or_else(|e| die(format!("kernel {KMNT}: {}", e.description())));
    if let Err(e) = p.mount_ext2(KMNT, if ro { MNT_RDONLY } else { 0 }, "/dk") {
        // The kernel's own reason says more than its errno.
        let why = match rump.take_mount_refusal() {
            _ if e.0 == netbsd_abi::errno::EPERM && !ro => {
                "file system not clean: run fsck, or mount read-only (-o ro)".to_string()
            }
            Some(r) => r,
            None => e.description(),
        };
        die(format!("{}: {why}", a.image));
    }
    // Read-only-compatible features the component lacks force read-only.
    if let Ok(sv) = p.statvfs(KMNT) {
        if sv.flag & MNT_RDONLY as u64 != 0 {
            ro = true;
        }
    }
    drop(p);
    if let Some(url) = &a.url {
        // The same limits as rump_server's (rump_server(1) LIMITS).
        let limits = rumpuser::sp::ServerConfig::from_env().unwrap_or_else(|e| die(e));
        rump.serve_with(url, limits).unwrap_or_else(|e| die(e));
    }
    // rump.halt through sysproxy: take the host mount away, then halt.
    // Set before a sysproxy halt unmounts the host side, so the main
    // thread, woken by that unmount, leaves the halt to it.
    let remote_halt = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (m2, rh) = (mnt.clone(), remote_halt.clone());
    rump.on_halt(Box::new(move || {
        rh.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = host::unmount(&m2);
    }));

    // The only writer unless sysproxy clients may change the tree too.
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
    let backend = LocalBackend::new(rump.kernel().clone());
    let fs = RumpFuse::new(backend, KMNT.as_bytes(), opts)
        .unwrap_or_else(|e| die(format!("{}: {}", a.image, e.description())));
    let mut cfg = Config::default();
    let mut mo = vec![
        MountOption::FSName(abs(&a.image)),
        MountOption::Subtype("rump_ext2fs".into()),
        if ro { MountOption::RO } else { MountOption::RW },
    ];
    // The kernel checks every caller's permissions itself (each FUSE
    // caller is a kernel process with its uid and gid), as NetBSD's file
    // servers do. Host checks as well would cost a GETATTR of every
    // directory whose attributes a change made stale (one per file in a
    // cp -a); -o default_permissions asks for them.
    if a.host_perms {
        mo.push(MountOption::DefaultPermissions);
    }
    mo.extend(a.fuse_opts.iter().cloned());
    cfg.mount_options = mo;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    cfg.acl = if a.allow_other.unwrap_or(root) {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    cfg.n_threads = Some(a.threads);
    cfg.clone_fd = true;
    let session = match fuser::Session::new(fs, &mnt, &cfg) {
        Ok(s) => s,
        Err(e) => {
            let _ = rump.halt(netbsd_abi::reboot::RB_HALT);
            die(format!(
                "{}: {}",
                tool::show(a.mnt.as_os_str().as_bytes()),
                io_text(&e)
            ))
        }
    };

    // Sequential reads in READs as large as the kernel may send (1 MiB,
    // the max_readahead asked for at INIT), not the host's 128 KiB.
    if let Err(e) = host::set_readahead(&mnt) {
        tracing::debug!(
            "{}: read-ahead left at the host's default: {e}",
            mnt.display()
        );
    }

    // SIGTERM, SIGINT, SIGHUP: unmount; the halt follows below.
    let m3 = mnt.clone();
    let hs = rump.halt_state();
    std::thread::spawn(move || loop {
        let sig = host::wait_signal(&sigs);
        if hs.quiesced() {
            exit(0);
        }
        if let Err(m) = host::unmount(&m3) {
            eprintln!("{PROG}: signal {sig}: {m}");
        }
    });
    ready.ok();
    if let Err(e) = session.run() {
        eprintln!("{PROG}: {}: {e}", tool::show(mnt.as_os_str().as_bytes()));
    }
    finish(&rump, remote_halt.load(std::sync::atomic::Ordering::SeqCst));
}

/// The host mount is gone: halt (flush, exit 0, or 1 if the flush failed),
/// unless a halt from sysproxy (`remote_halt`) took it away.
fn finish(rump: &Rump, remote_halt: bool) -> ! {
    if rump.halt_state().halting() || remote_halt {
        // A halt from sysproxy is under way: it ends the process, or with
        // -h quiesces the kernel and leaves the exit to a signal.
        loop {
            std::thread::park();
        }
    }
    match rump.halt(0) {
        Ok(_) => exit(0),
        Err(e) => die(format!("halt: {}", e.description())),
    }
}

fn abs(p: &str) -> String {
    std::fs::canonicalize(p)
        .map(|b: PathBuf| b.display().to_string())
        .unwrap_or_else(|_| p.to_string())
}
