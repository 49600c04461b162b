//! rumpctl: work with files in a running rump kernel (`RUMP_SERVER`).
//!
//! rumpctl [-v] command [args]; the commands are in [`COMMANDS`] and in
//! rumpctl(1). Arguments are checked before the connection is made; every
//! failure is one line, `rumpctl: object: reason`, and exit status 1.
//!
//! `cp` names kernel paths with a leading `:` (`rumpctl cp -R dir :/mnt`);
//! every other command takes kernel paths as they are. `fuse` mounts the
//! kernel's tree (or a subtree) on the host through FUSE.

use std::ffi::{OsStr, OsString};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::exit;
use std::sync::OnceLock;

use netbsd_abi::errno::{EEXIST, ENOENT, ENOTDIR, EPERM};
use netbsd_abi::fcntl::{MNT_FORCE, MNT_RDONLY, O_CREAT, O_DIRECTORY, O_RDONLY, O_TRUNC, O_WRONLY};
use netbsd_abi::stat::{Stat, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use rumpclient::{Client, Error, Syscalls};
use rumpfuse::cli::FuseArgs;
use rumprun::getopt::{getopt, getopt_with, text, Order};
use rumprun::tool::{self, io_text, show};
use std::path::Path;

const CHUNK: usize = 64 * 1024;

/// Each command and its arguments, as the usage and `--help` show them.
const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "ls",
        "[-al] [path ...]",
        "list directories (-a: dot files too; -l: mode, links, owner, size, time)",
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
        "[-Rp] source ... target",
        "copy between host and kernel; kernel paths start with ':' (-p: keep times)",
    ),
    ("mkdir", "[-p] path ...", "make directories"),
    (
        "rm",
        "[-fr] path ...",
        "remove files (-r: directories and what is in them; -f: no error if missing)",
    ),
    ("rmdir", "path ...", "remove empty directories"),
    ("mv", "from ... to", "rename, or move into the directory to"),
    (
        "ln",
        "[-s] target path",
        "make a hard link (-s: a symbolic link)",
    ),
    (
        "chmod",
        "[-R] mode path ...",
        "change permission bits (octal, or symbolic as u+x,go-w; -R: recursively)",
    ),
    (
        "chown",
        "[-hR] owner[:group] path ...",
        "change owner and group (numeric ids; -h: the link itself; -R: recursively)",
    ),
    ("mkfifo", "[-m mode] path ...", "make FIFOs"),
    (
        "mknod",
        "[-m mode] path b|c major minor | path p",
        "make a block or character device node, or a FIFO",
    ),
    (
        "touch",
        "path ...",
        "set access and modification times to now, creating missing files",
    ),
    (
        "df",
        "[-h] [path ...]",
        "free space of the file systems holding the paths (default /; -h: K, M, G)",
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
        "sysctl",
        "[-a] [name[=value] ...]",
        "read kernel variables by name, or set them (vfs.sync.filedelay=10)",
    ),
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

/// `what` is a name (any bytes) or a phrase naming one.
fn fail(what: &(impl AsRef<OsStr> + ?Sized), e: Error) -> Fail {
    Fail(format!("{}: {e}", show(what.as_ref().as_bytes())))
}

fn host_fail(what: &(impl AsRef<OsStr> + ?Sized), e: std::io::Error) -> Fail {
    Fail(format!(
        "{}: {}",
        show(what.as_ref().as_bytes()),
        io_text(&e)
    ))
}

/// A name for a message.
fn sh(p: &(impl AsRef<OsStr> + ?Sized)) -> String {
    show(p.as_ref().as_bytes())
}

/// Write bytes to standard output (names as they are); a reader that went
/// away ends the program quietly.
fn out_bytes(parts: &[&[u8]]) {
    let mut o = std::io::stdout().lock();
    for p in parts {
        if let Err(e) = o.write_all(p) {
            tool::stdout_failed(prog(), &e);
        }
    }
}

/// A `cp` operand: a kernel path (`:path`) or a host path, as bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Loc {
    Kernel(OsString),
    Host(OsString),
}

impl Loc {
    fn parse(s: &OsStr) -> Loc {
        match s.as_bytes().strip_prefix(b":") {
            Some(p) => Loc::Kernel(if p.is_empty() {
                ".".into()
            } else {
                OsString::from_vec(p.to_vec())
            }),
            None => Loc::Host(s.to_os_string()),
        }
    }
    fn path(&self) -> &OsStr {
        match self {
            Loc::Kernel(p) | Loc::Host(p) => p,
        }
    }
    fn join(&self, name: &OsStr) -> Loc {
        let j = |p: &OsStr| OsString::from_vec(join(p.as_bytes(), name.as_bytes()));
        match self {
            Loc::Kernel(p) => Loc::Kernel(j(p)),
            Loc::Host(p) => Loc::Host(j(p)),
        }
    }
    /// For messages: kernel paths keep their ':'.
    fn show(&self) -> String {
        match self {
            Loc::Kernel(p) => format!(":{}", sh(p)),
            Loc::Host(p) => sh(p),
        }
    }
}

/// `dir/name`, with one '/' between.
fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut d = dir;
    while d.len() > 1 && d.ends_with(b"/") {
        d = &d[..d.len() - 1];
    }
    let mut v = d.to_vec();
    if !v.ends_with(b"/") {
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

/// What to do, checked before connecting.
#[derive(Debug)]
enum Job {
    Ls {
        long: bool,
        all: bool,
        paths: Vec<OsString>,
    },
    Cat(Vec<OsString>),
    Put {
        host: OsString,
        path: OsString,
    },
    Get {
        path: OsString,
        host: OsString,
    },
    Cp {
        recursive: bool,
        preserve: bool,
        sources: Vec<Loc>,
        target: Loc,
    },
    Mkdir {
        parents: bool,
        paths: Vec<OsString>,
    },
    Rm {
        recursive: bool,
        force: bool,
        paths: Vec<OsString>,
    },
    Rmdir(Vec<OsString>),
    Mv {
        from: Vec<OsString>,
        to: OsString,
    },
    Ln {
        symbolic: bool,
        target: OsString,
        path: OsString,
    },
    Chmod {
        mode: Mode,
        recursive: bool,
        paths: Vec<OsString>,
    },
    Chown {
        uid: u32,
        gid: u32,
        nofollow: bool,
        recursive: bool,
        paths: Vec<OsString>,
    },
    Mknod {
        mode: u32,
        kind: u32,
        dev: u64,
        paths: Vec<OsString>,
    },
    Touch(Vec<OsString>),
    Df {
        human: bool,
        paths: Vec<OsString>,
    },
    Stat(Vec<OsString>),
    Mount {
        ro: bool,
        fstype: Option<String>,
        opts: Vec<String>,
        special: OsString,
        dir: OsString,
    },
    MountList,
    Umount {
        force: bool,
        dir: OsString,
    },
    Sync,
    Sysctl {
        all: bool,
        items: Vec<String>,
    },
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

/// This process's umask (read by setting it, and put straight back).
fn host_umask() -> u32 {
    // SAFETY: umask(2) has no preconditions and cannot fail.
    let m = unsafe { libc::umask(0) };
    // SAFETY: as above; this restores the mask just read.
    unsafe { libc::umask(m) };
    m as u32
}

/// Whether option `c` was given.
fn has(p: &rumprun::getopt::Parsed, c: char) -> bool {
    p.opts.iter().any(|(o, _)| *o == c)
}

/// NetBSD's `makedev(major, minor)`.
fn makedev(major: u32, minor: u32) -> u64 {
    (((major << 8) & 0x000f_ff00) | ((minor << 12) & 0xfff0_0000) | (minor & 0xff)) as u64
}

/// NetBSD's `major(dev)`, `minor(dev)`.
fn major_minor(dev: u64) -> (u64, u64) {
    (
        (dev & 0x000f_ff00) >> 8,
        ((dev & 0xfff0_0000) >> 12) | (dev & 0xff),
    )
}

/// A chmod mode: octal, or symbolic clauses as chmod(1) takes them
/// (`u+x`, `go-w`, `a=r`, `+x`, `u=rwx,g=rx`, `X`, `s`, `t`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    Octal(u32),
    Symbolic(Vec<(u32, u8, Vec<u8>)>),
}

impl Mode {
    fn parse(s: &str) -> Result<Mode, String> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return parse_mode(s).map(Mode::Octal);
        }
        let bad =
            || format!("{s}: invalid file mode (octal such as 644, or symbolic such as u+x,go-w)");
        let mut clauses = Vec::new();
        for clause in s.split(',') {
            let b = clause.as_bytes();
            let mut i = 0;
            let mut who = 0u32;
            while i < b.len() && b"ugoa".contains(&b[i]) {
                who |= match b[i] {
                    b'u' => 0o4700,
                    b'g' => 0o2070,
                    b'o' => 0o1007,
                    _ => 0o7777,
                };
                i += 1;
            }
            if i == b.len() {
                return Err(bad());
            }
            while i < b.len() {
                let op = b[i];
                if !b"+-=".contains(&op) {
                    return Err(bad());
                }
                i += 1;
                let start = i;
                while i < b.len() && b"rwxXst".contains(&b[i]) {
                    i += 1;
                }
                clauses.push((who, op, b[start..i].to_vec()));
            }
        }
        if clauses.is_empty() {
            return Err(bad());
        }
        Ok(Mode::Symbolic(clauses))
    }

    /// The new permission bits for a file with `old` bits; `dir` for `X`;
    /// `umask` limits clauses that name no one (as chmod(1) does).
    fn apply(&self, old: u32, dir: bool, umask: u32) -> u32 {
        let clauses = match self {
            Mode::Octal(m) => return *m,
            Mode::Symbolic(c) => c,
        };
        let mut m = old & 0o7777;
        for (who, op, perms) in clauses {
            let (who, mask) = if *who == 0 {
                (0o7777, !umask)
            } else {
                (*who, !0)
            };
            let mut bits = 0u32;
            for p in perms {
                bits |= match p {
                    b'r' => 0o444,
                    b'w' => 0o222,
                    b'x' => 0o111,
                    b'X' if dir || m & 0o111 != 0 => 0o111,
                    b's' => 0o6000,
                    b't' => 0o1000,
                    _ => 0,
                };
            }
            let bits = bits & who & mask;
            match op {
                b'+' => m |= bits,
                b'-' => m &= !bits,
                _ => m = (m & !(who & 0o7777)) | bits,
            }
        }
        m
    }
}

/// Parse a command line (after the global options) into a [`Job`]: every
/// check that needs no kernel happens here.
fn parse(cmd: &str, rest: &[OsString]) -> Result<Job, String> {
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
            let p = opts("al")?;
            let (long, all) = (has(&p, 'l'), has(&p, 'a'));
            let paths = if p.operands.is_empty() {
                vec![".".into()]
            } else {
                p.operands
            };
            Job::Ls { long, all, paths }
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
            let p = opts("Rrp")?;
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
                recursive: has(&p, 'R') || has(&p, 'r'),
                preserve: has(&p, 'p'),
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
        "rm" => {
            let p = opts("fRr")?;
            let force = has(&p, 'f');
            need(force || !p.operands.is_empty(), "missing operand")?;
            Job::Rm {
                recursive: has(&p, 'r') || has(&p, 'R'),
                force,
                paths: p.operands,
            }
        }
        "rmdir" | "stat" => {
            let p = opts("")?;
            need(!p.operands.is_empty(), "missing operand")?;
            match cmd {
                "rmdir" => Job::Rmdir(p.operands),
                _ => Job::Stat(p.operands),
            }
        }
        "mv" => {
            let p = opts("")?;
            let Some((to, from)) = p.operands.split_last() else {
                return Err("mv: missing file operand".into());
            };
            need(!from.is_empty(), "missing destination file operand")?;
            Job::Mv {
                from: from.to_vec(),
                to: to.clone(),
            }
        }
        "ln" => {
            let p = opts("s")?;
            let [a, b] = p.operands.as_slice() else {
                return Err("ln: expected target path".into());
            };
            Job::Ln {
                symbolic: has(&p, 's'),
                target: a.clone(),
                path: b.clone(),
            }
        }
        "chmod" => {
            let p = opts("R")?;
            let Some((mode, paths)) = p.operands.split_first() else {
                return Err("chmod: missing mode".into());
            };
            need(!paths.is_empty(), "missing file operand")?;
            Job::Chmod {
                mode: Mode::parse(text("", mode)?).map_err(|e| format!("chmod: {e}"))?,
                recursive: has(&p, 'R'),
                paths: paths.to_vec(),
            }
        }
        "mkfifo" | "mknod" => {
            let p = opts("m:")?;
            let mut mode = 0o666;
            for (_, v) in &p.opts {
                let v = text("-m ", v.as_deref().unwrap_or_default())?;
                mode = match Mode::parse(v).map_err(|e| format!("{cmd}: {e}"))? {
                    Mode::Octal(m) => m,
                    sym => sym.apply(0o666, false, 0),
                };
            }
            if cmd == "mkfifo" {
                need(!p.operands.is_empty(), "missing operand")?;
                Job::Mknod {
                    mode,
                    kind: netbsd_abi::stat::S_IFIFO,
                    dev: 0,
                    paths: p.operands,
                }
            } else {
                let ops: Vec<&str> = p
                    .operands
                    .iter()
                    .skip(1)
                    .map(|o| text("", o))
                    .collect::<Result<_, _>>()?;
                let Some(path) = p.operands.first() else {
                    return Err("mknod: missing operand".into());
                };
                let num = |s: &str| {
                    s.parse::<u32>()
                        .map_err(|_| format!("mknod: {s}: invalid device number"))
                };
                let (kind, dev) = match ops.as_slice() {
                    ["p"] => (netbsd_abi::stat::S_IFIFO, 0),
                    [t @ ("b" | "c" | "u"), maj, min] => (
                        if *t == "b" {
                            netbsd_abi::stat::S_IFBLK
                        } else {
                            netbsd_abi::stat::S_IFCHR
                        },
                        makedev(num(maj)?, num(min)?),
                    ),
                    [t, ..] if !matches!(*t, "b" | "c" | "u" | "p") => {
                        return Err(format!("mknod: invalid device type '{t}'"))
                    }
                    _ => return Err("mknod: expected path b|c major minor, or path p".into()),
                };
                Job::Mknod {
                    mode,
                    kind,
                    dev,
                    paths: vec![path.clone()],
                }
            }
        }
        "chown" => {
            let p = opts("hR")?;
            let Some((owner, paths)) = p.operands.split_first() else {
                return Err("chown: missing owner".into());
            };
            need(!paths.is_empty(), "missing file operand")?;
            let (uid, gid) = parse_owner(text("", owner)?).map_err(|e| format!("chown: {e}"))?;
            Job::Chown {
                uid,
                gid,
                nofollow: has(&p, 'h'),
                recursive: has(&p, 'R'),
                paths: paths.to_vec(),
            }
        }
        "touch" => {
            let p = opts("")?;
            need(!p.operands.is_empty(), "missing file operand")?;
            Job::Touch(p.operands)
        }
        "df" => {
            let p = opts("h")?;
            let human = has(&p, 'h');
            Job::Df {
                human,
                paths: if p.operands.is_empty() {
                    vec!["/".into()]
                } else {
                    p.operands
                },
            }
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
                    ('t', Some(t)) => {
                        fstype = Some(
                            t.into_string()
                                .map_err(|_| "mount: -t: a type name is text".to_string())?,
                        )
                    }
                    ('o', Some(o)) => {
                        let o = o
                            .into_string()
                            .map_err(|_| "mount: -o: options are text".to_string())?;
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
        "sysctl" => {
            // -w is NetBSD's older spelling of name=value; accepted.
            let p = opts("anw")?;
            let all = has(&p, 'a') || p.operands.is_empty();
            let items = p
                .operands
                .iter()
                .map(|o| text("", o).map(str::to_string))
                .collect::<Result<Vec<_>, _>>()?;
            Job::Sysctl { all, items }
        }
        _ => return Err(format!("{cmd}: unknown command")),
    })
}

/// `fuse [-fr] [-o ro|rw] [path] mountpoint`, checked as [`parse`] checks
/// the others. Options may stand anywhere, as the FUSE mount tools take
/// them (`fuse path mnt -o ro`).
fn parse_fuse(rest: &[OsString]) -> Result<FuseArgs, String> {
    let p = getopt_with(rest, "fro:", Order::Permute).map_err(|e| format!("fuse: {e}"))?;
    // The flags, then each -o in order: `-r -o rw` is read-write.
    let mut read_only = has(&p, 'r');
    for (c, v) in &p.opts {
        let ('o', Some(v)) = (c, v) else { continue };
        let v = text("-o ", v).map_err(|e| format!("fuse: {e}"))?;
        for o in v.split(',').filter(|x| !x.is_empty()) {
            match o {
                "ro" => read_only = true,
                "rw" => read_only = false,
                _ => return Err(format!("fuse: unknown option {o}")),
            }
        }
    }
    let (path, mnt) = match p.operands.as_slice() {
        [m] => (b"/".to_vec(), m),
        [path, m] => (path.as_bytes().to_vec(), m),
        _ => return Err("fuse: expected [path] mountpoint".into()),
    };
    Ok(FuseArgs {
        path,
        mountpoint: mnt.into(),
        read_only,
        foreground: has(&p, 'f'),
    })
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    tool::help_and_version(prog(), &args, help);
    let g = getopt(&args, "v").unwrap_or_else(|e| usage(&e.to_string()));
    let Some((cmd, rest)) = g.operands.split_first() else {
        usage("missing command")
    };
    let cmd = cmd
        .to_str()
        .unwrap_or_else(|| usage(&format!("{}: unknown command", sh(cmd))));
    tool::init_logging(prog(), tool::verbosity(g.opts.len()));
    if cmd == "fuse" {
        // Forks before it connects: its own path.
        let a = parse_fuse(rest).unwrap_or_else(|e| usage_of(cmd, &e));
        exit(rumpfuse::cli::rumpctl_fuse(prog(), &a));
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
    // New files and directories get modes as the host's commands give
    // them: less this process's umask.
    let umask_now = host_umask();
    if let Err(e) = client.umask(umask_now) {
        tracing::debug!("umask {umask_now:o}: {e}");
    }
    let mut status = 0;
    let mut report = |r: Result<(), Fail>| {
        if let Err(Fail(m)) = r {
            // Empty: already said, one line per failure.
            if !m.is_empty() {
                eprintln!("{}: {m}", prog());
            }
            status = 1;
        }
    };
    let c = &client;
    match job {
        Job::Ls { long, all, paths } => {
            // As ls(1): the file operands first, together, then each
            // directory under its name, a blank line between.
            let mut dirs = Vec::new();
            let mut files = 0;
            let mut paths = paths;
            paths.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for path in &paths {
                match c.lstat(path.as_bytes()) {
                    Ok(st) if st.is_dir() => dirs.push(path),
                    Ok(st) => {
                        print_entry(c, path.as_bytes(), path.as_bytes(), &st, long);
                        files += 1;
                    }
                    Err(e) => report(Err(fail(path, e))),
                }
            }
            let header = paths.len() > 1;
            for (i, path) in dirs.iter().enumerate() {
                if i > 0 || files > 0 {
                    out!();
                }
                report(ls(c, path, long, all, header));
            }
        }
        Job::Cat(paths) => {
            for path in &paths {
                report(get(c, path, OsStr::new("-")));
            }
        }
        Job::Put { host, path } => report(put(c, &host, &path)),
        Job::Get { path, host } => report(get(c, &path, &host)),
        Job::Cp {
            recursive,
            preserve,
            sources,
            target,
        } => report(cp(c, recursive, preserve, &sources, &target)),
        Job::Mkdir { parents, paths } => {
            for path in &paths {
                report(mkdir(c, path, parents));
            }
        }
        Job::Rm {
            recursive,
            force,
            paths,
        } => {
            for path in &paths {
                report(rm(c, path.as_bytes(), recursive, force));
            }
        }
        Job::Rmdir(paths) => {
            for path in &paths {
                report(c.rmdir(path.as_bytes()).map_err(|e| fail(path, e)));
            }
        }
        Job::Mv { from, to } => {
            // Into a directory (as mv(1)) when `to` is one, or several
            // sources are given.
            let into = c.stat(to.as_bytes()).is_ok_and(|st| st.is_dir());
            if from.len() > 1 && !into {
                report(Err(Fail(format!(
                    "target '{}': {}",
                    sh(&to),
                    netbsd_abi::Errno(ENOTDIR).description()
                ))));
            } else {
                for f in &from {
                    let dst = if into {
                        join(to.as_bytes(), basename(f).as_bytes())
                    } else {
                        to.as_bytes().to_vec()
                    };
                    report(c.rename(f.as_bytes(), &dst).map_err(|e| {
                        fail(&format!("cannot move '{}' to '{}'", sh(f), show(&dst)), e)
                    }));
                }
            }
        }
        Job::Ln {
            symbolic,
            target,
            path,
        } => {
            // Into a directory under the target's name, as ln(1).
            let path = if c.stat(path.as_bytes()).is_ok_and(|st| st.is_dir()) {
                OsString::from_vec(join(path.as_bytes(), basename(&target).as_bytes()))
            } else {
                path
            };
            let r = if symbolic {
                c.symlink(target.as_bytes(), path.as_bytes())
            } else {
                c.link(target.as_bytes(), path.as_bytes())
            };
            report(r.map_err(|e| {
                fail(
                    &format!(
                        "failed to create {}link '{}'",
                        if symbolic { "symbolic " } else { "hard " },
                        sh(&path)
                    ),
                    e,
                )
            }))
        }
        Job::Chmod {
            mode,
            recursive,
            paths,
        } => {
            let umask = host_umask();
            for path in &paths {
                report(walk(c, path.as_bytes(), recursive, &mut |p, st| {
                    // Links met on the way are not followed (chmod -R).
                    if st.is_lnk() {
                        return Ok(());
                    }
                    let new = mode.apply(st.mode, st.is_dir(), umask);
                    c.chmod(p, new).map_err(|e| fail(OsStr::from_bytes(p), e))
                }));
            }
        }
        Job::Mknod {
            mode,
            kind,
            dev,
            paths,
        } => {
            for path in &paths {
                let r = if kind == netbsd_abi::stat::S_IFIFO {
                    c.mkfifo(path.as_bytes(), mode)
                } else {
                    c.mknod(path.as_bytes(), kind | mode, dev)
                };
                report(r.map_err(|e| fail(path, e)));
            }
        }
        Job::Chown {
            uid,
            gid,
            nofollow,
            recursive,
            paths,
        } => {
            for path in &paths {
                report(walk(c, path.as_bytes(), recursive, &mut |p, st| {
                    // Recursively, links are changed themselves, never
                    // followed (chown -R's default).
                    let r = if nofollow || (recursive && st.is_lnk()) {
                        c.lchown(p, uid, gid)
                    } else {
                        c.chown(p, uid, gid)
                    };
                    r.map_err(|e| fail(OsStr::from_bytes(p), e))
                }));
            }
        }
        Job::Touch(paths) => {
            for path in &paths {
                report(touch(c, path));
            }
        }
        Job::Df { human, paths } => {
            out!(
                "{:<16} {:>10} {:>10} {:>10} {:>8}  Mounted on",
                "Filesystem",
                if human { "Size" } else { "1K-blocks" },
                "Used",
                "Avail",
                "Capacity"
            );
            for path in &paths {
                report(df(c, path, human));
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
            let r = c.unmount(dir.as_bytes(), flags);
            report(match r {
                // What umount(8) says of a directory nothing is mounted on.
                Err(e)
                    if e.is_errno(netbsd_abi::errno::EINVAL) && c.stat(dir.as_bytes()).is_ok() =>
                {
                    Err(Fail(format!("umount {}: not mounted", sh(&dir))))
                }
                r => r.map_err(|e| fail(&format!("umount {}", sh(&dir)), e)),
            })
        }
        Job::Sync => report(c.sync().map_err(|e| fail("sync", e))),
        Job::Sysctl { all, items } => {
            if all && items.is_empty() {
                report(sysctl_show(c, &[], ""));
            }
            for item in &items {
                report(sysctl_item(c, item));
            }
        }
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
    special: &OsStr,
    dir: &OsStr,
) -> Result<(), Fail> {
    use netbsd_abi::mount as m;
    let (special, dir) = (special.as_bytes(), dir.as_bytes());
    let ctx = format!("mount {} on {}", show(special), show(dir));
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
        return Err(Fail(format!("{ctx}: {}: {e}", show(special))));
    }
    match c.stat(dir) {
        Err(e) => return Err(Fail(format!("{ctx}: {}: {e}", show(dir)))),
        Ok(st) if st.mode & S_IFMT != S_IFDIR => {
            return Err(Fail(format!(
                "{ctx}: {}: {}",
                show(dir),
                netbsd_abi::Errno(ENOTDIR).description()
            )))
        }
        Ok(_) => {}
    }
    tracing::info!(
        "mount -t {name}{} {} {}",
        if ro { " -r" } else { "" },
        show(special),
        show(dir)
    );
    let r = if name == "ext2fs" && opts.is_empty() {
        c.mount_ext2(dir, flags, special)
    } else {
        // The argument structure points at the special's name, which
        // travels with the call.
        let mut spec = special.to_vec();
        spec.push(0);
        if special.contains(&0) {
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

fn ls(c: &Client, path: &OsStr, long: bool, all: bool, header: bool) -> Result<(), Fail> {
    let st = c.lstat(path.as_bytes()).map_err(|e| fail(path, e))?;
    if st.mode & S_IFMT != S_IFDIR {
        print_entry(c, path.as_bytes(), path.as_bytes(), &st, long);
        return Ok(());
    }
    let fd = c
        .open(path.as_bytes(), O_RDONLY | O_DIRECTORY, 0)
        .map_err(|e| fail(path, e))?;
    let mut names: Vec<Vec<u8>> = Vec::new();
    let r = loop {
        match c.getdents(fd, CHUNK) {
            Ok(ents) if ents.is_empty() => break Ok(()),
            Ok(ents) => names.extend(ents.into_iter().map(|d| d.name)),
            Err(e) => break Err(fail(path, e)),
        }
    };
    let _ = c.close(fd);
    r?;
    names.retain(|n| n != b"." && n != b".." && (all || !n.starts_with(b".")));
    names.sort();
    if header {
        out_bytes(&[path.as_bytes(), b":\n"]);
    }
    for n in names {
        let full = join(path.as_bytes(), &n);
        if long {
            match c.lstat(&full) {
                Ok(st) => print_entry(c, &full, &n, &st, true),
                Err(e) => eprintln!("{}: {}: {e}", prog(), show(&full)),
            }
        } else {
            out_bytes(&[&n, b"\n"]);
        }
    }
    Ok(())
}

fn print_entry(c: &Client, full: &[u8], name: &[u8], st: &Stat, long: bool) {
    if !long {
        out_bytes(&[name, b"\n"]);
        return;
    }
    let target = if st.is_lnk() {
        c.readlink(full).ok()
    } else {
        None
    };
    // A device shows its major and minor numbers where others show size.
    let size = match st.mode & S_IFMT {
        netbsd_abi::stat::S_IFBLK | netbsd_abi::stat::S_IFCHR => {
            let (ma, mi) = major_minor(st.rdev);
            format!("{ma}, {mi}")
        }
        _ => st.size.to_string(),
    };
    let head = format!(
        "{} {:>3} {:>5} {:>5} {:>10} {} ",
        mode_string(st.mode),
        st.nlink,
        st.uid,
        st.gid,
        size,
        ls_time(st.mtime.sec, now())
    );
    match target {
        Some(t) => out_bytes(&[head.as_bytes(), name, b" -> ", &t, b"\n"]),
        None => out_bytes(&[head.as_bytes(), name, b"\n"]),
    }
}

fn stat(c: &Client, path: &OsStr) -> Result<(), Fail> {
    let st = c.lstat(path.as_bytes()).map_err(|e| fail(path, e))?;
    out!(
        "{}: {} ino {} nlink {} uid {} gid {} size {} blocks {} blksize {} mtime {}.{:09} ({})",
        sh(path),
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
// sysctl: names resolved as sysctl(8) does, through CTL_QUERY

/// One node of a `CTL_QUERY` answer: number, name, type.
struct SysctlNode {
    num: i32,
    name: String,
    ty: u32,
}

fn sysctl_children(c: &Client, path: &[i32]) -> Result<Vec<SysctlNode>, Error> {
    use netbsd_abi::reboot::{CTL_QUERY, SYSCTLNODE_SIZE, SYSCTL_NAMELEN};
    let mut q = path.to_vec();
    q.push(CTL_QUERY);
    let raw = c.sysctl(&q)?;
    Ok(raw
        .chunks_exact(SYSCTLNODE_SIZE)
        .map(|b| {
            let flags = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let name = &b[8..8 + SYSCTL_NAMELEN];
            let end = name.iter().position(|&x| x == 0).unwrap_or(name.len());
            SysctlNode {
                num: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
                name: String::from_utf8_lossy(&name[..end]).into_owned(),
                ty: flags & 0xf,
            }
        })
        .collect())
}

/// `kern.hostname` → its number path and type, found level by level.
fn sysctl_resolve(c: &Client, name: &str) -> Result<(Vec<i32>, u32), Fail> {
    let mut path = Vec::new();
    let mut ty = netbsd_abi::reboot::CTLTYPE_NODE;
    for part in name.split('.') {
        if ty != netbsd_abi::reboot::CTLTYPE_NODE {
            return Err(Fail(format!(
                "{name}: {}",
                netbsd_abi::Errno(ENOTDIR).description()
            )));
        }
        let kids = sysctl_children(c, &path).map_err(|e| fail(name, e))?;
        let Some(n) = kids.into_iter().find(|n| n.name == part) else {
            return Err(Fail(format!("{name}: no such node ('{part}')")));
        };
        path.push(n.num);
        ty = n.ty;
    }
    Ok((path, ty))
}

/// The value of a leaf as sysctl(8) prints it.
fn sysctl_value(raw: &[u8], ty: u32) -> String {
    use netbsd_abi::reboot::{CTLTYPE_INT, CTLTYPE_QUAD, CTLTYPE_STRING};
    match ty {
        CTLTYPE_INT if raw.len() >= 4 => {
            i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]).to_string()
        }
        CTLTYPE_QUAD if raw.len() >= 8 => {
            i64::from_le_bytes(raw[..8].try_into().unwrap_or([0; 8])).to_string()
        }
        CTLTYPE_STRING => {
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            show(&raw[..end])
        }
        _ => raw.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// Print `prefix` (a node, or the top for "") and everything under it.
fn sysctl_show(c: &Client, path: &[i32], prefix: &str) -> Result<(), Fail> {
    let what = if prefix.is_empty() { "sysctl" } else { prefix };
    for n in sysctl_children(c, path).map_err(|e| fail(what, e))? {
        let name = if prefix.is_empty() {
            n.name.clone()
        } else {
            format!("{prefix}.{}", n.name)
        };
        let mut p = path.to_vec();
        p.push(n.num);
        if n.ty == netbsd_abi::reboot::CTLTYPE_NODE {
            sysctl_show(c, &p, &name)?;
        } else {
            let v = c.sysctl(&p).map_err(|e| fail(&name, e))?;
            out!("{name} = {}", sysctl_value(&v, n.ty));
        }
    }
    Ok(())
}

/// `name` (show it, or all under it) or `name=value` (set it, and say
/// `name: old -> new` as sysctl -w does).
fn sysctl_item(c: &Client, item: &str) -> Result<(), Fail> {
    use netbsd_abi::reboot::{CTLTYPE_INT, CTLTYPE_NODE, CTLTYPE_QUAD, CTLTYPE_STRING};
    let (name, new) = match item.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (item, None),
    };
    let (path, ty) = sysctl_resolve(c, name)?;
    if ty == CTLTYPE_NODE {
        if new.is_some() {
            return Err(Fail(format!(
                "{name}: {}",
                netbsd_abi::Errno(netbsd_abi::errno::EISDIR).description()
            )));
        }
        return sysctl_show(c, &path, name);
    }
    let old = c.sysctl(&path).map_err(|e| fail(name, e))?;
    let Some(v) = new else {
        out!("{name} = {}", sysctl_value(&old, ty));
        return Ok(());
    };
    let bytes = match ty {
        CTLTYPE_INT => v
            .trim()
            .parse::<i32>()
            .map(|n| n.to_le_bytes().to_vec())
            .map_err(|_| Fail(format!("{name}={v}: invalid number")))?,
        CTLTYPE_QUAD => v
            .trim()
            .parse::<i64>()
            .map(|n| n.to_le_bytes().to_vec())
            .map_err(|_| Fail(format!("{name}={v}: invalid number")))?,
        CTLTYPE_STRING => v.as_bytes().to_vec(),
        _ => return Err(Fail(format!("{name}: cannot set a node of this type"))),
    };
    c.sysctl_write(&path, &bytes).map_err(|e| fail(name, e))?;
    let now = c.sysctl(&path).map_err(|e| fail(name, e))?;
    out!(
        "{name}: {} -> {}",
        sysctl_value(&old, ty),
        sysctl_value(&now, ty)
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// rm [-fr], and the walk of chmod -R and chown -R

/// The names in kernel directory `path`, without `.` and `..`, in order.
fn names_in(c: &Client, path: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let mut v: Vec<Vec<u8>> = c
        .read_dir(path)?
        .into_iter()
        .map(|d| d.name)
        .filter(|n| n != b"." && n != b"..")
        .collect();
    v.sort();
    Ok(v)
}

/// Say a failure met inside a tree now, and go on with the rest.
fn said(f: Fail) -> Fail {
    if !f.0.is_empty() {
        eprintln!("{}: {}", prog(), f.0);
    }
    Fail(String::new())
}

fn rm(c: &Client, path: &[u8], recursive: bool, force: bool) -> Result<(), Fail> {
    let cannot = |e: &dyn std::fmt::Display| Fail(format!("cannot remove '{}': {e}", show(path)));
    let st = match c.lstat(path) {
        Ok(st) => st,
        Err(e) if force && e.is_errno(ENOENT) => return Ok(()),
        Err(e) => return Err(cannot(&e)),
    };
    if !st.is_dir() {
        return c.unlink(path).map_err(|e| cannot(&e));
    }
    if !recursive {
        return Err(cannot(
            &netbsd_abi::Errno(netbsd_abi::errno::EISDIR).description(),
        ));
    }
    let mut failed = None;
    for n in names_in(c, path).map_err(|e| cannot(&e))? {
        if let Err(f) = rm(c, &join(path, &n), true, force) {
            failed = Some(said(f));
        }
    }
    match failed {
        // A directory whose contents stayed cannot go either: one message.
        Some(f) => Err(f),
        None => c.rmdir(path).map_err(|e| cannot(&e)),
    }
}

/// What [`walk`] does to each file.
type Visit<'a> = dyn FnMut(&[u8], &Stat) -> Result<(), Fail> + 'a;

/// Call `f` on `path` (following a final symbolic link, as chmod(1) and
/// chown(1) do on their operands) and, with `recursive`, on everything
/// under it, symbolic links included but not followed.
fn walk(c: &Client, path: &[u8], recursive: bool, f: &mut Visit<'_>) -> Result<(), Fail> {
    let st = c
        .stat(path)
        .or_else(|_| c.lstat(path))
        .map_err(|e| fail(OsStr::from_bytes(path), e))?;
    walk_at(c, path, st, recursive, f)
}

fn walk_at(
    c: &Client,
    path: &[u8],
    st: Stat,
    recursive: bool,
    f: &mut Visit<'_>,
) -> Result<(), Fail> {
    f(path, &st)?;
    if !recursive || !st.is_dir() {
        return Ok(());
    }
    let mut failed = None;
    for n in names_in(c, path).map_err(|e| fail(OsStr::from_bytes(path), e))? {
        let p = join(path, &n);
        let r = c
            .lstat(&p)
            .map_err(|e| fail(OsStr::from_bytes(&p), e))
            .and_then(|st| walk_at(c, &p, st, true, f));
        if let Err(e) = r {
            failed = Some(said(e));
        }
    }
    failed.map_or(Ok(()), Err)
}

// ---------------------------------------------------------------------------
// touch, df

fn touch(c: &Client, path: &OsStr) -> Result<(), Fail> {
    let path_b = path.as_bytes();
    match c.utimes(path_b, None) {
        Err(e) if e.is_errno(ENOENT) => {
            let fd = c
                .open(path_b, O_WRONLY | O_CREAT, 0o644)
                .map_err(|e| fail(path, e))?;
            c.close(fd).map_err(|e| fail(path, e))
        }
        r => r.map_err(|e| fail(path, e)),
    }
}

/// df -h's sizes: powers of 1024 with a unit, one decimal below 10,
/// rounded up, as GNU df shows them.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut v = bytes as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if v < 10.0 {
        let t = (v * 10.0).ceil() / 10.0;
        if t < 10.0 {
            return format!("{t:.1}{}", UNITS[u]);
        }
        v = t;
    }
    let n = v.ceil();
    if n >= 1024.0 && u + 1 < UNITS.len() {
        return format!("1.0{}", UNITS[u + 1]);
    }
    format!("{n:.0}{}", UNITS[u])
}

fn df(c: &Client, path: &OsStr, human_sizes: bool) -> Result<(), Fail> {
    let v = c.statvfs(path.as_bytes()).map_err(|e| fail(path, e))?;
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
    let n = |blocks: u64| {
        if human_sizes {
            human(blocks.saturating_mul(unit))
        } else {
            k(blocks).to_string()
        }
    };
    out!(
        "{:<16} {:>10} {:>10} {:>10} {:>7}%  {on}",
        if from.is_empty() { "-" } else { &from },
        n(v.blocks),
        n(used),
        n(v.bavail),
        cap
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// mkdir

fn mkdir(c: &Client, path: &OsStr, parents: bool) -> Result<(), Fail> {
    let path = path.as_bytes();
    if !parents {
        return c
            .mkdir(path, 0o755)
            .map_err(|e| fail(OsStr::from_bytes(path), e));
    }
    let mut so_far: Vec<u8> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        if part.is_empty() {
            so_far.push(b'/');
            continue;
        }
        if !so_far.is_empty() && !so_far.ends_with(b"/") {
            so_far.push(b'/');
        }
        so_far.extend_from_slice(part);
        match c.mkdir(&so_far, 0o755) {
            Ok(()) => {}
            Err(Error::Errno(e)) if e.0 == EEXIST => {}
            Err(e) => return Err(fail(OsStr::from_bytes(&so_far), e)),
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

fn put(c: &Client, host: &OsStr, path: &OsStr) -> Result<(), Fail> {
    use std::os::unix::fs::PermissionsExt;
    let (mut input, len, mode): (Box<dyn Read>, Option<u64>, u32) = if host == "-" {
        (Box::new(std::io::stdin().lock()), None, 0o644)
    } else {
        let f = std::fs::File::open(host).map_err(|e| host_fail(host, e))?;
        let md = f.metadata().map_err(|e| host_fail(host, e))?;
        if md.is_dir() {
            return Err(host_fail(
                host,
                std::io::Error::from_raw_os_error(libc::EISDIR),
            ));
        }
        let len = Some(md.len()).filter(|_| md.is_file());
        // A new file gets the host file's mode, as cp(1) gives it.
        (Box::new(f), len, md.permissions().mode() & 0o7777)
    };
    let fd = c
        .open(path.as_bytes(), O_WRONLY | O_CREAT | O_TRUNC, mode)
        .map_err(|e| fail(path, e))?;
    let bar = progress(len, &sh(path));
    let r = pump_in(c, &mut *input, &sh(host), fd, &sh(path), &bar);
    bar.finish_and_clear();
    let closed = c.close(fd).map_err(|e| fail(path, e));
    let n = r?;
    closed?;
    tracing::info!("put {} {}: {n} bytes", sh(host), sh(path));
    Ok(())
}

fn get(c: &Client, path: &OsStr, host: &OsStr) -> Result<(), Fail> {
    let fd = c
        .open(path.as_bytes(), O_RDONLY, 0)
        .map_err(|e| fail(path, e))?;
    let r = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let st = c.fstat(fd).map_err(|e| fail(path, e))?;
        // A directory is refused before any host file is made.
        if st.is_dir() {
            return Err(fail(
                path,
                Error::Errno(netbsd_abi::Errno(netbsd_abi::errno::EISDIR)),
            ));
        }
        let mut out: Box<dyn Write> = if host == "-" {
            Box::new(std::io::stdout().lock())
        } else {
            // A new file gets the kernel file's mode (less the umask).
            Box::new(
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(st.mode & 0o7777)
                    .open(host)
                    .map_err(|e| host_fail(host, e))?,
            )
        };
        let len = Some(st.size as u64).filter(|_| st.mode & S_IFMT == S_IFREG);
        // Standard output is the data: no bar over it when it is the
        // terminal too.
        let bar = if host == "-" && std::io::stdout().is_terminal() {
            indicatif::ProgressBar::hidden()
        } else {
            progress(len, &sh(path))
        };
        let n = pump_out(c, fd, &sh(path), &mut *out, &sh(host), &bar);
        bar.finish_and_clear();
        let n = n?;
        if let Err(e) = out.flush() {
            if host == "-" {
                tool::stdout_failed(prog(), &e);
            }
            return Err(host_fail(host, e));
        }
        tracing::info!("get {} {}: {n} bytes", sh(path), sh(host));
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
    /// Access and modification times: (seconds, nanoseconds) each.
    times: [(i64, i64); 2],
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
            Loc::Kernel(p) => match self.c.lstat(p.as_bytes()) {
                Ok(st) => Ok(Some(Meta {
                    kind: kind_of(st.mode),
                    mode: st.mode & 0o7777,
                    times: [(st.atime.sec, st.atime.nsec), (st.mtime.sec, st.mtime.nsec)],
                })),
                Err(e) if e.is_errno(ENOENT) => Ok(None),
                Err(e) => Err(fail(&l.show(), e)),
            },
            Loc::Host(p) => match std::fs::symlink_metadata(p) {
                Ok(m) => {
                    use std::os::unix::fs::{MetadataExt, PermissionsExt};
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
                        times: [(m.atime(), m.atime_nsec()), (m.mtime(), m.mtime_nsec())],
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
            Loc::Kernel(p) => self
                .c
                .stat(p.as_bytes())
                .is_ok_and(|s| s.mode & S_IFMT == S_IFDIR),
            Loc::Host(p) => std::path::Path::new(p).is_dir(),
        }
    }

    fn list(&self, l: &Loc) -> Result<Vec<OsString>, Fail> {
        let mut names: Vec<OsString> = match l {
            Loc::Kernel(p) => self
                .c
                .read_dir(p.as_bytes())
                .map_err(|e| fail(&l.show(), e))?
                .into_iter()
                .map(|d| OsString::from_vec(d.name))
                .collect(),
            Loc::Host(p) => std::fs::read_dir(p)
                .map_err(|e| host_fail(p, e))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .map_err(|e| host_fail(p, e))?,
        };
        names.retain(|n| n != "." && n != "..");
        names.sort();
        Ok(names)
    }

    fn mkdir(&self, l: &Loc, mode: u32) -> Result<(), Fail> {
        match l {
            Loc::Kernel(p) => match self.c.mkdir(p.as_bytes(), mode) {
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
            Loc::Kernel(p) => self
                .c
                .readlink(p.as_bytes())
                .map_err(|e| fail(&l.show(), e)),
            Loc::Host(p) => {
                use std::os::unix::ffi::OsStrExt;
                std::fs::read_link(p)
                    .map(|t| t.as_os_str().as_bytes().to_vec())
                    .map_err(|e| host_fail(p, e))
            }
        }
    }

    /// A symbolic link at `l`; one already there is replaced (as GNU
    /// `cp -R` does a second time), anything else is not.
    fn symlink(&self, target: &[u8], l: &Loc) -> Result<(), Fail> {
        match self.symlink_once(target, l) {
            Err(f)
                if matches!(
                    self.lstat(l),
                    Ok(Some(Meta {
                        kind: Kind::Link,
                        ..
                    }))
                ) =>
            {
                let removed = match l {
                    Loc::Kernel(p) => self.c.unlink(p.as_bytes()).is_ok(),
                    Loc::Host(p) => std::fs::remove_file(p).is_ok(),
                };
                if removed {
                    self.symlink_once(target, l)
                } else {
                    Err(f)
                }
            }
            r => r,
        }
    }

    /// Set `l`'s access and modification times (`cp -p`); a symbolic
    /// link's own.
    fn set_times(&self, l: &Loc, t: [(i64, i64); 2]) -> Result<(), Fail> {
        match l {
            Loc::Kernel(p) => {
                let ts = |(sec, nsec)| netbsd_abi::stat::Timespec { sec, nsec };
                self.c
                    .utimens(p.as_bytes(), [ts(t[0]), ts(t[1])], false)
                    .map_err(|e| fail(&l.show(), e))
            }
            Loc::Host(p) => {
                use nix::sys::stat::{utimensat, UtimensatFlags};
                use nix::sys::time::TimeSpec as NixTs;
                let ts = |(sec, nsec): (i64, i64)| NixTs::new(sec, nsec);
                utimensat(
                    None,
                    Path::new(p),
                    &ts(t[0]),
                    &ts(t[1]),
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(|e| host_fail(p, std::io::Error::from(e)))
            }
        }
    }

    fn symlink_once(&self, target: &[u8], l: &Loc) -> Result<(), Fail> {
        match l {
            Loc::Kernel(p) => self
                .c
                .symlink(target, p.as_bytes())
                .map_err(|e| fail(&l.show(), e)),
            Loc::Host(p) => {
                use std::os::unix::ffi::OsStrExt;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), p)
                    .map_err(|e| host_fail(p, e))
            }
        }
    }

    fn chmod(&self, l: &Loc, mode: u32) -> Result<(), Fail> {
        match l {
            Loc::Kernel(p) => self
                .c
                .chmod(p.as_bytes(), mode)
                .map_err(|e| fail(&l.show(), e)),
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
                    .open(k.as_bytes(), O_WRONLY | O_CREAT | O_TRUNC, mode)
                    .map_err(|e| fail(&to.show(), e))?;
                let r = pump_in(
                    c,
                    &mut f,
                    &sh(h),
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
                let fd = c
                    .open(k.as_bytes(), O_RDONLY, 0)
                    .map_err(|e| fail(&from.show(), e))?;
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
                        &sh(h),
                        &indicatif::ProgressBar::hidden(),
                    )?;
                    f.flush().map_err(|e| host_fail(h, e))?;
                    Ok(n)
                })();
                let _ = c.close(fd);
                r
            }
            (Loc::Kernel(a), Loc::Kernel(b)) => {
                let src = c
                    .open(a.as_bytes(), O_RDONLY, 0)
                    .map_err(|e| fail(&from.show(), e))?;
                let r = (|| {
                    let dst = c
                        .open(b.as_bytes(), O_WRONLY | O_CREAT | O_TRUNC, mode)
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

fn basename(p: &OsStr) -> &OsStr {
    let mut t = p.as_bytes();
    while t.ends_with(b"/") {
        t = &t[..t.len() - 1];
    }
    if t.is_empty() {
        return OsStr::new("/");
    }
    OsStr::from_bytes(t.rsplit(|&b| b == b'/').next().unwrap_or(t))
}

fn cp(
    c: &Client,
    recursive: bool,
    preserve: bool,
    sources: &[Loc],
    target: &Loc,
) -> Result<(), Fail> {
    let side = Side { c };
    let into_dir = side.is_dir(target);
    // `cp f dir/` where dir/ is not a directory: what cp(1) says.
    if !into_dir
        && target.path().as_bytes().ends_with(b"/")
        && sources.iter().any(|s| {
            !matches!(
                side.lstat(s),
                Ok(Some(Meta {
                    kind: Kind::Dir,
                    ..
                }))
            )
        })
    {
        return Err(Fail(format!(
            "cannot create regular file '{}': {}",
            target.show(),
            netbsd_abi::Errno(ENOTDIR).description()
        )));
    }
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
        if let Err(f) = cp_one(&side, recursive, preserve, src, &dst) {
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

fn cp_one(side: &Side, recursive: bool, preserve: bool, src: &Loc, dst: &Loc) -> Result<(), Fail> {
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
            if preserve {
                side.set_times(dst, m.times)?;
            }
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
                if let Err(f) = cp_one(
                    side,
                    recursive,
                    preserve,
                    &src.join(&name),
                    &dst.join(&name),
                ) {
                    said(f);
                    failed = Some(());
                }
            }
            side.chmod(dst, m.mode)?;
            if preserve {
                side.set_times(dst, m.times)?;
            }
            match failed {
                Some(()) => Err(Fail(format!("{}: not all of it was copied", src.show()))),
                None => Ok(()),
            }
        }
        Kind::Link => {
            let t = side.readlink(src)?;
            side.symlink(&t, dst)?;
            if preserve {
                side.set_times(dst, m.times)?;
            }
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

    fn v(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
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
            Ok(Job::Chmod {
                mode: Mode::Octal(0o644),
                ..
            })
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
        assert!(parse("ln", &v(&["a"])).is_err());
        assert!(matches!(
            parse("ln", &v(&["a", "b"])),
            Ok(Job::Ln {
                symbolic: false,
                ..
            })
        ));
        assert!(parse("mknod", &v(&["/d", "x", "1", "2"])).is_err());
        assert!(matches!(
            parse("mknod", &v(&["/d", "b", "1", "2"])),
            Ok(Job::Mknod { dev, .. }) if major_minor(dev) == (1, 2)
        ));
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
        assert!(
            matches!(parse("df", &[]), Ok(Job::Df { paths, human: false }) if paths == v(&["/"]))
        );
    }

    #[test]
    fn fuse_arguments_anywhere() {
        let a = parse_fuse(&v(&["/mnt", "m", "-o", "ro", "-f"])).unwrap();
        assert_eq!(
            a,
            FuseArgs {
                path: b"/mnt".to_vec(),
                mountpoint: "m".into(),
                read_only: true,
                foreground: true,
            }
        );
        let a = parse_fuse(&v(&["m"])).unwrap();
        assert_eq!(
            (a.path.as_slice(), a.read_only, a.foreground),
            (&b"/"[..], false, false)
        );
        assert!(!parse_fuse(&v(&["-r", "-o", "rw", "m"])).unwrap().read_only);
        assert!(parse_fuse(&v(&["-ro", "rw,ro", "m"])).unwrap().read_only);
        assert_eq!(
            parse_fuse(&v(&["-o", "bogus", "m"])).unwrap_err(),
            "fuse: unknown option bogus"
        );
        assert_eq!(
            parse_fuse(&v(&["m", "-x"])).unwrap_err(),
            "fuse: unknown option -- x"
        );
        assert!(parse_fuse(&v(&["a", "b", "c"])).is_err());
        assert!(parse_fuse(&[]).is_err());
        // Kernel paths and mount points are bytes; -o values are text.
        let odd = OsString::from_vec(b"/d\xff".to_vec());
        let a = parse_fuse(&[odd.clone(), odd.clone()]).unwrap();
        assert_eq!(a.path, b"/d\xff");
        assert_eq!(a.mountpoint.as_os_str(), odd);
        assert_eq!(
            parse_fuse(&[OsString::from("-o"), odd, "m".into()]).unwrap_err(),
            "fuse: -o /d\\xff: not valid UTF-8"
        );
    }

    #[test]
    fn symbolic_modes_as_chmod() {
        let m = |s: &str, old: u32| Mode::parse(s).unwrap().apply(old, false, 0o022);
        assert_eq!(m("u+x", 0o644), 0o744);
        assert_eq!(m("go-w", 0o666), 0o644);
        assert_eq!(m("a=r,u+w", 0o777), 0o644);
        assert_eq!(m("+x", 0o644), 0o755);
        assert_eq!(m("=rw", 0o777), 0o644);
        assert_eq!(m("o=", 0o777), 0o770);
        assert_eq!(m("u+s", 0o755), 0o4755);
        assert_eq!(m("+X", 0o644), 0o644);
        assert_eq!(Mode::parse("+X").unwrap().apply(0o644, true, 0), 0o755);
        assert_eq!(m("0700", 0o644), 0o700);
        assert!(Mode::parse("u").is_err());
        assert!(Mode::parse("X").is_err());
        assert!(Mode::parse("z+x").is_err());
        assert!(Mode::parse("").is_err());
        assert!(Mode::parse("999").is_err());
    }

    #[test]
    fn df_human_sizes() {
        assert_eq!(human(0), "0");
        assert_eq!(human(1023), "1023");
        assert_eq!(human(1024), "1.0K");
        assert_eq!(human(1536), "1.5K");
        assert_eq!(human(10 * 1024), "10K");
        assert_eq!(human(64484 * 1024), "63M");
        assert_eq!(human((1 << 30) - 1), "1.0G");
    }

    #[test]
    fn cp_locations() {
        let l = |s: &str| Loc::parse(OsStr::new(s));
        assert_eq!(l(":/mnt/x"), Loc::Kernel("/mnt/x".into()));
        assert_eq!(l(":"), Loc::Kernel(".".into()));
        assert_eq!(l("dir/x"), Loc::Host("dir/x".into()));
        assert_eq!(
            l(":/mnt/").join(OsStr::new("a")),
            Loc::Kernel("/mnt/a".into())
        );
        assert_eq!(basename(OsStr::new("/a/b/")), "b");
        assert_eq!(basename(OsStr::new("b")), "b");
        assert_eq!(basename(OsStr::new("/")), "/");
        let odd = OsStr::from_bytes(b":d/\xff\xfe");
        assert_eq!(
            Loc::parse(odd),
            Loc::Kernel(OsString::from_vec(b"d/\xff\xfe".to_vec()))
        );
        assert_eq!(basename(odd).as_bytes(), b"\xff\xfe");
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
