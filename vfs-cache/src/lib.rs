//! vfs-cache: the write-back buffer cache between file systems and host
//! drives (docs/design.md, "The cache model").
//!
//! * [`Cache`]: one per kernel, shared by every drive; holds fixed-size
//!   blocks keyed by (device, block number) under one memory limit.
//! * [`CachedDev`]: a drive attached to the cache; implements [`Store`]
//!   (byte-granular, write-back) and `sync`.
//! * [`HostDrive`]: a [`BlockDevice`] over a host file through the
//!   hypercall layer (`rumpuser_bio`, `rumpuser_syncfd`).
//! * [`FaultyDrive`] / [`FaultControl`]: fault injection for tests.
//! * [`MemDevice`]: an in-memory [`BlockDevice`] that records its calls,
//!   for tests here and elsewhere.
//!
//! See [`cache`] for the policy (limits, throttling, eviction, sync).
//!
//! What users must keep: a [`Store`]'s writes are not durable until its
//! `sync` succeeds, and a failed `sync` keeps the data dirty (the next
//! one retries); a [`BlockDevice`]'s `flush` makes every write it
//! completed durable, or fails.
#![warn(missing_docs)]

use netbsd_abi::Errno;

mod blockmem;
pub mod cache;
mod event;
pub mod fault;
pub mod host;
pub mod mem;

#[cfg(test)]
mod tests;

pub use cache::{
    Cache, CacheConfig, CachedDev, IntHasher, Stats, DEFAULT_BLOCK_SIZE, DEFAULT_MAX_MERGE,
};
pub use fault::{FaultControl, FaultMode, FaultSpecError, FaultyDrive};
pub use host::HostDrive;
pub use mem::{DevOp, MemDevice};

/// A host drive as the cache sees it: whole-range reads and writes at byte
/// offsets, and a flush to stable storage. The production implementation
/// goes through `rumpuser_bio` and `rumpuser_syncfd`.
pub trait BlockDevice: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `off`; reading past the end is `EINVAL`... callers
    /// stay inside `size()`.
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), Errno>;
    /// Write all of `buf` at `off`.
    fn write_at(&self, buf: &[u8], off: u64) -> Result<(), Errno>;
    /// Write the concatenation of `bufs` at `off`, as one device write
    /// (the cache's merged write-back uses it to write adjacent blocks
    /// straight from their memory). The default copies them into one
    /// buffer and calls `write_at`; devices that can gather override it.
    fn write_vectored_at(&self, bufs: &[&[u8]], off: u64) -> Result<(), Errno> {
        match bufs {
            [one] => self.write_at(one, off),
            _ => self.write_at(&bufs.concat(), off),
        }
    }
    /// Make everything written so far durable (`rumpuser_syncfd`).
    fn flush(&self) -> Result<(), Errno>;
}

/// Byte-addressed storage a file system reads and writes: a cached drive
/// in production, anything in tests. Writes may stay in memory until
/// `sync`, which makes them durable or reports why not (keeping them).
pub trait Store: Send + Sync {
    /// The store's size in bytes; reads and writes stay below it.
    fn size(&self) -> u64;
    /// Fill `buf` from offset `off` (all of it, or an error).
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Write `buf` at offset `off`; it may stay in memory until [`Store::sync`].
    fn write(&self, off: u64, buf: &[u8]) -> Result<(), Errno>;
    /// Make every write so far durable. On failure the error is reported and the data kept, to be written by a later `sync`.
    fn sync(&self) -> Result<(), Errno>;
    /// Write `buf` at `off` to the device now, before this call returns,
    /// and into any copy held in memory (whose dirty state is unchanged).
    /// A file system that must order its writes (metadata after the
    /// blocks it points to) writes them this way, one after another; a
    /// later write-back of a cached block never puts older bytes over
    /// these. No device flush. The default, for stores with no device
    /// behind them, is [`Store::write`].
    fn write_through(&self, off: u64, buf: &[u8]) -> Result<(), Errno> {
        self.write(off, buf)
    }
    /// Before a write of about `incoming` bytes: wait (writing back, with
    /// the CPU released) until the store can take it without throttling.
    /// A file system calls this before it takes its own lock, so that a
    /// throttled writer never holds that lock across host I/O.
    fn make_room(&self, _incoming: usize) -> Result<(), Errno> {
        Ok(())
    }
    /// [`Store::read`] for a file's data: whole blocks that are not in
    /// memory may be read from the device straight into `buf`, without
    /// entering the cache (one copy less, no cache memory to fill, and a
    /// streaming read does not push out what the cache holds). Blocks in
    /// memory (every dirty one is) are copied from there as by `read`.
    fn read_stream(&self, off: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.read(off, buf)
    }
    /// [`Store::read`], but only if that needs no device I/O: `None` when
    /// some of the range is not in memory (`buf` may then hold part of
    /// it). A file system that gets `None` may drop its own lock, `read`
    /// the range to bring it in, and try again.
    fn read_cached(&self, off: u64, buf: &mut [u8]) -> Option<Result<(), Errno>> {
        Some(self.read(off, buf))
    }
}
