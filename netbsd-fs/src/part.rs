//! `-o part=N`: where partition N of an image with an MBR or GPT
//! partition table lies. Only reads; every field is bounds-checked.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// A partition: byte offset and length in the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Where it starts.
    pub offset: u64,
    /// How long it is.
    pub size: u64,
}

/// Why partition N cannot be mounted. Messages read as a reason, without
/// the image's name.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    /// `part=0`.
    #[error("part=0: partitions count from 1")]
    Zero,
    /// The image cannot be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Neither table.
    #[error("no MBR or GPT partition table")]
    NoTable,
    /// An empty or missing MBR entry (primary 1-4, logical from 5).
    #[error("part={0}: no such partition in the MBR")]
    NoMbrPartition(u32),
    /// A logical partition asked for, and the MBR has no extended one.
    #[error("part={0}: the MBR has no extended partition (logical partitions count from 5)")]
    NoExtended(u32),
    /// An extended partition's chain that loops or runs off the image.
    #[error("part={0}: the chain of logical partitions is broken")]
    BadChain(u32),
    /// Fewer GPT entries.
    #[error("part={n}: the GPT has {count} entries")]
    GptCount {
        /// The number asked for.
        n: u32,
        /// The table's entries.
        count: u64,
    },
    /// A GPT header whose table cannot be.
    #[error("GPT header with a bad entry table")]
    GptTable,
    /// An unused GPT entry.
    #[error("part={0}: no such partition in the GPT")]
    NoGptPartition(u32),
    /// A GPT entry that ends before it starts.
    #[error("part={0}: GPT entry ends before it starts")]
    GptReversed(u32),
    /// A GPT entry beyond what 64 bits address.
    #[error("GPT entry beyond the image")]
    GptOverflow,
    /// The partition lies (partly) past the image's end.
    #[error("part={n}: the partition ({offset}+{size} bytes) lies beyond the image's end ({len})")]
    Beyond {
        /// The number asked for.
        n: u32,
        /// Its offset.
        offset: u64,
        /// Its size.
        size: u64,
        /// The image's size.
        len: u64,
    },
}

fn read_at(f: &mut File, off: u64, len: usize) -> Result<Vec<u8>, PartError> {
    f.seek(SeekFrom::Start(off))?;
    let mut b = Vec::with_capacity(len);
    f.take(len as u64).read_to_end(&mut b)?;
    Ok(b)
}

fn le32(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64)
        .unwrap_or(0)
}
fn le64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .map(|s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        })
        .unwrap_or(0)
}

/// MBR partition types of an extended partition (DOS CHS, DOS LBA, Linux).
const EXTENDED: [u8; 3] = [0x05, 0x0f, 0x85];

/// The most logical partitions followed in one chain (a loop guard).
const MAX_LOGICAL: u32 = 128;

/// One 16-byte MBR entry at `e` of a boot record: (type, start LBA,
/// sectors).
fn entry(b: &[u8], e: usize) -> (u8, u64, u64) {
    (
        b.get(e + 4).copied().unwrap_or(0),
        le32(b, e + 8),
        le32(b, e + 12),
    )
}

fn signed(b: &[u8]) -> bool {
    b.len() >= 512 && b[510] == 0x55 && b[511] == 0xaa
}

/// Partition `n` (from 1) of the image at `path`: GPT if the MBR is a
/// protective one (or a GPT header is at sector 1), else the MBR's
/// primary entries (1-4) and the logical partitions of its extended
/// partition (5 on, in chain order, as Linux numbers them).
pub fn find(path: &Path, n: u32) -> Result<Extent, PartError> {
    if n == 0 {
        return Err(PartError::Zero);
    }
    let mut f = File::open(path)?;
    let img_len = f.metadata()?.len();
    let mbr = read_at(&mut f, 0, 512)?;
    for ss in [512u64, 4096] {
        let h = read_at(&mut f, ss, 92)?;
        if h.get(0..8) == Some(b"EFI PART") {
            return gpt(&mut f, &h, ss, n, img_len);
        }
    }
    if !signed(&mbr) {
        return Err(PartError::NoTable);
    }
    if n > 4 {
        return logical(&mut f, &mbr, n, img_len);
    }
    let (kind, start, size) = entry(&mbr, 446 + (n as usize - 1) * 16);
    if kind == 0 || size == 0 {
        return Err(PartError::NoMbrPartition(n));
    }
    check(n, start * 512, size * 512, img_len)
}

/// Logical partition `n` (5 on): follow the extended partition's chain
/// of boot records. Each holds the logical partition (its start relative
/// to that record) and the link to the next record (relative to the
/// extended partition's start).
fn logical(f: &mut File, mbr: &[u8], n: u32, img_len: u64) -> Result<Extent, PartError> {
    let ext = (0..4)
        .map(|i| entry(mbr, 446 + i * 16))
        .find(|(kind, start, size)| EXTENDED.contains(kind) && *start != 0 && *size != 0)
        .ok_or(PartError::NoExtended(n))?;
    let base = ext.1;
    let mut ebr = base;
    let mut seen = Vec::new();
    for i in 5..5 + MAX_LOGICAL {
        if seen.contains(&ebr) || ebr.saturating_mul(512) >= img_len {
            return Err(PartError::BadChain(n));
        }
        seen.push(ebr);
        let b = read_at(f, ebr * 512, 512)?;
        if !signed(&b) {
            return Err(PartError::BadChain(n));
        }
        let (kind, start, size) = entry(&b, 446);
        if i == n {
            if kind == 0 || size == 0 {
                return Err(PartError::NoMbrPartition(n));
            }
            let lba = ebr.checked_add(start).ok_or(PartError::BadChain(n))?;
            return check(n, lba * 512, size * 512, img_len);
        }
        let (next_kind, next, _) = entry(&b, 446 + 16);
        if next_kind == 0 || next == 0 {
            return Err(PartError::NoMbrPartition(n));
        }
        ebr = base.checked_add(next).ok_or(PartError::BadChain(n))?;
    }
    Err(PartError::NoMbrPartition(n))
}

fn check(n: u32, offset: u64, size: u64, len: u64) -> Result<Extent, PartError> {
    match offset.checked_add(size) {
        Some(end) if end <= len => Ok(Extent { offset, size }),
        _ => Err(PartError::Beyond {
            n,
            offset,
            size,
            len,
        }),
    }
}

fn gpt(f: &mut File, h: &[u8], ss: u64, n: u32, img_len: u64) -> Result<Extent, PartError> {
    let entries_lba = le64(h, 72);
    let count = le32(h, 80);
    let esize = le32(h, 84);
    if !(128..=4096).contains(&esize) || count > 4096 {
        return Err(PartError::GptTable);
    }
    if n as u64 > count {
        return Err(PartError::GptCount { n, count });
    }
    let at = entries_lba
        .checked_mul(ss)
        .and_then(|x| x.checked_add((n as u64 - 1) * esize))
        .ok_or(PartError::GptOverflow)?;
    let e = read_at(f, at, esize as usize)?;
    if e.len() < 48 || e[0..16].iter().all(|&x| x == 0) {
        return Err(PartError::NoGptPartition(n));
    }
    let first = le64(&e, 32);
    let last = le64(&e, 40);
    if last < first {
        return Err(PartError::GptReversed(n));
    }
    let offset = first.checked_mul(ss).ok_or(PartError::GptOverflow)?;
    let size = (last - first + 1)
        .checked_mul(ss)
        .ok_or(PartError::GptOverflow)?;
    check(n, offset, size, img_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbr_entries_and_errors() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let mut b = vec![0u8; 1 << 20];
        b[510] = 0x55;
        b[511] = 0xaa;
        let e = 446 + 16;
        b[e + 4] = 0x83;
        b[e + 8..e + 12].copy_from_slice(&64u32.to_le_bytes());
        b[e + 12..e + 16].copy_from_slice(&128u32.to_le_bytes());
        std::fs::write(t.path(), &b).unwrap();
        assert_eq!(
            find(t.path(), 2).unwrap(),
            Extent {
                offset: 64 * 512,
                size: 128 * 512
            }
        );
        assert!(matches!(
            find(t.path(), 1),
            Err(PartError::NoMbrPartition(1))
        ));
        assert!(matches!(find(t.path(), 5), Err(PartError::NoExtended(5))));
        assert!(matches!(find(t.path(), 0), Err(PartError::Zero)));
        // An entry past the end of the image.
        b[e + 12..e + 16].copy_from_slice(&100_000u32.to_le_bytes());
        std::fs::write(t.path(), &b).unwrap();
        assert!(find(t.path(), 2)
            .unwrap_err()
            .to_string()
            .contains("beyond"));
        std::fs::write(t.path(), [0u8; 100]).unwrap();
        assert_eq!(
            find(t.path(), 1).unwrap_err().to_string(),
            "no MBR or GPT partition table"
        );
    }

    /// An MBR entry (type, start, sectors) at slot `i` of the record at
    /// `rec` (in sectors).
    fn put(b: &mut [u8], rec: usize, i: usize, kind: u8, start: u32, size: u32) {
        let e = rec * 512 + 446 + i * 16;
        b[e + 4] = kind;
        b[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
        b[e + 12..e + 16].copy_from_slice(&size.to_le_bytes());
        b[rec * 512 + 510] = 0x55;
        b[rec * 512 + 511] = 0xaa;
    }

    #[test]
    fn logical_partitions_follow_the_chain() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let mut b = vec![0u8; 1 << 20];
        // Primary 1 at 64; extended (LBA) 2 at 512, 1024 sectors: its
        // first record holds logical 5 at +64 and links to +300, which
        // holds logical 6 at +10 and ends the chain.
        put(&mut b, 0, 0, 0x83, 64, 100);
        put(&mut b, 0, 1, 0x0f, 512, 1024);
        put(&mut b, 512, 0, 0x83, 64, 200);
        put(&mut b, 512, 1, 0x05, 300, 400);
        put(&mut b, 812, 0, 0x83, 10, 50);
        std::fs::write(t.path(), &b).unwrap();
        assert_eq!(
            find(t.path(), 5).unwrap(),
            Extent {
                offset: 576 * 512,
                size: 200 * 512
            }
        );
        assert_eq!(
            find(t.path(), 6).unwrap(),
            Extent {
                offset: 822 * 512,
                size: 50 * 512
            }
        );
        assert!(matches!(
            find(t.path(), 7),
            Err(PartError::NoMbrPartition(7))
        ));
        // A chain that links back to itself.
        put(&mut b, 812, 1, 0x05, 300, 400);
        std::fs::write(t.path(), &b).unwrap();
        assert!(matches!(find(t.path(), 8), Err(PartError::BadChain(8))));
    }
}
