//! Unit tests of the cache against in-memory devices.

use std::sync::{Arc, OnceLock, Weak};
use std::thread;
use std::time::Duration;

use netbsd_abi::errno::{EINVAL, EIO};
use netbsd_abi::Errno;

use crate::*;

const KB: usize = 1024;

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(12345);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn setup(size: usize, limit: u64, bs: usize) -> (Arc<Cache>, Arc<MemDevice>, Arc<CachedDev>) {
    let cache = Cache::new(limit);
    let mem = MemDevice::new(size);
    let dev = cache.attach(mem.clone(), bs);
    (cache, mem, dev)
}

fn reads(mem: &MemDevice) -> usize {
    mem.ops()
        .iter()
        .filter(|o| matches!(o, DevOp::Read { .. }))
        .count()
}

#[test]
fn write_back_then_sync_is_byte_exact() {
    let (cache, mem, dev) = setup(1 << 20, 64 << 20, 64 * KB);
    let data = pattern(300_000, 1);
    dev.write(12_345, &data).unwrap();
    // Write-back: nothing on the device yet.
    assert!(mem.writes().is_empty());
    assert!(mem.contents().iter().all(|&b| b == 0));
    let mut back = vec![0; data.len()];
    dev.read(12_345, &mut back).unwrap();
    assert_eq!(back, data);
    let s = cache.stats();
    assert!(s.dirty_bytes >= data.len() as u64);
    assert_eq!(s.flushes, 0);

    dev.sync().unwrap();
    let c = mem.contents();
    assert_eq!(&c[12_345..12_345 + data.len()], &data[..]);
    assert!(c[..12_345].iter().all(|&b| b == 0));
    assert!(c[12_345 + data.len()..].iter().all(|&b| b == 0));
    assert_eq!(mem.durable(), c, "sync flushes the device");
    assert_eq!(mem.ops().last(), Some(&DevOp::Flush));
    let s = cache.stats();
    assert_eq!(s.dirty_bytes, 0);
    assert!(s.flushes >= 1);
    assert_eq!(s.write_errors, 0);
    assert_eq!(dev.stats().dirty_bytes, 0);
    // Store::sync is the same thing.
    Store::sync(&*dev).unwrap();
}

#[test]
fn partial_writes_read_modify_write_whole_writes_do_not_read() {
    let init = pattern(256 * KB, 2);
    let cache = Cache::new(64 << 20);
    let mem = MemDevice::with_contents(init.clone());
    let dev = cache.attach(mem.clone(), 64 * KB);

    // A whole block: no device read.
    let whole = pattern(64 * KB, 3);
    dev.write(64 * KB as u64, &whole).unwrap();
    assert_eq!(reads(&mem), 0);
    // A partial block: read once, then modify.
    dev.write(130 * KB as u64 + 7, b"hello").unwrap();
    assert_eq!(reads(&mem), 1);
    dev.write(130 * KB as u64 + 100, b"again").unwrap();
    assert_eq!(reads(&mem), 1, "second write hits the cached block");

    dev.sync().unwrap();
    let mut want = init.clone();
    want[64 * KB..128 * KB].copy_from_slice(&whole);
    want[130 * KB + 7..130 * KB + 12].copy_from_slice(b"hello");
    want[130 * KB + 100..130 * KB + 105].copy_from_slice(b"again");
    assert_eq!(mem.contents(), want);
    let s = dev.stats();
    assert_eq!(s.misses, 1);
    assert!(s.hits >= 1);
}

#[test]
fn bounds_and_short_last_block() {
    // Size not a multiple of the block size.
    let size = 100 * KB + 3;
    let (_c, mem, dev) = setup(size, 1 << 20, 64 * KB);
    assert_eq!(dev.size(), size as u64);
    let mut b = [0u8; 10];
    assert_eq!(dev.read(size as u64 - 5, &mut b), Err(Errno(EINVAL)));
    assert_eq!(dev.write(size as u64, &[1]), Err(Errno(EINVAL)));
    assert_eq!(dev.read(u64::MAX, &mut b), Err(Errno(EINVAL)));
    dev.read(size as u64, &mut []).unwrap();
    let tail = pattern(size - 64 * KB, 4);
    // The whole (short) last block: no read.
    dev.write(64 * KB as u64, &tail).unwrap();
    assert_eq!(reads(&mem), 0);
    dev.write(size as u64 - 1, &[0xAB]).unwrap();
    dev.sync().unwrap();
    let c = mem.contents();
    assert_eq!(&c[64 * KB..size - 1], &tail[..tail.len() - 1]);
    assert_eq!(c[size - 1], 0xAB);
}

#[test]
fn sync_merges_adjacent_blocks_in_ascending_order() {
    let bs = 4 * KB;
    let cache = Cache::with_config(CacheConfig {
        max_merge: 64 * KB,
        ..CacheConfig::new(64 << 20)
    });
    let mem = MemDevice::new(4 << 20);
    let dev = cache.attach(mem.clone(), bs);
    // 64 adjacent blocks (256 KiB) written in a scrambled order, plus two
    // separate runs after a gap.
    let mut order: Vec<usize> = (0..64).collect();
    order.sort_by_key(|i| (i * 37) % 64);
    for &i in &order {
        dev.write((i * bs) as u64, &pattern(bs, i as u32)).unwrap();
    }
    for i in [100usize, 101, 102, 200] {
        dev.write((i * bs) as u64, &pattern(bs, i as u32)).unwrap();
    }
    dev.sync().unwrap();
    let w = mem.writes();
    // 256 KiB in 64 KiB merged writes = 4, then 100..=102 and 200.
    assert_eq!(
        w,
        vec![
            (0, 64 * KB),
            (64 * KB as u64, 64 * KB),
            (128 * KB as u64, 64 * KB),
            (192 * KB as u64, 64 * KB),
            (100 * bs as u64, 3 * bs),
            (200 * bs as u64, bs),
        ]
    );
    assert_eq!(cache.stats().flushes, 6);
    let c = mem.contents();
    for i in (0..64).chain([100, 101, 102, 200]) {
        assert_eq!(
            &c[i * bs..(i + 1) * bs],
            &pattern(bs, i as u32)[..],
            "block {i}"
        );
    }
    // Default merge cap 1 MiB: 256 blocks of 4 KiB in one write.
    let cache = Cache::new(64 << 20);
    let mem = MemDevice::new(4 << 20);
    let dev = cache.attach(mem.clone(), bs);
    dev.write(0, &pattern(1 << 20, 9)).unwrap();
    dev.sync().unwrap();
    assert_eq!(mem.writes(), vec![(0, 1 << 20)]);
}

#[test]
fn block_dirtied_during_its_write_stays_dirty() {
    let bs = 64 * KB;
    let (cache, mem, dev) = setup(1 << 20, 64 << 20, bs);
    let weak: Arc<OnceLock<Weak<CachedDev>>> = Arc::new(OnceLock::new());
    let _ = weak.set(Arc::downgrade(&dev));
    let w2 = weak.clone();
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f2 = fired.clone();
    mem.set_write_hook(Some(Arc::new(move |_off, _len| {
        if !f2.swap(true, std::sync::atomic::Ordering::SeqCst) {
            if let Some(d) = w2.get().and_then(Weak::upgrade) {
                // Dirty block 0 again while it is being written.
                d.write(10, b"second").unwrap();
            }
        }
    })));
    dev.write(0, &vec![1u8; bs]).unwrap();
    dev.write(bs as u64, &vec![2u8; bs]).unwrap();
    dev.sync().unwrap();
    assert!(fired.load(std::sync::atomic::Ordering::SeqCst));
    // The first write carried the old block 0; block 0 is still dirty,
    // block 1 is clean.
    let c = mem.contents();
    assert_eq!(&c[10..16], &[1u8; 6]);
    assert_eq!(cache.stats().dirty_bytes, bs as u64);
    let mut b = [0u8; 6];
    dev.read(10, &mut b).unwrap();
    assert_eq!(&b, b"second");
    mem.set_write_hook(None);
    mem.clear_ops();
    dev.sync().unwrap();
    assert_eq!(
        mem.writes(),
        vec![(0, bs)],
        "only the re-dirtied block is written again"
    );
    assert_eq!(&mem.contents()[10..16], b"second");
    assert_eq!(cache.stats().dirty_bytes, 0);
}

#[test]
fn write_error_keeps_data_dirty_until_a_later_sync() {
    let bs = 64 * KB;
    let cache = Cache::new(64 << 20);
    let mem = MemDevice::new(1 << 20);
    let ctl = Arc::new(FaultControl::new(FaultMode::WriteError));
    let dev = cache.attach(Arc::new(FaultyDrive::new(mem.clone(), ctl.clone())), bs);
    let data = pattern(3 * bs, 5);
    dev.write(0, &data).unwrap();
    assert_eq!(dev.sync(), Err(Errno(EIO)));
    assert_eq!(dev.sync(), Err(Errno(EIO)), "still failing, still kept");
    let s = cache.stats();
    assert_eq!(s.write_errors, 2);
    assert_eq!(s.dirty_bytes, 3 * bs as u64);
    assert!(mem.contents().iter().all(|&b| b == 0));
    let mut back = vec![0; data.len()];
    dev.read(0, &mut back).unwrap();
    assert_eq!(back, data);
    assert_eq!(cache.sync_all(), Err(Errno(EIO)));

    ctl.set(FaultMode::None);
    dev.sync().unwrap();
    assert_eq!(&mem.durable()[..data.len()], &data[..]);
    assert_eq!(cache.stats().dirty_bytes, 0);
}

/// Fails writes that touch `bad` (a byte offset); counts writes.
struct FailAt {
    inner: Arc<MemDevice>,
    bad: u64,
}

impl BlockDevice for FailAt {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), Errno> {
        self.inner.read_at(buf, off)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> Result<(), Errno> {
        if off <= self.bad && self.bad < off + buf.len() as u64 {
            self.inner.ops.lock().push(DevOp::Write {
                off,
                len: buf.len(),
            });
            return Err(Errno(EIO));
        }
        self.inner.write_at(buf, off)
    }
    fn flush(&self) -> Result<(), Errno> {
        self.inner.flush()
    }
}

#[test]
fn sync_continues_past_a_failed_write_and_returns_the_first_error() {
    let bs = 64 * KB;
    let cache = Cache::with_config(CacheConfig {
        max_merge: 2 * bs,
        ..CacheConfig::new(64 << 20)
    });
    let mem = MemDevice::new(1 << 20);
    // Blocks 0..8 dirty, merged in pairs; the pair holding block 3 fails.
    let dev = cache.attach(
        Arc::new(FailAt {
            inner: mem.clone(),
            bad: 3 * bs as u64,
        }),
        bs,
    );
    let other_mem = MemDevice::new(1 << 20);
    let other = cache.attach(other_mem.clone(), bs);
    dev.write(0, &pattern(8 * bs, 6)).unwrap();
    other.write(0, &pattern(bs, 7)).unwrap();
    assert_eq!(cache.sync_all(), Err(Errno(EIO)));
    assert_eq!(mem.writes().len(), 4, "all four merged writes attempted");
    let c = mem.contents();
    let want = pattern(8 * bs, 6);
    assert_eq!(&c[..2 * bs], &want[..2 * bs]);
    assert!(c[2 * bs..4 * bs].iter().all(|&b| b == 0));
    assert_eq!(&c[4 * bs..8 * bs], &want[4 * bs..]);
    assert_eq!(
        &other_mem.durable()[..bs],
        &pattern(bs, 7)[..],
        "other device synced"
    );
    assert_eq!(dev.stats().dirty_bytes, 2 * bs as u64);
    assert_eq!(dev.stats().write_errors, 1);
    let each = cache.sync_each();
    assert_eq!(
        each,
        vec![(dev.id(), Err(Errno(EIO))), (other.id(), Ok(()))]
    );
    assert_eq!(other.stats().dirty_bytes, 0);
}

#[test]
fn flush_error_is_reported_and_data_written_again() {
    let bs = 64 * KB;
    let cache = Cache::new(64 << 20);
    let mem = MemDevice::new(1 << 20);
    let ctl = Arc::new(FaultControl::new(FaultMode::FlushError));
    let dev = cache.attach(Arc::new(FaultyDrive::new(mem.clone(), ctl.clone())), bs);
    dev.write(0, &pattern(2 * bs, 8)).unwrap();
    assert_eq!(dev.sync(), Err(Errno(EIO)));
    let s = cache.stats();
    assert_eq!(s.flush_errors, 1);
    assert_eq!(s.dirty_bytes, 2 * bs as u64, "not durable: kept dirty");
    ctl.set(FaultMode::None);
    mem.clear_ops();
    dev.sync().unwrap();
    assert_eq!(mem.writes(), vec![(0, 2 * bs)]);
    assert_eq!(&mem.durable()[..2 * bs], &pattern(2 * bs, 8)[..]);
    assert_eq!(cache.stats().dirty_bytes, 0);
}

#[test]
fn hung_writes_hold_sync_until_cleared() {
    let bs = 64 * KB;
    let cache = Cache::new(64 << 20);
    let mem = MemDevice::new(1 << 20);
    let ctl = Arc::new(FaultControl::new(FaultMode::WriteHang));
    let dev = cache.attach(Arc::new(FaultyDrive::new(mem.clone(), ctl.clone())), bs);
    dev.write(0, &pattern(bs, 9)).unwrap();
    let d2 = dev.clone();
    let t = thread::spawn(move || d2.sync());
    thread::sleep(Duration::from_millis(100));
    assert!(!t.is_finished());
    assert!(mem.writes().is_empty());
    // Reads and writes of the cache are not blocked by the hung device.
    let mut b = [0u8; 4];
    dev.read(0, &mut b).unwrap();
    dev.write(2 * bs as u64, b"xyz").unwrap();
    ctl.set(FaultMode::None);
    assert_eq!(t.join().unwrap(), Ok(()));
    assert_eq!(&mem.durable()[..bs], &pattern(bs, 9)[..]);
}

#[test]
fn lru_evicts_clean_blocks_within_the_limit() {
    let bs = 64 * KB;
    let limit = 1u64 << 20; // 16 blocks
    let init = pattern(4 << 20, 10); // 4x the limit
    let cache = Cache::new(limit);
    let mem = MemDevice::with_contents(init.clone());
    let dev = cache.attach(mem.clone(), bs);
    let mut buf = vec![0u8; 100_000];
    for pass in 0..2 {
        let mut off = 0usize;
        while off < init.len() {
            let n = buf.len().min(init.len() - off);
            dev.read(off as u64, &mut buf[..n]).unwrap();
            assert_eq!(&buf[..n], &init[off..off + n], "pass {pass} off {off}");
            off += n;
        }
    }
    let s = cache.stats();
    assert!(s.peak_cached_bytes <= limit + 2 * bs as u64, "{s:?}");
    assert!(s.cached_bytes <= limit);
    assert!(s.evictions >= 48);

    // LRU order: fill with blocks 0..16, touch 0, bring in 16: 1 goes, 0 stays.
    let cache = Cache::new(limit);
    let mem = MemDevice::with_contents(init.clone());
    let dev = cache.attach(mem.clone(), bs);
    let mut b = [0u8; 1];
    for i in 0..16u64 {
        dev.read(i * bs as u64, &mut b).unwrap();
    }
    dev.read(0, &mut b).unwrap();
    dev.read(16 * bs as u64, &mut b).unwrap();
    mem.clear_ops();
    dev.read(0, &mut b).unwrap();
    assert_eq!(reads(&mem), 0, "recently used block 0 stayed");
    dev.read(bs as u64, &mut b).unwrap();
    assert_eq!(reads(&mem), 1, "least recently used block 1 was evicted");
}

#[test]
fn dirty_blocks_are_never_evicted() {
    let bs = 64 * KB;
    let limit = 1u64 << 20;
    let (cache, mem, dev) = setup(4 << 20, limit, bs);
    // Half the limit dirty, then read 3 MiB through.
    dev.write(0, &pattern(512 * KB, 11)).unwrap();
    let mut buf = vec![0u8; 64 * KB];
    for i in 8..56u64 {
        dev.read(i * bs as u64, &mut buf).unwrap();
    }
    assert_eq!(cache.stats().dirty_bytes, 512 * KB as u64);
    assert!(mem.writes().is_empty());
    let mut back = vec![0u8; 512 * KB];
    dev.read(0, &mut back).unwrap();
    assert_eq!(back, pattern(512 * KB, 11));
    assert!(cache.stats().peak_cached_bytes <= limit + 2 * bs as u64);
}

#[test]
fn writers_are_throttled_not_failed() {
    let bs = 64 * KB;
    let limit = 1u64 << 20;
    let (cache, mem, dev) = setup(4 << 20, limit, bs);
    let data = pattern(4 << 20, 12); // 4x the limit
    for (i, chunk) in data.chunks(48 * KB).enumerate() {
        dev.write((i * 48 * KB) as u64, chunk).unwrap();
        assert!(cache.stats().dirty_bytes <= limit);
    }
    let s = cache.stats();
    assert!(s.throttled > 0, "{s:?}");
    assert!(s.peak_dirty_bytes <= cache.high_water(), "{s:?}");
    assert!(s.peak_dirty_bytes <= limit);
    assert!(s.peak_cached_bytes <= limit + 2 * bs as u64, "{s:?}");
    assert!(!mem.writes().is_empty(), "throttling wrote back");
    // Throttled write-back writes merged runs, never flushes.
    assert!(mem.writes().iter().any(|&(_, len)| len > bs));
    assert!(!mem.ops().contains(&DevOp::Flush));
    dev.sync().unwrap();
    assert_eq!(mem.durable(), data);
}

#[test]
fn max_dirty_caps_the_high_water_mark() {
    let bs = 64 * KB;
    let cache = Cache::with_config(CacheConfig {
        max_dirty: 256 * KB as u64,
        ..CacheConfig::new(64 << 20)
    });
    assert_eq!(cache.high_water(), 256 * KB as u64);
    let mem = MemDevice::new(2 << 20);
    let dev = cache.attach(mem.clone(), bs);
    dev.write(0, &pattern(2 << 20, 13)).unwrap();
    let s = cache.stats();
    assert!(s.peak_dirty_bytes <= 256 * KB as u64, "{s:?}");
    assert!(s.throttled > 0);
    dev.sync().unwrap();
    assert_eq!(mem.durable(), pattern(2 << 20, 13));
}

#[test]
fn throttled_writers_on_a_failing_device_get_the_error_at_the_limit() {
    let bs = 64 * KB;
    let limit = 1u64 << 20;
    let cache = Cache::new(limit);
    let mem = MemDevice::new(4 << 20);
    let ctl = Arc::new(FaultControl::new(FaultMode::WriteError));
    let dev = cache.attach(Arc::new(FaultyDrive::new(mem.clone(), ctl.clone())), bs);
    let mut ok = 0usize;
    let mut err = None;
    for i in 0..64 {
        match dev.write((i * bs) as u64, &pattern(bs, i as u32)) {
            Ok(()) => ok += 1,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert_eq!(err, Some(Errno(EIO)));
    assert_eq!(ok, 16, "let through up to the limit");
    assert_eq!(cache.stats().dirty_bytes, limit);
    ctl.set(FaultMode::None);
    dev.sync().unwrap();
    for i in 0..ok {
        assert_eq!(
            &mem.durable()[i * bs..(i + 1) * bs],
            &pattern(bs, i as u32)[..]
        );
    }
}

#[test]
fn concurrent_writers_and_readers_stay_consistent() {
    let bs = 16 * KB;
    let nblocks = 256usize; // 4 MiB device
    let limit = 1u64 << 20; // forces eviction and throttling meanwhile
    let (cache, mem, dev) = setup(nblocks * bs, limit, bs);
    let writers = 4usize;
    let rounds = 6u8;
    let mut hs = Vec::new();
    for w in 0..writers {
        let dev = dev.clone();
        hs.push(thread::spawn(move || {
            for r in 1..=rounds {
                for blk in (w..nblocks).step_by(writers) {
                    // Whole-block writes of one byte value: (writer, round).
                    let v = (w as u8) << 4 | r;
                    dev.write((blk * bs) as u64, &vec![v; bs]).unwrap();
                }
                if r % 3 == 0 {
                    dev.sync().unwrap();
                }
            }
        }));
    }
    for rd in 0..2usize {
        let dev = dev.clone();
        hs.push(thread::spawn(move || {
            let mut buf = vec![0u8; bs];
            for i in 0..2000usize {
                let blk = (i * 7 + rd * 13) % nblocks;
                dev.read((blk * bs) as u64, &mut buf).unwrap();
                // A block is always one whole write: uniform, and owned by
                // the right writer (or still zero).
                let v = buf[0];
                assert!(buf.iter().all(|&b| b == v), "torn block {blk}");
                assert!(
                    v == 0 || (v >> 4) as usize == blk % writers,
                    "block {blk} has {v:#x}"
                );
            }
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    dev.sync().unwrap();
    let c = mem.durable();
    for blk in 0..nblocks {
        let v = ((blk % writers) as u8) << 4 | rounds;
        assert!(
            c[blk * bs..(blk + 1) * bs].iter().all(|&b| b == v),
            "block {blk}"
        );
    }
    let s = cache.stats();
    assert_eq!(s.dirty_bytes, 0);
    assert!(s.throttled > 0 && s.evictions > 0, "{s:?}");
    assert!(s.peak_dirty_bytes <= limit, "{s:?}");
    assert!(
        s.peak_cached_bytes <= limit + (writers + 4) as u64 * bs as u64,
        "{s:?}"
    );
}

#[test]
fn concurrent_partial_writers_in_shared_blocks() {
    // Threads own interleaved 512-byte slices of the same blocks: every
    // block is read-modify-written by all of them at once.
    let bs = 8 * KB;
    let size = 512 * KB;
    let (cache, mem, dev) = setup(size, 128 * KB as u64, bs);
    let n = 4usize;
    let mut hs = Vec::new();
    for t in 0..n {
        let dev = dev.clone();
        hs.push(thread::spawn(move || {
            for r in 0..3u32 {
                let mut off = t * 512;
                while off < size {
                    dev.write(off as u64, &pattern(512, (off as u32) ^ r))
                        .unwrap();
                    off += n * 512;
                }
            }
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    cache.sync_all().unwrap();
    let c = mem.durable();
    for off in (0..size).step_by(512) {
        assert_eq!(
            &c[off..off + 512],
            &pattern(512, (off as u32) ^ 2)[..],
            "slice {off}"
        );
    }
}

#[test]
fn detach_syncs_and_forgets() {
    let (cache, mem, dev) = setup(1 << 20, 64 << 20, 64 * KB);
    dev.write(5, b"abc").unwrap();
    assert_eq!(cache.devices(), 1);
    dev.detach().unwrap();
    assert_eq!(&mem.durable()[5..8], b"abc");
    assert_eq!(cache.devices(), 0);
    assert_eq!(cache.stats().cached_bytes, 0);
}

#[test]
fn fault_specs_parse() {
    assert_eq!(
        FaultControl::from_spec("write-error").unwrap().mode(),
        FaultMode::WriteError
    );
    assert_eq!(
        FaultControl::from_spec("flush-error").unwrap().mode(),
        FaultMode::FlushError
    );
    assert_eq!(
        FaultControl::from_spec("write-hang").unwrap().mode(),
        FaultMode::WriteHang
    );
    let c = FaultControl::from_spec("write-error:/nonexistent/ctl").unwrap();
    assert_eq!(
        c.mode(),
        FaultMode::None,
        "inactive while the file is missing"
    );
    assert_eq!(
        c.control_file(),
        Some(std::path::Path::new("/nonexistent/ctl"))
    );
    let e = FaultControl::from_spec("write-eror").unwrap_err();
    assert!(
        e.to_string().contains("unknown fault mode \"write-eror\""),
        "{e}"
    );
    assert!(FaultControl::from_spec("")
        .unwrap_err()
        .to_string()
        .contains("empty fault spec"));
    assert!(FaultControl::from_spec("write-hang:")
        .unwrap_err()
        .to_string()
        .contains("empty control file"));
    assert!(FaultControl::from_spec(":x")
        .unwrap_err()
        .to_string()
        .contains("empty fault mode"));
}

#[test]
fn random_ops_match_a_model() {
    // Random reads, writes, syncs and write faults over odd block sizes and
    // small limits, against a plain byte vector.
    let mut failed_writes = 0;
    let mut failed_syncs = 0;
    for (seed, bs, limit) in [
        (1u64, 4 * KB, 64 * KB as u64),
        (2, 3000, 40_000),
        (3, 64 * KB, 256 * KB as u64),
        (4, 512, 0),
    ] {
        let size = 300_000usize;
        let cache = Cache::with_config(CacheConfig {
            max_merge: 3 * bs + 100,
            ..CacheConfig::new(limit)
        });
        let mem = MemDevice::with_contents(pattern(size, seed as u32));
        let ctl = Arc::new(FaultControl::new(FaultMode::None));
        let dev = cache.attach(Arc::new(FaultyDrive::new(mem.clone(), ctl.clone())), bs);
        let mut model = pattern(size, seed as u32);
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut rnd = |n: usize| {
            x ^= x << 7;
            x ^= x >> 9;
            (x % n as u64) as usize
        };
        for op in 0..3000 {
            let off = rnd(size);
            let len = rnd(3 * bs).min(size - off);
            match rnd(20) {
                0..=8 => {
                    let data = pattern(len, op);
                    match dev.write(off as u64, &data) {
                        Ok(()) => model[off..off + len].copy_from_slice(&data),
                        // Only when the device fails and dirty data is at
                        // the limit; whole blocks before the failure landed.
                        Err(e) => {
                            failed_writes += 1;
                            assert_eq!(e, Errno(EIO));
                            assert_eq!(ctl.mode(), FaultMode::WriteError);
                            let mut got = vec![0u8; len];
                            dev.read(off as u64, &mut got).unwrap();
                            model[off..off + len].copy_from_slice(&got);
                        }
                    }
                }
                9..=16 => {
                    let mut got = vec![0u8; len];
                    dev.read(off as u64, &mut got).unwrap();
                    assert_eq!(
                        got,
                        &model[off..off + len],
                        "seed {seed} op {op} read {off}+{len}"
                    );
                }
                17 => {
                    let r = dev.sync();
                    if r.is_err() {
                        failed_syncs += 1;
                    }
                    if ctl.mode() == FaultMode::None {
                        r.unwrap();
                        assert_eq!(mem.durable(), model, "seed {seed} op {op} after sync");
                        assert_eq!(dev.stats().dirty_bytes, 0);
                    }
                }
                18 => ctl.set(if rnd(3) == 0 {
                    FaultMode::WriteError
                } else {
                    FaultMode::None
                }),
                _ => {
                    // A read past the end fails and changes nothing.
                    let mut b = [0u8; 2];
                    assert_eq!(dev.read(size as u64 - 1, &mut b), Err(Errno(EINVAL)));
                }
            }
            let s = cache.stats();
            assert!(
                s.cached_bytes <= limit + 4 * bs as u64,
                "seed {seed} op {op} {s:?}"
            );
        }
        ctl.set(FaultMode::None);
        dev.sync().unwrap();
        assert_eq!(mem.durable(), model, "seed {seed} final");
    }
    assert!(
        failed_writes > 0 && failed_syncs > 0,
        "{failed_writes} {failed_syncs}"
    );
}

#[test]
fn concurrent_random_writers_with_syncs_and_pressure() {
    let bs = 4 * KB;
    let region = 100_000usize; // not block-aligned: neighbours share blocks
    let nthreads = 3usize;
    let size = region * nthreads;
    let cache = Cache::new(48 * KB as u64);
    let mem = MemDevice::with_contents(pattern(size, 77));
    let dev = cache.attach(mem.clone(), bs);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let syncer = {
        let (cache, stop) = (cache.clone(), stop.clone());
        thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                cache.sync_all().unwrap();
                n += 1;
            }
            n
        })
    };
    let mut hs = Vec::new();
    for t in 0..nthreads {
        let dev = dev.clone();
        hs.push(thread::spawn(move || {
            let base = t * region;
            let mut model = pattern(size, 77)[base..base + region].to_vec();
            let mut x = (t as u64 + 1) * 0x2545_F491_4F6C_DD1D;
            for op in 0..1500u32 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let off = (x % region as u64) as usize;
                let len = ((x >> 20) as usize % (2 * bs)).min(region - off);
                if op % 3 == 0 {
                    let mut got = vec![0u8; len];
                    dev.read((base + off) as u64, &mut got).unwrap();
                    assert_eq!(got, &model[off..off + len], "thread {t} op {op}");
                } else {
                    let data = pattern(len, op * 7 + t as u32);
                    dev.write((base + off) as u64, &data).unwrap();
                    model[off..off + len].copy_from_slice(&data);
                }
            }
            model
        }));
    }
    let models: Vec<Vec<u8>> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(syncer.join().unwrap() > 0);
    cache.sync_all().unwrap();
    assert_eq!(mem.durable(), models.concat());
    let s = cache.stats();
    assert!(s.peak_dirty_bytes <= 48 * KB as u64, "{s:?}");
}

/// Through a real host file: aligned whole blocks (direct I/O where the
/// host allows it), a short last block and a partial block (buffered),
/// rewrites after a sync, and a block rewritten while its write-back is in
/// flight (copy on write) — the file holds exactly what was written.
#[test]
fn host_drive_write_back_is_byte_exact() {
    let dir = std::env::temp_dir().join(format!("vfs-cache-host-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("img");
    let size = 3 * 64 * KB + 1000;
    std::fs::write(&path, vec![0u8; size]).unwrap();
    let hd = Arc::new(HostDrive::open(path.to_str().unwrap(), None).unwrap());
    let cache = Cache::new(16 << 20);
    let dev = cache.attach(hd.clone(), 64 * KB);
    let mut want = pattern(size, 1);
    dev.write(0, &want).unwrap();
    dev.sync().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), want);

    let piece = pattern(5000, 2);
    dev.write(70_000, &piece).unwrap();
    want[70_000..75_000].copy_from_slice(&piece);
    let whole = pattern(64 * KB, 3);
    dev.write(128 * KB as u64, &whole).unwrap();
    want[128 * KB..192 * KB].copy_from_slice(&whole);
    dev.sync().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), want);
    let mut back = vec![0u8; size];
    hd.read_at(&mut back, 0).unwrap();
    assert_eq!(back, want);

    // Gathered writes straight to the drive, aligned and not.
    let a = pattern(64 * KB, 4);
    let b = pattern(64 * KB, 5);
    hd.write_vectored_at(&[&a, &b], 0).unwrap();
    want[..64 * KB].copy_from_slice(&a);
    want[64 * KB..128 * KB].copy_from_slice(&b);
    let c = pattern(333, 6);
    hd.write_vectored_at(&[&c[..100], &c[100..]], 7).unwrap();
    want[7..340].copy_from_slice(&c);
    hd.flush().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), want);
    drop(dev);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn write_during_write_back_copies_on_write() {
    let (_cache, mem, dev) = setup(256 * KB, 4 << 20, 64 * KB);
    let first = pattern(256 * KB, 7);
    dev.write(0, &first).unwrap();
    let second = pattern(64 * KB, 8);
    let hit = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (d2, s2, h2) = (dev.clone(), second.clone(), hit.clone());
    mem.set_write_hook(Some(Arc::new(move |_off, _len| {
        if !h2.swap(true, std::sync::atomic::Ordering::SeqCst) {
            // Overwrite block 1 (whole) and part of block 2 while in flight.
            d2.write(64 * KB as u64, &s2).unwrap();
            d2.write(128 * KB as u64 + 10, &s2[..100]).unwrap();
        }
    })));
    dev.sync().unwrap();
    // The first write-back carried the old bytes; the new ones stay dirty.
    assert_eq!(mem.contents(), first);
    assert!(dev.stats().dirty_bytes > 0);
    mem.set_write_hook(None);
    dev.sync().unwrap();
    let mut want = first.clone();
    want[64 * KB..128 * KB].copy_from_slice(&second);
    want[128 * KB + 10..128 * KB + 110].copy_from_slice(&second[..100]);
    assert_eq!(mem.contents(), want);
    let mut got = vec![0u8; 256 * KB];
    dev.read(0, &mut got).unwrap();
    assert_eq!(got, want);
}

#[test]
fn write_block_with_fills_whole_blocks_in_place() {
    let size = 2 * 64 * KB + 500;
    let (_cache, mem, dev) = setup(size, 4 << 20, 64 * KB);
    assert!(dev.is_whole_block(0, 64 * KB));
    assert!(dev.is_whole_block(128 * KB as u64, 500));
    assert!(!dev.is_whole_block(1, 64 * KB));
    assert!(!dev.is_whole_block(0, 1000));
    assert_eq!(
        dev.write_block_with(0, 1000, |_| Ok(())),
        Err(Errno(EINVAL))
    );
    // A failing fill writes nothing.
    assert_eq!(
        dev.write_block_with(0, 64 * KB, |_| Err(Errno(EIO))),
        Err(Errno(EIO))
    );
    assert_eq!(dev.stats().dirty_bytes, 0);
    let a = pattern(64 * KB, 11);
    dev.write_block_with(0, 64 * KB, |d| {
        d.copy_from_slice(&a);
        Ok(())
    })
    .unwrap();
    let tail = pattern(500, 12);
    dev.write_block_with(128 * KB as u64, 500, |d| {
        d.copy_from_slice(&tail);
        Ok(())
    })
    .unwrap();
    // Over a cached block, while its write-back is in flight.
    let b = pattern(64 * KB, 13);
    let (d2, b2) = (dev.clone(), b.clone());
    let hit = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h2 = hit.clone();
    mem.set_write_hook(Some(Arc::new(move |_, _| {
        if !h2.swap(true, std::sync::atomic::Ordering::SeqCst) {
            d2.write_block_with(0, 64 * KB, |d| {
                d.copy_from_slice(&b2);
                Ok(())
            })
            .unwrap();
        }
    })));
    dev.sync().unwrap();
    mem.set_write_hook(None);
    assert_eq!(&mem.contents()[..64 * KB], &a[..]);
    dev.sync().unwrap();
    let mut want = vec![0u8; size];
    want[..64 * KB].copy_from_slice(&b);
    want[128 * KB..].copy_from_slice(&tail);
    assert_eq!(mem.contents(), want);
    let mut got = vec![0u8; size];
    dev.read(0, &mut got).unwrap();
    assert_eq!(got, want);
    // Only the block never written was read from the device.
    assert_eq!(reads(&mem), 1);
}

#[test]
fn read_stream_reads_whole_absent_blocks_past_the_cache() {
    let bs = 64 * KB;
    // A 1 MiB + 10 KiB device: its last block is short.
    let size = (1 << 20) + 10 * KB;
    let (cache, mem, dev) = setup(size, 64 << 20, bs);
    let base = pattern(size, 7);
    dev.write(0, &base).unwrap();
    dev.sync().unwrap();
    // Start over with the image on the device and nothing cached.
    drop(dev);
    let dev = cache.attach(mem.clone(), bs);
    // One held, dirty block in the middle (newer than the device).
    let fresh = pattern(bs, 8);
    dev.write(3 * bs as u64, &fresh).unwrap();
    let mut want = base.clone();
    want[3 * bs..4 * bs].copy_from_slice(&fresh);
    let held = cache.stats().cached_bytes;

    // From the middle of block 1 to the end: a partial first block, whole
    // absent ones, the dirty one, and the short last block.
    let from = bs + 1000;
    let mut got = vec![0u8; size - from];
    dev.read_stream(from as u64, &mut got).unwrap();
    assert_eq!(got, &want[from..]);
    // Only the partial first block came into the cache.
    assert_eq!(cache.stats().cached_bytes, held + bs as u64);
    // The same bytes as a plain read gives.
    let mut plain = vec![0u8; size - from];
    dev.read(from as u64, &mut plain).unwrap();
    assert_eq!(plain, got);
    // Out of range: EINVAL, nothing read.
    assert_eq!(
        dev.read_stream(size as u64 - 1, &mut [0u8; 2]),
        Err(Errno(EINVAL))
    );
}
