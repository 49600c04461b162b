//! The buffer cache proper.
//!
//! # Model
//!
//! Every attached device is cut into fixed-size blocks (`block_size`, the
//! last block may be shorter); a block is cached under the key
//! (device id, block number). Reads fill missing blocks from the device;
//! writes only modify memory (write-back) and mark the block dirty. Nothing
//! reaches a device until [`CachedDev::sync`] / [`Cache::sync_all`], or
//! until memory pressure makes a writer write back old dirty blocks.
//!
//! # Memory
//!
//! `limit` bounds the bytes of cached blocks (`Stats::cached_bytes`):
//!
//! * When bringing in a new block would exceed the limit, CLEAN blocks are
//!   evicted in least-recently-used order (exact LRU across the cache:
//!   each shard keeps its blocks in use order, eviction takes the globally
//!   oldest shard head). Dirty blocks are never evicted.
//! * Dirty data is bounded by the high-water mark, `limit * 3/4`. A writer
//!   about to dirty a clean block while dirty bytes would pass the high-water
//!   mark is *throttled*: it writes back the oldest dirty blocks itself
//!   (merged, ascending, like `sync` but without the device flush) until
//!   dirty bytes are at or below the low-water mark,
//!   `high - min(high/3, 32 MiB)` (= `limit/2` for limits up to 128 MiB).
//!   [`CacheConfig::max_dirty`] caps the high-water mark in absolute terms. Writers never fail for lack of memory.
//!   If another writer already has every candidate block in flight, it waits
//!   (virtual CPU released) for those writes to end. If the write-back fails
//!   (device errors), the writer is let through until dirty data reaches the
//!   full limit; past that its write fails with the device's error (the
//!   data already cached stays dirty, nothing is dropped).
//! * Margin: the limit can be exceeded only by blocks pinned by operations
//!   in progress (at most one block per concurrent read/write call, plus
//!   one block per concurrent write-back caught between clean and evicted),
//!   and a write-back writes its merged blocks straight from their memory
//!   (one gathering device write); a block modified while its write is in
//!   flight gets a fresh copy first (copy on write), so at most `max_merge`
//!   (1 MiB) of such copies per flushing thread live outside the count. So total memory stays within
//!   `limit + threads * (block_size + max_merge)`; tests check
//!   `peak_cached_bytes <= limit + 2 * block_size` single-threaded.
//!
//! # Concurrency
//!
//! The block map is split into 64 shards by a hash of the key, each with
//! its own lock (held only for a lookup or LRU update). Each block has its
//! own lock, held only while copying its bytes. No lock is held across
//! device I/O; waits (for another thread's read of the same block, for
//! write-backs in flight) go through an event count that releases the
//! virtual CPU. Lock order: shard map → block → shard dirty index.
//!
//! # Sync
//!
//! `sync` collects every dirty block of the device, writes them in
//! ascending offset order, merging runs of adjacent blocks into single
//! device writes of at most `max_merge` bytes, then calls the device's
//! `flush`. Each block has a generation number bumped on every change; a
//! write-back records it when it copies the block and marks the block clean
//! afterwards only if it is unchanged, so a block dirtied again while its
//! write is in flight stays dirty. On a write error the error is counted,
//! the blocks of that write stay dirty, sync continues with the rest and
//! returns the first error; a later sync writes them. If the final flush
//! fails, blocks this sync wrote that are still in memory are marked dirty
//! again (so the next sync rewrites them) and the error is returned.
//!
//! # Bounds
//!
//! `read` and `write` of a range that does not lie entirely inside the
//! device (`off + len > size`) fail with `EINVAL` and transfer nothing.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use netbsd_abi::errno::{EBUSY, EINVAL};
use netbsd_abi::Errno;
use rumpuser::locks::{Mutex, RwLock};

use crate::blockmem::BlockMem;
use crate::event::EventCount;
use crate::{BlockDevice, Store};

/// Block size to attach host drives with when nothing else is known.
pub const DEFAULT_BLOCK_SIZE: usize = 64 * 1024;
/// Largest single device write a write-back issues (merged blocks).
pub const DEFAULT_MAX_MERGE: usize = 1024 * 1024;

const NSHARDS: usize = 64;
/// Low-water distance below the high-water mark is at most this.
const MAX_WRITEBACK_BATCH: u64 = 32 * 1024 * 1024;

/// Tunables. `CacheConfig::new(limit)` gives the defaults.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Bytes of cached blocks (RUMP_MEMLIMIT / `-r`).
    pub limit: u64,
    /// Largest merged device write, bytes (at least one block is always
    /// written whole).
    pub max_merge: usize,
    /// An absolute cap on the high-water mark of dirty data (for large
    /// limits: less to write at sync/halt). Default: none (`u64::MAX`).
    pub max_dirty: u64,
}

impl CacheConfig {
    /// A configuration with memory limit `limit` bytes and the defaults for the rest.
    pub fn new(limit: u64) -> CacheConfig {
        CacheConfig {
            limit,
            max_merge: DEFAULT_MAX_MERGE,
            max_dirty: u64::MAX,
        }
    }
}

/// Counters, cache-wide ([`Cache::stats`]) or per device ([`CachedDev::stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Block accesses served from memory (no device read).
    pub hits: u64,
    /// Block accesses that had to read the block from the device. A write
    /// covering a whole absent block is neither a hit nor a miss.
    pub misses: u64,
    /// Bytes of dirty blocks now.
    pub dirty_bytes: u64,
    /// Bytes of cached blocks now (clean + dirty).
    pub cached_bytes: u64,
    /// Device writes issued by write-back (each possibly many merged blocks).
    pub flushes: u64,
    /// Bytes those writes carried, successful ones only.
    pub flushed_bytes: u64,
    /// Failed device writes.
    pub write_errors: u64,
    /// Failed device flushes (`BlockDevice::flush`).
    pub flush_errors: u64,
    /// Write calls that were throttled (had to write back or wait).
    pub throttled: u64,
    /// Clean blocks evicted.
    pub evictions: u64,
    /// Highest `dirty_bytes` seen.
    pub peak_dirty_bytes: u64,
    /// Highest `cached_bytes` seen.
    pub peak_cached_bytes: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    dirty_bytes: AtomicU64,
    cached_bytes: AtomicU64,
    flushes: AtomicU64,
    flushed_bytes: AtomicU64,
    write_errors: AtomicU64,
    flush_errors: AtomicU64,
    throttled: AtomicU64,
    evictions: AtomicU64,
    peak_dirty_bytes: AtomicU64,
    peak_cached_bytes: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Stats {
        Stats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            dirty_bytes: self.dirty_bytes.load(Relaxed),
            cached_bytes: self.cached_bytes.load(Relaxed),
            flushes: self.flushes.load(Relaxed),
            flushed_bytes: self.flushed_bytes.load(Relaxed),
            write_errors: self.write_errors.load(Relaxed),
            flush_errors: self.flush_errors.load(Relaxed),
            throttled: self.throttled.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            peak_dirty_bytes: self.peak_dirty_bytes.load(Relaxed),
            peak_cached_bytes: self.peak_cached_bytes.load(Relaxed),
        }
    }
}

/// Bump a counter in both the cache-wide and the device's set.
macro_rules! count {
    ($sh:expr, $core:expr, $field:ident, $n:expr) => {{
        let n = $n as u64;
        $sh.c.$field.fetch_add(n, Relaxed);
        $core.c.$field.fetch_add(n, Relaxed);
    }};
}

type DevId = u32;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
struct Key {
    dev: DevId,
    blk: u64,
}

/// FxHash-style hasher for integer keys (block and inode numbers):
/// SipHash is wasted on them. File systems on the cache use it too.
#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<IntHasher>>;

fn shard_index(k: &Key) -> usize {
    let h = (k.blk ^ ((k.dev as u64) << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 58) as usize % NSHARDS
}

/// A device attached to the cache.
struct DevCore {
    id: DevId,
    dev: Arc<dyn BlockDevice>,
    bs: usize,
    size: u64,
    c: Counters,
}

impl DevCore {
    fn block_len(&self, blk: u64) -> usize {
        let start = blk * self.bs as u64;
        (self.size - start).min(self.bs as u64) as usize
    }
}

struct Block {
    key: Key,
    len: usize,
    core: Arc<DevCore>,
    st: Mutex<BlockState>,
    /// Tick under which the block sits in its shard's LRU, 0 when not
    /// there. Changed only under the shard lock (atomic only for `Sync`).
    lru_tick: AtomicU64,
    /// Tick of the last access.
    last_use: AtomicU64,
}

struct BlockState {
    /// `Some` once the block holds valid data; never goes back to `None`.
    /// Shared (cloned) only by a write-back that has it in flight: a
    /// writer then modifies a copy instead (copy on write).
    data: Option<Arc<BlockMem>>,
    /// A thread is reading the block from the device.
    loading: bool,
    dirty: bool,
    /// A write-back holds a copy and is writing it.
    in_flight: bool,
    /// Bumped on every modification.
    gen: u64,
}

struct ShardMap {
    blocks: KeyMap<Arc<Block>>,
    /// Eviction candidates by last use: every clean block is here (dirty
    /// ones may be too; eviction drops them when it meets them).
    lru: BTreeMap<u64, Key>,
}

struct DirtyEnt {
    /// Order of first dirtying (for "write back the oldest").
    seq: u64,
    /// When it was first dirtied, in milliseconds since the cache was made
    /// (for the syncer's "older than `filedelay`").
    since_ms: u64,
    in_flight: bool,
}

struct Shard {
    map: Mutex<ShardMap>,
    /// Oldest LRU tick in this shard, `u64::MAX` when empty.
    head: AtomicU64,
    /// Dirty blocks of this shard.
    dirty: Mutex<BTreeMap<Key, DirtyEnt>>,
}

impl Shard {
    fn update_head(&self, m: &ShardMap) {
        let h = m.lru.first_key_value().map_or(u64::MAX, |(t, _)| *t);
        self.head.store(h, Relaxed);
    }
}

struct Shared {
    limit: u64,
    high: u64,
    low: u64,
    max_merge: usize,
    shards: Box<[Shard]>,
    devs: RwLock<BTreeMap<DevId, Arc<DevCore>>>,
    next_dev: AtomicU32,
    tick: AtomicU64,
    dirty_seq: AtomicU64,
    c: Counters,
    ev: EventCount,
    /// Time zero of `DirtyEnt::since_ms`.
    t0: Instant,
    /// Called when a block is dirtied while `armed` (see
    /// [`Cache::arm_dirty_hook`]): how a sleeping syncer learns of work.
    dirty_hook: OnceLock<Arc<dyn Fn() + Send + Sync>>,
    armed: AtomicBool,
}

/// The buffer cache: one per kernel, shared by every attached device.
pub struct Cache {
    sh: Arc<Shared>,
}

/// A device attached to a [`Cache`]. Dropping the handle does not detach
/// the device: its dirty blocks stay cached and [`Cache::sync_all`] still
/// writes them; [`CachedDev::detach`] removes it.
pub struct CachedDev {
    sh: Arc<Shared>,
    core: Arc<DevCore>,
}

/// What one write-back pass did.
#[derive(Default)]
struct Outcome {
    written: u64,
    first_err: Option<Errno>,
    failed_devs: Vec<DevId>,
    /// Dirty blocks skipped because another write-back had them in flight.
    skipped: Vec<Key>,
    /// Blocks this pass made clean (for re-dirtying if the flush fails).
    cleaned: Vec<Weak<Block>>,
}

impl Cache {
    /// A cache holding at most about `limit_bytes` of blocks (see the
    /// module documentation for the margin).
    pub fn new(limit_bytes: u64) -> Arc<Cache> {
        Cache::with_config(CacheConfig::new(limit_bytes))
    }

    /// A cache configured by `cfg`. The high-water mark of dirty data is
    /// three quarters of the limit (or `cfg.max_dirty`, if lower).
    pub fn with_config(cfg: CacheConfig) -> Arc<Cache> {
        let limit = cfg.limit;
        let high = (limit / 4 * 3 + (limit % 4) * 3 / 4).min(cfg.max_dirty);
        let low = high - (high / 3).min(MAX_WRITEBACK_BATCH);
        let shards = (0..NSHARDS)
            .map(|_| Shard {
                map: Mutex::new(ShardMap {
                    blocks: KeyMap::default(),
                    lru: BTreeMap::new(),
                }),
                head: AtomicU64::new(u64::MAX),
                dirty: Mutex::new(BTreeMap::new()),
            })
            .collect();
        Arc::new(Cache {
            sh: Arc::new(Shared {
                limit,
                high,
                low,
                max_merge: cfg.max_merge.max(1),
                shards,
                devs: RwLock::new(BTreeMap::new()),
                next_dev: AtomicU32::new(1),
                tick: AtomicU64::new(1),
                dirty_seq: AtomicU64::new(1),
                c: Counters::default(),
                ev: EventCount::default(),
                t0: Instant::now(),
                dirty_hook: OnceLock::new(),
                armed: AtomicBool::new(false),
            }),
        })
    }

    /// Attach `dev`, cut into blocks of `block_size` bytes (0 means
    /// [`DEFAULT_BLOCK_SIZE`]). The device's size is taken now.
    pub fn attach(&self, dev: Arc<dyn BlockDevice>, block_size: usize) -> Arc<CachedDev> {
        let bs = if block_size == 0 {
            DEFAULT_BLOCK_SIZE
        } else {
            block_size
        };
        let id = self.sh.next_dev.fetch_add(1, Relaxed);
        let core = Arc::new(DevCore {
            id,
            size: dev.size(),
            dev,
            bs,
            c: Counters::default(),
        });
        self.sh.devs.write().insert(id, core.clone());
        Arc::new(CachedDev {
            sh: self.sh.clone(),
            core,
        })
    }

    /// Sync every attached device; continues past errors and returns the
    /// first.
    pub fn sync_all(&self) -> Result<(), Errno> {
        let devs: Vec<Arc<DevCore>> = self.sh.devs.read().values().cloned().collect();
        let mut first = None;
        for core in devs {
            if let Err(e) = self.sh.sync_dev(&core) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Sync every attached device, each on its own: (device id, result)
    /// in attach order, for callers that report per drive (halt).
    pub fn sync_each(&self) -> Vec<(u32, Result<(), Errno>)> {
        let devs: Vec<Arc<DevCore>> = self.sh.devs.read().values().cloned().collect();
        devs.iter()
            .map(|core| (core.id, self.sh.sync_dev(core)))
            .collect()
    }

    /// Cache-wide counters.
    pub fn stats(&self) -> Stats {
        self.sh.c.snapshot()
    }

    /// The memory limit given at construction.
    pub fn limit(&self) -> u64 {
        self.sh.limit
    }

    /// Dirty bytes at which writers start being throttled.
    pub fn high_water(&self) -> u64 {
        self.sh.high
    }

    /// Dirty bytes a throttled writer writes back down to.
    pub fn low_water(&self) -> u64 {
        self.sh.low
    }

    /// Number of devices attached.
    pub fn devices(&self) -> usize {
        self.sh.devs.read().len()
    }

    /// Install what to call when a block is dirtied after
    /// [`Cache::arm_dirty_hook`] (once per arming). The kernel's syncer
    /// sleeps until then when nothing is dirty, so an idle cache costs no
    /// wake-ups. Only the first hook installed counts.
    pub fn set_dirty_hook(&self, hook: Arc<dyn Fn() + Send + Sync>) {
        let _ = self.sh.dirty_hook.set(hook);
    }

    /// Call the dirty hook at the next dirtying of a block. Returns whether
    /// something is dirty already (then the hook may never be called: the
    /// caller has work now).
    pub fn arm_dirty_hook(&self) -> bool {
        self.sh
            .armed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.sh
            .c
            .dirty_bytes
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
    }
}

impl CachedDev {
    /// The underlying device.
    pub fn dev(&self) -> &Arc<dyn BlockDevice> {
        &self.core.dev
    }

    /// The cache block size, in bytes: the unit of caching and of device writes.
    pub fn block_size(&self) -> usize {
        self.core.bs
    }

    /// This device's id in its cache (as in [`Cache::sync_each`]).
    pub fn id(&self) -> u32 {
        self.core.id
    }

    /// This device's counters.
    pub fn stats(&self) -> Stats {
        self.core.c.snapshot()
    }

    /// How long ago the oldest dirty block of this device was dirtied
    /// (`None`: nothing dirty).
    pub fn oldest_dirty_age(&self) -> Option<Duration> {
        let lo = Key {
            dev: self.core.id,
            blk: 0,
        };
        let hi = Key {
            dev: self.core.id,
            blk: u64::MAX,
        };
        let mut oldest: Option<u64> = None;
        for s in self.sh.shards.iter() {
            for e in s.dirty.lock().range(lo..=hi).map(|(_, e)| e) {
                oldest = Some(oldest.map_or(e.since_ms, |o| o.min(e.since_ms)));
            }
        }
        oldest.map(|t| Duration::from_millis(self.sh.now_ms().saturating_sub(t)))
    }

    /// Write back the dirty blocks of this device that were dirtied at
    /// least `age` ago (ascending, merged; no device flush): the syncer's
    /// data pass. Returns the bytes written, or the first write error (the
    /// blocks of a failed write stay dirty).
    pub fn write_back_older(&self, age: Duration) -> Result<u64, Errno> {
        let cutoff = self.sh.now_ms().saturating_sub(age.as_millis() as u64);
        let lo = Key {
            dev: self.core.id,
            blk: 0,
        };
        let hi = Key {
            dev: self.core.id,
            blk: u64::MAX,
        };
        let mut keys = Vec::new();
        for s in self.sh.shards.iter() {
            keys.extend(
                s.dirty
                    .lock()
                    .range(lo..=hi)
                    .filter(|(_, e)| !e.in_flight && e.since_ms <= cutoff)
                    .map(|(k, _)| *k),
            );
        }
        keys.sort_unstable();
        let out = self.sh.writeback(&keys, false);
        out.first_err.map_or(Ok(out.written), Err)
    }

    /// Write back every dirty block of this device, without the device
    /// flush that [`CachedDev::sync`] ends with.
    pub fn write_back_all(&self) -> Result<u64, Errno> {
        self.write_back_older(Duration::ZERO)
    }

    /// Write every dirty block of this device (ascending, merged), then
    /// flush the device. See the module documentation.
    pub fn sync(&self) -> Result<(), Errno> {
        self.sh.sync_dev(&self.core)
    }

    /// Sync, then drop this device's blocks from the cache and forget the
    /// device (for unmount / drive removal). Fails, leaving the device
    /// attached, if the sync fails or a block was dirtied meanwhile
    /// (`EBUSY`). Use no handle of the device afterwards.
    pub fn detach(&self) -> Result<(), Errno> {
        self.sync()?;
        let id = self.core.id;
        let mut busy = false;
        for s in self.sh.shards.iter() {
            let mut dropped = Vec::new();
            {
                let mut g = s.map.lock();
                let ShardMap { blocks, lru } = &mut *g;
                blocks.retain(|k, b| {
                    if k.dev != id {
                        return true;
                    }
                    let keep = Arc::strong_count(b) > 1 || b.st.lock().dirty;
                    if keep {
                        busy = true;
                    } else {
                        let t = b.lru_tick.swap(0, Relaxed);
                        if t != 0 {
                            lru.remove(&t);
                        }
                        dropped.push(b.clone());
                    }
                    keep
                });
                s.update_head(&g);
            }
            for b in dropped {
                self.sh.sub_cached(&b);
            }
        }
        if busy {
            return Err(Errno(EBUSY));
        }
        self.sh.devs.write().remove(&id);
        Ok(())
    }

    /// Whether `[off, off + len)` is exactly one whole block of this
    /// device (what [`CachedDev::write_block_with`] takes).
    pub fn is_whole_block(&self, off: u64, len: usize) -> bool {
        let bs = self.core.bs as u64;
        off.is_multiple_of(bs) && off < self.core.size && len == self.core.block_len(off / bs)
    }

    /// Write one whole block (`off`, `len` as [`CachedDev::is_whole_block`]
    /// accepts, else `EINVAL`) whose bytes `fill` puts straight into fresh
    /// block memory: no staging buffer and no copy (a syscall copies the
    /// caller's data in there). No lock is held while `fill` runs; if it
    /// fails, nothing is written and its error is returned. Otherwise as
    /// [`Store::write`] of those bytes.
    pub fn write_block_with(
        &self,
        off: u64,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        if !self.is_whole_block(off, len) {
            return Err(Errno(EINVAL));
        }
        let mut mem = BlockMem::new(len, self.core.bs);
        fill(&mut mem)?;
        let b = self.sh.get_block(&self.core, off / self.core.bs as u64);
        self.sh.write_block_from(&b, 0, &[], Some(mem))
    }

    fn check_range(&self, off: u64, len: usize) -> Result<(), Errno> {
        match off.checked_add(len as u64) {
            Some(end) if end <= self.core.size => Ok(()),
            _ => Err(Errno(EINVAL)),
        }
    }

    /// The range of `len` bytes at `off` (checked) in per-block pieces.
    fn pieces(&self, off: u64, len: usize) -> Result<Pieces<'_>, Errno> {
        self.check_range(off, len)?;
        Ok(Pieces {
            core: &self.core,
            off,
            len,
            done: 0,
        })
    }
}

/// One block's part of a range: block `blk`, `n` bytes from `boff` in it,
/// at `at` in the caller's buffer.
struct Piece {
    blk: u64,
    boff: usize,
    at: usize,
    n: usize,
}

struct Pieces<'a> {
    core: &'a DevCore,
    off: u64,
    len: usize,
    done: usize,
}

impl Iterator for Pieces<'_> {
    type Item = Piece;
    fn next(&mut self) -> Option<Piece> {
        if self.done >= self.len {
            return None;
        }
        let bs = self.core.bs as u64;
        let pos = self.off + self.done as u64;
        let (blk, boff) = (pos / bs, (pos % bs) as usize);
        let n = (self.core.block_len(blk) - boff).min(self.len - self.done);
        let p = Piece {
            blk,
            boff,
            at: self.done,
            n,
        };
        self.done += n;
        Some(p)
    }
}

impl Store for CachedDev {
    fn size(&self) -> u64 {
        self.core.size
    }

    fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), Errno> {
        for p in self.pieces(off, buf.len())? {
            let b = self.sh.get_block(&self.core, p.blk);
            let mut loaded = false;
            loop {
                let st = b.st.lock();
                if let Some(d) = &st.data {
                    buf[p.at..p.at + p.n].copy_from_slice(&d[p.boff..p.boff + p.n]);
                    if !loaded {
                        count!(self.sh, self.core, hits, 1);
                    }
                    break;
                }
                drop(st);
                self.sh.ensure_valid(&b)?;
                loaded = true;
            }
        }
        Ok(())
    }

    fn write(&self, off: u64, buf: &[u8]) -> Result<(), Errno> {
        for p in self.pieces(off, buf.len())? {
            let b = self.sh.get_block(&self.core, p.blk);
            self.sh.write_block(&b, p.boff, &buf[p.at..p.at + p.n])?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), Errno> {
        CachedDev::sync(self)
    }

    fn write_through(&self, off: u64, buf: &[u8]) -> Result<(), Errno> {
        for p in self.pieces(off, buf.len())? {
            let b = self.sh.get_block(&self.core, p.blk);
            self.sh
                .write_through_block(&b, p.boff, &buf[p.at..p.at + p.n])?;
        }
        Ok(())
    }

    fn make_room(&self, incoming: usize) -> Result<(), Errno> {
        self.sh.throttle(&self.core, incoming)
    }

    fn read_stream(&self, off: u64, buf: &mut [u8]) -> Result<(), Errno> {
        // Runs of adjacent whole blocks the cache does not hold go to the
        // device in one read: the device has their latest bytes (a dirty
        // block is always held). Other pieces are read as by `read`.
        let mut run: Option<(usize, usize)> = None; // (at, len) in buf
        let flush = |run: &mut Option<(usize, usize)>, buf: &mut [u8]| -> Result<(), Errno> {
            if let Some((at, len)) = run.take() {
                self.core
                    .dev
                    .read_at(&mut buf[at..at + len], off + at as u64)?;
            }
            Ok(())
        };
        for p in self.pieces(off, buf.len())? {
            if p.boff == 0
                && p.n == self.core.block_len(p.blk)
                && self.sh.find_block(&self.core, p.blk).is_none()
            {
                count!(self.sh, self.core, misses, 1);
                run = match run {
                    Some((at, len)) => Some((at, len + p.n)),
                    None => Some((p.at, p.n)),
                };
            } else {
                flush(&mut run, buf)?;
                self.read(off + p.at as u64, &mut buf[p.at..p.at + p.n])?;
            }
        }
        flush(&mut run, buf)
    }

    fn read_cached(&self, off: u64, buf: &mut [u8]) -> Option<Result<(), Errno>> {
        let pieces = match self.pieces(off, buf.len()) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        for p in pieces {
            // Found blocks count as used, as in `read` (their LRU place).
            let b = self.sh.find_block(&self.core, p.blk)?;
            let st = b.st.lock();
            let d = st.data.as_ref()?;
            buf[p.at..p.at + p.n].copy_from_slice(&d[p.boff..p.boff + p.n]);
            count!(self.sh, self.core, hits, 1);
        }
        Some(Ok(()))
    }
}

impl Shared {
    fn shard(&self, k: &Key) -> &Shard {
        &self.shards[shard_index(k)]
    }

    fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// A block went from clean to dirty: wake an armed syncer.
    fn dirtied(&self) {
        if self.armed.load(Relaxed) && self.armed.swap(false, Relaxed) {
            if let Some(h) = self.dirty_hook.get() {
                h();
            }
        }
    }

    /// [`Store::write_through`] for one block's piece. The cached copy,
    /// if any, takes the bytes first (its dirty state unchanged); then the
    /// device gets them. A write-back that copied the block before the
    /// change could land after our device write and undo it: wait for it
    /// to end first. A block not in memory is held "loading" while the
    /// device write runs, so that no reader caches the device's bytes from
    /// before it.
    fn write_through_block(&self, b: &Arc<Block>, boff: usize, piece: &[u8]) -> Result<(), Errno> {
        let off = b.key.blk * b.core.bs as u64 + boff as u64;
        loop {
            let t = self.ev.prepare();
            let mut st = b.st.lock();
            if st.loading {
                drop(st);
                self.ev.wait(t);
                continue;
            }
            if st.data.is_none() {
                st.loading = true;
                drop(st);
                self.ev.cancel();
                let r = b.core.dev.write_at(piece, off);
                b.st.lock().loading = false;
                self.ev.notify();
                self.count_through(&b.core, piece.len(), &r);
                return r;
            }
            if st.in_flight {
                drop(st);
                self.ev.wait(t);
                continue;
            }
            self.ev.cancel();
            if let Some(d) = st.data.as_mut() {
                match Arc::get_mut(d) {
                    Some(m) => m[boff..boff + piece.len()].copy_from_slice(piece),
                    None => {
                        let mut m = BlockMem::copy_of(d, b.core.bs);
                        m[boff..boff + piece.len()].copy_from_slice(piece);
                        *d = Arc::new(m);
                    }
                }
            }
            st.gen += 1;
            drop(st);
            // A write-back that starts now copies the new bytes: the
            // device never sees older ones after ours.
            let r = b.core.dev.write_at(piece, off);
            self.count_through(&b.core, piece.len(), &r);
            return r;
        }
    }

    /// Count a write-through as a device write (the flush accounting
    /// includes what file systems wrote in order).
    fn count_through(&self, core: &DevCore, len: usize, r: &Result<(), Errno>) {
        count!(self, core, flushes, 1);
        match r {
            Ok(()) => count!(self, core, flushed_bytes, len),
            Err(_) => count!(self, core, write_errors, 1),
        }
    }

    fn add_cached(&self, core: &DevCore, len: usize) {
        let len = len as u64;
        let now = self.c.cached_bytes.fetch_add(len, Relaxed) + len;
        self.c.peak_cached_bytes.fetch_max(now, Relaxed);
        let now = core.c.cached_bytes.fetch_add(len, Relaxed) + len;
        core.c.peak_cached_bytes.fetch_max(now, Relaxed);
    }

    fn sub_cached(&self, b: &Block) {
        self.c.cached_bytes.fetch_sub(b.len as u64, Relaxed);
        b.core.c.cached_bytes.fetch_sub(b.len as u64, Relaxed);
    }

    fn add_dirty(&self, b: &Block) {
        let len = b.len as u64;
        let now = self.c.dirty_bytes.fetch_add(len, Relaxed) + len;
        self.c.peak_dirty_bytes.fetch_max(now, Relaxed);
        let now = b.core.c.dirty_bytes.fetch_add(len, Relaxed) + len;
        b.core.c.peak_dirty_bytes.fetch_max(now, Relaxed);
    }

    fn sub_dirty(&self, b: &Block) {
        self.c.dirty_bytes.fetch_sub(b.len as u64, Relaxed);
        b.core.c.dirty_bytes.fetch_sub(b.len as u64, Relaxed);
    }

    /// The block if the cache holds it (marked used, as by `get_block`);
    /// nothing is created.
    fn find_block(&self, core: &Arc<DevCore>, blk: u64) -> Option<Arc<Block>> {
        let key = Key { dev: core.id, blk };
        let tick = self.tick.fetch_add(1, Relaxed);
        let mut g = self.shard(&key).map.lock();
        Self::mark_used(&mut g, &key, tick)
    }

    /// Move a cached block to the young end of its shard's LRU.
    fn mark_used(m: &mut ShardMap, key: &Key, tick: u64) -> Option<Arc<Block>> {
        let b = m.blocks.get(key)?.clone();
        b.last_use.store(tick, Relaxed);
        let old = b.lru_tick.load(Relaxed);
        if old != 0 {
            m.lru.remove(&old);
            m.lru.insert(tick, *key);
            b.lru_tick.store(tick, Relaxed);
        }
        Some(b)
    }

    /// Find or create the block; marks it used. New blocks start invalid
    /// and may push clean blocks out.
    fn get_block(&self, core: &Arc<DevCore>, blk: u64) -> Arc<Block> {
        let key = Key { dev: core.id, blk };
        let shard = self.shard(&key);
        let tick = self.tick.fetch_add(1, Relaxed);
        let mut created = 0;
        let b = {
            let mut g = shard.map.lock();
            let m = &mut *g;
            let b = if let Some(b) = Self::mark_used(m, &key, tick) {
                b
            } else {
                let len = core.block_len(blk);
                let b = Arc::new(Block {
                    key,
                    len,
                    core: core.clone(),
                    st: Mutex::new(BlockState {
                        data: None,
                        loading: false,
                        dirty: false,
                        in_flight: false,
                        gen: 0,
                    }),
                    lru_tick: AtomicU64::new(tick),
                    last_use: AtomicU64::new(tick),
                });
                m.blocks.insert(key, b.clone());
                m.lru.insert(tick, key);
                created = len;
                b
            };
            shard.update_head(m);
            b
        };
        if created > 0 {
            self.add_cached(core, created);
            if self.c.cached_bytes.load(Relaxed) > self.limit {
                self.evict(self.limit);
            }
        }
        b
    }

    /// A cached block, without touching its LRU position.
    fn peek_block(&self, key: &Key) -> Option<Arc<Block>> {
        self.shard(key).map.lock().blocks.get(key).cloned()
    }

    /// Evict clean, unused blocks, least recently used first, until cached
    /// bytes are at most `target` or nothing more can go.
    fn evict(&self, target: u64) {
        let mut skip: u64 = 0;
        let mut victims: Vec<Arc<Block>> = Vec::new();
        while self.c.cached_bytes.load(Relaxed) > target {
            let mut best = None;
            let mut best_tick = u64::MAX;
            for (i, s) in self.shards.iter().enumerate() {
                if skip & (1 << i) != 0 {
                    continue;
                }
                let h = s.head.load(Relaxed);
                if h < best_tick {
                    best_tick = h;
                    best = Some(i);
                }
            }
            let Some(i) = best else { break };
            let s = &self.shards[i];
            let mut g = s.map.lock();
            let m = &mut *g;
            let mut victim = None;
            let mut not_clean = Vec::new();
            for (&t, k) in m.lru.iter().take(32) {
                let Some(b) = m.blocks.get(k) else {
                    not_clean.push(t);
                    continue;
                };
                // Only the map holds it: nobody can reach it without this
                // shard lock, so it is safe to drop if clean.
                if Arc::strong_count(b) > 1 {
                    continue;
                }
                if b.st.lock().dirty {
                    b.lru_tick.store(0, Relaxed);
                    not_clean.push(t);
                    continue;
                }
                victim = Some((t, *k));
                break;
            }
            let removed_any = !not_clean.is_empty();
            for t in not_clean {
                m.lru.remove(&t);
            }
            match victim {
                Some((t, k)) => {
                    m.lru.remove(&t);
                    if let Some(b) = m.blocks.remove(&k) {
                        b.lru_tick.store(0, Relaxed);
                        self.sub_cached(&b);
                        count!(self, b.core, evictions, 1);
                        victims.push(b);
                    }
                }
                None if removed_any => {} // dirty heads dropped: look again
                None => {
                    // The oldest are all in use: leave this shard alone for
                    // the rest of this round.
                    skip |= 1 << i;
                }
            }
            s.update_head(m);
            drop(g);
            victims.clear();
        }
    }

    /// Make the block hold valid data, reading it from the device if need
    /// be. Counts the hit or the miss.
    fn ensure_valid(&self, b: &Block) -> Result<(), Errno> {
        loop {
            {
                let mut st = b.st.lock();
                if st.data.is_some() {
                    count!(self, b.core, hits, 1);
                    return Ok(());
                }
                if !st.loading {
                    st.loading = true;
                    break;
                }
            }
            // Another thread is reading it: wait for that.
            let t = self.ev.prepare();
            let loading = b.st.lock().loading;
            if loading {
                self.ev.wait(t);
            } else {
                self.ev.cancel();
            }
        }
        count!(self, b.core, misses, 1);
        let mut tmp = BlockMem::new(b.len, b.core.bs);
        let r = b.core.dev.read_at(&mut tmp, b.key.blk * b.core.bs as u64);
        {
            let mut st = b.st.lock();
            st.loading = false;
            if r.is_ok() && st.data.is_none() {
                st.data = Some(Arc::new(tmp));
            }
        }
        self.ev.notify();
        r
    }

    fn write_block(&self, b: &Arc<Block>, boff: usize, piece: &[u8]) -> Result<(), Errno> {
        self.write_block_from(b, boff, piece, None)
    }

    /// `write_block`, or with `whole` (the block's new bytes, already in
    /// block memory) install that memory instead of copying.
    fn write_block_from(
        &self,
        b: &Arc<Block>,
        boff: usize,
        piece: &[u8],
        mut whole: Option<BlockMem>,
    ) -> Result<(), Errno> {
        let full = whole.is_some() || (boff == 0 && piece.len() == b.len);
        let mut throttled = false;
        let mut loaded = false;
        loop {
            let mut st = b.st.lock();
            if !st.dirty
                && !throttled
                && self.c.dirty_bytes.load(Relaxed) + b.len as u64 > self.high
            {
                drop(st);
                self.throttle(&b.core, b.len)?;
                throttled = true;
                continue;
            }
            if let Some(mem) = whole.take() {
                if st.data.is_some() {
                    count!(self, b.core, hits, 1);
                }
                // The old memory, if a write-back still has it in flight,
                // lives on until that write ends.
                st.data = Some(Arc::new(mem));
            } else if let Some(d) = st.data.as_mut() {
                if !loaded {
                    count!(self, b.core, hits, 1);
                }
                match Arc::get_mut(d) {
                    Some(m) => m[boff..boff + piece.len()].copy_from_slice(piece),
                    // A write-back is writing this memory: modify a copy.
                    None if full => *d = Arc::new(BlockMem::copy_of(piece, b.core.bs)),
                    None => {
                        let mut m = BlockMem::copy_of(d, b.core.bs);
                        m[boff..boff + piece.len()].copy_from_slice(piece);
                        *d = Arc::new(m);
                    }
                }
            } else if full {
                st.data = Some(Arc::new(BlockMem::copy_of(piece, b.core.bs)));
            } else {
                drop(st);
                self.ensure_valid(b)?;
                loaded = true;
                continue;
            }
            st.gen += 1;
            if !st.dirty {
                st.dirty = true;
                let seq = self.dirty_seq.fetch_add(1, Relaxed);
                self.shard(&b.key).dirty.lock().insert(
                    b.key,
                    DirtyEnt {
                        seq,
                        since_ms: self.now_ms(),
                        in_flight: false,
                    },
                );
                self.add_dirty(b);
                self.dirtied();
            }
            return Ok(());
        }
    }

    /// Called before dirtying a clean block of `incoming` bytes.
    fn throttle(&self, core: &DevCore, incoming: usize) -> Result<(), Errno> {
        let incoming = incoming as u64;
        if self.c.dirty_bytes.load(Relaxed) + incoming <= self.high {
            return Ok(());
        }
        let mut counted = false;
        let mut failed: Vec<DevId> = Vec::new();
        let mut last_err = None;
        loop {
            let dirty = self.c.dirty_bytes.load(Relaxed);
            if dirty <= self.low {
                return Ok(());
            }
            if !counted {
                counted = true;
                count!(self, core, throttled, 1);
            }
            let t = self.ev.prepare();
            let (keys, any_in_flight) = self.oldest_dirty(dirty - self.low, &failed);
            if keys.is_empty() {
                if any_in_flight {
                    // Others are writing the candidates: wait for them.
                    self.ev.wait(t);
                    continue;
                }
                self.ev.cancel();
                // Nothing we can write back (all on failing devices).
                return match last_err {
                    Some(e) if self.c.dirty_bytes.load(Relaxed) + incoming > self.limit => Err(e),
                    _ => Ok(()),
                };
            }
            self.ev.cancel();
            let out = self.writeback(&keys, false);
            if let Some(e) = out.first_err {
                last_err = Some(e);
                for d in out.failed_devs {
                    if !failed.contains(&d) {
                        failed.push(d);
                    }
                }
            }
        }
    }

    /// The oldest dirty blocks not in flight, about `need` bytes of them,
    /// sorted by key; and whether some dirty block was in flight.
    fn oldest_dirty(&self, need: u64, exclude: &[DevId]) -> (Vec<Key>, bool) {
        let mut all: Vec<(u64, Key)> = Vec::new();
        let mut in_flight = false;
        for s in self.shards.iter() {
            let d = s.dirty.lock();
            for (k, e) in d.iter() {
                if e.in_flight {
                    in_flight = true;
                } else if !exclude.contains(&k.dev) {
                    all.push((e.seq, *k));
                }
            }
        }
        all.sort_unstable_by_key(|(seq, _)| *seq);
        let devs = self.devs.read();
        let mut got = 0u64;
        let mut keys = Vec::new();
        for (_, k) in all {
            if got >= need {
                break;
            }
            got += devs.get(&k.dev).map_or(DEFAULT_BLOCK_SIZE, |c| c.bs) as u64;
            keys.push(k);
        }
        keys.sort_unstable();
        (keys, in_flight)
    }

    /// Dirty keys of one device, ascending.
    fn dirty_keys(&self, dev: DevId) -> Vec<Key> {
        let mut keys = Vec::new();
        let lo = Key { dev, blk: 0 };
        let hi = Key { dev, blk: u64::MAX };
        for s in self.shards.iter() {
            keys.extend(s.dirty.lock().range(lo..=hi).map(|(k, _)| *k));
        }
        keys.sort_unstable();
        keys
    }

    fn sync_dev(&self, core: &Arc<DevCore>) -> Result<(), Errno> {
        let mut keys = self.dirty_keys(core.id);
        let mut first_err = None;
        let mut cleaned = Vec::new();
        while !keys.is_empty() {
            let out = self.writeback(&keys, true);
            if let Some(e) = out.first_err {
                first_err.get_or_insert(e);
            }
            cleaned.extend(out.cleaned);
            keys = out.skipped;
            if keys.is_empty() {
                break;
            }
            // Written by someone else right now: wait for those writes,
            // then write whatever is still dirty (it may have changed
            // before this sync began).
            loop {
                let t = self.ev.prepare();
                let busy = keys
                    .iter()
                    .any(|k| self.peek_block(k).is_some_and(|b| b.st.lock().in_flight));
                if busy {
                    self.ev.wait(t);
                } else {
                    self.ev.cancel();
                    break;
                }
            }
        }
        if let Err(e) = core.dev.flush() {
            count!(self, core, flush_errors, 1);
            first_err.get_or_insert(e);
            // What we wrote may not be durable: keep it dirty.
            for w in cleaned {
                if let Some(b) = w.upgrade() {
                    self.redirty(&b);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn redirty(&self, b: &Block) {
        let mut st = b.st.lock();
        if !st.dirty && st.data.is_some() {
            st.dirty = true;
            let seq = self.dirty_seq.fetch_add(1, Relaxed);
            self.shard(&b.key).dirty.lock().insert(
                b.key,
                DirtyEnt {
                    seq,
                    since_ms: self.now_ms(),
                    in_flight: false,
                },
            );
            self.add_dirty(b);
            self.dirtied();
        }
    }

    /// Write back the dirty blocks among `keys` (sorted), merging runs of
    /// adjacent blocks. Blocks in flight elsewhere are skipped (reported).
    fn writeback(&self, keys: &[Key], want_cleaned: bool) -> Outcome {
        let mut out = Outcome::default();
        let mut buf: Vec<Arc<BlockMem>> = Vec::new();
        let mut bytes = 0usize;
        let mut run: Vec<(Arc<Block>, u64)> = Vec::new();
        let mut next_blk = 0u64;
        for k in keys {
            if let Some((first, _)) = run.first() {
                if k.dev != first.key.dev
                    || k.blk != next_blk
                    || bytes + first.core.bs > self.max_merge
                {
                    self.submit(&mut run, &mut buf, &mut out, want_cleaned);
                    bytes = 0;
                }
            }
            let Some(b) = self.peek_block(k) else {
                continue;
            };
            {
                let mut st = b.st.lock();
                if !st.dirty {
                    continue;
                }
                if st.in_flight {
                    out.skipped.push(*k);
                    continue;
                }
                let Some(d) = &st.data else { continue };
                bytes += d.len();
                buf.push(d.clone());
                st.in_flight = true;
                let gen = st.gen;
                if let Some(e) = self.shard(k).dirty.lock().get_mut(k) {
                    e.in_flight = true;
                }
                drop(st);
                next_blk = k.blk + 1;
                run.push((b, gen));
            }
        }
        self.submit(&mut run, &mut buf, &mut out, want_cleaned);
        out
    }

    /// Write the run (its blocks' memory in `buf`, shared with the blocks
    /// while in flight) as one device write, then settle the blocks.
    fn submit(
        &self,
        run: &mut Vec<(Arc<Block>, u64)>,
        buf: &mut Vec<Arc<BlockMem>>,
        out: &mut Outcome,
        want_cleaned: bool,
    ) {
        let Some((first, _)) = run.first() else {
            return;
        };
        let core = first.core.clone();
        let off = first.key.blk * core.bs as u64;
        let parts: Vec<&[u8]> = buf.iter().map(|m| &m[..]).collect();
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let r = core.dev.write_vectored_at(&parts, off);
        drop(parts);
        // Done with the memory: writers may modify it in place again.
        buf.clear();
        count!(self, core, flushes, 1);
        match r {
            Ok(()) => {
                count!(self, core, flushed_bytes, len);
                out.written += len as u64;
            }
            Err(e) => {
                count!(self, core, write_errors, 1);
                out.first_err.get_or_insert(e);
                if !out.failed_devs.contains(&core.id) {
                    out.failed_devs.push(core.id);
                }
            }
        }
        let ok = r.is_ok();
        let mut relist = Vec::new();
        for (b, gen) in run.drain(..) {
            let mut st = b.st.lock();
            st.in_flight = false;
            let mut d = self.shard(&b.key).dirty.lock();
            if ok && st.gen == gen {
                st.dirty = false;
                d.remove(&b.key);
                drop(d);
                drop(st);
                self.sub_dirty(&b);
                if want_cleaned {
                    out.cleaned.push(Arc::downgrade(&b));
                }
                relist.push(b);
            } else if let Some(e) = d.get_mut(&b.key) {
                e.in_flight = false;
            }
        }
        self.ev.notify();
        // Clean again: back among the eviction candidates, at its last use.
        for b in relist {
            let s = self.shard(&b.key);
            let mut g = s.map.lock();
            let m = &mut *g;
            let present = m.blocks.get(&b.key).is_some_and(|x| Arc::ptr_eq(x, &b));
            if present && b.lru_tick.load(Relaxed) == 0 {
                let mut t = b.last_use.load(Relaxed);
                while m.lru.contains_key(&t) {
                    t = self.tick.fetch_add(1, Relaxed);
                }
                m.lru.insert(t, b.key);
                b.lru_tick.store(t, Relaxed);
                s.update_head(m);
            }
        }
    }
}
