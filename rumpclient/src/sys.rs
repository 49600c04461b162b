//! The system calls over sysproxy: every typed call of [`Syscalls`] (in
//! scope with `use rumpclient::Syscalls`) over [`Client::syscall`], and
//! `mount(2)` with any argument structure, which is safe here (the server
//! reaches nothing but the regions given) though not on every way in.

use netbsd_abi::errno::{Errno, EINVAL};
use netbsd_abi::syscall::*;
use netbsd_abi::{SysError, Syscalls};

use crate::client::{Client, Region};
use crate::error::Error;

/// A NUL-terminated copy of a path.
pub(crate) fn cpath(p: &[u8]) -> Result<Vec<u8>, Error> {
    if p.contains(&0) {
        return Err(Error::Errno(Errno(EINVAL)));
    }
    let mut v = Vec::with_capacity(p.len() + 1);
    v.extend_from_slice(p);
    v.push(0);
    Ok(v)
}

/// The address of `b` in this process, as a syscall argument.
pub(crate) fn a(b: &[u8]) -> u64 {
    b.as_ptr() as u64
}

impl SysError for Error {
    fn errno(&self) -> Errno {
        Error::errno(self)
    }
}

/// Every typed call over sysproxy: the server copies in and out of the
/// regions each call lends and nothing else.
impl Syscalls for Client {
    type Error = Error;

    unsafe fn call(
        &self,
        num: i32,
        args: &[u64],
        mem: &mut [Region<'_>],
    ) -> Result<[i64; 2], Error> {
        self.syscall(num, args, mem)
    }
}

impl Client {
    /// `mount(fstype, path, flags, data, data.len())`. `data` is the file
    /// system's argument structure; pointers inside it must point into
    /// memory the kernel may read — use [`Client::mount_with`] for that.
    pub fn mount(
        &self,
        fstype: &str,
        path: impl AsRef<[u8]>,
        flags: i32,
        data: &[u8],
    ) -> Result<(), Error> {
        self.mount_with(fstype, path, flags, data, &[])
    }

    /// [`Client::mount`] where `data` refers to the extra readable buffers
    /// `extra` (for example the strings its pointers point at).
    pub fn mount_with(
        &self,
        fstype: &str,
        path: impl AsRef<[u8]>,
        flags: i32,
        data: &[u8],
        extra: &[&[u8]],
    ) -> Result<(), Error> {
        let t = cpath(fstype.as_bytes())?;
        let p = cpath(path.as_ref())?;
        let args = [
            a(&t),
            a(&p),
            flags as u32 as u64,
            a(data),
            data.len() as u64,
        ];
        let mut regions = vec![Region::In(&t), Region::In(&p), Region::In(data)];
        regions.extend(extra.iter().map(|e| Region::In(e)));
        self.syscall(SYS_MOUNT, &args, &mut regions)?;
        Ok(())
    }
}
