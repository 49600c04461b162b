//! The system call table: NetBSD numbers, amd64 argument layouts (one
//! 8-byte slot per argument, `PAD` slots included), NetBSD errno values.
//! Anything not listed is `ENOSYS`.

use std::sync::Arc;

use netbsd_abi::errno::*;
use netbsd_abi::syscall::*;
use netbsd_abi::Errno;

use crate::namei::{self, Parent, MAXPATHLEN};
use crate::proc::{File, Proc};
use crate::vnode::Vnode;
use crate::Kernel;

mod at;
mod attr;
pub(crate) mod cred;
mod dir;
mod fcntl;
mod file;
mod misc;
mod mount;
mod path;
mod sysctl;
mod vec;

/// A system call handler's result: success, or the NetBSD errno the call fails with.
pub type SysResult = Result<(), Errno>;

/// The calling context of one system call.
pub(crate) struct Cx<'a> {
    pub k: &'a Kernel,
    pub p: &'a Arc<Proc>,
    /// The directory relative paths start from instead of the current
    /// directory (an `*at` call's descriptor).
    pub dir: Option<Vnode>,
}

/// The argument slots of one call (already checked to be as many as the
/// call takes).
pub(crate) struct Args<'a>(pub &'a [u64]);

impl Args<'_> {
    #[inline]
    pub fn u(&self, i: usize) -> u64 {
        self.0.get(i).copied().unwrap_or(0)
    }
    /// An `int` argument: the low 32 bits of its slot.
    #[inline]
    pub fn int(&self, i: usize) -> i32 {
        self.u(i) as u32 as i32
    }
    /// An `off_t` argument.
    #[inline]
    pub fn off(&self, i: usize) -> i64 {
        self.u(i) as i64
    }
    /// A `mode_t` argument (32 bits).
    #[inline]
    pub fn mode(&self, i: usize) -> u32 {
        self.u(i) as u32
    }
}

impl Cx<'_> {
    /// Copy in a path argument (at most `MAXPATHLEN` bytes with its NUL).
    pub fn path(&self, uaddr: u64) -> Result<Vec<u8>, Errno> {
        let p = self.p.mem.copyinstr(uaddr, MAXPATHLEN)?;
        if p.is_empty() {
            return Err(Errno(ENOENT));
        }
        Ok(p)
    }

    pub fn root(&self) -> Vnode {
        self.k.root_vnode()
    }

    pub fn cwd(&self) -> Vnode {
        match &self.dir {
            Some(d) => d.clone(),
            None => self.p.cwd(&self.root()),
        }
    }

    pub fn namei(&self, path: &[u8], follow: bool) -> Result<Vnode, Errno> {
        namei::namei(
            &self.k.mounts,
            &self.root(),
            &self.cwd(),
            path,
            follow,
            self.searcher(),
        )
    }

    pub fn namei_parent(&self, path: &[u8], follow: bool) -> Result<Parent, Errno> {
        namei::namei_parent(
            &self.k.mounts,
            &self.root(),
            &self.cwd(),
            path,
            follow,
            self.searcher(),
        )
    }

    /// The credentials path walks check search permission against (none
    /// for root).
    fn searcher(&self) -> namei::Searcher<'_> {
        if cred::is_root(self) {
            None
        } else {
            Some(cred::who(self))
        }
    }

    /// The parent of a name to create: `EEXIST` if the name is taken (or
    /// is "." or ".."); a trailing slash is `ENOENT` unless `dir_ok` (only
    /// directories may be named so).
    pub fn namei_new(&self, path: &[u8], dir_ok: bool) -> Result<Parent, Errno> {
        let par = self.namei_parent(path, false)?;
        if par.node.is_some() || par.name == b"." || par.name == b".." {
            return Err(Errno(EEXIST));
        }
        if par.trailing_slash && !dir_ok {
            return Err(Errno(ENOENT));
        }
        Ok(par)
    }

    pub fn getf(&self, fd: i32) -> Result<Arc<File>, Errno> {
        self.p.getf(fd)
    }

    pub fn copyout(&self, buf: &[u8], uaddr: u64) -> SysResult {
        self.p.mem.copyout(buf, uaddr)
    }

    pub fn copyin(&self, uaddr: u64, buf: &mut [u8]) -> SysResult {
        self.p.mem.copyin(uaddr, buf)
    }
}

/// Run system call `num`.
pub(crate) fn dispatch(cx: &Cx, num: i32, args: &[u64], rv: &mut [i64; 2]) -> SysResult {
    let a = Args(args);
    match num {
        SYS_READ => file::read(cx, &a, rv),
        SYS_WRITE => file::write(cx, &a, rv),
        SYS_OPEN => path::open(cx, &a, rv),
        SYS_CLOSE => file::close(cx, &a),
        SYS_LINK => path::link(cx, &a),
        SYS_UNLINK => path::unlink(cx, &a),
        SYS_CHDIR => path::chdir(cx, &a),
        SYS_FCHDIR => path::fchdir(cx, &a),
        SYS_CHMOD => path::chmod(cx, &a),
        SYS_GETPID => misc::getpid(cx, rv),
        SYS_UNMOUNT => mount::unmount(cx, &a),
        SYS_SYNC => mount::sync(cx),
        SYS_SYMLINK => path::symlink(cx, &a),
        SYS_READLINK => path::readlink(cx, &a, rv),
        SYS_FSYNC => file::fsync(cx, &a),
        SYS_FDATASYNC => file::fsync(cx, &a),
        SYS_FCHMOD => file::fchmod(cx, &a),
        SYS_RENAME => path::rename(cx, &a),
        SYS_MKDIR => path::mkdir(cx, &a),
        SYS_RMDIR => path::rmdir(cx, &a),
        SYS_PREAD => file::pread(cx, &a, rv),
        SYS_PWRITE => file::pwrite(cx, &a, rv),
        SYS_LSEEK => file::lseek(cx, &a, rv),
        SYS_FTRUNCATE => file::ftruncate(cx, &a),
        SYS___SYSCTL => sysctl::sysctl(cx, &a),
        SYS_REBOOT => misc::reboot(cx, &a),
        SYS___GETCWD => path::getcwd(cx, &a, rv),
        SYS_GETDENTS => dir::getdents(cx, &a, rv),
        SYS_MOUNT => mount::mount(cx, &a),
        SYS_STAT => path::stat(cx, &a, true),
        SYS_FSTAT => file::fstat(cx, &a),
        SYS_LSTAT => path::stat(cx, &a, false),
        _ => dispatch_more(cx, num, &a, rv),
    }
}

/// The calls real programs need beyond the first table: credentials,
/// attributes, descriptors, vectored I/O, the `*at` family.
fn dispatch_more(cx: &Cx, num: i32, a: &Args, rv: &mut [i64; 2]) -> SysResult {
    match num {
        SYS_GETUID => cred::getuid(cx, rv),
        SYS_GETEUID => cred::geteuid(cx, rv),
        SYS_GETGID => cred::getgid(cx, rv),
        SYS_GETEGID => cred::getegid(cx, rv),
        SYS_GETGROUPS => cred::getgroups(cx, a, rv),
        SYS_UMASK => cred::umask(cx, a, rv),
        SYS_ACCESS => cred::access(cx, a),
        SYS_CHOWN | SYS___POSIX_CHOWN => attr::chown(cx, a, true),
        SYS_LCHOWN | SYS___POSIX_LCHOWN => attr::chown(cx, a, false),
        SYS_FCHOWN | SYS___POSIX_FCHOWN => attr::fchown(cx, a),
        SYS_LCHMOD => attr::lchmod(cx, a),
        SYS_UTIMES => attr::utimes(cx, a, true),
        SYS_LUTIMES => attr::utimes(cx, a, false),
        SYS_FUTIMES => attr::futimes(cx, a),
        SYS_FUTIMENS => attr::futimens(cx, a),
        SYS_TRUNCATE => attr::truncate(cx, a),
        SYS_STATVFS1 => attr::statvfs1(cx, a),
        SYS_FSTATVFS1 => attr::fstatvfs1(cx, a),
        SYS_MKNOD => attr::mknod(cx, a),
        SYS_MKFIFO => attr::mkfifo(cx, a),
        SYS_DUP => fcntl::dup(cx, a, rv),
        SYS_DUP2 => fcntl::dup2(cx, a, rv),
        SYS_DUP3 => fcntl::dup3(cx, a, rv),
        SYS_FCNTL => fcntl::fcntl(cx, a, rv),
        SYS_FSYNC_RANGE => fcntl::fsync_range(cx, a),
        SYS_READV => vec::readv(cx, a, rv),
        SYS_WRITEV => vec::writev(cx, a, rv),
        SYS_PREADV => vec::preadv(cx, a, rv),
        SYS_PWRITEV => vec::pwritev(cx, a, rv),
        SYS_OPENAT => at::openat(cx, a, rv),
        SYS_MKDIRAT => at::mkdirat(cx, a),
        SYS_MKFIFOAT => at::mkfifoat(cx, a),
        SYS_MKNODAT => at::mknodat(cx, a),
        SYS_UNLINKAT => at::unlinkat(cx, a),
        SYS_RENAMEAT => at::renameat(cx, a),
        SYS_LINKAT => at::linkat(cx, a),
        SYS_SYMLINKAT => at::symlinkat(cx, a),
        SYS_READLINKAT => at::readlinkat(cx, a, rv),
        SYS_FCHMODAT => at::fchmodat(cx, a),
        SYS_FCHOWNAT => at::fchownat(cx, a),
        SYS_FSTATAT => at::fstatat(cx, a),
        SYS_UTIMENSAT => at::utimensat(cx, a),
        SYS_FACCESSAT => at::faccessat(cx, a),
        _ => Err(Errno(ENOSYS)),
    }
}

/// Encode a vnode's attributes as NetBSD `struct stat`.
pub(crate) fn stat_of(vn: &Vnode) -> Result<netbsd_abi::stat::Stat, Errno> {
    let a = vn.getattr()?;
    Ok(netbsd_abi::stat::Stat {
        dev: vn.mnt.dev,
        mode: a.kind.mode_bits() | (a.perm & 0o7777),
        ino: a.ino,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        birthtime: a.birthtime,
        size: a.size.min(i64::MAX as u64) as i64,
        blocks: a.blocks.min(i64::MAX as u64) as i64,
        blksize: a.blksize as i32,
        flags: 0,
        gen: 0,
    })
}
