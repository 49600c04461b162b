//! Host-side chores of a mount helper: checking the mount point, going to
//! the background once the mount is live, unmounting.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, Signal};

use crate::fs::MAX_READAHEAD;

use netbsd_abi::errno::io_text as io_reason;
pub use netbsd_abi::errno::strerror;

/// A host path and why an operation on it failed; reads `path: reason`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", show(.path.as_os_str().as_bytes()), io_reason(.err))]
pub struct HostPathError {
    /// The path.
    pub path: PathBuf,
    /// Why.
    pub err: io::Error,
}

impl HostPathError {
    fn new(path: &Path, err: io::Error) -> HostPathError {
        HostPathError {
            path: path.to_path_buf(),
            err,
        }
    }

    fn errno(path: &Path, errno: i32) -> HostPathError {
        HostPathError::new(path, io::Error::from_raw_os_error(errno))
    }
}

/// Check what a FUSE mount needs: `/dev/fuse`, and a mount point that is a
/// directory not already mounted on.
pub fn check_mountpoint(mnt: &Path) -> Result<PathBuf, HostPathError> {
    let dev = Path::new("/dev/fuse");
    std::fs::metadata(dev).map_err(|e| HostPathError::new(dev, e))?;
    let md = std::fs::metadata(mnt).map_err(|e| HostPathError::new(mnt, e))?;
    if !md.is_dir() {
        return Err(HostPathError::errno(mnt, libc::ENOTDIR));
    }
    let abs = std::fs::canonicalize(mnt).map_err(|e| HostPathError::new(mnt, e))?;
    if is_mountpoint(&abs) {
        return Err(HostPathError::errno(mnt, libc::EBUSY));
    }
    Ok(abs)
}

pub use netbsd_abi::text::show;

/// Whether `dir` (absolute, canonical) is in the host's mount table.
pub fn is_mountpoint(dir: &Path) -> bool {
    // Bytes: a mount point elsewhere on the host may have any name.
    let Ok(t) = std::fs::read("/proc/self/mountinfo") else {
        // Fall back on st_dev against the parent's.
        let parent = dir.parent().unwrap_or(Path::new("/"));
        return match (std::fs::metadata(dir), std::fs::metadata(parent)) {
            (Ok(a), Ok(b)) => a.dev() != b.dev() || dir == Path::new("/"),
            _ => false,
        };
    };
    let found = mounts_at(&t, dir).next().is_some();
    found
}

/// The mount table lines (`/proc/self/mountinfo` as it is, `table`) of
/// mounts at `dir`, oldest first.
fn mounts_at<'a>(table: &'a [u8], dir: &'a Path) -> impl DoubleEndedIterator<Item = &'a [u8]> {
    let want = dir.as_os_str().as_bytes();
    table
        .split(|&c| c == b'\n')
        .filter(move |l| field(l, 4).is_some_and(|m| unescape(m).as_slice() == want))
}

/// Field `n` (from 0) of a mount table line.
fn field(line: &[u8], n: usize) -> Option<&[u8]> {
    line.split(|&c| c == b' ').nth(n)
}

/// Set the read-ahead of the mount at `mnt` (its backing device info in
/// sysfs) to the adapter's [`MAX_READAHEAD`]. The host's FUSE starts every
/// mount at 128 KiB whatever the daemon's `max_readahead`, so a sequential
/// read came as 128 KiB READs. Found through the mount table: a `stat` of
/// the mount point would be a request to this very daemon. Root only
/// (sysfs).
pub fn set_readahead(mnt: &Path) -> io::Result<()> {
    let t = std::fs::read("/proc/self/mountinfo")?;
    // The last entry for the path is the newest mount on it: ours.
    let dev = mounts_at(&t, mnt)
        .filter_map(|l| field(l, 2))
        .next_back()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
    // major:minor, digits only: nothing else goes into the sysfs path.
    let dev = std::str::from_utf8(dev)
        .ok()
        .filter(|d| d.bytes().all(|c| c.is_ascii_digit() || c == b':'))
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    std::fs::write(
        format!("/sys/class/bdi/{dev}/read_ahead_kb"),
        (MAX_READAHEAD >> 10).to_string(),
    )
}

fn unescape(b: &[u8]) -> Vec<u8> {
    // mountinfo writes space, tab, newline and backslash as \ooo.
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
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
pub fn unmount(mnt: &Path) -> Result<(), HostPathError> {
    let c = CString::new(mnt.as_os_str().as_bytes())
        .map_err(|_| HostPathError::errno(mnt, libc::EINVAL))?;
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
        _ => Err(HostPathError::new(mnt, err)),
    }
}

/// The parent's end of [`background`]: tells it the mount is live (or not).
pub struct Ready(Option<OwnedFd>);

impl Ready {
    /// Report success and detach from the terminal's standard streams.
    pub fn ok(mut self) {
        if let Some(fd) = self.0.take() {
            let _ = nix::unistd::write(&fd, &[0u8]);
            drop(fd);
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
            // The parent exits 1 on this byte.
            let _ = nix::unistd::write(&fd, &[1u8]);
        }
    }
}

fn redirect_stdio() {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    if let Ok(fd) = open("/dev/null", OFlag::O_RDWR, Mode::empty()) {
        // All three: a caller reading our output to its end (a shell's
        // `$(...)`, a test's pipe) must not wait for the daemon.
        for to in 0..3 {
            let _ = nix::unistd::dup2(fd, to);
        }
        if fd > 2 {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// Fork, as a mount helper does: the parent waits until the child reports
/// the mount live (exit 0) or failed (exit 1; the child printed why). Call
/// before any thread is started. With `foreground`, no fork.
///
/// # Safety
/// Unless `foreground`, the calling process must have exactly one thread:
/// the child is a copy of the caller's thread alone, and a lock another
/// thread held at the fork (the allocator's, a logger's) would stay held
/// in it forever.
pub unsafe fn background(foreground: bool) -> io::Result<Ready> {
    use nix::unistd::{fork, pipe, read, setsid, ForkResult};
    if foreground {
        return Ok(Ready(None));
    }
    let (r, w) = pipe().map_err(io::Error::from)?;
    // SAFETY: this function's contract: the caller has no other thread,
    // so the child is a copy of a single-threaded process.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { .. } => {
            drop(w);
            let mut b = [1u8];
            let n = loop {
                match read(r.as_raw_fd(), &mut b) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other.unwrap_or(0),
                }
            };
            std::process::exit(if n == 1 && b[0] == 0 { 0 } else { 1 });
        }
        ForkResult::Child => {
            drop(r);
            let _ = setsid();
            Ok(Ready(Some(w)))
        }
    }
}

/// Block SIGTERM, SIGINT and SIGHUP in this thread (and the threads it
/// starts later); [`wait_signal`] takes them.
pub fn block_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    let _ = set.thread_block();
    set
}

/// Wait for one of the signals in `set` (its host number).
pub fn wait_signal(set: &SigSet) -> i32 {
    loop {
        if let Ok(s) = set.wait() {
            return s as i32;
        }
    }
}

/// The supplementary groups of host process `pid`, from the `Groups:`
/// line of `/proc/PID/status` (at most 64 are read); `None` if the
/// process is gone or the line unreadable.
pub fn groups_of(pid: u32) -> Option<Vec<u32>> {
    use std::io::Read;
    let mut f = std::fs::File::open(format!("/proc/{pid}/status")).ok()?;
    // The status file is a few KiB; read no more than that.
    let mut buf = Vec::new();
    f.by_ref().take(16 << 10).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().find_map(|l| l.strip_prefix("Groups:"))?;
    Some(
        line.split_whitespace()
            .take(64)
            .filter_map(|g| g.parse().ok())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn mount_table_names_are_bytes() {
        let t: &[u8] = b"22 1 0:21 / /proc rw - proc proc rw\n\
            40 22 0:50 / /tmp/m\\040n rw - fuse.rump rump:/ rw\n\
            41 22 0:51 / /tmp/\xff\xfe rw - fuse.rump x rw\n\
            42 41 0:52 / /tmp/\xff\xfe rw - fuse.rump y rw\n";
        let odd = Path::new(OsStr::from_bytes(b"/tmp/\xff\xfe"));
        let devs: Vec<_> = mounts_at(t, odd).filter_map(|l| field(l, 2)).collect();
        assert_eq!(devs, [&b"0:51"[..], b"0:52"]);
        assert_eq!(mounts_at(t, Path::new("/tmp/m n")).count(), 1);
        assert_eq!(mounts_at(t, Path::new("/tmp/m")).count(), 0);
    }
}
