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

fn read_at(f: &mut File, off: u64, len: usize) -> Result<Vec<u8>, String> {
    f.seek(SeekFrom::Start(off)).map_err(|e| e.to_string())?;
    let mut b = Vec::with_capacity(len);
    f.take(len as u64)
        .read_to_end(&mut b)
        .map_err(|e| e.to_string())?;
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

/// Partition `n` (from 1) of the image at `path`: GPT if the MBR is a
/// protective one (or a GPT header is at sector 1), else the MBR's
/// primary entries. Errors read as a reason, without the image's name.
pub fn find(path: &Path, n: u32) -> Result<Extent, String> {
    if n == 0 {
        return Err("part=0: partitions count from 1".into());
    }
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let img_len = f.metadata().map_err(|e| e.to_string())?.len();
    let mbr = read_at(&mut f, 0, 512)?;
    for ss in [512u64, 4096] {
        let h = read_at(&mut f, ss, 92)?;
        if h.get(0..8) == Some(b"EFI PART") {
            return gpt(&mut f, &h, ss, n, img_len);
        }
    }
    if mbr.len() < 512 || mbr[510] != 0x55 || mbr[511] != 0xaa {
        return Err("no MBR or GPT partition table".into());
    }
    if n > 4 {
        return Err(format!(
            "part={n}: only the MBR's four primary partitions are supported"
        ));
    }
    let e = 446 + (n as usize - 1) * 16;
    let kind = mbr[e + 4];
    let start = le32(&mbr, e + 8) * 512;
    let size = le32(&mbr, e + 12) * 512;
    if kind == 0 || size == 0 {
        return Err(format!("part={n}: no such partition in the MBR"));
    }
    check(n, start, size, img_len)
}

fn check(n: u32, offset: u64, size: u64, img_len: u64) -> Result<Extent, String> {
    match offset.checked_add(size) {
        Some(end) if end <= img_len => Ok(Extent { offset, size }),
        _ => Err(format!(
            "part={n}: the partition ({offset}+{size} bytes) lies beyond the image's end ({img_len})"
        )),
    }
}

fn gpt(f: &mut File, h: &[u8], ss: u64, n: u32, img_len: u64) -> Result<Extent, String> {
    let entries_lba = le64(h, 72);
    let count = le32(h, 80);
    let esize = le32(h, 84);
    if !(128..=4096).contains(&esize) || count > 4096 {
        return Err("GPT header with a bad entry table".into());
    }
    if n as u64 > count {
        return Err(format!("part={n}: the GPT has {count} entries"));
    }
    let at = entries_lba
        .checked_mul(ss)
        .and_then(|x| x.checked_add((n as u64 - 1) * esize))
        .ok_or("GPT entry beyond the image")?;
    let e = read_at(f, at, esize as usize)?;
    if e.len() < 48 || e[0..16].iter().all(|&x| x == 0) {
        return Err(format!("part={n}: no such partition in the GPT"));
    }
    let first = le64(&e, 32);
    let last = le64(&e, 40);
    if last < first {
        return Err(format!("part={n}: GPT entry ends before it starts"));
    }
    let offset = first.checked_mul(ss).ok_or("GPT entry beyond the image")?;
    let size = (last - first + 1)
        .checked_mul(ss)
        .ok_or("GPT entry beyond the image")?;
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
        assert!(find(t.path(), 1).unwrap_err().contains("no such partition"));
        assert!(find(t.path(), 5).is_err());
        assert!(find(t.path(), 0).is_err());
        // An entry past the end of the image.
        b[e + 12..e + 16].copy_from_slice(&100_000u32.to_le_bytes());
        std::fs::write(t.path(), &b).unwrap();
        assert!(find(t.path(), 2).unwrap_err().contains("beyond"));
        std::fs::write(t.path(), [0u8; 100]).unwrap();
        assert!(find(t.path(), 1).unwrap_err().contains("no MBR or GPT"));
    }
}
