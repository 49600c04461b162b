//! NetBSD system call numbers (`sys/kern/syscalls.master`) and the amd64
//! argument block: every argument sits in its own 8-byte, little-endian
//! slot, in declaration order (`PAD` slots included).

pub const SYS_EXIT: i32 = 1;
pub const SYS_READ: i32 = 3;
pub const SYS_WRITE: i32 = 4;
pub const SYS_OPEN: i32 = 5;
pub const SYS_CLOSE: i32 = 6;
pub const SYS_LINK: i32 = 9;
pub const SYS_UNLINK: i32 = 10;
pub const SYS_CHDIR: i32 = 12;
pub const SYS_FCHDIR: i32 = 13;
pub const SYS_CHMOD: i32 = 15;
/// `getpid_with_ppid`: retval[0] = pid, retval[1] = ppid.
pub const SYS_GETPID: i32 = 20;
pub const SYS_UNMOUNT: i32 = 22;
pub const SYS_SYNC: i32 = 36;
pub const SYS_SYMLINK: i32 = 57;
pub const SYS_READLINK: i32 = 58;
pub const SYS_FSYNC: i32 = 95;
pub const SYS_FCHMOD: i32 = 124;
pub const SYS_RENAME: i32 = 128;
pub const SYS_MKDIR: i32 = 136;
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
pub const SYS_FDATASYNC: i32 = 241;
/// (bufp, length)
pub const SYS___GETCWD: i32 = 296;
/// `getdents` (compat 30 name): (fd, buf, count)
pub const SYS_GETDENTS: i32 = 390;
/// `mount` (compat 50 name): (type, path, flags, data, data_len)
pub const SYS_MOUNT: i32 = 410;
/// `stat` (compat 50 name): (path, ub)
pub const SYS_STAT: i32 = 439;
pub const SYS_FSTAT: i32 = 440;
pub const SYS_LSTAT: i32 = 441;

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
        SYS_LINK | SYS_CHMOD | SYS_UNMOUNT | SYS_SYMLINK | SYS_FCHMOD | SYS_RENAME
        | SYS_MKDIR | SYS_REBOOT | SYS___GETCWD | SYS_STAT | SYS_FSTAT | SYS_LSTAT => 2,
        SYS_READ | SYS_WRITE | SYS_OPEN | SYS_READLINK | SYS_FTRUNCATE | SYS_GETDENTS => 3,
        SYS_LSEEK => 4,
        SYS_PREAD | SYS_PWRITE | SYS_MOUNT => 5,
        SYS___SYSCTL => 6,
        _ => return None,
    })
}
