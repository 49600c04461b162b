//! Recognizing a file system from its on-disk signatures, as `blkid`
//! does: FFS v1/v2, ext2, FAT12/16/32, ISO 9660, UDF, NTFS. Only reads;
//! every field is bounds-checked (an image is untrusted).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// What was found: NetBSD's type name and a description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// NetBSD's type (`ffs`, `msdos`, ...).
    pub fstype: &'static str,
    /// What it is (`FFS v2`, `FAT32`, ...).
    pub what: &'static str,
}

fn found(fstype: &'static str, what: &'static str) -> Option<Found> {
    Some(Found { fstype, what })
}

/// Bytes read from the start of the image: enough for every signature
/// checked (the FFS superblock at 256 KiB is the farthest).
const HEAD: usize = 272 << 10;

/// Read up to [`HEAD`] bytes at `offset` of `path`.
pub fn read_head(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut b = Vec::with_capacity(HEAD);
    f.take(HEAD as u64).read_to_end(&mut b)?;
    Ok(b)
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The file system whose signatures `b` (the image's first bytes)
/// carries, if one of the known ones.
pub fn probe(b: &[u8]) -> Option<Found> {
    udf(b)
        .or_else(|| iso9660(b))
        .or_else(|| ntfs(b))
        .or_else(|| fat(b))
        .or_else(|| ext2(b))
        .or_else(|| ffs(b))
}

/// UDF: an ECMA-167 volume recognition sequence (`BEA01` ... `NSR02` or
/// `NSR03`) from byte 32768, one descriptor per 2048 bytes, or per
/// block for larger blocks.
fn udf(b: &[u8]) -> Option<Found> {
    for step in [2048usize, 4096] {
        let mut seen_bea = false;
        for i in 0..32 {
            let at = 32768 + i * step;
            let id = b.get(at + 1..at + 6)?;
            match id {
                b"BEA01" => seen_bea = true,
                b"NSR02" | b"NSR03" if seen_bea => return found("udf", "UDF"),
                b"CD001" | b"CDW02" | b"BOOT2" | b"TEA01" => {}
                _ => break,
            }
        }
    }
    None
}

/// The sector size of a UDF image at `offset` of `path`: the size `s`
/// (512, 1024, 2048 or 4096) for which sector 256 holds the anchor volume
/// descriptor pointer (ECMA-167 tag identifier 2, its checksum right, its
/// own location 256), as `mkudffs -b` writes it. `None` when there is no
/// anchor at any of them (or the image cannot be read).
pub fn udf_sector_size(path: &Path, offset: u64) -> Option<u32> {
    let mut f = File::open(path).ok()?;
    for ss in [512u32, 1024, 2048, 4096] {
        let at = offset.checked_add(256 * ss as u64)?;
        let mut tag = [0u8; 16];
        if f.seek(SeekFrom::Start(at)).is_err() || f.read_exact(&mut tag).is_err() {
            continue;
        }
        if udf_anchor(&tag) {
            return Some(ss);
        }
    }
    None
}

/// A descriptor tag (16 bytes) of an anchor volume descriptor pointer
/// at sector 256: identifier 2, its checksum (the sum of the tag's bytes
/// but the checksum's own, modulo 256) right, its location 256.
fn udf_anchor(tag: &[u8; 16]) -> bool {
    let sum = tag
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 4)
        .fold(0u8, |s, (_, b)| s.wrapping_add(*b));
    le16(tag, 0) == Some(2) && tag[4] == sum && le32(tag, 12) == Some(256)
}

/// ISO 9660: a volume descriptor `CD001` at sector 16 (2048 bytes).
fn iso9660(b: &[u8]) -> Option<Found> {
    (b.get(32769..32774)? == b"CD001").then_some(())?;
    found("cd9660", "ISO 9660")
}

/// NTFS: the OEM name `NTFS    ` in the boot sector.
fn ntfs(b: &[u8]) -> Option<Found> {
    (b.get(3..11)? == b"NTFS    " && le16(b, 510)? == 0xaa55).then_some(())?;
    found("ntfs", "NTFS")
}

/// FAT: a BIOS parameter block that adds up; 12, 16 or 32 from the
/// count of clusters, as the FAT specification defines it.
fn fat(b: &[u8]) -> Option<Found> {
    if le16(b, 510)? != 0xaa55 {
        return None;
    }
    let bps = le16(b, 11)? as u64;
    let spc = *b.get(13)? as u64;
    let reserved = le16(b, 14)? as u64;
    let nfats = *b.get(16)? as u64;
    let root_ents = le16(b, 17)? as u64;
    let tot16 = le16(b, 19)? as u64;
    let fatsz16 = le16(b, 22)? as u64;
    let tot32 = le32(b, 32)? as u64;
    let fatsz32 = le32(b, 36)? as u64;
    if !matches!(bps, 512 | 1024 | 2048 | 4096)
        || spc == 0
        || !spc.is_power_of_two()
        || reserved == 0
        || !(1..=2).contains(&nfats)
    {
        return None;
    }
    let fatsz = if fatsz16 != 0 { fatsz16 } else { fatsz32 };
    let total = if tot16 != 0 { tot16 } else { tot32 };
    let root_secs = (root_ents * 32).div_ceil(bps);
    let meta = reserved + nfats * fatsz + root_secs;
    if fatsz == 0 || total <= meta {
        return None;
    }
    let clusters = (total - meta) / spc;
    if clusters < 4085 {
        found("msdos", "FAT12")
    } else if clusters < 65525 {
        found("msdos", "FAT16")
    } else {
        found("msdos", "FAT32")
    }
}

/// ext2 (and ext3/4, which NetBSD's ext2fs mounts only without their
/// newer features): the magic 0xEF53 in the superblock at 1024.
fn ext2(b: &[u8]) -> Option<Found> {
    (le16(b, 1024 + 56)? == 0xef53).then_some(())?;
    found("ext2fs", "ext2")
}

/// FFS: the superblock magic (UFS1 0x011954, UFS2 0x19540119, either
/// byte order) at 1372 bytes into a superblock at one of the places
/// NetBSD looks (64 KiB, 8 KiB, 0, 256 KiB).
fn ffs(b: &[u8]) -> Option<Found> {
    for sb in [65536usize, 8192, 0, 262144] {
        for v in [le32(b, sb + 1372), be32(b, sb + 1372)]
            .into_iter()
            .flatten()
        {
            match v {
                0x0001_1954 => return found("ffs", "FFS v1"),
                0x1954_0119 => return found("ffs", "FFS v2"),
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_in_zeros_or_short_input() {
        assert_eq!(probe(&[0u8; HEAD]), None);
        assert_eq!(probe(&[]), None);
        assert_eq!(probe(&[0xffu8; 3000]), None);
    }

    #[test]
    fn signatures() {
        let mut b = vec![0u8; HEAD];
        b[8192 + 1372..8192 + 1376].copy_from_slice(&0x1954_0119u32.to_le_bytes());
        assert_eq!(probe(&b).unwrap().what, "FFS v2");
        let mut b = vec![0u8; HEAD];
        b[1080..1082].copy_from_slice(&0xef53u16.to_le_bytes());
        assert_eq!(probe(&b).unwrap().fstype, "ext2fs");
        let mut b = vec![0u8; HEAD];
        b[32769..32774].copy_from_slice(b"CD001");
        assert_eq!(probe(&b).unwrap().fstype, "cd9660");
        b[32768 + 2048 + 1..32768 + 2048 + 6].copy_from_slice(b"BEA01");
        b[32768 + 4096 + 1..32768 + 4096 + 6].copy_from_slice(b"NSR02");
        assert_eq!(probe(&b).unwrap().fstype, "udf");
    }

    #[test]
    fn udf_anchor_gives_the_sector_size() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let mut img = vec![0u8; 256 * 2048 + 2048];
        let mut tag = [0u8; 16];
        tag[0] = 2;
        tag[2] = 2;
        tag[12..16].copy_from_slice(&256u32.to_le_bytes());
        tag[4] = tag.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        img[256 * 2048..256 * 2048 + 16].copy_from_slice(&tag);
        std::fs::write(t.path(), &img).unwrap();
        assert_eq!(udf_sector_size(t.path(), 0), Some(2048));
        // A wrong checksum, or a wrong location: no anchor.
        img[256 * 2048 + 4] ^= 1;
        std::fs::write(t.path(), &img).unwrap();
        assert_eq!(udf_sector_size(t.path(), 0), None);
        // Its checksum right, but the tag says it is at sector 257.
        tag[12] = 1;
        tag[4] = 0;
        tag[4] = tag.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        img[256 * 2048..256 * 2048 + 16].copy_from_slice(&tag);
        std::fs::write(t.path(), &img).unwrap();
        assert_eq!(udf_sector_size(t.path(), 0), None);
    }
}
