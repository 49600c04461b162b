//! NetBSD's binary interface, as facts: the numbers and layouts a rump
//! kernel host must match exactly (amd64). No behaviour lives here but
//! the socket helpers both ends of sysproxy share (`sp::io`) and the
//! typed system calls every way into a kernel shares ([`Syscalls`]: the
//! argument layouts, written once over one raw call).
//!
//! Why a crate of its own: the kernel, the sysproxy server, the client
//! and the tools must agree on every number, so there is one copy of each.
//! A caller must keep the numbering straight: values here are NetBSD's
//! (an [`Errno`] is a NetBSD errno, a `SYS_*` a NetBSD syscall number),
//! never the host's; [`errno`] and [`signal`] translate at the boundary.
#![warn(missing_docs)]

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
pub mod syscalls;
pub mod text;

pub use errno::Errno;
pub use syscalls::{AsErrno, Region, SysError, Syscalls};
