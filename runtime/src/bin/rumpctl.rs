//! rumpctl: work with files in a running rump kernel (`RUMP_SERVER`).
//!
//! rumpctl ls [-l] [path ...]      list directories
//! rumpctl cat path ...            copy files to standard output
//! rumpctl put hostfile path       copy a host file into the kernel ("-": stdin)
//! rumpctl get path hostfile       copy a kernel file to the host ("-": stdout)
//! rumpctl mkdir [-p] path ...     make directories
//! rumpctl rm path ...             remove files
//! rumpctl rmdir path ...          remove empty directories
//! rumpctl mv from to              rename
//! rumpctl ln -s target path       make a symbolic link
//! rumpctl stat path ...           show inode details
//! rumpctl mount [-r] special dir  mount an ext2 drive (type ext2fs)
//! rumpctl umount [-f] dir         unmount
//! rumpctl sync                    flush the kernel's caches to the host
//! rumpctl fuse [-o ro] [path] mnt mount the kernel's tree on the host (FUSE)

use std::io::{Read, Write};
use std::process::exit;

use netbsd_abi::fcntl::{MNT_FORCE, MNT_RDONLY, O_CREAT, O_DIRECTORY, O_RDONLY, O_TRUNC, O_WRONLY};
use netbsd_abi::stat::{Stat, S_IFMT};
use rumpclient::{Client, Error};
use rumprun::getopt::getopt;

const PROG: &str = "rumpctl";
const CHUNK: usize = 64 * 1024;

fn usage() -> ! {
    eprintln!(
        "usage: {PROG} ls [-l] [path ...] | cat path ... | put hostfile path | get path hostfile\n\
         \x20      | mkdir [-p] path ... | rm path ... | rmdir path ... | mv from to | ln -s target path\n\
         \x20      | stat path ... | mount [-r] special dir | umount [-f] dir | sync\n\
         \x20      | fuse [-f] [-o ro] [path] mountpoint"
    );
    exit(1)
}

/// Failures carry the operand they concern, for `rumpctl: path: reason`.
struct Fail(String);

impl From<(&str, Error)> for Fail {
    fn from((what, e): (&str, Error)) -> Fail {
        Fail(format!("{what}: {e}"))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else { usage() };
    if cmd == "fuse" {
        // Forks before it connects: its own path.
        exit(rumpfuse::cli::rumpctl_fuse(rest));
    }
    let client = match Client::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{PROG}: {e}");
            exit(1)
        }
    };
    let mut status = 0;
    let mut report = |r: Result<(), Fail>| {
        if let Err(Fail(m)) = r {
            eprintln!("{PROG}: {m}");
            status = 1;
        }
    };
    let opts = |spec: &str| match getopt(rest, spec) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{PROG} {cmd}: {e}");
            usage()
        }
    };
    match cmd.as_str() {
        "ls" => {
            let p = opts("l");
            let long = !p.opts.is_empty();
            let paths = if p.operands.is_empty() { vec![".".to_string()] } else { p.operands };
            for path in &paths {
                report(ls(&client, path, long, paths.len() > 1));
            }
        }
        "cat" if !rest.is_empty() => {
            for path in rest {
                report(get(&client, path, "-"));
            }
        }
        "put" if rest.len() == 2 => report(put(&client, &rest[0], &rest[1])),
        "get" if rest.len() == 2 => report(get(&client, &rest[0], &rest[1])),
        "mkdir" => {
            let p = opts("p");
            if p.operands.is_empty() {
                usage()
            }
            for path in &p.operands {
                report(mkdir(&client, path, !p.opts.is_empty()));
            }
        }
        "rm" if !rest.is_empty() => {
            for path in rest {
                report(client.unlink(path).map_err(|e| Fail::from((path.as_str(), e))));
            }
        }
        "rmdir" if !rest.is_empty() => {
            for path in rest {
                report(client.rmdir(path).map_err(|e| Fail::from((path.as_str(), e))));
            }
        }
        "mv" if rest.len() == 2 => {
            report(client.rename(&rest[0], &rest[1]).map_err(|e| Fail::from((rest[0].as_str(), e))))
        }
        "ln" if rest.len() == 3 && rest[0] == "-s" => {
            report(client.symlink(&rest[1], &rest[2]).map_err(|e| Fail::from((rest[2].as_str(), e))))
        }
        "stat" if !rest.is_empty() => {
            for path in rest {
                report(stat(&client, path));
            }
        }
        "mount" => {
            let p = opts("r");
            let [special, dir] = p.operands.as_slice() else { usage() };
            let flags = if p.opts.is_empty() { 0 } else { MNT_RDONLY };
            report(client.mount_ext2(dir, flags, special).map_err(|e| Fail::from((dir.as_str(), e))));
        }
        "umount" => {
            let p = opts("f");
            let [dir] = p.operands.as_slice() else { usage() };
            let flags = if p.opts.is_empty() { 0 } else { MNT_FORCE };
            report(client.unmount(dir, flags).map_err(|e| Fail::from((dir.as_str(), e))));
        }
        "sync" if rest.is_empty() => report(client.sync().map_err(|e| Fail::from(("sync", e)))),
        _ => usage(),
    }
    exit(status)
}

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
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn ls(c: &Client, path: &str, long: bool, header: bool) -> Result<(), Fail> {
    let st = c.stat(path).map_err(|e| Fail::from((path, e)))?;
    if st.mode & S_IFMT != netbsd_abi::stat::S_IFDIR {
        print_entry(c, path, path, &st, long);
        return Ok(());
    }
    let fd = c.open(path, O_RDONLY | O_DIRECTORY, 0).map_err(|e| Fail::from((path, e)))?;
    let mut names = Vec::new();
    let r = loop {
        match c.getdents(fd, CHUNK) {
            Ok(ents) if ents.is_empty() => break Ok(()),
            Ok(ents) => names.extend(ents.into_iter().map(|d| String::from_utf8_lossy(&d.name).into_owned())),
            Err(e) => break Err(Fail::from((path, e))),
        }
    };
    let _ = c.close(fd);
    r?;
    names.retain(|n| n != "." && n != "..");
    names.sort();
    if header {
        println!("{path}:");
    }
    for n in names {
        let full = format!("{}/{}", path.trim_end_matches('/'), n);
        if long {
            match c.lstat(&full) {
                Ok(st) => print_entry(c, &full, &n, &st, true),
                Err(e) => eprintln!("{PROG}: {full}: {e}"),
            }
        } else {
            println!("{n}");
        }
    }
    Ok(())
}

fn print_entry(c: &Client, full: &str, name: &str, st: &Stat, long: bool) {
    if !long {
        println!("{name}");
        return;
    }
    let target = if st.is_lnk() {
        c.readlink(full).map(|t| format!(" -> {}", String::from_utf8_lossy(&t))).unwrap_or_default()
    } else {
        String::new()
    };
    println!("{} {:>3} {:>5} {:>5} {:>12} {name}{target}", mode_string(st.mode), st.nlink, st.uid, st.gid, st.size);
}

fn stat(c: &Client, path: &str) -> Result<(), Fail> {
    let st = c.lstat(path).map_err(|e| Fail::from((path, e)))?;
    println!(
        "{path}: {} ino {} nlink {} uid {} gid {} size {} blocks {} blksize {} mtime {}.{:09}",
        mode_string(st.mode),
        st.ino,
        st.nlink,
        st.uid,
        st.gid,
        st.size,
        st.blocks,
        st.blksize,
        st.mtime.sec,
        st.mtime.nsec
    );
    Ok(())
}

fn mkdir(c: &Client, path: &str, parents: bool) -> Result<(), Fail> {
    if !parents {
        return c.mkdir(path, 0o755).map_err(|e| Fail::from((path, e)));
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
            Err(Error::Errno(e)) if e.0 == netbsd_abi::errno::EEXIST => {}
            Err(e) => return Err(Fail::from((so_far.as_str(), e))),
        }
    }
    Ok(())
}

fn put(c: &Client, host: &str, path: &str) -> Result<(), Fail> {
    let mut input: Box<dyn Read> = if host == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(host).map_err(|e| Fail(format!("{host}: {}", io_text(&e))))?)
    };
    let fd = c.open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644).map_err(|e| Fail::from((path, e)))?;
    let mut buf = vec![0u8; CHUNK];
    let r = loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(Fail(format!("{host}: {}", io_text(&e)))),
        };
        let mut done = 0;
        while done < n {
            match c.write(fd, &buf[done..n]) {
                Ok(0) => return Err(Fail(format!("{path}: short write"))),
                Ok(w) => done += w,
                Err(e) => return Err(Fail::from((path, e))),
            }
        }
    };
    let closed = c.close(fd).map_err(|e| Fail::from((path, e)));
    r.and(closed)
}

fn get(c: &Client, path: &str, host: &str) -> Result<(), Fail> {
    let mut out: Box<dyn Write> = if host == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(host).map_err(|e| Fail(format!("{host}: {}", io_text(&e))))?)
    };
    let fd = c.open(path, O_RDONLY, 0).map_err(|e| Fail::from((path, e)))?;
    let mut buf = vec![0u8; CHUNK];
    let r = loop {
        match c.read(fd, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if let Err(e) = out.write_all(&buf[..n]) {
                    break Err(Fail(format!("{host}: {}", io_text(&e))));
                }
            }
            Err(e) => break Err(Fail::from((path, e))),
        }
    };
    let _ = c.close(fd);
    r?;
    out.flush().map_err(|e| Fail(format!("{host}: {}", io_text(&e))))
}

/// The host's text for an I/O error, without Rust's "(os error N)".
fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => netbsd_abi::Errno::from_host(n).description(),
        None => e.to_string(),
    }
}
