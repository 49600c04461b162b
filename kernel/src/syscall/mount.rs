//! mount, unmount, sync.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use netbsd_abi::errno::*;
use netbsd_abi::fcntl::*;
use netbsd_abi::Errno;

use super::{Args, Cx, SysResult};
use crate::etfs::DriveType;
use crate::namei::MAXPATHLEN;
use crate::vfs::{FileKind, FileSystem};
use crate::vnode::Mount;

/// `MFSNAMELEN`: longest file system type name, with its NUL.
const MFSNAMELEN: usize = 32;

/// `mount(type, path, flags, data, data_len)` with `data` a
/// `struct ufs_args { char *fspec; }` naming a `blk` drive.
pub fn mount(cx: &Cx, a: &Args) -> SysResult {
    let fstype = cx.p.mem.copyinstr(a.u(0), MFSNAMELEN).map_err(|e| {
        if e.0 == ENAMETOOLONG {
            Errno(ENODEV)
        } else {
            e
        }
    })?;
    let path = cx.path(a.u(1))?;
    let flags = a.int(2);
    let data = a.u(3);
    let data_len = a.u(4);
    if flags & MNT_UPDATE != 0 {
        return Err(Errno(EOPNOTSUPP));
    }
    let fstype = String::from_utf8_lossy(&fstype).into_owned();
    let factory = cx.k.fs_type(&fstype).ok_or(Errno(ENODEV))?;
    if data == 0 || data_len < UFS_ARGS_SIZE as u64 {
        return Err(Errno(EINVAL));
    }
    let fspec_ptr = cx.p.mem.copyin_u64(data)?;
    let fspec = cx.p.mem.copyinstr(fspec_ptr, MAXPATHLEN)?;
    // The device: an etfs blk node.
    let devvn = cx.namei(&fspec, true)?;
    let dattr = devvn.getattr()?;
    if dattr.kind != FileKind::Blk {
        return Err(Errno(ENOTBLK));
    }
    let drive = cx.k.drive_by_rdev(dattr.rdev).ok_or(Errno(ENXIO))?;
    if drive.kind != DriveType::Blk {
        return Err(Errno(ENOTBLK));
    }
    let store = drive.cached.clone().ok_or(Errno(ENXIO))?;
    let read_only = flags & MNT_RDONLY != 0;

    let _g = cx.k.mount_lock.lock();
    let dir = cx.namei(&path, true)?;
    if dir.kind()? != FileKind::Dir {
        return Err(Errno(ENOTDIR));
    }
    if cx.k.mounts.mounted_on(&dir).is_some() || (dir.is_mount_root() && dir.mnt.covered.is_some())
    {
        return Err(Errno(EBUSY));
    }
    if drive.mounted.swap(true, Ordering::SeqCst) {
        return Err(Errno(EBUSY));
    }
    let fs = match factory(store, read_only) {
        Ok(fs) => fs,
        Err(e) => {
            drive.mounted.store(false, Ordering::SeqCst);
            return Err(e);
        }
    };
    let mut where_ = cx.k.mounts_path_of(&dir);
    if where_.is_empty() {
        where_ = String::from_utf8_lossy(&path).into_owned();
    }
    // A panic in one of its operations makes it read-only (fsguard).
    let fs: Arc<dyn FileSystem> = Arc::new(crate::fsguard::Guarded::new(fs, &where_));
    let m = Arc::new(Mount {
        dev: cx.k.mounts.alloc_dev(),
        fs,
        covered: Some(dir),
        read_only,
        busy: AtomicUsize::new(0),
        dead: AtomicBool::new(false),
        drive: Some(drive.index),
        path: where_,
    });
    m.fs.set_dirty_hook(cx.k.syncer.kicker());
    if let Err(e) = cx.k.mounts.insert(m.clone()) {
        let _ = m.fs.unmount();
        drive.mounted.store(false, Ordering::SeqCst);
        return Err(e);
    }
    if cx.k.config().verbose {
        tracing::info!("rumpkern: mounted {} {} on {}", fstype, drive.key, m.path);
    }
    Ok(())
}

pub fn unmount(cx: &Cx, a: &Args) -> SysResult {
    let path = cx.path(a.u(0))?;
    let flags = a.int(1);
    let force = flags & MNT_FORCE != 0;
    let _g = cx.k.mount_lock.lock();
    let vn = cx.namei(&path, true)?;
    if !vn.is_mount_root() {
        return Err(Errno(EINVAL));
    }
    let m = vn.mnt.clone();
    drop(vn);
    if m.covered.is_none() {
        // The root file system stays.
        return Err(Errno(EBUSY));
    }
    // Something mounted below this mount keeps it busy.
    if cx
        .k
        .mounts
        .list()
        .iter()
        .any(|o| o.covered.as_ref().is_some_and(|c| Arc::ptr_eq(&c.mnt, &m)))
    {
        return Err(Errno(EBUSY));
    }
    if m.busy.load(Ordering::SeqCst) > 0 && !force {
        return Err(Errno(EBUSY));
    }
    let drive = m.drive.and_then(|i| cx.k.drive_by_index(i));
    if !force {
        // Flush first, while everything can still be retried.
        m.fs.sync()?;
        if let Some(d) = &drive {
            d.sync()?;
        }
    }
    match m.fs.unmount() {
        Ok(()) => {}
        Err(e) if !force => return Err(e),
        Err(e) => tracing::error!(
            "rumpkern: forced unmount of {}: final sync failed: {e}",
            m.path
        ),
    }
    m.dead.store(true, Ordering::Release);
    cx.k.mounts.remove(&m);
    let mut r = Ok(());
    if let Some(d) = drive {
        // The file system's last writes went into the cache: make them
        // durable. On failure they stay dirty in the cache (a later sync
        // or the halt retries) and the error is reported.
        if let Err(e) = d.sync() {
            tracing::error!(
                "rumpkern: unmount of {}: sync of drive {} failed: {e}",
                m.path,
                d.key
            );
            r = Err(e);
        }
        d.mounted.store(false, Ordering::SeqCst);
    }
    r
}

pub fn sync(cx: &Cx) -> SysResult {
    cx.k.sync_all()
}
