//! NetBSD `struct statvfs` as `statvfs1(2)` (syscall 357, the layout
//! before NetBSD 10 added `f_mntfromlabel`) fills it on amd64: 2256 bytes.
//!
//! Offsets: flag, bsize, frsize, iosize (u64 each) @0/8/16/24; blocks,
//! bfree, bavail, bresvd @32/40/48/56; files, ffree, favail, fresvd
//! @64/72/80/88; syncreads, syncwrites, asyncreads, asyncwrites
//! @96/104/112/120; fsidx (2 × i32) @128; fsid u64 @136; namemax u64 @144;
//! owner u32 @152; spare [u32; 4] @156; fstypename [32] @172; mntonname
//! [1024] @204; mntfromname [1024] @1228; padded to 8.

/// Size of `f_fstypename`, NUL included.
pub const VFS_NAMELEN: usize = 32;
/// Size of `f_mntonname` and `f_mntfromname`, NUL included.
pub const VFS_MNAMELEN: usize = 1024;
/// Size of the `struct statvfs` this module encodes.
pub const STATVFS_SIZE: usize = 2256;

/// NetBSD's `struct statvfs`, decoded: what `statvfs1(2)` and `fstatvfs1(2)` return.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Statvfs {
    /// Mount flags (`MNT_*`).
    pub flag: u64,
    /// File system block size.
    pub bsize: u64,
    /// Fundamental block size: the unit of the block counts.
    pub frsize: u64,
    /// Optimal I/O size.
    pub iosize: u64,
    /// Blocks in the file system (in `frsize` units).
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks an unprivileged user may use.
    pub bavail: u64,
    /// Blocks reserved for the superuser.
    pub bresvd: u64,
    /// Inodes in the file system.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Free inodes an unprivileged user may use.
    pub favail: u64,
    /// Inodes reserved for the superuser.
    pub fresvd: u64,
    /// File system id, as two words.
    pub fsidx: [i32; 2],
    /// File system id, as one number.
    pub fsid: u64,
    /// Longest file name.
    pub namemax: u64,
    /// The user that mounted the file system.
    pub owner: u32,
    /// File system type name (such as `ext2fs`); truncated to fit, NUL-terminated on the wire.
    pub fstypename: Vec<u8>,
    /// Where it is mounted.
    pub mntonname: Vec<u8>,
    /// What is mounted (the device or drive key).
    pub mntfromname: Vec<u8>,
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

fn name_at(b: &[u8], off: usize, len: usize) -> Vec<u8> {
    let s = b.get(off..off + len).unwrap_or(&[]);
    let n = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    s[..n].to_vec()
}

fn put_name(b: &mut [u8], off: usize, len: usize, name: &[u8]) {
    // Always NUL-terminated: at most len - 1 bytes of the name.
    let n = name.len().min(len - 1);
    b[off..off + n].copy_from_slice(&name[..n]);
}

impl Statvfs {
    /// The [`STATVFS_SIZE`] bytes a NetBSD program reads; names longer than their field are cut, always NUL-terminated.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; STATVFS_SIZE];
        let words = [
            self.flag,
            self.bsize,
            self.frsize,
            self.iosize,
            self.blocks,
            self.bfree,
            self.bavail,
            self.bresvd,
            self.files,
            self.ffree,
            self.favail,
            self.fresvd,
        ];
        for (i, w) in words.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b[128..132].copy_from_slice(&self.fsidx[0].to_le_bytes());
        b[132..136].copy_from_slice(&self.fsidx[1].to_le_bytes());
        b[136..144].copy_from_slice(&self.fsid.to_le_bytes());
        b[144..152].copy_from_slice(&self.namemax.to_le_bytes());
        b[152..156].copy_from_slice(&self.owner.to_le_bytes());
        put_name(&mut b, 172, VFS_NAMELEN, &self.fstypename);
        put_name(&mut b, 204, VFS_MNAMELEN, &self.mntonname);
        put_name(&mut b, 1228, VFS_MNAMELEN, &self.mntfromname);
        b
    }

    /// Decode; `None` if `b` is shorter than the structure.
    pub fn decode(b: &[u8]) -> Option<Statvfs> {
        if b.len() < STATVFS_SIZE {
            return None;
        }
        let i32_at = |o: usize| i32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        Some(Statvfs {
            flag: u64_at(b, 0),
            bsize: u64_at(b, 8),
            frsize: u64_at(b, 16),
            iosize: u64_at(b, 24),
            blocks: u64_at(b, 32),
            bfree: u64_at(b, 40),
            bavail: u64_at(b, 48),
            bresvd: u64_at(b, 56),
            files: u64_at(b, 64),
            ffree: u64_at(b, 72),
            favail: u64_at(b, 80),
            fresvd: u64_at(b, 88),
            fsidx: [i32_at(128), i32_at(132)],
            fsid: u64_at(b, 136),
            namemax: u64_at(b, 144),
            owner: i32_at(152) as u32,
            fstypename: name_at(b, 172, VFS_NAMELEN),
            mntonname: name_at(b, 204, VFS_MNAMELEN),
            mntfromname: name_at(b, 1228, VFS_MNAMELEN),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = Statvfs {
            flag: 0x1001,
            bsize: 4096,
            frsize: 4096,
            blocks: 100,
            bfree: 50,
            fstypename: b"ext2fs".to_vec(),
            mntonname: b"/mnt".to_vec(),
            mntfromname: b"/dk".to_vec(),
            ..Default::default()
        };
        let b = s.encode();
        assert_eq!(b.len(), STATVFS_SIZE);
        assert_eq!(&b[172..178], b"ext2fs");
        assert_eq!(Statvfs::decode(&b), Some(s));
        assert_eq!(Statvfs::decode(&b[..100]), None);
    }
}
