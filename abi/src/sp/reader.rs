//! The frame reader both ends of sysproxy use (server connections and the
//! client library): a buffer over a byte source, handing out validated
//! headers and exact payloads. Large payloads go straight from the socket
//! into their destination; small ones come through the buffer, whose one
//! read may also take in the next frame.

use std::io;
use std::os::fd::BorrowedFd;

use super::{FrameError, Header, RawHeader, HDRSZ};

/// Where frames come from: a socket, or bytes (fuzzing, tests).
pub trait Source {
    /// Read some bytes (0: end of file).
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// A socket (or any descriptor), read with `read(2)`, `EINTR` retried.
#[derive(Clone, Copy, Debug)]
pub struct Fd<'a>(pub BorrowedFd<'a>);

impl Source for Fd<'_> {
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        super::io::read_some(self.0, buf)
    }
}

/// A socket read through a [`super::io::Spin`]: spins (bounded, when it
/// pays) before blocking.
pub struct SpinFd<'a>(pub BorrowedFd<'a>, pub &'a mut super::io::Spin);

impl Source for SpinFd<'_> {
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.1.read_some(self.0, buf)
    }
}

impl Source for &[u8] {
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        io::Read::read(self, buf)
    }
}

/// Why reading stopped.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection.
    Eof,
    /// The socket failed.
    Io(io::Error),
    /// A header that does not decode (too long, unknown class or type…).
    Bad(FrameError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Eof => f.write_str("connection closed"),
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Bad(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Size of the buffer; payloads of a quarter of it or more bypass it.
pub const BUF: usize = 64 * 1024;

/// A buffered reader of frames.
pub struct FrameReader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Most bytes one buffered read asks for (see [`FrameReader::set_read_limit`]).
    read_limit: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new()
    }
}

impl FrameReader {
    /// A reader with an empty buffer.
    pub fn new() -> FrameReader {
        FrameReader {
            buf: vec![0u8; BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            read_limit: BUF,
        }
    }

    /// Ask for at most `n` bytes (at least what is needed) per buffered
    /// read. With a small limit, a large payload mostly stays in the
    /// socket until [`FrameReader::read_into`] reads it straight into its
    /// destination, instead of being read into this buffer and copied out
    /// (one memcpy less per 64 KiB frame); small frames still come whole
    /// in one read.
    pub fn set_read_limit(&mut self, n: usize) {
        self.read_limit = n.clamp(HDRSZ, BUF);
    }

    /// Bytes buffered and not consumed.
    pub fn avail(&self) -> usize {
        self.end - self.start
    }

    /// Make at least `n` (≤ [`BUF`]) bytes available.
    pub fn fill(&mut self, s: &mut impl Source, n: usize) -> Result<(), ReadError> {
        let n = n.min(BUF);
        if self.avail() >= n {
            return Ok(());
        }
        if self.start + n > BUF {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.avail() < n {
            let hi = (self.end + self.read_limit).max(self.start + n).min(BUF);
            match s.read_some(&mut self.buf[self.end..hi]) {
                Ok(0) => return Err(ReadError::Eof),
                Ok(k) => self.end += k,
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
        Ok(())
    }

    /// The next frame's header, validated and consumed (its payload is
    /// next).
    pub fn header(&mut self, s: &mut impl Source) -> Result<Header, ReadError> {
        self.fill(s, HDRSZ)?;
        let mut hb = [0u8; HDRSZ];
        hb.copy_from_slice(&self.buf[self.start..self.start + HDRSZ]);
        let h = RawHeader::parse(&hb).validate().map_err(ReadError::Bad)?;
        self.start += HDRSZ;
        Ok(h)
    }

    /// One byte (the banner line is read so).
    pub fn byte(&mut self, s: &mut impl Source) -> Result<u8, ReadError> {
        self.fill(s, 1)?;
        let b = self.buf[self.start];
        self.start += 1;
        Ok(b)
    }

    /// Fill `dst` exactly: buffered bytes first, then from the source —
    /// straight into `dst` for a large remainder.
    pub fn read_into(&mut self, s: &mut impl Source, dst: &mut [u8]) -> Result<(), ReadError> {
        let k = self.avail().min(dst.len());
        dst[..k].copy_from_slice(&self.buf[self.start..self.start + k]);
        self.start += k;
        let mut off = k;
        while off < dst.len() {
            let rest = dst.len() - off;
            if rest < BUF / 4 {
                // Small remainder: one read into the buffer may also pick
                // up the next frame.
                self.fill(s, rest)?;
                dst[off..].copy_from_slice(&self.buf[self.start..self.start + rest]);
                self.start += rest;
                return Ok(());
            }
            match s.read_some(&mut dst[off..]) {
                Ok(0) => return Err(ReadError::Eof),
                Ok(n) => off += n,
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
        Ok(())
    }

    /// `n` bytes into a new vector (`n` is bounded by the frame cap the
    /// header was validated against).
    pub fn read_vec(&mut self, s: &mut impl Source, n: usize) -> Result<Vec<u8>, ReadError> {
        let mut v = vec![0u8; n];
        self.read_into(s, &mut v)?;
        Ok(v)
    }

    /// Discard `n` bytes.
    pub fn skip(&mut self, s: &mut impl Source, mut n: usize) -> Result<(), ReadError> {
        while n > 0 {
            if self.avail() == 0 {
                self.fill(s, 1)?;
            }
            let k = self.avail().min(n);
            self.start += k;
            n -= k;
        }
        Ok(())
    }

    /// For a reader that reads the next frame itself (one `readv` into a
    /// header here and a payload elsewhere): the empty buffer to read the
    /// header into. Only when nothing is buffered.
    pub fn empty_buffer(&mut self) -> Option<&mut [u8]> {
        if self.avail() != 0 {
            return None;
        }
        self.start = 0;
        self.end = 0;
        Some(&mut self.buf)
    }

    /// After [`FrameReader::empty_buffer`]: `n` bytes were read into it.
    pub fn filled(&mut self, n: usize) {
        self.start = 0;
        self.end = n.min(BUF);
    }

    /// Put `bytes` back to be read next, after what is buffered (bytes read
    /// elsewhere that turned out to belong to the stream). At most what
    /// fits in the buffer's free room.
    pub fn push_back(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.end + bytes.len() > BUF {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = bytes.len().min(BUF - self.end);
        self.buf[self.end..self.end + n].copy_from_slice(&bytes[..n]);
        self.end += n;
    }
}

/// Read every frame from `data` as a peer's byte stream would arrive, the
/// way the production readers do; what the fuzz target and the corpus
/// test run. Returns the frames read and how it ended.
pub fn read_all(mut data: &[u8]) -> (Vec<(Header, usize)>, ReadError) {
    let mut r = FrameReader::new();
    let mut frames = Vec::new();
    loop {
        let h = match r.header(&mut data) {
            Ok(h) => h,
            Err(e) => return (frames, e),
        };
        let n = h.payload_len();
        // Both ends take a small payload into memory and stream a large
        // one; either way, exactly `n` bytes.
        let r2 = if n <= BUF {
            r.read_vec(&mut data, n).map(|_| ())
        } else {
            r.skip(&mut data, n)
        };
        if let Err(e) = r2 {
            return (frames, e);
        }
        frames.push((h, n));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode_frame, Class, Type};
    use super::*;

    #[test]
    fn frames_and_garbage() {
        let mut stream = Vec::new();
        for i in 0..100u64 {
            stream.extend(encode_frame(
                Class::Req,
                Type::Syscall,
                i,
                20,
                &[&vec![i as u8; (i * 997 % 70_000) as usize]],
            ));
        }
        let (frames, end) = read_all(&stream);
        assert_eq!(frames.len(), 100);
        assert!(matches!(end, ReadError::Eof));
        for (i, (h, n)) in frames.iter().enumerate() {
            assert_eq!(
                (h.reqno, *n),
                (i as u64, (i as u64 * 997 % 70_000) as usize)
            );
        }
        // A bad header ends the stream; a short payload is end of file.
        let mut bad = stream[..200].to_vec();
        bad.extend([0xffu8; 24]);
        assert!(matches!(
            read_all(&bad).1,
            ReadError::Bad(_) | ReadError::Eof
        ));
        assert!(matches!(read_all(&stream[..30]).1, ReadError::Eof));
    }

    /// The fuzz corpus's idea in seconds: random and mutated streams never
    /// panic, never read past their end, and frames come out whole.
    #[test]
    fn random_streams() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let good = encode_frame(Class::Resp, Type::Copyin, 7, 0, &[&[1u8; 300]]);
        for _ in 0..3000 {
            let len = (rnd() % 400) as usize;
            let mut d: Vec<u8> = if rnd() % 2 == 0 {
                good.clone()
            } else {
                (0..len).map(|_| rnd() as u8).collect()
            };
            for _ in 0..(rnd() % 4) {
                if !d.is_empty() {
                    let i = (rnd() as usize) % d.len();
                    d[i] = rnd() as u8;
                }
            }
            let (frames, _) = read_all(&d);
            let total: usize = frames.iter().map(|(_, n)| HDRSZ + n).sum();
            assert!(total <= d.len());
        }
    }
}
