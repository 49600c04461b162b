//! NetBSD `open(2)` flags, `lseek` whence values, mount flags.

pub const O_RDONLY: i32 = 0x0000_0000;
pub const O_WRONLY: i32 = 0x0000_0001;
pub const O_RDWR: i32 = 0x0000_0002;
pub const O_ACCMODE: i32 = 0x0000_0003;
pub const O_NONBLOCK: i32 = 0x0000_0004;
pub const O_APPEND: i32 = 0x0000_0008;
pub const O_SHLOCK: i32 = 0x0000_0010;
pub const O_EXLOCK: i32 = 0x0000_0020;
pub const O_ASYNC: i32 = 0x0000_0040;
pub const O_SYNC: i32 = 0x0000_0080;
pub const O_NOFOLLOW: i32 = 0x0000_0100;
pub const O_CREAT: i32 = 0x0000_0200;
pub const O_TRUNC: i32 = 0x0000_0400;
pub const O_EXCL: i32 = 0x0000_0800;
pub const O_NOCTTY: i32 = 0x0000_8000;
pub const O_DSYNC: i32 = 0x0001_0000;
pub const O_RSYNC: i32 = 0x0002_0000;
pub const O_DIRECT: i32 = 0x0008_0000;
pub const O_DIRECTORY: i32 = 0x0020_0000;
pub const O_CLOEXEC: i32 = 0x0040_0000;
pub const O_SEARCH: i32 = 0x0080_0000;
pub const O_NOSIGPIPE: i32 = 0x0100_0000;

pub const SEEK_SET: i32 = 0;
pub const SEEK_CUR: i32 = 1;
pub const SEEK_END: i32 = 2;

pub const AT_FDCWD: i32 = -100;

/// `mount(2)` flags (`sys/fstypes.h`).
pub const MNT_RDONLY: i32 = 0x0000_0001;
pub const MNT_SYNCHRONOUS: i32 = 0x0000_0002;
pub const MNT_UPDATE: i32 = 0x0001_0000;
pub const MNT_FORCE: i32 = 0x0008_0000;

/// The file system type name of ext2 in `mount(2)`.
pub const MOUNT_EXT2FS: &str = "ext2fs";

/// `struct ufs_args { char *fspec; }`: one pointer.
pub const UFS_ARGS_SIZE: usize = 8;

/// `*at` flags (`sys/fcntl.h`).
pub const AT_EACCESS: i32 = 0x100;
pub const AT_SYMLINK_NOFOLLOW: i32 = 0x200;
pub const AT_SYMLINK_FOLLOW: i32 = 0x400;
pub const AT_REMOVEDIR: i32 = 0x800;

/// `fcntl(2)` commands.
pub const F_DUPFD: i32 = 0;
pub const F_GETFD: i32 = 1;
pub const F_SETFD: i32 = 2;
pub const F_GETFL: i32 = 3;
pub const F_SETFL: i32 = 4;
pub const F_DUPFD_CLOEXEC: i32 = 12;
/// The descriptor flag `F_GETFD`/`F_SETFD` carry.
pub const FD_CLOEXEC: i32 = 1;
/// Status flags `F_SETFL` may change (`FCNTLFLAGS`).
pub const FCNTL_SETFL_MASK: i32 =
    O_APPEND | O_NONBLOCK | O_ASYNC | O_SYNC | O_DSYNC | O_RSYNC | O_DIRECT | O_NOSIGPIPE;

/// `access(2)` modes.
pub const F_OK: i32 = 0;
pub const X_OK: i32 = 0x01;
pub const W_OK: i32 = 0x02;
pub const R_OK: i32 = 0x04;

/// `fsync_range(2)` flags: one of `FDATASYNC`/`FFILESYNC` is required.
pub const FDATASYNC: i32 = 0x0010;
pub const FFILESYNC: i32 = 0x0020;
pub const FDISKSYNC: i32 = 0x0040;

/// `struct iovec` on amd64: base pointer, length; 16 bytes.
pub const IOVEC_SIZE: usize = 16;
/// `IOV_MAX`: more vectors in one call is `EINVAL`.
pub const IOV_MAX: usize = 1024;

/// `statvfs1(2)` flags.
pub const ST_WAIT: i32 = 1;
pub const ST_NOWAIT: i32 = 2;
/// `mount(2)`/`statvfs` flag: the file system is local.
pub const MNT_LOCAL: i32 = 0x0000_1000;
