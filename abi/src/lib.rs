//! NetBSD's binary interface, as facts: the numbers and layouts a rump
//! kernel host must match exactly (amd64). No behaviour lives here but
//! the socket helpers both ends of sysproxy share (`sp::io`).

pub mod dirent;
pub mod errno;
pub mod fcntl;
pub mod mount;
pub mod reboot;
pub mod signal;
pub mod sp;
pub mod stat;
pub mod statvfs;
pub mod syscall;

pub use errno::Errno;
