//! rumpctl: work with files in a running rump kernel (`RUMP_SERVER`).
//!
//! rumpctl [-v] command [args]; the commands are in [`COMMANDS`] and in
//! rumpctl(1). Arguments are checked before the connection is made; every
//! failure is one line, `rumpctl: object: reason`, and exit status 1.
//!
//! `cp` names kernel paths with a leading `:` (`rumpctl cp -R dir :/mnt`);
//! every other command takes kernel paths as they are. `fuse` mounts the
//! kernel's tree (or a subtree) on the host through FUSE.

use std::io::{IsTerminal, Read, Write};
use std::process::exit;
use std::sync::OnceLock;

use netbsd_abi::errno::{EEXIST, ENOENT, ENOTDIR, EPERM};
use netbsd_abi::fcntl::{MNT_FORCE, MNT_RDONLY, O_CREAT, O_DIRECTORY, O_RDONLY, O_TRUNC, O_WRONLY};
use netbsd_abi::stat::{Stat, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use rumpclient::{Client, Error};
use rumprun::getopt::getopt;
use rumprun::tool::{self, io_text};

const CHUNK: usize = 64 * 1024;

/// Each command and its arguments, as the usage and `--help` show them.
const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "ls",
        "[-l] [path ...]",
        "list directories (-l: mode, links, owner, size, time)",
    ),
    ("cat", "path ...", "copy kernel files to standard output"),
    (
        "put",
        "hostfile path",
        "copy a host file into the kernel (\"-\": standard input)",
    ),
    (
        "get",
        "path hostfile",
        "copy a kernel file to the host (\"-\": standard output)",
    ),
    (
        "cp",
        "[-R] source ... target",
        "copy between host and kernel; kernel paths start with ':'",
    ),
    ("mkdir", "[-p] path ...", "make directories"),
    ("rm", "path ...", "remove files"),
    ("rmdir", "path ...", "remove empty directories"),
    ("mv", "from to", "rename"),
    ("ln", "-s target path", "make a symbolic link"),
    (
        "chmod",
        "mode path ...",
        "change permission bits (octal mode)",
    ),
    (
        "chown",
        "[-h] owner[:group] path ...",
        "change owner and group (numeric ids; -h: the link itself)",
    ),
    (
        "touch",
        "path ...",
        "set access and modification times to now, creating missing files",
    ),
    (
        "df",
        "[path ...]",
        "free space of the file systems holding the paths (default /)",
    ),
    ("stat", "path ...", "show inode details"),
    (
        "mount",
        "[-r] [-t type] [-o options] [special dir]",
        "mount a drive (type ext2fs unless -t: ffs, msdos, cd9660, udf, ntfs, ...; \
         -r: read-only); with no arguments, list the mounts",
    ),
    ("umount", "[-f] dir", "unmount (-f: forced)"),
    ("sync", "", "flush the kernel's caches to the host"),
    (
        "fuse",
        "[-f] [-o ro] [path] mountpoint",
        "mount the kernel's tree (or a subtree) on the host through FUSE",
    ),
];

fn prog() -> &'static str {
    static P: OnceLock<String> = OnceLock::new();
    P.get_or_init(|| tool::progname("rumpctl"))
}

fn usage_text() -> String {
    let mut s = format!("usage: {} [-v] command [argument ...]\n", prog());
    for (name, args, _) in COMMANDS {
        s.push_str(&format!(
            "       {} {name}{}{args}\n",
            prog(),
            if args.is_empty() { "" } else { " " }
        ));
    }
    s
}

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("{}: {msg}", prog());
    }
    eprint!("{}", usage_text());
    exit(1)
}

/// A bad command line for a known command: the message and that
/// command's usage line only.
fn usage_of(cmd: &str, msg: &str) -> ! {
    let Some((name, args, _)) = COMMANDS.iter().find(|(n, _, _)| *n == cmd) else {
        usage(msg)
    };
    eprintln!("{}: {msg}", prog());
    eprintln!(
        "usage: {} {name}{}{args}",
        prog(),
        if args.is_empty() { "" } else { " " }
    );
    exit(1)
}

fn help() -> String {
    let mut s = usage_text();
    s.push_str("\nWork with files in the rump kernel named by RUMP_SERVER (unix://PATH or tcp://ADDR:PORT).\n");
    for (name, _, what) in COMMANDS {
        s.push_str(&format!("  {name:<7} {what}\n"));
    }
    s.push_str(
        "  -v      say what is done (again for more; RUMP_VERBOSE likewise)\nSee rumpctl(1).\n",
    );
    s
}

/// Write to standard output; a reader that went away (`EPIPE`) ends the
/// program quietly.
macro_rules! out {
    ($($t:tt)*) => {{
        let mut o = std::io::stdout().lock();
        if let Err(e) = writeln!(o, $($t)*) {
            tool::stdout_failed(prog(), &e);
        }
    }};
}

/// A failure, already worded: `object: reason`.
struct Fail(String);

fn fail(what: &str, e: Error) -> Fail {
    Fail(format!("{what}: {e}"))
}

fn host_fail(what: &str, e: std::io::Error) -> Fail {
    Fail(format!("{what}: {}", io_text(&e)))
}

/// A `cp` operand: a kernel path (`:path`) or a host path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Loc {
    Kernel(String),
    Host(String),
}

impl Loc {
    fn parse(s: &str) -> Loc {
        match s.strip_prefix(':') {
            Some(p) => Loc::Kernel(if p.is_empty() {
                ".".into()
            } else {
                p.to_string()
            }),
            None => Loc::Host(s.to_string()),
        }
    }
    fn path(&self) -> &str {
        match self {
            Loc::Kernel(p) | Loc::Host(p) => p,
        }
    }
    fn join(&self, name: &str) -> Loc {
        let j = |p: &str| format!("{}/{name}", p.trim_end_matches('/'));
        match self {
            Loc::Kernel(p) => Loc::Kernel(j(p)),
            Loc::Host(p) => Loc::Host(j(p)),
        }
    }
    /// For messages: kernel paths keep their ':'.
    fn show(&self) -> String {
        match self {
            Loc::Kernel(p) => format!(":{p}"),
            Loc::Host(p) => p.clone(),
        }
    }
}

/// What to do, checked before connecting.
#[derive(Debug)]
enum Job {
    Ls {
        long: bool,
        paths: Vec<String>,
    },
    Cat(Vec<String>),
    Put {
        host: String,
        path: String,
    },
    Get {
        path: String,
        host: String,
    },
    Cp {
        recursive: bool,
        sources: Vec<Loc>,
        target: Loc,
    },
    Mkdir {
        parents: bool,
        paths: Vec<String>,
    },
    Rm(Vec<String>),
    Rmdir(Vec<String>),
    Mv {
        from: String,
        to: String,
    },
    Ln {
        target: String,
        path: String,
    },
    Chmod {
        mode: u32,
        paths: Vec<String>,
    },
    Chown {
        uid: u32,
        gid: u32,
        nofollow: bool,
        paths: Vec<String>,
    },
    Touch(Vec<String>),
    Df(Vec<String>),
    Stat(Vec<String>),
    Mount {
        ro: bool,
        fstype: Option<String>,
        opts: Vec<String>,
        special: String,
        dir: String,
    },
    MountList,
    Umount {
        force: bool,
        dir: String,
    },
    Sync,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!(
            "{s}: invalid file mode (an octal number such as 644 or 0755)"
        ));
    }
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!("{s}: invalid file mode (at most 7777)")),
    }
}

/// `owner[:group]`, `owner:` or `:group`, numeric (the kernel has no user
/// database); a part left out is unchanged (`u32::MAX`, chown's -1).
fn parse_owner(s: &str) -> Result<(u32, u32), String> {
    let id = |p: &str, what: &str| -> Result<u32, String> {
        if p.is_empty() {
            return Ok(u32::MAX);
        }
        match p.parse::<u32>() {
            Ok(n) if n != u32::MAX => Ok(n),
            _ => Err(format!(
                "{s}: invalid {what} (a number: the kernel has no user database)"
            )),
        }
    };
    let (u, g) = s.split_once(':').unwrap_or((s, ""));
    if u.is_empty() && g.is_empty() {
        return Err(format!("{s}: invalid owner (owner[:group] or :group)"));
    }
    Ok((id(u, "user id")?, id(g, "group id")?))
}

/// Parse a command line (after the global options) into a [`Job`]: every
/// check that needs no kernel happens here.
fn parse(cmd: &str, rest: &[String]) -> Result<Job, String> {
    let opts = |spec: &str| getopt(rest, spec).map_err(|e| format!("{cmd}: {e}"));
    let need = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("{cmd}: {what}"))
        }
    };
    Ok(match cmd {
        "ls" => {
            let p = opts("l")?;
            let paths = if p.operands.is_empty() {
                vec![".".to_string()]
            } else {
                p.operands
            };
            Job::Ls {
                long: !p.opts.is_empty(),
                paths,
            }
        }
        "cat" => {
            let p = opts("")?;
            need(!p.operands.is_empty(), "missing file operand")?;
            Job::Cat(p.operands)
        }
        "put" | "get" => {
            let p = opts("")?;
            let [a, b] = p.operands.as_slice() else {
                return Err(format!(
                    "{cmd}: expected two operands, got {}",
                    p.operands.len()
                ));
            };
            if cmd == "put" {
                Job::Put {
                    host: a.clone(),
                    path: b.clone(),
                }
            } else {
                Job::Get {
                    path: a.clone(),
                    host: b.clone(),
                }
            }
        }
        "cp" => {
            let p = opts("R")?;
            need(p.operands.len() >= 2, "expected source ... target")?;
            let mut locs: Vec<Loc> = p.operands.iter().map(|s| Loc::parse(s)).collect();
            let target = locs.pop().expect("two operands");
            if locs
                .iter()
                .chain([&target])
                .all(|l| matches!(l, Loc::Host(_)))
            {
                return Err(
                    "cp: no kernel path: name kernel paths with a leading ':' (cp file :/dir)"
                        .into(),
                );
            }
            Job::Cp {
                recursive: !p.opts.is_empty(),
                sources: locs,
                target,
            }
        }
        "mkdir" => {
            let p = opts("p")?;
            need(!p.operands.is_empty(), "missing directory operand")?;
            Job::Mkdir {
                parents: !p.opts.is_empty(),
                paths: p.operands,
            }
        }
        "rm" | "rmdir" | "stat" => {
            let p = opts("")?;
            need(!p.operands.is_empty(), "missing operand")?;
            match cmd {
                "rm" => Job::Rm(p.operands),
                "rmdir" => Job::Rmdir(p.operands),
                _ => Job::Stat(p.operands),
            }
        }
        "mv" => {
            let p = opts("")?;
            let [a, b] = p.operands.as_slice() else {
                return Err("mv: expected from to".into());
            };
            Job::Mv {
                from: a.clone(),
                to: b.clone(),
            }
        }
        "ln" => {
            let p = opts("s")?;
            need(!p.opts.is_empty(), "only symbolic links (-s) are supported")?;
            let [a, b] = p.operands.as_slice() else {
                return Err("ln: expected -s target path".into());
            };
            Job::Ln {
                target: a.clone(),
                path: b.clone(),
            }
        }
        "chmod" => {
            let p = opts("")?;
            let Some((mode, paths)) = p.operands.split_first() else {
                return Err("chmod: missing mode".into());
            };
            need(!paths.is_empty(), "missing file operand")?;
            Job::Chmod {
                mode: parse_mode(mode).map_err(|e| format!("chmod: {e}"))?,
                paths: paths.to_vec(),
            }
        }
        "chown" => {
            let p = opts("h")?;
            let Some((owner, paths)) = p.operands.split_first() else {
                return Err("chown: missing owner".into());
            };
            need(!paths.is_empty(), "missing file operand")?;
            let (uid, gid) = parse_owner(owner).map_err(|e| format!("chown: {e}"))?;
            Job::Chown {
                uid,
                gid,
                nofollow: !p.opts.is_empty(),
                paths: paths.to_vec(),
            }
        }
        "touch" => {
            let p = opts("")?;
            need(!p.operands.is_empty(), "missing file operand")?;
            Job::Touch(p.operands)
        }
        "df" => {
            let p = opts("")?;
            Job::Df(if p.operands.is_empty() {
                vec!["/".into()]
            } else {
                p.operands
            })
        }
        "mount" => {
            let p = opts("rt:o:")?;
            if p.opts.is_empty() && p.operands.is_empty() {
                return Ok(Job::MountList);
            }
            let [special, dir] = p.operands.as_slice() else {
                return Err("mount: expected special dir".into());
            };
            let mut ro = false;
            let mut fstype = None;
            let mut mopts = Vec::new();
            for (c, v) in p.opts {
                match (c, v) {
                    ('r', _) => ro = true,
                    ('t', Some(t)) => fstype = Some(t),
                    ('o', Some(o)) => {
                        mopts.extend(o.split(',').filter(|x| !x.is_empty()).map(String::from))
                    }
                    _ => return Err("mount: expected special dir".into()),
                }
            }
            Job::Mount {
                ro,
                fstype,
                opts: mopts,
                special: special.clone(),
                dir: dir.clone(),
            }
        }
        "umount" => {
            let p = opts("f")?;
            let [dir] = p.operands.as_slice() else {
                return Err("umount: expected dir".into());
            };
            Job::Umount {
                force: !p.opts.is_empty(),
                dir: dir.clone(),
            }
        }
        "sync" => {
            need(rest.is_empty(), "takes no arguments")?;
            Job::Sync
        }
        _ => return Err(format!("{cmd}: unknown command")),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if tool::help_requested(&args) {
        tool::print_help(&help());
    }
    let g = getopt(&args, "v").unwrap_or_else(|e| usage(&e.to_string()));
    let Some((cmd, rest)) = g.operands.split_first() else {
        usage("missing command")
    };
    tool::init_logging(prog(), tool::verbosity(g.opts.len()));
    if cmd == "fuse" {
        // Forks before it connects: its own path.
        exit(rumpfuse::cli::rumpctl_fuse(rest));
    }
    let job = parse(cmd, rest).unwrap_or_else(|e| usage_of(cmd, &e));
    let client = match Client::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", prog());
            exit(1)
        }
    };
    tracing::debug!(
        "connected to {}",
        std::env::var("RUMP_SERVER").unwrap_or_default()
    );
    let mut status = 0;
    let mut report = |r: Result<(), Fail>| {
        if let Err(Fail(m)) = r {
            eprintln!("{}: {m}", prog());
            status = 1;
        }
    };
    let c = &client;
    match job {
        Job::Ls { long, paths } => {
            for (i, path) in paths.iter().enumerate() {
                if paths.len() > 1 && i > 0 {
                    out!();
                }
                report(ls(c, path, long, paths.len() > 1));
            }
        }
        Job::Cat(paths) => {
            for path in &paths {
                report(get(c, path, "-"));
            }
        }
        Job::Put { host, path } => report(put(c, &host, &path)),
        Job::Get { path, host } => report(get(c, &path, &host)),
        Job::Cp {
            recursive,
            sources,
            target,
        } => report(cp(c, recursive, &sources, &target)),
        Job::Mkdir { parents, paths } => {
            for path in &paths {
                report(mkdir(c, path, parents));
            }
        }
        Job::Rm(paths) => {
            for path in &paths {
                report(c.unlink(path).map_err(|e| fail(path, e)));
            }
        }
        Job::Rmdir(paths) => {
            for path in &paths {
                report(c.rmdir(path).map_err(|e| fail(path, e)));
            }
        }
        Job::Mv { from, to } => report(
            c.rename(&from, &to)
                .map_err(|e| fail(&format!("rename {from} to {to}"), e)),
        ),
        Job::Ln { target, path } => report(c.symlink(&target, &path).map_err(|e| fail(&path, e))),
        Job::Chmod { mode, paths } => {
            for path in &paths {
                report(c.chmod(path, mode).map_err(|e| fail(path, e)));
            }
        }
        Job::Chown {
            uid,
            gid,
            nofollow,
            paths,
        } => {
            for path in &paths {
                let r = if nofollow {
                    c.lchown(path, uid, gid)
                } else {
                    c.chown(path, uid, gid)
                };
                report(r.map_err(|e| fail(path, e)));
            }
        }
        Job::Touch(paths) => {
            for path in &paths {
                report(touch(c, path));
            }
        }
        Job::Df(paths) => {
            out!(
                "{:<16} {:>10} {:>10} {:>10} {:>8}  Mounted on",
                "Filesystem",
                "1K-blocks",
                "Used",
                "Avail",
                "Capacity"
            );
            for path in &paths {
                report(df(c, path));
            }
        }
        Job::Stat(paths) => {
            for path in &paths {
                report(stat(c, path));
            }
        }
        Job::Mount {
            ro,
            fstype,
            opts,
            special,
            dir,
        } => report(mount(c, ro, fstype.as_deref(), &opts, &special, &dir)),
        Job::MountList => report(mount_list(c)),
        Job::Umount { force, dir } => {
            let flags = if force { MNT_FORCE } else { 0 };
            report(
                c.unmount(&dir, flags)
                    .map_err(|e| fail(&format!("umount {dir}"), e)),
            )
        }
        Job::Sync => report(c.sync().map_err(|e| fail("sync", e))),
    }
    exit(status)
}

// ---------------------------------------------------------------------------
// mount

/// Mount with a message that says why, about what: the special or the
/// mount point when one is missing (both are looked up first, since the
/// kernel's `ENOENT` does not say which), and what an unclean file system
/// (`EPERM`, as NetBSD's ext2fs answers) needs. `fstype` is NetBSD's type
/// (ext2fs when not given), `opts` the generic options (`ro`, `noatime`,
/// `sync`, `async`, `log`, ...) and the type's own (`uid=`, `norrip`, ...).
fn mount(
    c: &Client,
    ro: bool,
    fstype: Option<&str>,
    opts: &[String],
    special: &str,
    dir: &str,
) -> Result<(), Fail> {
    use netbsd_abi::mount as m;
    let ctx = format!("mount {special} on {dir}");
    let name = m::canonical_name(fstype.unwrap_or("ext2fs"));
    let Some(kind) = m::arg_kind(name) else {
        return Err(Fail(format!("{ctx}: {name}: unknown file system type")));
    };
    let mut flags = if ro { MNT_RDONLY } else { 0 };
    let mut topts = m::TypeOpts::default();
    for o in opts {
        let (k, v) = match o.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (o.as_str(), None),
        };
        if let (Some(f), None) = (m::flag_option(k), v) {
            flags |= f;
            continue;
        }
        match (k, v) {
            ("rw", None) => flags &= !MNT_RDONLY,
            _ => match topts.take(kind, k, v) {
                Ok(true) => {}
                Ok(false) => return Err(Fail(format!("{ctx}: {o}: unknown option for {name}"))),
                Err(e) => return Err(Fail(format!("{ctx}: {e}"))),
            },
        }
    }
    let ro = flags & MNT_RDONLY != 0;
    if let Err(e) = c.stat(special) {
        return Err(Fail(format!("{ctx}: {special}: {e}")));
    }
    match c.stat(dir) {
        Err(e) => return Err(Fail(format!("{ctx}: {dir}: {e}"))),
        Ok(st) if st.mode & S_IFMT != S_IFDIR => {
            return Err(Fail(format!(
                "{ctx}: {dir}: {}",
                netbsd_abi::Errno(ENOTDIR).description()
            )))
        }
        Ok(_) => {}
    }
    tracing::info!(
        "mount -t {name}{} {special} {dir}",
        if ro { " -r" } else { "" }
    );
    let r = if name == "ext2fs" && opts.is_empty() {
        c.mount_ext2(dir, flags, special)
    } else {
        // The argument structure points at the special's name, which
        // travels with the call.
        let mut spec = special.as_bytes().to_vec();
        spec.push(0);
        if special.contains('\0') {
            return Err(Fail(format!("{ctx}: NUL in the special's name")));
        }
        let data = m::build(kind, rumpclient::addr_of(&spec), &topts, 0, 0);
        c.mount_with(name, dir, flags, &data, &[&spec])
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.is_errno(EPERM) && !ro => Err(Fail(format!(
            "{ctx}: file system not clean: run fsck, or mount read-only (mount -r)"
        ))),
        Err(e) if e.is_errno(netbsd_abi::errno::EFTYPE) => Err(Fail(format!(
            "{ctx}: {e} (an ext2 feature this kernel lacks)"
        ))),
        Err(e) if e.is_errno(netbsd_abi::errno::EINVAL) => Err(Fail(format!(
            "{ctx}: {e} (not {} {name} file system, or a damaged one; the server's log says more)",
            if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            }
        ))),
        Err(e) => Err(fail(&ctx, e)),
    }
}

/// `mount` with no arguments: the kernel's mounts (NetBSD's
/// `getvfsstat(2)`), one a line as NetBSD's mount(8) shows them.
fn mount_list(c: &Client) -> Result<(), Fail> {
    use netbsd_abi::statvfs::STATVFS_SIZE;
    use rumpclient::Region;
    /// NetBSD's `SYS_getvfsstat` and `ST_WAIT`.
    const SYS_GETVFSSTAT: i32 = 356;
    const ST_WAIT: u64 = 1;
    let fail = |e: Error| Fail(format!("mount: getvfsstat: {e}"));
    let n = c
        .syscall(SYS_GETVFSSTAT, &[0, 0, ST_WAIT], &mut [])
        .map_err(fail)?[0];
    // Room for a few more, in case mounts come meanwhile.
    let want = usize::try_from(n).unwrap_or(0).clamp(1, 4096) + 4;
    let mut buf = vec![0u8; want * STATVFS_SIZE];
    let args = [rumpclient::addr_of(&buf), buf.len() as u64, ST_WAIT];
    let got = c
        .syscall(SYS_GETVFSSTAT, &args, &mut [Region::Out(&mut buf)])
        .map_err(fail)?[0];
    let got = usize::try_from(got).unwrap_or(0).min(want);
    let mut out = std::io::stdout().lock();
    for rec in buf.chunks(STATVFS_SIZE).take(got) {
        let Some(sv) = netbsd_abi::statvfs::Statvfs::decode(rec) else {
            continue;
        };
        let mut f = Vec::new();
        if sv.flag & MNT_RDONLY as u64 != 0 {
            f.push("read-only");
        }
        for (bit, what) in [
            (netbsd_abi::mount::mnt::SYNCHRONOUS, "synchronous"),
            (netbsd_abi::mount::mnt::ASYNC, "asynchronous"),
            (netbsd_abi::mount::mnt::LOG, "log"),
            (netbsd_abi::mount::mnt::NOATIME, "noatime"),
            (netbsd_abi::fcntl::MNT_LOCAL, "local"),
        ] {
            if sv.flag & bit as u64 != 0 {
                f.push(what);
            }
        }
        let line = format!(
            "{} on {} type {}{}\n",
            String::from_utf8_lossy(&sv.mntfromname),
            String::from_utf8_lossy(&sv.mntonname),
            String::from_utf8_lossy(&sv.fstypename),
            if f.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.join(", "))
            }
        );
        let _ = out.write_all(line.as_bytes());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// ls, stat

fn kind_char(mode: u32) -> char {
    use netbsd_abi::stat::*;
    match mode & S_IFMT {
        S_IFDIR => 'd',
        S_IFLNK => 'l',
        S_IFBLK => 'b',
        S_IFCHR => 'c',
        S_IFIFO => 'p',
        S_IFSOCK => 's',
        _ => '-',
    }
}

fn mode_string(mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(kind_char(mode));
    for (shift, special, lower, upper) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => lower,
            (false, true) => upper,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// `ls -l`'s time: `Mon dd hh:mm` within six months of now, else
/// `Mon dd  yyyy`, in the host's local time.
fn ls_time(sec: i64, now: i64) -> String {
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = sec as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value of that plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r writes
    // only `tm`.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return format!("{sec:>12}");
    }
    let mon = MON[tm.tm_mon.clamp(0, 11) as usize];
    if (now - sec).abs() < 182 * 86400 {
        format!("{mon} {:>2} {:02}:{:02}", tm.tm_mday, tm.tm_hour, tm.tm_min)
    } else {
        format!("{mon} {:>2}  {}", tm.tm_mday, tm.tm_year + 1900)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn ls(c: &Client, path: &str, long: bool, header: bool) -> Result<(), Fail> {
    let st = c.lstat(path).map_err(|e| fail(path, e))?;
    if st.mode & S_IFMT != S_IFDIR {
        print_entry(c, path, path, &st, long);
        return Ok(());
    }
    let fd = c
        .open(path, O_RDONLY | O_DIRECTORY, 0)
        .map_err(|e| fail(path, e))?;
    let mut names = Vec::new();
    let r = loop {
        match c.getdents(fd, CHUNK) {
            Ok(ents) if ents.is_empty() => break Ok(()),
            Ok(ents) => names.extend(
                ents.into_iter()
                    .map(|d| String::from_utf8_lossy(&d.name).into_owned()),
            ),
            Err(e) => break Err(fail(path, e)),
        }
    };
    let _ = c.close(fd);
    r?;
    names.retain(|n| n != "." && n != "..");
    names.sort();
    if header {
        out!("{path}:");
    }
    for n in names {
        let full = format!("{}/{}", path.trim_end_matches('/'), n);
        if long {
            match c.lstat(&full) {
                Ok(st) => print_entry(c, &full, &n, &st, true),
                Err(e) => eprintln!("{}: {full}: {e}", prog()),
            }
        } else {
            out!("{n}");
        }
    }
    Ok(())
}

fn print_entry(c: &Client, full: &str, name: &str, st: &Stat, long: bool) {
    if !long {
        out!("{name}");
        return;
    }
    let target = if st.is_lnk() {
        c.readlink(full)
            .map(|t| format!(" -> {}", String::from_utf8_lossy(&t)))
            .unwrap_or_default()
    } else {
        String::new()
    };
    out!(
        "{} {:>3} {:>5} {:>5} {:>10} {} {name}{target}",
        mode_string(st.mode),
        st.nlink,
        st.uid,
        st.gid,
        st.size,
        ls_time(st.mtime.sec, now())
    );
}

fn stat(c: &Client, path: &str) -> Result<(), Fail> {
    let st = c.lstat(path).map_err(|e| fail(path, e))?;
    out!(
        "{path}: {} ino {} nlink {} uid {} gid {} size {} blocks {} blksize {} mtime {}.{:09} ({})",
        mode_string(st.mode),
        st.ino,
        st.nlink,
        st.uid,
        st.gid,
        st.size,
        st.blocks,
        st.blksize,
        st.mtime.sec,
        st.mtime.nsec,
        ls_time(st.mtime.sec, now()),
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// touch, df

fn touch(c: &Client, path: &str) -> Result<(), Fail> {
    match c.utimes(path, None) {
        Err(e) if e.is_errno(ENOENT) => {
            let fd = c
                .open(path, O_WRONLY | O_CREAT, 0o644)
                .map_err(|e| fail(path, e))?;
            c.close(fd).map_err(|e| fail(path, e))
        }
        r => r.map_err(|e| fail(path, e)),
    }
}

fn df(c: &Client, path: &str) -> Result<(), Fail> {
    let v = c.statvfs(path).map_err(|e| fail(path, e))?;
    let unit = if v.frsize != 0 { v.frsize } else { v.bsize };
    let k = |blocks: u64| blocks.saturating_mul(unit) / 1024;
    let used = v.blocks.saturating_sub(v.bfree);
    // As df(1): used over what a user could have (used + available).
    let cap = match used + v.bavail {
        0 => 0,
        n => (used * 100).div_ceil(n),
    };
    let from = String::from_utf8_lossy(&v.mntfromname).into_owned();
    let on = String::from_utf8_lossy(&v.mntonname).into_owned();
    out!(
        "{:<16} {:>10} {:>10} {:>10} {:>7}%  {on}",
        if from.is_empty() { "-" } else { &from },
        k(v.blocks),
        k(used),
        k(v.bavail),
        cap
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// mkdir

fn mkdir(c: &Client, path: &str, parents: bool) -> Result<(), Fail> {
    if !parents {
        return c.mkdir(path, 0o755).map_err(|e| fail(path, e));
    }
    let mut so_far = String::new();
    for part in path.split('/') {
        if part.is_empty() {
            so_far.push('/');
            continue;
        }
        if !so_far.is_empty() && !so_far.ends_with('/') {
            so_far.push('/');
        }
        so_far.push_str(part);
        match c.mkdir(&so_far, 0o755) {
            Ok(()) => {}
            Err(Error::Errno(e)) if e.0 == EEXIST => {}
            Err(e) => return Err(fail(&so_far, e)),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// put, get: whole files, with a progress bar on a terminal

/// A progress bar on standard error when it is a terminal; hidden (and
/// free) otherwise.
fn progress(len: Option<u64>, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let style = match len {
        Some(_) => indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        ),
        None => indicatif::ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}"),
    };
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    if let Ok(s) = style {
        bar.set_style(s.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Copy everything from `input` into the kernel's `fd`, counting on `bar`.
fn pump_in(
    c: &Client,
    input: &mut dyn Read,
    host: &str,
    fd: i32,
    path: &str,
    bar: &indicatif::ProgressBar,
) -> Result<u64, Fail> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(host_fail(host, e)),
        };
        let mut done = 0;
        while done < n {
            match c.write(fd, &buf[done..n]) {
                Ok(0) => return Err(Fail(format!("{path}: short write"))),
                Ok(w) => done += w,
                Err(e) => return Err(fail(path, e)),
            }
        }
        total += n as u64;
        bar.inc(n as u64);
    }
}

/// Copy the kernel's `fd` into `out`, counting on `bar`.
fn pump_out(
    c: &Client,
    fd: i32,
    path: &str,
    out: &mut dyn Write,
    host: &str,
    bar: &indicatif::ProgressBar,
) -> Result<u64, Fail> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        match c.read(fd, &mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                if let Err(e) = out.write_all(&buf[..n]) {
                    if host == "-" {
                        tool::stdout_failed(prog(), &e);
                    }
                    return Err(host_fail(host, e));
                }
                total += n as u64;
                bar.inc(n as u64);
            }
            Err(e) => return Err(fail(path, e)),
        }
    }
}

fn put(c: &Client, host: &str, path: &str) -> Result<(), Fail> {
    let (mut input, len): (Box<dyn Read>, Option<u64>) = if host == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let f = std::fs::File::open(host).map_err(|e| host_fail(host, e))?;
        let len = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
        (Box::new(f), len)
    };
    let fd = c
        .open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        .map_err(|e| fail(path, e))?;
    let bar = progress(len, path);
    let r = pump_in(c, &mut *input, host, fd, path, &bar);
    bar.finish_and_clear();
    let closed = c.close(fd).map_err(|e| fail(path, e));
    let n = r?;
    closed?;
    tracing::info!("put {host} {path}: {n} bytes");
    Ok(())
}

fn get(c: &Client, path: &str, host: &str) -> Result<(), Fail> {
    let fd = c.open(path, O_RDONLY, 0).map_err(|e| fail(path, e))?;
    let r = (|| {
        let mut out: Box<dyn Write> = if host == "-" {
            Box::new(std::io::stdout().lock())
        } else {
            Box::new(std::fs::File::create(host).map_err(|e| host_fail(host, e))?)
        };
        let len = c
            .fstat(fd)
            .ok()
            .filter(|s| s.mode & S_IFMT == S_IFREG)
            .map(|s| s.size as u64);
        // Standard output is the data: no bar over it when it is the
        // terminal too.
        let bar = if host == "-" && std::io::stdout().is_terminal() {
            indicatif::ProgressBar::hidden()
        } else {
            progress(len, path)
        };
        let n = pump_out(c, fd, path, &mut *out, host, &bar);
        bar.finish_and_clear();
        let n = n?;
        if let Err(e) = out.flush() {
            if host == "-" {
                tool::stdout_failed(prog(), &e);
            }
            return Err(host_fail(host, e));
        }
        tracing::info!("get {path} {host}: {n} bytes");
        Ok(())
    })();
    let _ = c.close(fd);
    r
}

// ---------------------------------------------------------------------------
// cp [-R]: host <-> kernel (and kernel <-> kernel)

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Link,
    Other,
}

struct Meta {
    kind: Kind,
    mode: u32,
}

fn kind_of(mode: u32) -> Kind {
    match mode & S_IFMT {
        S_IFREG => Kind::File,
        S_IFDIR => Kind::Dir,
        S_IFLNK => Kind::Link,
        _ => Kind::Other,
    }
}

/// The few operations `cp` needs, on either side.
struct Side<'a> {
    c: &'a Client,
}

impl Side<'_> {
    fn lstat(&self, l: &Loc) -> Result<Option<Meta>, Fail> {
        match l {
            Loc::Kernel(p) => match self.c.lstat(p) {
                Ok(st) => Ok(Some(Meta {
                    kind: kind_of(st.mode),
                    mode: st.mode & 0o7777,
                })),
                Err(e) if e.is_errno(ENOENT) => Ok(None),
                Err(e) => Err(fail(&l.show(), e)),
            },
            Loc::Host(p) => match std::fs::symlink_metadata(p) {
                Ok(m) => {
                    use std::os::unix::fs::PermissionsExt;
                    let ft = m.file_type();
                    let kind = if ft.is_file() {
                        Kind::File
                    } else if ft.is_dir() {
                        Kind::Dir
                    } else if ft.is_symlink() {
                        Kind::Link
                    } else {
                        Kind::Other
                    };
                    Ok(Some(Meta {
                        kind,
                        mode: m.permissions().mode() & 0o7777,
                    }))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(host_fail(p, e)),
            },
        }
    }

    /// Like lstat, but follows a final symlink (for the target).
    fn is_dir(&self, l: &Loc) -> bool {
        match l {
            Loc::Kernel(p) => self.c.stat(p).is_ok_and(|s| s.mode & S_IFMT == S_IFDIR),
            Loc::Host(p) => std::path::Path::new(p).is_dir(),
        }
    }

    fn list(&self, l: &Loc) -> Result<Vec<String>, Fail> {
        let mut names: Vec<String> = match l {
            Loc::Kernel(p) => self
                .c
                .read_dir(p)
                .map_err(|e| fail(&l.show(), e))?
                .into_iter()
                .map(|d| String::from_utf8_lossy(&d.name).into_owned())
                .collect(),
            Loc::Host(p) => std::fs::read_dir(p)
                .map_err(|e| host_fail(p, e))?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_, _>>()
                .map_err(|e| host_fail(p, e))?,
        };
        names.retain(|n| n != "." && n != "..");
        names.sort();
        Ok(names)
    }

    fn mkdir(&self, l: &Loc, mode: u32) -> Result<(), Fail> {
        match l {
            Loc::Kernel(p) => match self.c.mkdir(p, mode) {
                Err(e) if e.is_errno(EEXIST) && self.is_dir(l) => Ok(()),
                r => r.map_err(|e| fail(&l.show(), e)),
            },
            Loc::Host(p) => {
                use std::os::unix::fs::DirBuilderExt;
                match std::fs::DirBuilder::new().mode(mode).create(p) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && self.is_dir(l) => {
                        Ok(())
                    }
                    r => r.map_err(|e| host_fail(p, e)),
                }
            }
        }
    }

    fn readlink(&self, l: &Loc) -> Result<Vec<u8>, Fail> {
        match l {
            Loc::Kernel(p) => self.c.readlink(p).map_err(|e| fail(&l.show(), e)),
            Loc::Host(p) => {
                use std::os::unix::ffi::OsStrExt;
                std::fs::read_link(p)
                    .map(|t| t.as_os_str().as_bytes().to_vec())
                    .map_err(|e| host_fail(p, e))
            }
        }
    }

    fn symlink(&self, target: &[u8], l: &Loc) -> Result<(), Fail> {
        match l {
            Loc::Kernel(p) => self.c.symlink(target, p).map_err(|e| fail(&l.show(), e)),
            Loc::Host(p) => {
                use std::os::unix::ffi::OsStrExt;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), p)
                    .map_err(|e| host_fail(p, e))
            }
        }
    }

    fn chmod(&self, l: &Loc, mode: u32) -> Result<(), Fail> {
        match l {
            Loc::Kernel(p) => self.c.chmod(p, mode).map_err(|e| fail(&l.show(), e)),
            Loc::Host(p) => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| host_fail(p, e))
            }
        }
    }

    /// Copy the regular file `from` to `to` (created or truncated).
    fn copy_file(&self, from: &Loc, to: &Loc, mode: u32) -> Result<u64, Fail> {
        let c = self.c;
        match (from, to) {
            (Loc::Host(h), Loc::Kernel(k)) => {
                let mut f = std::fs::File::open(h).map_err(|e| host_fail(h, e))?;
                let fd = c
                    .open(k, O_WRONLY | O_CREAT | O_TRUNC, mode)
                    .map_err(|e| fail(&to.show(), e))?;
                let r = pump_in(
                    c,
                    &mut f,
                    h,
                    fd,
                    &to.show(),
                    &indicatif::ProgressBar::hidden(),
                );
                let closed = c.close(fd).map_err(|e| fail(&to.show(), e));
                let n = r?;
                closed?;
                Ok(n)
            }
            (Loc::Kernel(k), Loc::Host(h)) => {
                use std::os::unix::fs::OpenOptionsExt;
                let fd = c.open(k, O_RDONLY, 0).map_err(|e| fail(&from.show(), e))?;
                let r = (|| {
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(mode)
                        .open(h)
                        .map_err(|e| host_fail(h, e))?;
                    let n = pump_out(
                        c,
                        fd,
                        &from.show(),
                        &mut f,
                        h,
                        &indicatif::ProgressBar::hidden(),
                    )?;
                    f.flush().map_err(|e| host_fail(h, e))?;
                    Ok(n)
                })();
                let _ = c.close(fd);
                r
            }
            (Loc::Kernel(a), Loc::Kernel(b)) => {
                let src = c.open(a, O_RDONLY, 0).map_err(|e| fail(&from.show(), e))?;
                let r = (|| {
                    let dst = c
                        .open(b, O_WRONLY | O_CREAT | O_TRUNC, mode)
                        .map_err(|e| fail(&to.show(), e))?;
                    let mut rd = KernelReader {
                        c,
                        fd: src,
                        path: from.show(),
                        err: None,
                    };
                    let r = pump_in(
                        c,
                        &mut rd,
                        &from.show(),
                        dst,
                        &to.show(),
                        &indicatif::ProgressBar::hidden(),
                    );
                    let closed = c.close(dst).map_err(|e| fail(&to.show(), e));
                    if let Some(f) = rd.err.take() {
                        return Err(f);
                    }
                    let n = r?;
                    closed?;
                    Ok(n)
                })();
                let _ = c.close(src);
                r
            }
            (Loc::Host(_), Loc::Host(_)) => {
                Err(Fail(format!("{}: host to host: use cp(1)", to.show())))
            }
        }
    }
}

/// A kernel file as a `Read`, for kernel-to-kernel copies.
struct KernelReader<'a> {
    c: &'a Client,
    fd: i32,
    path: String,
    err: Option<Fail>,
}

impl Read for KernelReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.c.read(self.fd, buf).map_err(|e| {
            let io = std::io::Error::other(e.to_string());
            self.err = Some(fail(&self.path, e));
            io
        })
    }
}

fn basename(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/";
    }
    t.rsplit('/').next().unwrap_or(t)
}

fn cp(c: &Client, recursive: bool, sources: &[Loc], target: &Loc) -> Result<(), Fail> {
    let side = Side { c };
    let into_dir = side.is_dir(target);
    if sources.len() > 1 && !into_dir {
        return Err(Fail(format!(
            "{}: not a directory (copying several sources)",
            target.show()
        )));
    }
    let mut first_err = None;
    for src in sources {
        let dst = if into_dir {
            target.join(basename(src.path()))
        } else {
            target.clone()
        };
        if let Err(f) = cp_one(&side, recursive, src, &dst) {
            eprintln!("{}: {}", prog(), f.0);
            first_err.get_or_insert(Fail(String::new()));
        }
    }
    match first_err {
        // Already reported, one line each.
        Some(_) => exit(1),
        None => Ok(()),
    }
}

fn cp_one(side: &Side, recursive: bool, src: &Loc, dst: &Loc) -> Result<(), Fail> {
    let Some(m) = side.lstat(src)? else {
        return Err(Fail(format!(
            "{}: {}",
            src.show(),
            netbsd_abi::Errno(ENOENT).description()
        )));
    };
    match m.kind {
        Kind::File => {
            let n = side.copy_file(src, dst, m.mode)?;
            // An existing target keeps its mode otherwise.
            side.chmod(dst, m.mode)?;
            tracing::info!("{} -> {}: {n} bytes", src.show(), dst.show());
            Ok(())
        }
        Kind::Dir if !recursive => Err(Fail(format!(
            "{}: is a directory (not copied; use cp -R)",
            src.show()
        ))),
        Kind::Dir => {
            // Make it writable while filling it; its own mode at the end.
            side.mkdir(dst, m.mode | 0o700)?;
            tracing::info!("{} -> {}/", src.show(), dst.show());
            let mut failed = None;
            for name in side.list(src)? {
                if let Err(f) = cp_one(side, recursive, &src.join(&name), &dst.join(&name)) {
                    eprintln!("{}: {}", prog(), f.0);
                    failed = Some(());
                }
            }
            side.chmod(dst, m.mode)?;
            match failed {
                Some(()) => Err(Fail(format!("{}: not all of it was copied", src.show()))),
                None => Ok(()),
            }
        }
        Kind::Link => {
            let t = side.readlink(src)?;
            side.symlink(&t, dst)?;
            tracing::info!("{} -> {} (symbolic link)", src.show(), dst.show());
            Ok(())
        }
        Kind::Other => Err(Fail(format!(
            "{}: not a regular file, directory or symbolic link (not copied)",
            src.show()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_are_checked_before_connecting() {
        assert!(parse("frobnicate", &[]).is_err());
        assert!(parse("chmod", &v(&["8x", "/f"]))
            .unwrap_err()
            .contains("invalid file mode"));
        assert!(parse("chmod", &v(&["644"])).is_err());
        assert!(matches!(
            parse("chmod", &v(&["0644", "/f"])),
            Ok(Job::Chmod { mode: 0o644, .. })
        ));
        assert!(parse("cp", &v(&["a", "b"]))
            .unwrap_err()
            .contains("leading ':'"));
        assert!(parse("cp", &v(&[":a"])).is_err());
        assert!(parse("put", &v(&["a"])).is_err());
        assert!(parse("sync", &v(&["x"])).is_err());
        assert!(parse("mount", &v(&["-x", "a", "b"])).is_err());
        assert!(matches!(parse("mount", &[]), Ok(Job::MountList)));
        assert!(parse("mount", &v(&["-t", "ffs", "/dk"])).is_err());
        match parse(
            "mount",
            &v(&["-t", "msdos", "-o", "uid=5,ro", "-o", "log", "/dk", "/m"]),
        ) {
            Ok(Job::Mount {
                ro: false,
                fstype: Some(t),
                opts,
                ..
            }) => {
                assert_eq!(t, "msdos");
                assert_eq!(opts, ["uid=5", "ro", "log"]);
            }
            _ => panic!("mount -t -o not parsed"),
        }
        assert!(parse("ln", &v(&["a", "b"])).is_err());
        assert!(matches!(
            parse("chown", &v(&["5:7", "/f"])),
            Ok(Job::Chown {
                uid: 5,
                gid: 7,
                nofollow: false,
                ..
            })
        ));
        assert!(matches!(
            parse("chown", &v(&["-h", ":7", "/f"])),
            Ok(Job::Chown {
                uid: u32::MAX,
                gid: 7,
                nofollow: true,
                ..
            })
        ));
        assert!(parse("chown", &v(&["root", "/f"]))
            .unwrap_err()
            .contains("no user database"));
        assert!(parse("chown", &v(&[":", "/f"])).is_err());
        assert!(parse("touch", &[]).is_err());
        assert!(matches!(parse("df", &[]), Ok(Job::Df(p)) if p == vec!["/".to_string()]));
    }

    #[test]
    fn cp_locations() {
        assert_eq!(Loc::parse(":/mnt/x"), Loc::Kernel("/mnt/x".into()));
        assert_eq!(Loc::parse(":"), Loc::Kernel(".".into()));
        assert_eq!(Loc::parse("dir/x"), Loc::Host("dir/x".into()));
        assert_eq!(Loc::parse(":/mnt/").join("a"), Loc::Kernel("/mnt/a".into()));
        assert_eq!(basename("/a/b/"), "b");
        assert_eq!(basename("b"), "b");
    }

    #[test]
    fn modes_read_like_ls() {
        assert_eq!(mode_string(S_IFDIR | 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(S_IFREG | 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(S_IFDIR | 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(S_IFREG | 0o2644), "-rw-r-Sr--");
    }

    #[test]
    fn ls_times() {
        let t = now();
        assert_eq!(ls_time(t, t).len(), "Jan  2 15:04".len());
        assert!(ls_time(t - 400 * 86400, t).ends_with(char::is_numeric));
    }
}
