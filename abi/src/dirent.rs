//! NetBSD `struct dirent` as `getdents(2)` returns it: d_fileno u64 @0,
//! d_reclen u16 @8, d_namlen u16 @10, d_type u8 @12, d_name @13 (NUL
//! terminated), each record padded to a multiple of 8 bytes.

/// `d_type`: the file type is not known (the caller must `stat`).
pub const DT_UNKNOWN: u8 = 0;
/// `d_type`: a named pipe.
pub const DT_FIFO: u8 = 1;
/// `d_type`: a character device.
pub const DT_CHR: u8 = 2;
/// `d_type`: a directory.
pub const DT_DIR: u8 = 4;
/// `d_type`: a block device.
pub const DT_BLK: u8 = 6;
/// `d_type`: a regular file.
pub const DT_REG: u8 = 8;
/// `d_type`: a symbolic link.
pub const DT_LNK: u8 = 10;
/// `d_type`: a socket.
pub const DT_SOCK: u8 = 12;

/// Longest name a directory entry may carry, in bytes (without the NUL).
pub const MAXNAMLEN: usize = 511;
const NAME_OFF: usize = 13;

/// Record length for a name of `namlen` bytes.
pub fn reclen(namlen: usize) -> usize {
    (NAME_OFF + namlen + 1 + 7) & !7
}

/// One directory entry, as `getdents(2)` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirent {
    /// The inode number.
    pub fileno: u64,
    /// The file type, a `DT_*` value.
    pub kind: u8,
    /// The name, without a NUL (at most `MAXNAMLEN` bytes).
    pub name: Vec<u8>,
}

impl Dirent {
    /// Append this record to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let len = reclen(self.name.len());
        let start = out.len();
        out.resize(start + len, 0);
        let r = &mut out[start..];
        r[0..8].copy_from_slice(&self.fileno.to_le_bytes());
        r[8..10].copy_from_slice(&(len as u16).to_le_bytes());
        r[10..12].copy_from_slice(&(self.name.len() as u16).to_le_bytes());
        r[12] = self.kind;
        r[NAME_OFF..NAME_OFF + self.name.len()].copy_from_slice(&self.name);
    }

    /// Parse every record in a `getdents` buffer; stops at the first
    /// malformed record.
    pub fn decode_all(mut b: &[u8]) -> Vec<Dirent> {
        let mut v = Vec::new();
        while b.len() >= NAME_OFF {
            let reclen = u16::from_le_bytes([b[8], b[9]]) as usize;
            let namlen = u16::from_le_bytes([b[10], b[11]]) as usize;
            if reclen < reclen_min() || reclen > b.len() || NAME_OFF + namlen > reclen {
                break;
            }
            let mut f = [0u8; 8];
            f.copy_from_slice(&b[0..8]);
            v.push(Dirent {
                fileno: u64::from_le_bytes(f),
                kind: b[12],
                name: b[NAME_OFF..NAME_OFF + namlen].to_vec(),
            });
            b = &b[reclen..];
        }
        v
    }
}

fn reclen_min() -> usize {
    reclen(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        let a = Dirent {
            fileno: 2,
            kind: DT_DIR,
            name: b".".to_vec(),
        };
        let b = Dirent {
            fileno: 12,
            kind: DT_REG,
            name: b"hello.txt".to_vec(),
        };
        a.encode_into(&mut buf);
        b.encode_into(&mut buf);
        assert_eq!(buf.len(), 16 + 24);
        assert_eq!(Dirent::decode_all(&buf), vec![a, b]);
    }
}
