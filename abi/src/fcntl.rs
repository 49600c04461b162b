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
