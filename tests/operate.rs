//! Operating the tools (issue 22, and issue 19's "bytes, not strings"):
//! real `rump_server`, `rumpctl` and `rump.halt` processes in private
//! temporary directories.

mod common;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

/// `rumpctl` against `s` with arguments that may be any bytes.
fn rumpctl(s: &Server, args: &[&OsStr]) -> Output {
    Command::new(RUMPCTL)
        .args(args)
        .env("RUMP_SERVER", &s.url)
        .current_dir(&s.dir)
        .stdin(Stdio::null())
        .output()
        .expect("run rumpctl")
}

fn ok(s: &Server, args: &[&OsStr]) -> Vec<u8> {
    let o = rumpctl(s, args);
    assert!(
        o.status.success(),
        "rumpctl {args:?}: {:?} {}",
        o.status,
        stderr(&o)
    );
    o.stdout
}

fn os(b: &[u8]) -> OsString {
    OsString::from_vec(b.to_vec())
}

/// An ext2 image mounted on /mnt of a fresh server.
fn ext2_server(d: &Path) -> Server {
    let img = d.join("img");
    mke2fs(&img, &[], "16M");
    let s = Server::start(
        d,
        &[
            "-d",
            &format!("key=/dk,hostpath={},size=host", img.display()),
        ],
    );
    ok(&s, &[OsStr::new("mkdir"), OsStr::new("/mnt")]);
    ok(
        &s,
        &[OsStr::new("mount"), OsStr::new("/dk"), OsStr::new("/mnt")],
    );
    s
}

/// A name with bytes 0xff 0xfe goes through `put`, `ls`, `get` and
/// `cp -R` both ways unchanged (issue 19: bytes, not strings).
#[test]
fn names_that_are_not_utf8_pass_byte_exact() {
    let d = tmpdir();
    let s = ext2_server(d.path());
    let odd: &[u8] = b"\xff\xfe";
    let host_dir = d.path().join("tree");
    std::fs::create_dir(&host_dir).unwrap();
    let host_file = host_dir.join(OsStr::from_bytes(odd));
    std::fs::write(&host_file, b"odd bytes\n").unwrap();
    std::fs::create_dir(host_dir.join(OsStr::from_bytes(b"sub\xe9"))).unwrap();
    std::fs::write(
        host_dir.join(OsStr::from_bytes(b"sub\xe9/in\x80side")),
        b"deeper\n",
    )
    .unwrap();

    // put: a host name that is not UTF-8 to a kernel name that is not.
    let kname = os(b"/mnt/x\xff\xfe");
    ok(
        &s,
        &[OsStr::new("put"), host_file.as_os_str(), kname.as_os_str()],
    );
    // ls shows the name's bytes, not U+FFFD.
    let listing = ok(&s, &[OsStr::new("ls"), OsStr::new("/mnt")]);
    assert!(
        listing.split(|&b| b == b'\n').any(|l| l == b"x\xff\xfe"),
        "ls /mnt: {:?}",
        String::from_utf8_lossy(&listing)
    );
    let long = ok(
        &s,
        &[OsStr::new("ls"), OsStr::new("-l"), OsStr::new("/mnt")],
    );
    assert!(long.windows(4).any(|w| w == b"x\xff\xfe\n"), "{long:?}");
    // get: back to a host name that is not UTF-8.
    let back = d.path().join(OsStr::from_bytes(b"back\xfe\xff"));
    ok(
        &s,
        &[OsStr::new("get"), kname.as_os_str(), back.as_os_str()],
    );
    assert_eq!(std::fs::read(&back).unwrap(), b"odd bytes\n");

    // cp -R into the kernel and out again: the same names, the same bytes.
    let mut colon = b":/mnt".to_vec();
    ok(
        &s,
        &[
            OsStr::new("cp"),
            OsStr::new("-R"),
            host_dir.as_os_str(),
            OsStr::from_bytes(&colon),
        ],
    );
    let inner = ok(&s, &[OsStr::new("ls"), OsStr::new("/mnt/tree")]);
    // In byte order, as ls(1) in the C locale.
    assert_eq!(inner, b"sub\xe9\n\xff\xfe\n", "{inner:?}");
    let out = d.path().join("out");
    colon.extend_from_slice(b"/tree");
    ok(
        &s,
        &[
            OsStr::new("cp"),
            OsStr::new("-R"),
            OsStr::from_bytes(&colon),
            out.as_os_str(),
        ],
    );
    assert_eq!(
        std::fs::read(out.join(OsStr::from_bytes(odd))).unwrap(),
        b"odd bytes\n"
    );
    assert_eq!(
        std::fs::read(out.join(OsStr::from_bytes(b"sub\xe9/in\x80side"))).unwrap(),
        b"deeper\n"
    );
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_vec())
        .collect();
    names.sort();
    assert_eq!(names, vec![b"sub\xe9".to_vec(), b"\xff\xfe".to_vec()]);
}

/// Arguments that are not UTF-8 never panic a tool: where text is needed
/// (a URL, a mode), the message says so, exit 1.
#[test]
fn arguments_that_are_not_utf8_are_refused_in_words() {
    let d = tmpdir();
    let sock = os(b"unix://\xff.sock");
    let o = Command::new(RUMP_SERVER)
        .args([OsStr::new("-s"), sock.as_os_str()])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not valid UTF-8"), "{}", stderr(&o));
    assert!(stderr(&o).contains("unix://PATH"), "{}", stderr(&o));
    assert!(!stderr(&o).contains('\u{fffd}'), "{}", stderr(&o));

    let s = Server::start(d.path(), &[]);
    let o = rumpctl(&s, &[OsStr::new("chmod"), &os(b"7\xff"), OsStr::new("/x")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not valid UTF-8"), "{}", stderr(&o));
    // A missing host file named in bytes: named with \x escapes.
    let o = rumpctl(
        &s,
        &[OsStr::new("put"), &os(b"dir/\xff\xfe"), OsStr::new("/x")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim_end(),
        "rumpctl: dir/\\xff\\xfe: No such file or directory"
    );
    let o = Command::new(rump_halt())
        .arg(os(b"-\xff"))
        .env("RUMP_SERVER", &s.url)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}
