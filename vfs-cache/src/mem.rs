//! An in-memory [`BlockDevice`] that records every call: for tests of the
//! cache and of whatever sits on it.

use std::sync::Arc;

use netbsd_abi::errno::EINVAL;
use netbsd_abi::Errno;
use rumpuser::locks::Mutex;

use crate::BlockDevice;

/// One call a [`MemDevice`] received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevOp {
    /// `read_at`: `len` bytes at `off`.
    Read {
        /// Where.
        off: u64,
        /// How many bytes.
        len: usize,
    },
    /// `write_at`: `len` bytes at `off`.
    Write {
        /// Where.
        off: u64,
        /// How many bytes.
        len: usize,
    },
    /// `flush`.
    Flush,
}

type WriteHook = Arc<dyn Fn(u64, usize) + Send + Sync>;

/// A device in memory. `contents()` is what was written, `durable()` what
/// the last `flush` made durable.
pub struct MemDevice {
    data: Mutex<Vec<u8>>,
    durable: Mutex<Vec<u8>>,
    pub(crate) ops: Mutex<Vec<DevOp>>,
    hook: Mutex<Option<WriteHook>>,
}

impl MemDevice {
    /// A zero-filled device of `size` bytes.
    pub fn new(size: usize) -> Arc<MemDevice> {
        MemDevice::with_contents(vec![0; size])
    }

    /// A device holding `data` (also its durable contents).
    pub fn with_contents(data: Vec<u8>) -> Arc<MemDevice> {
        Arc::new(MemDevice {
            durable: Mutex::new(data.clone()),
            data: Mutex::new(data),
            ops: Mutex::new(Vec::new()),
            hook: Mutex::new(None),
        })
    }

    /// Everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.data.lock().clone()
    }

    /// The contents as of the last flush.
    pub fn durable(&self) -> Vec<u8> {
        self.durable.lock().clone()
    }

    /// The calls received, in order.
    pub fn ops(&self) -> Vec<DevOp> {
        self.ops.lock().clone()
    }

    /// Only the writes, in order, as (offset, length).
    pub fn writes(&self) -> Vec<(u64, usize)> {
        self.ops
            .lock()
            .iter()
            .filter_map(|o| match *o {
                DevOp::Write { off, len } => Some((off, len)),
                _ => None,
            })
            .collect()
    }

    /// Forget the calls recorded so far.
    pub fn clear_ops(&self) {
        self.ops.lock().clear();
    }

    /// Call `hook(off, len)` at the start of every `write_at`, before the
    /// data lands (no lock of the device is held during the call).
    pub fn set_write_hook(&self, hook: Option<Arc<dyn Fn(u64, usize) + Send + Sync>>) {
        *self.hook.lock() = hook;
    }

    fn range(&self, off: u64, len: usize) -> Result<std::ops::Range<usize>, Errno> {
        let size = self.data.lock().len() as u64;
        match off.checked_add(len as u64) {
            Some(end) if end <= size => Ok(off as usize..end as usize),
            _ => Err(Errno(EINVAL)),
        }
    }
}

impl BlockDevice for MemDevice {
    fn size(&self) -> u64 {
        self.data.lock().len() as u64
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), Errno> {
        self.ops.lock().push(DevOp::Read {
            off,
            len: buf.len(),
        });
        let r = self.range(off, buf.len())?;
        buf.copy_from_slice(&self.data.lock()[r]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], off: u64) -> Result<(), Errno> {
        self.ops.lock().push(DevOp::Write {
            off,
            len: buf.len(),
        });
        let hook = self.hook.lock().clone();
        if let Some(h) = hook {
            h(off, buf.len());
        }
        let r = self.range(off, buf.len())?;
        self.data.lock()[r].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> Result<(), Errno> {
        self.ops.lock().push(DevOp::Flush);
        let d = self.data.lock().clone();
        *self.durable.lock() = d;
        Ok(())
    }
}
