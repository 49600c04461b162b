//! NetBSD system call numbers (`sys/kern/syscalls.master`) and the amd64
//! argument block: every argument sits in its own 8-byte, little-endian
//! slot, in declaration order (`PAD` slots included).

/// `exit(2)`.
pub const SYS_EXIT: i32 = 1;
/// `read(2)`.
pub const SYS_READ: i32 = 3;
/// `write(2)`.
pub const SYS_WRITE: i32 = 4;
/// `open(2)`.
pub const SYS_OPEN: i32 = 5;
/// `close(2)`.
pub const SYS_CLOSE: i32 = 6;
/// `link(2)`.
pub const SYS_LINK: i32 = 9;
/// `unlink(2)`.
pub const SYS_UNLINK: i32 = 10;
/// `chdir(2)`.
pub const SYS_CHDIR: i32 = 12;
/// `fchdir(2)`.
pub const SYS_FCHDIR: i32 = 13;
/// `chmod(2)`.
pub const SYS_CHMOD: i32 = 15;
/// `getpid_with_ppid`: retval[0] = pid, retval[1] = ppid.
pub const SYS_GETPID: i32 = 20;
/// `unmount(2)`: (path, flags).
pub const SYS_UNMOUNT: i32 = 22;
/// `sync(2)`.
pub const SYS_SYNC: i32 = 36;
/// `symlink(2)`.
pub const SYS_SYMLINK: i32 = 57;
/// `readlink(2)`.
pub const SYS_READLINK: i32 = 58;
/// `fsync(2)`.
pub const SYS_FSYNC: i32 = 95;
/// `fchmod(2)`.
pub const SYS_FCHMOD: i32 = 124;
/// `rename(2)`.
pub const SYS_RENAME: i32 = 128;
/// `mkdir(2)`.
pub const SYS_MKDIR: i32 = 136;
/// `rmdir(2)`.
pub const SYS_RMDIR: i32 = 137;
/// (fd, buf, nbyte, PAD, offset)
pub const SYS_PREAD: i32 = 173;
/// (fd, buf, nbyte, PAD, offset)
pub const SYS_PWRITE: i32 = 174;
/// (fd, PAD, offset, whence)
pub const SYS_LSEEK: i32 = 199;
/// (fd, PAD, length)
pub const SYS_FTRUNCATE: i32 = 201;
/// (name, namelen, oldv, oldlenp, newv, newlen)
pub const SYS___SYSCTL: i32 = 202;
/// (opt, bootstr)
pub const SYS_REBOOT: i32 = 208;
/// `fdatasync(2)`.
pub const SYS_FDATASYNC: i32 = 241;
/// (bufp, length)
pub const SYS___GETCWD: i32 = 296;
/// `getdents` (compat 30 name): (fd, buf, count)
pub const SYS_GETDENTS: i32 = 390;
/// `mount` (compat 50 name): (type, path, flags, data, data_len)
pub const SYS_MOUNT: i32 = 410;
/// `stat` (compat 50 name): (path, ub)
pub const SYS_STAT: i32 = 439;
/// `fstat(2)`.
pub const SYS_FSTAT: i32 = 440;
/// `lstat(2)`.
pub const SYS_LSTAT: i32 = 441;

// File attributes, credentials, descriptors, vectored I/O, the *at family.
/// (path, uid, gid)
pub const SYS_CHOWN: i32 = 16;
/// `getuid_with_euid`: retval[0] = uid, retval[1] = euid.
pub const SYS_GETUID: i32 = 24;
/// `geteuid(2)`.
pub const SYS_GETEUID: i32 = 25;
/// (path, amode)
pub const SYS_ACCESS: i32 = 33;
/// `dup(2)`.
pub const SYS_DUP: i32 = 41;
/// `getegid(2)`.
pub const SYS_GETEGID: i32 = 43;
/// `getgid_with_egid`: retval[0] = gid, retval[1] = egid.
pub const SYS_GETGID: i32 = 47;
/// `umask(2)`.
pub const SYS_UMASK: i32 = 60;
/// (gidsetsize, gidset)
pub const SYS_GETGROUPS: i32 = 79;
/// `dup2(2)`.
pub const SYS_DUP2: i32 = 90;
/// (fd, cmd, arg)
pub const SYS_FCNTL: i32 = 92;
/// (fd, iovp, iovcnt)
pub const SYS_READV: i32 = 120;
/// `writev(2)`.
pub const SYS_WRITEV: i32 = 121;
/// `fchown(2)`.
pub const SYS_FCHOWN: i32 = 123;
/// (path, mode)
pub const SYS_MKFIFO: i32 = 132;
/// (path, PAD, length)
pub const SYS_TRUNCATE: i32 = 200;
/// `lchmod(2)`.
pub const SYS_LCHMOD: i32 = 274;
/// `lchown(2)`.
pub const SYS_LCHOWN: i32 = 275;
/// The POSIX-semantics chown family libc calls (same behaviour here).
pub const SYS___POSIX_CHOWN: i32 = 283;
/// `fchown(2)` with POSIX semantics (only root may give a file away).
pub const SYS___POSIX_FCHOWN: i32 = 284;
/// `lchown(2)` with POSIX semantics.
pub const SYS___POSIX_LCHOWN: i32 = 285;
/// (fd, iovp, iovcnt, PAD, offset)
pub const SYS_PREADV: i32 = 289;
/// `pwritev(2)`.
pub const SYS_PWRITEV: i32 = 290;
/// (fd, flags, start, length)
pub const SYS_FSYNC_RANGE: i32 = 354;
/// (path, buf, flags): the pre-10 `struct statvfs` (compat 90).
pub const SYS_STATVFS1: i32 = 357;
/// `fstatvfs1(2)`: (fd, buf, flags).
pub const SYS_FSTATVFS1: i32 = 358;
/// `__utimes50` (path, struct timeval tptr[2])
pub const SYS_UTIMES: i32 = 420;
/// `__futimes50` (fd, tptr)
pub const SYS_FUTIMES: i32 = 423;
/// `__lutimes50` (path, tptr)
pub const SYS_LUTIMES: i32 = 424;
/// `__mknod50` (path, mode, dev)
pub const SYS_MKNOD: i32 = 450;
/// (from, to, flags)
pub const SYS_DUP3: i32 = 454;
/// (fd1, name1, fd2, name2, flags)
pub const SYS_LINKAT: i32 = 457;
/// (fromfd, from, tofd, to)
pub const SYS_RENAMEAT: i32 = 458;
/// (fd, path, mode)
pub const SYS_MKFIFOAT: i32 = 459;
/// (fd, path, mode, PAD, dev)
pub const SYS_MKNODAT: i32 = 460;
/// (fd, path, mode)
pub const SYS_MKDIRAT: i32 = 461;
/// (fd, path, amode, flag)
pub const SYS_FACCESSAT: i32 = 462;
/// (fd, path, mode, flag)
pub const SYS_FCHMODAT: i32 = 463;
/// (fd, path, owner, group, flag)
pub const SYS_FCHOWNAT: i32 = 464;
/// (fd, path, buf, flag)
pub const SYS_FSTATAT: i32 = 466;
/// (fd, path, struct timespec tptr[2], flag)
pub const SYS_UTIMENSAT: i32 = 467;
/// (fd, path, oflags, mode)
pub const SYS_OPENAT: i32 = 468;
/// (fd, path, buf, bufsize)
pub const SYS_READLINKAT: i32 = 469;
/// (path1, fd, path2)
pub const SYS_SYMLINKAT: i32 = 470;
/// (fd, path, flag)
pub const SYS_UNLINKAT: i32 = 471;
/// (fd, tptr)
pub const SYS_FUTIMENS: i32 = 472;

/// Size of one argument slot (`register_t`) on amd64.
pub const ARG_SLOT: usize = 8;

/// Build an argument block from slot values.
pub fn encode_args(args: &[u64]) -> Vec<u8> {
    let mut v = Vec::with_capacity(args.len() * ARG_SLOT);
    for a in args {
        v.extend_from_slice(&a.to_le_bytes());
    }
    v
}

/// Read slot `i` of an argument block; `None` when the block is too short
/// (a malformed request, never a crash).
pub fn arg(block: &[u8], i: usize) -> Option<u64> {
    let s = block.get(i * ARG_SLOT..(i + 1) * ARG_SLOT)?;
    let mut b = [0u8; 8];
    b.copy_from_slice(s);
    Some(u64::from_le_bytes(b))
}

/// Number of argument slots each supported syscall reads; a request whose
/// block is shorter than this is malformed. `None` for unknown numbers.
pub fn nargs(num: i32) -> Option<usize> {
    Some(match num {
        SYS_GETPID | SYS_SYNC => 0,
        SYS_EXIT | SYS_CLOSE | SYS_UNLINK | SYS_CHDIR | SYS_FCHDIR | SYS_FSYNC | SYS_RMDIR
        | SYS_FDATASYNC => 1,
        SYS_LINK | SYS_CHMOD | SYS_UNMOUNT | SYS_SYMLINK | SYS_FCHMOD | SYS_RENAME | SYS_MKDIR
        | SYS_REBOOT | SYS___GETCWD | SYS_STAT | SYS_FSTAT | SYS_LSTAT => 2,
        SYS_READ | SYS_WRITE | SYS_OPEN | SYS_READLINK | SYS_FTRUNCATE | SYS_GETDENTS => 3,
        SYS_LSEEK => 4,
        SYS_PREAD | SYS_PWRITE | SYS_MOUNT => 5,
        SYS___SYSCTL => 6,
        SYS_GETUID | SYS_GETEUID | SYS_GETGID | SYS_GETEGID => 0,
        SYS_DUP | SYS_UMASK => 1,
        SYS_ACCESS | SYS_GETGROUPS | SYS_DUP2 | SYS_MKFIFO | SYS_LCHMOD | SYS_UTIMES
        | SYS_FUTIMES | SYS_LUTIMES | SYS_FUTIMENS => 2,
        SYS_CHOWN | SYS_FCHOWN | SYS_LCHOWN | SYS___POSIX_CHOWN | SYS___POSIX_FCHOWN
        | SYS___POSIX_LCHOWN | SYS_FCNTL | SYS_READV | SYS_WRITEV | SYS_TRUNCATE | SYS_STATVFS1
        | SYS_FSTATVFS1 | SYS_MKNOD | SYS_DUP3 | SYS_MKFIFOAT | SYS_MKDIRAT | SYS_SYMLINKAT
        | SYS_UNLINKAT => 3,
        SYS_FSYNC_RANGE | SYS_RENAMEAT | SYS_FACCESSAT | SYS_FCHMODAT | SYS_FSTATAT
        | SYS_UTIMENSAT | SYS_OPENAT | SYS_READLINKAT => 4,
        SYS_PREADV | SYS_PWRITEV | SYS_LINKAT | SYS_MKNODAT | SYS_FCHOWNAT => 5,
        _ => return None,
    })
}
