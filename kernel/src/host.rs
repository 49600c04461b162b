//! The kernel's few direct needs of the host, all through the hypercall
//! layer: the clock. (A drive's host file is a [`vfs_cache::HostDrive`],
//! opened once in [`crate::etfs`] and shared by the cache and the direct
//! paths.)

use netbsd_abi::stat::Timespec;

/// Wall-clock time now.
pub fn now() -> Timespec {
    match rumpuser::clock::gettime(rumpuser::clock::CLOCK_RELWALL) {
        Ok((sec, nsec)) => Timespec { sec, nsec },
        Err(_) => Timespec::default(),
    }
}
