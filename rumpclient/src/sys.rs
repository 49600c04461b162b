//! Typed wrappers for the system calls the tools use (NetBSD numbers and
//! argument layouts, amd64). Paths are anything byte-like (`&str`,
//! `String`, `&[u8]`); they are sent NUL-terminated.

use netbsd_abi::dirent::Dirent;
use netbsd_abi::errno::{Errno, EINVAL, ENOMEM};
use netbsd_abi::fcntl::{MOUNT_EXT2FS, O_DIRECTORY, O_RDONLY};
use netbsd_abi::stat::{Stat, STAT_SIZE};
use netbsd_abi::syscall::*;

use crate::client::{Client, Region};
use crate::error::Error;

/// A NUL-terminated copy of a path.
pub(crate) fn cpath(p: &[u8]) -> Result<Vec<u8>, Error> {
    if p.contains(&0) {
        return Err(Error::Errno(Errno(EINVAL)));
    }
    let mut v = Vec::with_capacity(p.len() + 1);
    v.extend_from_slice(p);
    v.push(0);
    Ok(v)
}

/// The address of `b` in this process, as a syscall argument.
pub(crate) fn a(b: &[u8]) -> u64 {
    b.as_ptr() as u64
}

impl Client {
    fn path_call(&self, num: i32, path: &[u8], rest: &[u64]) -> Result<[i64; 2], Error> {
        let p = cpath(path)?;
        let mut args = vec![a(&p)];
        args.extend_from_slice(rest);
        self.syscall(num, &args, &mut [Region::In(&p)])
    }

    fn two_paths(&self, num: i32, p1: &[u8], p2: &[u8]) -> Result<(), Error> {
        let (x, y) = (cpath(p1)?, cpath(p2)?);
        self.syscall(num, &[a(&x), a(&y)], &mut [Region::In(&x), Region::In(&y)])?;
        Ok(())
    }

    /// `getpid()`: our kernel process's pid.
    pub fn getpid(&self) -> Result<i32, Error> {
        Ok(self.syscall(SYS_GETPID, &[], &mut [])?[0] as i32)
    }

    /// `open(path, flags, mode)` with NetBSD `O_*` flags.
    pub fn open(&self, path: impl AsRef<[u8]>, flags: i32, mode: u32) -> Result<i32, Error> {
        Ok(self.path_call(SYS_OPEN, path.as_ref(), &[flags as u32 as u64, mode as u64])?[0] as i32)
    }

    /// `close(2)` descriptor `fd`.
    pub fn close(&self, fd: i32) -> Result<(), Error> {
        self.syscall(SYS_CLOSE, &[fd as u64], &mut [])?;
        Ok(())
    }

    /// `read(2)` from `fd` into `buf` at the descriptor's offset; the bytes read (0 at end of file).
    pub fn read(&self, fd: i32, buf: &mut [u8]) -> Result<usize, Error> {
        let args = [fd as u64, a(buf), buf.len() as u64];
        Ok(self.syscall(SYS_READ, &args, &mut [Region::Out(buf)])?[0] as usize)
    }

    /// `write(2)` `buf` to `fd` at the descriptor's offset; the bytes written.
    pub fn write(&self, fd: i32, buf: &[u8]) -> Result<usize, Error> {
        let args = [fd as u64, a(buf), buf.len() as u64];
        Ok(self.syscall(SYS_WRITE, &args, &mut [Region::In(buf)])?[0] as usize)
    }

    /// `pread(2)`: read at `off`, leaving the descriptor's offset alone.
    pub fn pread(&self, fd: i32, buf: &mut [u8], off: i64) -> Result<usize, Error> {
        let args = [fd as u64, a(buf), buf.len() as u64, 0, off as u64];
        Ok(self.syscall(SYS_PREAD, &args, &mut [Region::Out(buf)])?[0] as usize)
    }

    /// `pwrite(2)`: write at `off`, leaving the descriptor's offset alone.
    pub fn pwrite(&self, fd: i32, buf: &[u8], off: i64) -> Result<usize, Error> {
        let args = [fd as u64, a(buf), buf.len() as u64, 0, off as u64];
        Ok(self.syscall(SYS_PWRITE, &args, &mut [Region::In(buf)])?[0] as usize)
    }

    /// `lseek(fd, off, whence)` with NetBSD `SEEK_*`; the new offset.
    pub fn lseek(&self, fd: i32, off: i64, whence: i32) -> Result<i64, Error> {
        Ok(self.syscall(
            SYS_LSEEK,
            &[fd as u64, 0, off as u64, whence as u64],
            &mut [],
        )?[0])
    }

    /// `fsync(2)`: make `fd`'s data and metadata durable.
    pub fn fsync(&self, fd: i32) -> Result<(), Error> {
        self.syscall(SYS_FSYNC, &[fd as u64], &mut [])?;
        Ok(())
    }

    /// `sync(2)`: flush every file system of the kernel.
    pub fn sync(&self) -> Result<(), Error> {
        self.syscall(SYS_SYNC, &[], &mut [])?;
        Ok(())
    }

    /// `mkdir(2)` with permission bits `mode` (less the process's umask).
    pub fn mkdir(&self, path: impl AsRef<[u8]>, mode: u32) -> Result<(), Error> {
        self.path_call(SYS_MKDIR, path.as_ref(), &[mode as u64])?;
        Ok(())
    }

    /// `rmdir(2)`: remove an empty directory.
    pub fn rmdir(&self, path: impl AsRef<[u8]>) -> Result<(), Error> {
        self.path_call(SYS_RMDIR, path.as_ref(), &[])?;
        Ok(())
    }

    /// `unlink(2)`: remove a name (not a directory).
    pub fn unlink(&self, path: impl AsRef<[u8]>) -> Result<(), Error> {
        self.path_call(SYS_UNLINK, path.as_ref(), &[])?;
        Ok(())
    }

    /// `rename(2)` `from` to `to`, replacing a compatible `to`.
    pub fn rename(&self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<(), Error> {
        self.two_paths(SYS_RENAME, from.as_ref(), to.as_ref())
    }

    /// `link(path, link)`: a new name `link` for `path`.
    pub fn link(&self, path: impl AsRef<[u8]>, link: impl AsRef<[u8]>) -> Result<(), Error> {
        self.two_paths(SYS_LINK, path.as_ref(), link.as_ref())
    }

    /// `symlink(target, link)`.
    pub fn symlink(&self, target: impl AsRef<[u8]>, link: impl AsRef<[u8]>) -> Result<(), Error> {
        self.two_paths(SYS_SYMLINK, target.as_ref(), link.as_ref())
    }

    /// `readlink(path)`: the link's target.
    pub fn readlink(&self, path: impl AsRef<[u8]>) -> Result<Vec<u8>, Error> {
        let p = cpath(path.as_ref())?;
        let mut buf = vec![0u8; 1024];
        let args = [a(&p), a(&buf), buf.len() as u64];
        let n = self.syscall(
            SYS_READLINK,
            &args,
            &mut [Region::In(&p), Region::Out(&mut buf)],
        )?[0] as usize;
        buf.truncate(n.min(1024));
        Ok(buf)
    }

    /// `chmod(2)`: set the permission bits of `path` (following a symbolic link).
    pub fn chmod(&self, path: impl AsRef<[u8]>, mode: u32) -> Result<(), Error> {
        self.path_call(SYS_CHMOD, path.as_ref(), &[mode as u64])?;
        Ok(())
    }

    /// `fchmod(2)`: set the permission bits of the file open as `fd`.
    pub fn fchmod(&self, fd: i32, mode: u32) -> Result<(), Error> {
        self.syscall(SYS_FCHMOD, &[fd as u64, mode as u64], &mut [])?;
        Ok(())
    }

    /// `ftruncate(2)`: set the size of the file open as `fd` (extending with a hole).
    pub fn ftruncate(&self, fd: i32, len: i64) -> Result<(), Error> {
        self.syscall(SYS_FTRUNCATE, &[fd as u64, 0, len as u64], &mut [])?;
        Ok(())
    }

    fn stat_call(&self, num: i32, path: &[u8]) -> Result<Stat, Error> {
        let p = cpath(path)?;
        let mut sb = [0u8; STAT_SIZE];
        let args = [a(&p), a(&sb)];
        self.syscall(num, &args, &mut [Region::In(&p), Region::Out(&mut sb)])?;
        Ok(Stat::decode(&sb).expect("stat buffer has STAT_SIZE bytes"))
    }

    /// `stat(2)`: the attributes of `path`, following a symbolic link.
    pub fn stat(&self, path: impl AsRef<[u8]>) -> Result<Stat, Error> {
        self.stat_call(SYS_STAT, path.as_ref())
    }

    /// `lstat(2)`: the attributes of `path` itself, a symbolic link included.
    pub fn lstat(&self, path: impl AsRef<[u8]>) -> Result<Stat, Error> {
        self.stat_call(SYS_LSTAT, path.as_ref())
    }

    /// `fstat(2)`: the attributes of the file open as `fd`.
    pub fn fstat(&self, fd: i32) -> Result<Stat, Error> {
        let mut sb = [0u8; STAT_SIZE];
        let args = [fd as u64, a(&sb)];
        self.syscall(SYS_FSTAT, &args, &mut [Region::Out(&mut sb)])?;
        Ok(Stat::decode(&sb).expect("stat buffer has STAT_SIZE bytes"))
    }

    /// One `getdents(fd, buf, bufsize)`: the entries it returned (empty at
    /// the end of the directory).
    pub fn getdents(&self, fd: i32, bufsize: usize) -> Result<Vec<Dirent>, Error> {
        let mut buf = vec![0u8; bufsize.max(512)];
        let args = [fd as u64, a(&buf), buf.len() as u64];
        let n = self.syscall(SYS_GETDENTS, &args, &mut [Region::Out(&mut buf)])?[0] as usize;
        Ok(Dirent::decode_all(&buf[..n.min(buf.len())]))
    }

    /// Every entry of directory `path` (open, getdents until the end, close).
    pub fn read_dir(&self, path: impl AsRef<[u8]>) -> Result<Vec<Dirent>, Error> {
        let fd = self.open(path, O_RDONLY | O_DIRECTORY, 0)?;
        let mut all = Vec::new();
        let r = loop {
            match self.getdents(fd, 16 * 1024) {
                Ok(v) if v.is_empty() => break Ok(()),
                Ok(v) => all.extend(v),
                Err(e) => break Err(e),
            }
        };
        let c = self.close(fd);
        r?;
        c?;
        Ok(all)
    }

    /// `chdir(2)`: the remote process's working directory becomes `path`.
    pub fn chdir(&self, path: impl AsRef<[u8]>) -> Result<(), Error> {
        self.path_call(SYS_CHDIR, path.as_ref(), &[])?;
        Ok(())
    }

    /// `fchdir(2)`: the working directory becomes the directory open as `fd`.
    pub fn fchdir(&self, fd: i32) -> Result<(), Error> {
        self.syscall(SYS_FCHDIR, &[fd as u64], &mut [])?;
        Ok(())
    }

    /// `__getcwd()`: the current directory.
    pub fn getcwd(&self) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0u8; 1024];
        let args = [a(&buf), buf.len() as u64];
        self.syscall(SYS___GETCWD, &args, &mut [Region::Out(&mut buf)])?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        buf.truncate(end);
        Ok(buf)
    }

    /// `mount(fstype, path, flags, data, data.len())`. `data` is the file
    /// system's argument structure; pointers inside it must point into
    /// memory the kernel may read — use [`Client::mount_with`] for that.
    pub fn mount(
        &self,
        fstype: &str,
        path: impl AsRef<[u8]>,
        flags: i32,
        data: &[u8],
    ) -> Result<(), Error> {
        self.mount_with(fstype, path, flags, data, &[])
    }

    /// [`Client::mount`] where `data` refers to the extra readable buffers
    /// `extra` (for example the strings its pointers point at).
    pub fn mount_with(
        &self,
        fstype: &str,
        path: impl AsRef<[u8]>,
        flags: i32,
        data: &[u8],
        extra: &[&[u8]],
    ) -> Result<(), Error> {
        let t = cpath(fstype.as_bytes())?;
        let p = cpath(path.as_ref())?;
        let args = [
            a(&t),
            a(&p),
            flags as u32 as u64,
            a(data),
            data.len() as u64,
        ];
        let mut regions = vec![Region::In(&t), Region::In(&p), Region::In(data)];
        regions.extend(extra.iter().map(|e| Region::In(e)));
        self.syscall(SYS_MOUNT, &args, &mut regions)?;
        Ok(())
    }

    /// Mount the ext2 file system on device `fspec` (a `blk` drive key) at
    /// `path`: `struct ufs_args { char *fspec; }`.
    pub fn mount_ext2(
        &self,
        path: impl AsRef<[u8]>,
        flags: i32,
        fspec: impl AsRef<[u8]>,
    ) -> Result<(), Error> {
        let spec = cpath(fspec.as_ref())?;
        let ufs_args = a(&spec).to_le_bytes();
        self.mount_with(MOUNT_EXT2FS, path, flags, &ufs_args, &[&spec])
    }

    /// `unmount(2)` the file system mounted at `path` (`MNT_FORCE` in `flags`: even when busy).
    pub fn unmount(&self, path: impl AsRef<[u8]>, flags: i32) -> Result<(), Error> {
        self.path_call(SYS_UNMOUNT, path.as_ref(), &[flags as u32 as u64])?;
        Ok(())
    }

    /// `reboot(flags, NULL)` with NetBSD `RB_*` flags. Returns once the
    /// server acknowledged the halt.
    pub fn reboot(&self, flags: i32) -> Result<(), Error> {
        self.syscall(SYS_REBOOT, &[flags as u32 as u64, 0], &mut [])?;
        Ok(())
    }

    /// `__sysctl(name)`: the value's bytes.
    pub fn sysctl(&self, name: &[i32]) -> Result<Vec<u8>, Error> {
        let nb: Vec<u8> = name.iter().flat_map(|x| x.to_le_bytes()).collect();
        // First ask for the size, then fetch (retrying if it grew).
        let mut lenb = 0u64.to_le_bytes();
        let args = [a(&nb), name.len() as u64, 0, a(&lenb), 0, 0];
        let size = match self.syscall(
            SYS___SYSCTL,
            &args,
            &mut [Region::In(&nb), Region::InOut(&mut lenb)],
        ) {
            Ok(_) => u64::from_le_bytes(lenb) as usize,
            Err(_) => 1024,
        };
        let mut want = size.max(16);
        for _ in 0..4 {
            let mut buf = vec![0u8; want];
            let mut lenb = (want as u64).to_le_bytes();
            let args = [a(&nb), name.len() as u64, a(&buf), a(&lenb), 0, 0];
            match self.syscall(
                SYS___SYSCTL,
                &args,
                &mut [
                    Region::In(&nb),
                    Region::Out(&mut buf),
                    Region::InOut(&mut lenb),
                ],
            ) {
                Ok(_) => {
                    let n = u64::from_le_bytes(lenb) as usize;
                    buf.truncate(n.min(want));
                    return Ok(buf);
                }
                Err(e) if e.is_errno(ENOMEM) => want *= 4,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Errno(Errno(ENOMEM)))
    }
}
