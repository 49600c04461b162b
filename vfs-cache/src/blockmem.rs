//! The memory that holds cached blocks.
//!
//! Fresh anonymous memory costs a page fault per 4 KiB page when it is
//! first touched; for a cache that is being filled (a bulk write to a
//! drive) those faults cost more than copying the data itself (measured
//! here: ~25 µs per new 64 KiB block from the heap against ~2 µs for the
//! copy alone). So blocks whose size is a power of two from 4 KiB to 2 MiB
//! (the default 64 KiB among them) are carved from 2 MiB arenas, aligned,
//! whose pages are populated in one `MADV_POPULATE_WRITE` call when the
//! arena is made (kernels before 5.14 ignore it: pages then fault in on
//! first touch, as before). A freed slot goes back to a per-size free
//! list and is reused, most recently freed first, by the next block of
//! that size, so a cache that evicts and refills recycles memory it
//! already touched. Arena memory is page-aligned, which lets the host
//! drive write blocks with O_DIRECT.
//!
//! Huge pages: an arena is advised `MADV_HUGEPAGE` (one fault, one page to
//! pin for direct I/O) as long as that pays. On a VM whose free memory goes
//! back to the hypervisor (virtio-balloon free page reporting, as on the
//! machine these numbers come from), a fresh huge page is either cheap
//! (~4 µs per 64 KiB, memory freed recently) or slow (60–150 µs per 64 KiB,
//! the host faulting it in), where small pages populated at once cost a
//! steady ~20 µs. So the population of a huge-page arena is timed, and
//! when it is slower than small pages would have been, the next
//! [`THP_BACKOFF`] arenas use small pages before huge pages are tried
//! again.
//!
//! An arena whose slots are all free is unmapped once the free list holds
//! at least another arena's worth of slots besides it; so memory held
//! beyond the blocks in use is bounded by the largest number of blocks
//! ever in use at once (which the cache's limit bounds), rounded up to
//! whole arenas. Other sizes, and any arena that cannot be mapped, come
//! from the heap, as before.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use memmap2::{Advice, MmapMut};
use rumpuser::locks::Mutex;

/// Arena size and alignment: one x86_64 huge page.
const ARENA: usize = 2 << 20;
/// Smallest slot size served from arenas.
const MIN_SLOT_SHIFT: u32 = 12;
/// Slot size classes: 4 KiB .. 2 MiB.
const NCLASSES: usize = 10;

/// The bytes of one block. Always initialized (fresh arena memory reads
/// as zeros, a recycled slot holds its previous block's bytes, heap
/// memory is zeroed): callers overwrite what they use.
pub(crate) struct BlockMem {
    inner: Inner,
}

enum Inner {
    Heap(Box<[u8]>),
    Slot {
        ptr: NonNull<u8>,
        len: usize,
        class: usize,
    },
}

// SAFETY: a slot is exclusively owned by its `BlockMem` (the pool hands
// each address out once until it is given back in `drop`), like a Box.
unsafe impl Send for BlockMem {}
// SAFETY: shared access only reads through `&[u8]`.
unsafe impl Sync for BlockMem {}

struct ClassPool {
    /// Free slot addresses, most recently freed last.
    free: Vec<usize>,
    /// Arena base address -> the arena.
    arenas: HashMap<usize, Arena>,
}

/// One arena: the mapping that holds it (unmapped when this drops) and
/// how many of its slots are in use.
struct Arena {
    _map: MmapMut,
    used: usize,
}

/// Process-wide: blocks move between caches (and kernels) freely, and
/// one set of arenas per process keeps the mappings few.
static POOLS: [Mutex<Option<ClassPool>>; NCLASSES] = [const { Mutex::new(None) }; NCLASSES];

fn class_of(slot: usize) -> Option<usize> {
    if !slot.is_power_of_two() || slot > ARENA {
        return None;
    }
    let shift = slot.trailing_zeros();
    if shift < MIN_SLOT_SHIFT {
        return None;
    }
    Some((shift - MIN_SLOT_SHIFT) as usize)
}

fn slot_size(class: usize) -> usize {
    1 << (class as u32 + MIN_SLOT_SHIFT)
}

/// A huge-page arena whose population takes longer than this was cold
/// (small pages populate 2 MiB in ~0.7 ms here, a warm huge page in ~0.15).
const THP_SLOW: Duration = Duration::from_millis(1);
/// Arenas made with small pages after a slow huge-page arena.
const THP_BACKOFF: u32 = 64;
/// Small-page arenas still to make before huge pages are tried again
/// (process-wide, with the arenas it paces).
static THP_SKIP: AtomicU32 = AtomicU32::new(0);

/// Map a new arena, 2 MiB aligned, its pages populated (huge pages when
/// they have been paying, see the module documentation). Returns the
/// arena's base address and the mapping that holds it.
fn map_arena() -> Option<(usize, MmapMut)> {
    // A 2 MiB mapping usually comes 2 MiB aligned; if not, map twice that
    // and use the aligned 2 MiB inside (the rest is never touched, so it
    // costs address space only).
    let mut map = MmapMut::map_anon(ARENA).ok()?;
    if !(map.as_mut_ptr() as usize).is_multiple_of(ARENA) {
        drop(map);
        map = MmapMut::map_anon(2 * ARENA).ok()?;
    }
    let start = map.as_mut_ptr() as usize;
    let base = (start + ARENA - 1) & !(ARENA - 1);
    let off = base - start;
    let huge = THP_SKIP
        .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
        .is_err();
    let t = Instant::now();
    // Both calls are advisory: without THP the arena has small pages,
    // without MADV_POPULATE_WRITE its pages fault in on first touch.
    if huge {
        let _ = map.advise_range(Advice::HugePage, off, ARENA);
    }
    let _ = map.advise_range(Advice::PopulateWrite, off, ARENA);
    if huge && t.elapsed() > THP_SLOW {
        THP_SKIP.store(THP_BACKOFF, Relaxed);
    }
    Some((base, map))
}

fn alloc_slot(class: usize) -> Option<NonNull<u8>> {
    let size = slot_size(class);
    let mut g = POOLS[class].lock();
    let pool = g.get_or_insert_with(|| ClassPool {
        free: Vec::new(),
        arenas: HashMap::new(),
    });
    let addr = match pool.free.pop() {
        Some(a) => a,
        None => {
            // Map and populate without holding the pool.
            drop(g);
            let (base, map) = map_arena()?;
            g = POOLS[class].lock();
            let pool = g.get_or_insert_with(|| ClassPool {
                free: Vec::new(),
                arenas: HashMap::new(),
            });
            pool.arenas.insert(base, Arena { _map: map, used: 0 });
            // Hand out the lowest slot first, so an arena fills in order.
            pool.free
                .extend((1..ARENA / size).rev().map(|i| base + i * size));
            base
        }
    };
    let pool = g.as_mut()?;
    pool.arenas.get_mut(&(addr & !(ARENA - 1)))?.used += 1;
    NonNull::new(addr as *mut u8)
}

fn free_slot(class: usize, ptr: NonNull<u8>) {
    let size = slot_size(class);
    let per_arena = ARENA / size;
    let addr = ptr.as_ptr() as usize;
    let base = addr & !(ARENA - 1);
    let mut g = POOLS[class].lock();
    let Some(pool) = g.as_mut() else { return };
    pool.free.push(addr);
    let Some(arena) = pool.arenas.get_mut(&base) else {
        return;
    };
    arena.used -= 1;
    if arena.used == 0 && pool.free.len() >= 2 * per_arena {
        // Every slot of this arena is free (none is referenced by a
        // BlockMem) and none stays on the free list: unmap it, outside
        // the pool's lock.
        let arena = pool.arenas.remove(&base);
        pool.free.retain(|&a| a & !(ARENA - 1) != base);
        drop(g);
        drop(arena);
    }
}

impl BlockMem {
    /// Memory for a block of `len` bytes on a device whose block size is
    /// `block_size` (the slot size).
    pub(crate) fn new(len: usize, block_size: usize) -> BlockMem {
        if let Some(class) = class_of(block_size).filter(|_| len <= block_size && len > 0) {
            if let Some(ptr) = alloc_slot(class) {
                return BlockMem {
                    inner: Inner::Slot { ptr, len, class },
                };
            }
        }
        BlockMem {
            inner: Inner::Heap(vec![0u8; len].into_boxed_slice()),
        }
    }

    /// A block holding a copy of `src`.
    pub(crate) fn copy_of(src: &[u8], block_size: usize) -> BlockMem {
        let mut m = BlockMem::new(src.len(), block_size);
        m.copy_from_slice(src);
        m
    }
}

impl Deref for BlockMem {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.inner {
            Inner::Heap(b) => b,
            // SAFETY: the slot is `slot_size(class) >= len` bytes of mapped,
            // initialized memory owned by this BlockMem until drop.
            Inner::Slot { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), *len)
            },
        }
    }
}

impl DerefMut for BlockMem {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.inner {
            Inner::Heap(b) => b,
            // SAFETY: as in `deref`, and `&mut self` makes the access
            // exclusive.
            Inner::Slot { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), *len)
            },
        }
    }
}

impl Drop for BlockMem {
    fn drop(&mut self) {
        if let Inner::Slot { ptr, class, .. } = self.inner {
            free_slot(class, ptr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_distinct_recycled_and_released() {
        let bs = 64 * 1024;
        let mut v: Vec<BlockMem> = (0..100)
            .map(|i| BlockMem::copy_of(&vec![i as u8; bs], bs))
            .collect();
        for (i, m) in v.iter().enumerate() {
            assert_eq!(m.len(), bs);
            assert!(m.iter().all(|&b| b == i as u8));
        }
        let short = BlockMem::new(1000, bs);
        assert_eq!(short.len(), 1000);
        let odd = BlockMem::copy_of(&[7u8; 3000], 3000);
        assert!(odd.iter().all(|&b| b == 7));
        v.truncate(10);
        drop(short);
        let again: Vec<BlockMem> = (0..90).map(|_| BlockMem::new(bs, bs)).collect();
        for (i, m) in v.iter().enumerate() {
            assert!(m.iter().all(|&b| b == i as u8));
        }
        drop(again);
        drop(v);
    }
}
