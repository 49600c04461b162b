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

mod dir;
mod file;
mod misc;
mod mount;
mod path;
mod sysctl;

pub type SysResult = Result<(), Errno>;

/// The calling context of one system call.
pub(crate) struct Cx<'a> {
    pub k: &'a Kernel,
    pub p: &'a Arc<Proc>,
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
        self.p.cwd(&self.root())
    }

    pub fn namei(&self, path: &[u8], follow: bool) -> Result<Vnode, Errno> {
        namei::namei(&self.k.mounts, &self.root(), &self.cwd(), path, follow)
    }

    pub fn namei_parent(&self, path: &[u8], follow: bool) -> Result<Parent, Errno> {
        namei::namei_parent(&self.k.mounts, &self.root(), &self.cwd(), path, follow)
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
