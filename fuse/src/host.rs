//! Host-side chores of a mount helper: checking the mount point, going to
//! the background once the mount is live, unmounting.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The host's text for errno `e`.
pub fn strerror(e: i32) -> String {
    io::Error::from_raw_os_error(e).to_string().split(" (os error").next().unwrap_or("").to_string()
}

fn io_reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => strerror(n),
        None => e.to_string(),
    }
}

/// Check what a FUSE mount needs: `/dev/fuse`, and a mount point that is a
/// directory not already mounted on. Errors read `path: reason`.
pub fn check_mountpoint(mnt: &Path) -> Result<PathBuf, String> {
    if let Err(e) = std::fs::metadata("/dev/fuse") {
        return Err(format!("/dev/fuse: {}", io_reason(&e)));
    }
    let md = std::fs::metadata(mnt).map_err(|e| format!("{}: {}", mnt.display(), io_reason(&e)))?;
    if !md.is_dir() {
        return Err(format!("{}: {}", mnt.display(), strerror(libc::ENOTDIR)));
    }
    let abs = std::fs::canonicalize(mnt).map_err(|e| format!("{}: {}", mnt.display(), io_reason(&e)))?;
    if is_mountpoint(&abs) {
        return Err(format!("{}: {}", mnt.display(), strerror(libc::EBUSY)));
    }
    Ok(abs)
}

/// Whether `dir` (absolute, canonical) is in the host's mount table.
pub fn is_mountpoint(dir: &Path) -> bool {
    let Ok(t) = std::fs::read_to_string("/proc/self/mountinfo") else {
        // Fall back on st_dev against the parent's.
        let parent = dir.parent().unwrap_or(Path::new("/"));
        return match (std::fs::metadata(dir), std::fs::metadata(parent)) {
            (Ok(a), Ok(b)) => a.dev() != b.dev() || dir == Path::new("/"),
            _ => false,
        };
    };
    let want = dir.as_os_str().as_bytes();
    t.lines().any(|l| l.split(' ').nth(4).is_some_and(|m| unescape(m).as_slice() == want))
}

fn unescape(s: &str) -> Vec<u8> {
    // mountinfo writes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Detach the FUSE mount at `mnt` (lazily: open files keep it until they
/// close). As root with umount2; otherwise through `fusermount3 -uz`.
pub fn unmount(mnt: &Path) -> Result<(), String> {
    let c = CString::new(mnt.as_os_str().as_bytes()).map_err(|_| format!("{}: bad path", mnt.display()))?;
    // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
    let r = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if r == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    let st = std::process::Command::new("fusermount3")
        .arg("-uz")
        .arg(mnt)
        .stderr(std::process::Stdio::null())
        .status();
    match st {
        Ok(s) if s.success() => Ok(()),
        _ => Err(format!("{}: {}", mnt.display(), io_reason(&err))),
    }
}

/// The parent's end of [`background`]: tells it the mount is live (or not).
pub struct Ready(Option<i32>);

impl Ready {
    /// Report success and detach from the terminal's standard streams.
    pub fn ok(mut self) {
        if let Some(fd) = self.0.take() {
            // SAFETY: `fd` is our pipe end; one byte from a live buffer.
            unsafe {
                libc::write(fd, [0u8].as_ptr().cast(), 1);
                libc::close(fd);
            }
            redirect_stdio();
        }
    }

    /// Whether a parent is waiting (not in the foreground).
    pub fn is_background(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            // SAFETY: as in `ok`; the parent exits 1 on this byte.
            unsafe {
                libc::write(fd, [1u8].as_ptr().cast(), 1);
                libc::close(fd);
            }
        }
    }
}

fn redirect_stdio() {
    let null = CString::new("/dev/null").unwrap_or_default();
    // SAFETY: plain descriptor calls on a valid path.
    unsafe {
        let fd = libc::open(null.as_ptr(), libc::O_RDWR);
        if fd >= 0 {
            // All three: a caller reading our output to its end (a shell's
            // `$(...)`, a test's pipe) must not wait for the daemon.
            libc::dup2(fd, 0);
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
}

/// Fork, as a mount helper does: the parent waits until the child reports
/// the mount live (exit 0) or failed (exit 1; the child printed why). Call
/// before any thread is started. With `foreground`, no fork.
pub fn background(foreground: bool) -> io::Result<Ready> {
    if foreground {
        return Ok(Ready(None));
    }
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: single-threaded here by the caller's contract.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        // SAFETY: our pipe's ends; a one-byte read into a live buffer.
        unsafe {
            libc::close(fds[1]);
            let mut b = [1u8];
            let n = loop {
                let n = libc::read(fds[0], b.as_mut_ptr().cast(), 1);
                if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                break n;
            };
            std::process::exit(if n == 1 && b[0] == 0 { 0 } else { 1 });
        }
    }
    // SAFETY: the child: drop the read end, start a session of its own.
    unsafe {
        libc::close(fds[0]);
        libc::setsid();
    }
    Ok(Ready(Some(fds[1])))
}

/// Block SIGTERM, SIGINT and SIGHUP in this thread (and the threads it
/// starts later); [`wait_signal`] takes them.
pub fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local, then pthread_sigmask with it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Wait for one of the signals in `set`.
pub fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is initialized; `sig` is a valid out pointer.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}
