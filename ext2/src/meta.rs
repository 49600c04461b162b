//! Metadata I/O: [`MetaIo`] reads metadata through the changed blocks not
//! yet written back ([`MetaBufs`]), the store's cache, or — in a reading
//! operation that may be run again — a deferral ([`crate::fail`]); it
//! records changed metadata blocks for the next write-back epoch
//! ([`crate::order`]).

use std::sync::Arc;

use netbsd_abi::errno::EIO;
use vfs_cache::Store;

use crate::fail::{Deferral, Fail, R};
use crate::order::{Kind, MetaBufs};

/// The store, the changed metadata blocks and the deferral state of one
/// mount.
pub(crate) struct MetaIo {
    store: Arc<dyn Store>,
    bufs: MetaBufs,
    defer: Deferral,
    /// The file system block size, in bytes.
    bs: u64,
}

impl MetaIo {
    /// Metadata I/O on `store` for blocks of `block_size` bytes.
    pub(crate) fn new(store: Arc<dyn Store>, block_size: u32) -> MetaIo {
        MetaIo {
            store,
            bufs: MetaBufs::default(),
            defer: Deferral::default(),
            bs: block_size as u64,
        }
    }

    /// The store.
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The changed metadata blocks (see [`MetaBufs`]).
    pub(crate) fn bufs(&self) -> &MetaBufs {
        &self.bufs
    }

    /// The changed metadata blocks, to change (see [`MetaBufs`]).
    pub(crate) fn bufs_mut(&mut self) -> &mut MetaBufs {
        &mut self.bufs
    }

    /// Let the next miss end the running operation with [`Fail::Defer`]
    /// (see [`MetaIo::read`]).
    pub(crate) fn allow_defer(&mut self) {
        self.defer.allow();
    }

    /// Read misses where they happen from now on.
    pub(crate) fn forbid_defer(&mut self) {
        self.defer.forbid();
    }

    /// Read metadata. In an operation that has changed nothing yet (see
    /// [`MetaIo::allow_defer`]), a range neither the changed blocks nor
    /// the store's cache hold is not read here, under the file system
    /// lock: the operation fails with [`Fail::Defer`], and its caller
    /// reads the range without the lock and runs it again.
    pub(crate) fn read(&self, off: u64, buf: &mut [u8]) -> R<()> {
        if self.bufs.read(off, buf) {
            return Ok(());
        }
        let Some(defer) = self.defer.miss(off, buf.len()) else {
            return Ok(self.store.read(off, buf)?);
        };
        match self.store.read_cached(off, buf) {
            Some(r) => Ok(r?),
            None => Err(defer),
        }
    }

    /// Block `b`, read as [`MetaIo::read`] does.
    pub(crate) fn read_blk(&self, b: u32) -> R<Vec<u8>> {
        let mut v = vec![0u8; self.bs as usize];
        self.read(b as u64 * self.bs, &mut v)?;
        Ok(v)
    }

    /// Block `b`'s new contents: kept until the next epoch.
    pub(crate) fn put_blk(&mut self, b: u32, data: &[u8], kind: Kind) {
        self.bufs.put(b as u64 * self.bs, data, kind);
    }

    /// Some bytes at device offset `off` inside one metadata block (an
    /// inode in its table block): changed in the block held for the next
    /// epoch, read first if it is not held.
    pub(crate) fn put_part(&mut self, off: u64, bytes: &[u8], kind: Kind) -> R<()> {
        let bs = self.bs;
        let blk_off = off - off % bs;
        if !self.bufs.holds(blk_off) || !self.bufs.patch(blk_off, (off - blk_off) as usize, bytes) {
            let mut blk = vec![0u8; bs as usize];
            self.read(blk_off, &mut blk)?;
            let at = (off - blk_off) as usize;
            blk.get_mut(at..at + bytes.len())
                .ok_or(Fail::Errno(netbsd_abi::Errno(EIO)))?
                .copy_from_slice(bytes);
            self.bufs.put(blk_off, &blk, kind);
        }
        Ok(())
    }
}
