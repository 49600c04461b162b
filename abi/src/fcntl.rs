//! NetBSD `open(2)` flags, `lseek` whence values, mount flags.

/// `open(2)`: open for reading only.
pub const O_RDONLY: i32 = 0x0000_0000;
/// `open(2)`: open for writing only.
pub const O_WRONLY: i32 = 0x0000_0001;
/// `open(2)`: open for reading and writing.
pub const O_RDWR: i32 = 0x0000_0002;
/// Mask of the access mode (`O_RDONLY`, `O_WRONLY`, `O_RDWR`) in the open flags.
pub const O_ACCMODE: i32 = 0x0000_0003;
/// Do not block on open or on I/O.
pub const O_NONBLOCK: i32 = 0x0000_0004;
/// Every write appends at the end of the file.
pub const O_APPEND: i32 = 0x0000_0008;
/// Take a shared `flock(2)` lock at open.
pub const O_SHLOCK: i32 = 0x0000_0010;
/// Take an exclusive `flock(2)` lock at open.
pub const O_EXLOCK: i32 = 0x0000_0020;
/// Signal the process when I/O is possible.
pub const O_ASYNC: i32 = 0x0000_0040;
/// Writes are durable, data and metadata, when they return.
pub const O_SYNC: i32 = 0x0000_0080;
/// Fail (`ELOOP`) instead of following a symbolic link in the last component.
pub const O_NOFOLLOW: i32 = 0x0000_0100;
/// Create the file if it does not exist.
pub const O_CREAT: i32 = 0x0000_0200;
/// Truncate the file to length 0 at open.
pub const O_TRUNC: i32 = 0x0000_0400;
/// With `O_CREAT`: fail (`EEXIST`) if the file exists.
pub const O_EXCL: i32 = 0x0000_0800;
/// Do not make a terminal the controlling one (no effect here).
pub const O_NOCTTY: i32 = 0x0000_8000;
/// Writes are durable, data and the metadata needed to read it, when they return.
pub const O_DSYNC: i32 = 0x0001_0000;
/// Reads wait for pending writes to the same data (with `O_SYNC`/`O_DSYNC`).
pub const O_RSYNC: i32 = 0x0002_0000;
/// Bypass the buffer cache where the file system can.
pub const O_DIRECT: i32 = 0x0008_0000;
/// Fail (`ENOTDIR`) unless the path names a directory.
pub const O_DIRECTORY: i32 = 0x0020_0000;
/// Set `FD_CLOEXEC` on the new descriptor.
pub const O_CLOEXEC: i32 = 0x0040_0000;
/// Open a directory for searching only (for the `*at` calls).
pub const O_SEARCH: i32 = 0x0080_0000;
/// Writes to a broken pipe fail with `EPIPE` without raising `SIGPIPE`.
pub const O_NOSIGPIPE: i32 = 0x0100_0000;

/// `lseek(2)`: the offset is from the start of the file.
pub const SEEK_SET: i32 = 0;
/// `lseek(2)`: the offset is from the current position.
pub const SEEK_CUR: i32 = 1;
/// `lseek(2)`: the offset is from the end of the file.
pub const SEEK_END: i32 = 2;

/// The `*at` calls' directory descriptor that means "the current directory".
pub const AT_FDCWD: i32 = -100;

/// `mount(2)` flags (`sys/fstypes.h`).
pub const MNT_RDONLY: i32 = 0x0000_0001;
/// `mount(2)`: all I/O to the file system is synchronous.
pub const MNT_SYNCHRONOUS: i32 = 0x0000_0002;
/// `mount(2)`: change the flags of an existing mount (say, read-only to read-write).
pub const MNT_UPDATE: i32 = 0x0001_0000;
/// `mount(2)`: mount even a file system that was not cleanly unmounted; `unmount(2)`: unmount even when busy.
pub const MNT_FORCE: i32 = 0x0008_0000;

/// The file system type name of ext2 in `mount(2)`.
pub const MOUNT_EXT2FS: &str = "ext2fs";

/// `struct ufs_args { char *fspec; }`: one pointer.
pub const UFS_ARGS_SIZE: usize = 8;

/// `*at` flags (`sys/fcntl.h`).
pub const AT_EACCESS: i32 = 0x100;
/// `*at` flag: act on a symbolic link itself, not on its target.
pub const AT_SYMLINK_NOFOLLOW: i32 = 0x200;
/// `linkat(2)` flag: follow a symbolic link given as the source.
pub const AT_SYMLINK_FOLLOW: i32 = 0x400;
/// `unlinkat(2)` flag: remove a directory, as `rmdir(2)`.
pub const AT_REMOVEDIR: i32 = 0x800;

/// `fcntl(2)` commands.
pub const F_DUPFD: i32 = 0;
/// `fcntl(2)`: get the descriptor flags (`FD_CLOEXEC`).
pub const F_GETFD: i32 = 1;
/// `fcntl(2)`: set the descriptor flags.
pub const F_SETFD: i32 = 2;
/// `fcntl(2)`: get the status flags and access mode.
pub const F_GETFL: i32 = 3;
/// `fcntl(2)`: set the status flags in `FCNTL_SETFL_MASK`.
pub const F_SETFL: i32 = 4;
/// `fcntl(2)`: duplicate to the lowest free descriptor at or above the argument, with `FD_CLOEXEC` set.
pub const F_DUPFD_CLOEXEC: i32 = 12;
/// The descriptor flag `F_GETFD`/`F_SETFD` carry.
pub const FD_CLOEXEC: i32 = 1;
/// Status flags `F_SETFL` may change (`FCNTLFLAGS`).
pub const FCNTL_SETFL_MASK: i32 =
    O_APPEND | O_NONBLOCK | O_ASYNC | O_SYNC | O_DSYNC | O_RSYNC | O_DIRECT | O_NOSIGPIPE;

/// `access(2)` modes.
pub const F_OK: i32 = 0;
/// `access(2)`: may the caller execute (search, for a directory)?
pub const X_OK: i32 = 0x01;
/// `access(2)`: may the caller write?
pub const W_OK: i32 = 0x02;
/// `access(2)`: may the caller read?
pub const R_OK: i32 = 0x04;

/// `fsync_range(2)` flags: one of `FDATASYNC`/`FFILESYNC` is required.
pub const FDATASYNC: i32 = 0x0010;
/// `fsync_range(2)`: flush data and metadata, as `fsync(2)`.
pub const FFILESYNC: i32 = 0x0020;
/// `fsync_range(2)`: also flush the drive's own write cache.
pub const FDISKSYNC: i32 = 0x0040;

/// `struct iovec` on amd64: base pointer, length; 16 bytes.
pub const IOVEC_SIZE: usize = 16;
/// `IOV_MAX`: more vectors in one call is `EINVAL`.
pub const IOV_MAX: usize = 1024;

/// `statvfs1(2)` flags.
pub const ST_WAIT: i32 = 1;
/// `statvfs1(2)`: answer from what is in memory, without refreshing the counters.
pub const ST_NOWAIT: i32 = 2;
/// `mount(2)`/`statvfs` flag: the file system is local.
pub const MNT_LOCAL: i32 = 0x0000_1000;
