//! Why an internal operation stopped ([`Fail`]), and whether a metadata
//! miss may stop it ([`Deferral`]).
//!
//! A reading operation (lookup, getattr, readlink, readdir, a read's
//! mapping) must not wait for the device under the file system lock: when
//! it needs a metadata range the cache lacks, it stops with
//! [`Fail::Defer`], `Ext2Fs::read_op` reads that range without the lock
//! and runs the operation again (see the locking notes on `Ext2Fs`), so
//! the host I/O of one reader never stops the others. An operation
//! that changes the file system must not be run twice, so from its first
//! change on ([`crate::fs::Fs::begin_write`]) misses are read where they
//! happen, under the lock.

use netbsd_abi::errno::EIO;
use netbsd_abi::Errno;

/// The error of the file system's internal functions; the public API sees
/// only the [`Errno`] (`From<Fail> for Errno`, at the crate boundary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fail {
    /// A failure the caller sees as this errno.
    Errno(Errno),
    /// A reading operation needs `len` bytes of metadata at device offset
    /// `off` that the cache does not hold: read them without the file
    /// system lock and run the operation again. Only while the mount's
    /// [`Deferral`] allows it.
    Defer {
        /// Device byte offset of the range.
        off: u64,
        /// Length of the range in bytes.
        len: usize,
    },
}

/// What the internal functions return.
pub(crate) type R<T> = Result<T, Fail>;

/// Fail with errno `e`.
pub(crate) fn err<T>(e: i32) -> R<T> {
    Err(Fail::Errno(Errno(e)))
}

impl Fail {
    /// Whether this is errno `e`.
    pub(crate) fn is(self, e: i32) -> bool {
        matches!(self, Fail::Errno(Errno(x)) if x == e)
    }

    /// Whether this is a deferred metadata miss (which must reach
    /// `Ext2Fs::read_op` even where other errors fall back to a default).
    pub(crate) fn is_defer(self) -> bool {
        matches!(self, Fail::Defer { .. })
    }
}

impl From<Errno> for Fail {
    fn from(e: Errno) -> Fail {
        Fail::Errno(e)
    }
}

impl From<Fail> for Errno {
    /// At the crate boundary. A deferral never gets there (only
    /// `Ext2Fs::read_op` allows one, and it handles it); were it to, the
    /// caller would see `EIO`.
    fn from(f: Fail) -> Errno {
        match f {
            Fail::Errno(e) => e,
            Fail::Defer { .. } => Errno(EIO),
        }
    }
}

/// Whether a metadata miss may end the running operation with
/// [`Fail::Defer`]: allowed by `Ext2Fs::read_op` around one run of a
/// reading operation, withdrawn by its first change and when it ends.
#[derive(Debug, Default)]
pub(crate) struct Deferral {
    allowed: bool,
}

impl Deferral {
    /// Let the next miss end the operation.
    pub(crate) fn allow(&mut self) {
        self.allowed = true;
    }

    /// Read misses where they happen from now on.
    pub(crate) fn forbid(&mut self) {
        self.allowed = false;
    }

    /// A miss of `len` bytes at `off`: the failure that ends the operation,
    /// or `None` if it must read them itself.
    pub(crate) fn miss(&self, off: u64, len: usize) -> Option<Fail> {
        self.allowed.then_some(Fail::Defer { off, len })
    }
}
