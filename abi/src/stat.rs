//! NetBSD `struct stat` (the `__stat50` layout) on amd64: 152 bytes.
//!
//! Offsets: dev u64 @0, mode u32 @8, ino u64 @16, nlink u32 @24, uid u32
//! @28, gid u32 @32, rdev u64 @40, atim/mtim/ctim/birthtim (i64 sec, i64
//! nsec) @48/64/80/96, size i64 @112, blocks i64 @120, blksize i32 @128,
//! flags u32 @132, gen u32 @136, spare [u32; 2] @140.

/// Mask of the file type in `st_mode`.
pub const S_IFMT: u32 = 0o170000;
/// File type: named pipe.
pub const S_IFIFO: u32 = 0o010000;
/// File type: character device.
pub const S_IFCHR: u32 = 0o020000;
/// File type: directory.
pub const S_IFDIR: u32 = 0o040000;
/// File type: block device.
pub const S_IFBLK: u32 = 0o060000;
/// File type: regular file.
pub const S_IFREG: u32 = 0o100000;
/// File type: symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// File type: socket.
pub const S_IFSOCK: u32 = 0o140000;

/// Size of NetBSD's `struct stat` on amd64 (see the offsets above).
pub const STAT_SIZE: usize = 152;

/// A time: seconds and nanoseconds since the epoch (`nsec` in 0..1e9, or `UTIME_NOW`/`UTIME_OMIT` where a call allows them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timespec {
    /// Seconds.
    pub sec: i64,
    /// Nanoseconds.
    pub nsec: i64,
}

/// NetBSD's `struct stat`, decoded: what `stat(2)`, `lstat(2)` and `fstat(2)` return.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// The device (file system) the file lives on.
    pub dev: u64,
    /// File type (`S_IF*`) and permission bits.
    pub mode: u32,
    /// Inode number, unique within `dev`.
    pub ino: u64,
    /// Number of hard links.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// For a device file: the device it stands for.
    pub rdev: u64,
    /// Last access.
    pub atime: Timespec,
    /// Last change of the contents.
    pub mtime: Timespec,
    /// Last change of the inode.
    pub ctime: Timespec,
    /// Creation (zero where the file system does not record it).
    pub birthtime: Timespec,
    /// Size in bytes.
    pub size: i64,
    /// Space allocated, in 512-byte blocks.
    pub blocks: i64,
    /// Preferred I/O size.
    pub blksize: i32,
    /// User-settable file flags (`chflags(2)`).
    pub flags: u32,
    /// Inode generation number.
    pub gen: u32,
}

impl Stat {
    /// Whether the file is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
    /// Whether the file is a regular file.
    pub fn is_reg(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }
    /// Whether the file is a symbolic link.
    pub fn is_lnk(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }

    /// The 152 bytes a NetBSD program reads.
    pub fn encode(&self) -> [u8; STAT_SIZE] {
        let mut b = [0u8; STAT_SIZE];
        put(&mut b, 0, &self.dev.to_le_bytes());
        put(&mut b, 8, &self.mode.to_le_bytes());
        put(&mut b, 16, &self.ino.to_le_bytes());
        put(&mut b, 24, &self.nlink.to_le_bytes());
        put(&mut b, 28, &self.uid.to_le_bytes());
        put(&mut b, 32, &self.gid.to_le_bytes());
        put(&mut b, 40, &self.rdev.to_le_bytes());
        for (i, t) in [self.atime, self.mtime, self.ctime, self.birthtime]
            .iter()
            .enumerate()
        {
            put(&mut b, 48 + 16 * i, &t.sec.to_le_bytes());
            put(&mut b, 56 + 16 * i, &t.nsec.to_le_bytes());
        }
        put(&mut b, 112, &self.size.to_le_bytes());
        put(&mut b, 120, &self.blocks.to_le_bytes());
        put(&mut b, 128, &self.blksize.to_le_bytes());
        put(&mut b, 132, &self.flags.to_le_bytes());
        put(&mut b, 136, &self.gen.to_le_bytes());
        b
    }

    /// Decode the first [`STAT_SIZE`] bytes of `b`; `None` if it is short.
    pub fn decode(b: &[u8]) -> Option<Stat> {
        if b.len() < STAT_SIZE {
            return None;
        }
        let ts = |o: usize| Timespec {
            sec: i64_at(b, o),
            nsec: i64_at(b, o + 8),
        };
        Some(Stat {
            dev: u64_at(b, 0),
            mode: u32_at(b, 8),
            ino: u64_at(b, 16),
            nlink: u32_at(b, 24),
            uid: u32_at(b, 28),
            gid: u32_at(b, 32),
            rdev: u64_at(b, 40),
            atime: ts(48),
            mtime: ts(64),
            ctime: ts(80),
            birthtime: ts(96),
            size: i64_at(b, 112),
            blocks: i64_at(b, 120),
            blksize: u32_at(b, 128) as i32,
            flags: u32_at(b, 132),
            gen: u32_at(b, 136),
        })
    }
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    b[off..off + v.len()].copy_from_slice(v);
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}
fn i64_at(b: &[u8], o: usize) -> i64 {
    u64_at(b, o) as i64
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[o..o + 4]);
    u32::from_le_bytes(a)
}

/// `utimensat(2)`/`futimens(2)` special `tv_nsec` values.
pub const UTIME_NOW: i64 = (1 << 30) - 1;
/// `tv_nsec` that leaves that time unchanged.
pub const UTIME_OMIT: i64 = (1 << 30) - 2;

/// `struct timespec` on amd64: 16 bytes (i64 sec, long nsec).
pub const TIMESPEC_SIZE: usize = 16;
/// `struct timeval` on amd64: 16 bytes (i64 sec, int usec, 4 bytes pad).
pub const TIMEVAL_SIZE: usize = 16;

/// Permission bits: set-user-id, set-group-id, sticky.
pub const S_ISUID: u32 = 0o4000;
/// Set-group-id bit.
pub const S_ISGID: u32 = 0o2000;
/// Sticky bit (in a directory: only the owner may remove or rename an entry).
pub const S_ISVTX: u32 = 0o1000;

impl Timespec {
    /// For `utimensat(2)`/`futimens(2)`: set this time to the kernel's now.
    pub const NOW: Timespec = Timespec {
        sec: 0,
        nsec: UTIME_NOW,
    };
    /// For `utimensat(2)`/`futimens(2)`: leave this time as it is.
    pub const OMIT: Timespec = Timespec {
        sec: 0,
        nsec: UTIME_OMIT,
    };

    /// Decode one `struct timespec` (16 bytes); `None` if short.
    pub fn decode(b: &[u8]) -> Option<Timespec> {
        let sec = i64::from_le_bytes(b.get(0..8)?.try_into().ok()?);
        let nsec = i64::from_le_bytes(b.get(8..16)?.try_into().ok()?);
        Some(Timespec { sec, nsec })
    }

    /// The 16 bytes of a `struct timespec`.
    pub fn encode(&self) -> [u8; TIMESPEC_SIZE] {
        let mut b = [0u8; TIMESPEC_SIZE];
        b[..8].copy_from_slice(&self.sec.to_le_bytes());
        b[8..].copy_from_slice(&self.nsec.to_le_bytes());
        b
    }

    /// Decode one `struct timeval` as a timespec (`None` if short).
    pub fn decode_timeval(b: &[u8]) -> Option<(i64, i64)> {
        let sec = i64::from_le_bytes(b.get(0..8)?.try_into().ok()?);
        let usec = i32::from_le_bytes(b.get(8..12)?.try_into().ok()?) as i64;
        Some((sec, usec))
    }

    /// Encode as a `struct timeval` (microseconds, truncated).
    pub fn encode_timeval(&self) -> [u8; TIMEVAL_SIZE] {
        let mut b = [0u8; TIMEVAL_SIZE];
        b[..8].copy_from_slice(&self.sec.to_le_bytes());
        b[8..12].copy_from_slice(&((self.nsec / 1000) as i32).to_le_bytes());
        b
    }
}

/// The `struct timespec[2]` (access, modification) that `utimensat(2)`
/// and `futimens(2)` read: 32 bytes.
pub fn encode_times(t: [Timespec; 2]) -> [u8; 2 * TIMESPEC_SIZE] {
    let mut b = [0u8; 2 * TIMESPEC_SIZE];
    b[..TIMESPEC_SIZE].copy_from_slice(&t[0].encode());
    b[TIMESPEC_SIZE..].copy_from_slice(&t[1].encode());
    b
}

/// The `struct timeval[2]` (access, modification) that `utimes(2)` reads:
/// 32 bytes, microseconds truncated.
pub fn encode_timevals(t: [Timespec; 2]) -> [u8; 2 * TIMEVAL_SIZE] {
    let mut b = [0u8; 2 * TIMEVAL_SIZE];
    b[..TIMEVAL_SIZE].copy_from_slice(&t[0].encode_timeval());
    b[TIMEVAL_SIZE..].copy_from_slice(&t[1].encode_timeval());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip() {
        let s = Stat {
            dev: 1,
            mode: S_IFREG | 0o644,
            ino: 7,
            nlink: 2,
            uid: 3,
            gid: 4,
            rdev: 5,
            atime: Timespec { sec: 10, nsec: 11 },
            mtime: Timespec { sec: 12, nsec: 13 },
            ctime: Timespec { sec: 14, nsec: 15 },
            birthtime: Timespec { sec: 16, nsec: 17 },
            size: 1 << 40,
            blocks: 8,
            blksize: 4096,
            flags: 0,
            gen: 9,
        };
        assert_eq!(Stat::decode(&s.encode()), Some(s));
        assert_eq!(u64_at(&s.encode(), 112), 1 << 40);
    }
}
