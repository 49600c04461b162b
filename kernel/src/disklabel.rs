//! NetBSD disklabels: where partition `a`..`z` of a disk image lies, for
//! the `disklabel=` key of drive specs (`rump_server -d
//! key=/dk,hostpath=disk.img,disklabel=e`), as NetBSD's `rump_server`
//! reads them.
//!
//! The label is looked for in the image's first 64 KiB at every 4-byte
//! boundary (NetBSD/amd64 keeps it in sector 1, other ports elsewhere),
//! in either byte order. A label counts when both its magic numbers
//! match, it has at most [`MAXPARTITIONS`] partitions and its checksum
//! (the XOR of its 16-bit words through the last partition) is zero.
//! Partition offsets and sizes are in 512-byte units from the start of
//! the image, as NetBSD's `rump_server` takes them. Layout facts: NetBSD's
//! `sys/sys/disklabel.h` (the same on 32- and 64-bit ports).
//!
//! Only reads, and every field is bounds-checked: an image is untrusted.

use std::io::Read;

/// `DISKMAGIC`, at the label's start and again at [`MAGIC2_AT`].
pub const DISKMAGIC: u32 = 0x8256_4557;
/// The most partitions a label has (`MAXPARTITIONS` of the x86 ports, the
/// largest NetBSD's `rump_server` accepts).
pub const MAXPARTITIONS: usize = 22;
/// Where the label is searched for: the image's first bytes.
pub const SEARCH: usize = 64 << 10;
/// The unit of partition offsets and sizes.
pub const UNIT: u64 = 512;

/// `d_magic2`.
pub const MAGIC2_AT: usize = 132;
/// `d_checksum` (u16).
pub const CHECKSUM_AT: usize = 136;
/// `d_npartitions` (u16).
pub const NPARTITIONS_AT: usize = 138;
/// `d_partitions[0]`; each entry is [`PART_SIZE`] bytes: `p_size` (u32),
/// `p_offset` (u32), `p_fsize` (u32), `p_fstype`, `p_frag` (u8),
/// `p_cpg` (u16).
pub const PARTITIONS_AT: usize = 148;
/// The size of one partition entry.
pub const PART_SIZE: usize = 16;

/// Why no partition was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// Not a letter `a` to `z`.
    #[error("disklabel={0}: expected a partition letter a to z")]
    BadLetter(String),
    /// No valid label in the first 64 KiB.
    #[error("no NetBSD disklabel in the first 64 KiB")]
    NotFound,
    /// The label has fewer partitions.
    #[error("disklabel={part}: the disklabel has {count} partitions (a to {last})", last = (b'a' + (*count as u8).saturating_sub(1)) as char)]
    NoSuchPartition {
        /// The letter asked for.
        part: char,
        /// `d_npartitions`.
        count: usize,
    },
    /// A partition of size 0.
    #[error("disklabel={0}: the partition is empty")]
    Empty(char),
    /// The partition does not fit in the image.
    #[error("disklabel={part}: the partition ({offset}+{size} bytes) lies beyond the image's end ({len})")]
    Beyond {
        /// The letter asked for.
        part: char,
        /// Its offset in bytes.
        offset: u64,
        /// Its size in bytes.
        size: u64,
        /// The image's size.
        len: u64,
    },
    /// The image could not be read.
    #[error("{0}")]
    Read(netbsd_abi::Errno),
}

/// The partition index of a `disklabel=` value: `a` is 0, `z` 25.
pub fn letter(v: &str) -> Result<char, LabelError> {
    match v.as_bytes() {
        [c @ b'a'..=b'z'] => Ok(*c as char),
        _ => Err(LabelError::BadLetter(v.to_string())),
    }
}

/// A label found in `b` (an image's first bytes): its byte order and
/// where it starts.
fn scan(b: &[u8]) -> Option<(usize, bool)> {
    let mut i = 0;
    while i + PARTITIONS_AT <= b.len() {
        for big in [false, true] {
            let rd = |at: usize| read32(b, i + at, big);
            if rd(0) == Some(DISKMAGIC) && rd(MAGIC2_AT) == Some(DISKMAGIC) {
                let n = read16(b, i + NPARTITIONS_AT, big)? as usize;
                let end = i + PARTITIONS_AT + n * PART_SIZE;
                if n <= MAXPARTITIONS && end <= b.len() {
                    // The XOR of the words is zero in either byte order.
                    let sum = b[i..end]
                        .chunks_exact(2)
                        .fold(0u16, |s, w| s ^ u16::from_le_bytes([w[0], w[1]]));
                    if sum == 0 {
                        return Some((i, big));
                    }
                }
            }
        }
        i += 4;
    }
    None
}

fn read32(b: &[u8], at: usize, big: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big {
        u32::from_be_bytes(s)
    } else {
        u32::from_le_bytes(s)
    })
}

fn read16(b: &[u8], at: usize, big: bool) -> Option<u16> {
    let s: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if big {
        u16::from_be_bytes(s)
    } else {
        u16::from_le_bytes(s)
    })
}

/// Partition `part` of the label in `head` (the image's first bytes, up
/// to [`SEARCH`]) of an image of `len` bytes: its byte offset and size.
pub fn partition(head: &[u8], part: char, len: u64) -> Result<(u64, u64), LabelError> {
    let head = &head[..head.len().min(SEARCH)];
    let (at, big) = scan(head).ok_or(LabelError::NotFound)?;
    let count = read16(head, at + NPARTITIONS_AT, big).unwrap_or(0) as usize;
    let idx = (part as u8).wrapping_sub(b'a') as usize;
    if idx >= count {
        return Err(LabelError::NoSuchPartition { part, count });
    }
    let e = at + PARTITIONS_AT + idx * PART_SIZE;
    let size = read32(head, e, big).ok_or(LabelError::NotFound)? as u64 * UNIT;
    let offset = read32(head, e + 4, big).ok_or(LabelError::NotFound)? as u64 * UNIT;
    if size == 0 {
        return Err(LabelError::Empty(part));
    }
    match offset.checked_add(size) {
        Some(end) if end <= len => Ok((offset, size)),
        _ => Err(LabelError::Beyond {
            part,
            offset,
            size,
            len,
        }),
    }
}

/// Partition `part` of the label in the host file `path`: its byte
/// offset and size.
pub fn find(path: &str, part: char) -> Result<(u64, u64), LabelError> {
    let err = |e: std::io::Error| LabelError::Read(netbsd_abi::Errno::from(e));
    let f = std::fs::File::open(path).map_err(err)?;
    let mut head = Vec::with_capacity(SEARCH);
    (&f).take(SEARCH as u64)
        .read_to_end(&mut head)
        .map_err(err)?;
    // A block device's size too.
    let len = {
        use std::io::Seek;
        (&f).seek(std::io::SeekFrom::End(0)).map_err(err)?
    };
    partition(&head, part, len)
}

/// A label's bytes, for tests and tools that make images: `parts` as
/// (offset, size) in bytes (multiples of [`UNIT`]), little-endian, with
/// its checksum. Put it at byte 512 (NetBSD/amd64's `LABELSECTOR` 1).
pub fn build(parts: &[(u64, u64)]) -> Vec<u8> {
    let n = parts.len().min(MAXPARTITIONS);
    let mut b = vec![0u8; PARTITIONS_AT + n * PART_SIZE];
    b[0..4].copy_from_slice(&DISKMAGIC.to_le_bytes());
    b[MAGIC2_AT..MAGIC2_AT + 4].copy_from_slice(&DISKMAGIC.to_le_bytes());
    // d_secsize (40): 512-byte sectors.
    b[40..44].copy_from_slice(&512u32.to_le_bytes());
    b[NPARTITIONS_AT..NPARTITIONS_AT + 2].copy_from_slice(&(n as u16).to_le_bytes());
    for (i, (off, size)) in parts.iter().take(n).enumerate() {
        let e = PARTITIONS_AT + i * PART_SIZE;
        b[e..e + 4].copy_from_slice(&((size / UNIT) as u32).to_le_bytes());
        b[e + 4..e + 8].copy_from_slice(&((off / UNIT) as u32).to_le_bytes());
        // p_fstype 7: FS_BSDFFS (informational only).
        b[e + 12] = 7;
    }
    let sum = b
        .chunks_exact(2)
        .fold(0u16, |s, w| s ^ u16::from_le_bytes([w[0], w[1]]));
    b[CHECKSUM_AT..CHECKSUM_AT + 2].copy_from_slice(&sum.to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_labels_are_found_in_either_byte_order() {
        let label = build(&[(64 * 512, 1000 * 512), (0, 0), (0, 2048 * 512)]);
        let mut img = vec![0u8; 8192];
        img[512..512 + label.len()].copy_from_slice(&label);
        let len = 2048 * 512;
        assert_eq!(partition(&img, 'a', len), Ok((64 * 512, 1000 * 512)));
        assert_eq!(partition(&img, 'c', len), Ok((0, len)));
        assert_eq!(partition(&img, 'b', len), Err(LabelError::Empty('b')));
        assert_eq!(
            partition(&img, 'd', len),
            Err(LabelError::NoSuchPartition {
                part: 'd',
                count: 3
            })
        );
        assert!(matches!(
            partition(&img, 'a', 1000),
            Err(LabelError::Beyond { .. })
        ));
        // A bad checksum: no label.
        img[512 + PARTITIONS_AT] ^= 1;
        assert_eq!(partition(&img, 'a', len), Err(LabelError::NotFound));
        img[512 + PARTITIONS_AT] ^= 1;
        // Big-endian: every field swapped.
        let mut be = label.clone();
        for (at, w) in [(0, 4), (40, 4), (MAGIC2_AT, 4), (NPARTITIONS_AT, 2)]
            .into_iter()
            .chain((0..3).flat_map(|i| {
                let e = PARTITIONS_AT + i * PART_SIZE;
                [(e, 4), (e + 4, 4)]
            }))
        {
            be[at..at + w].reverse();
        }
        be[CHECKSUM_AT..CHECKSUM_AT + 2].fill(0);
        let sum = be
            .chunks_exact(2)
            .fold(0u16, |s, w| s ^ u16::from_be_bytes([w[0], w[1]]));
        be[CHECKSUM_AT..CHECKSUM_AT + 2].copy_from_slice(&sum.to_be_bytes());
        let mut img = vec![0u8; 8192];
        img[1024..1024 + be.len()].copy_from_slice(&be);
        assert_eq!(partition(&img, 'a', len), Ok((64 * 512, 1000 * 512)));
        assert_eq!(partition(&[0u8; 100], 'a', len), Err(LabelError::NotFound));
        assert_eq!(letter("e"), Ok('e'));
        assert!(letter("A").is_err() && letter("ab").is_err() && letter("").is_err());
    }
}
