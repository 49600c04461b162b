//! The sysproxy client library: NetBSD's `rumpclient` in Rust.
//!
//! A [`Client`] is one connection to a rump kernel (`unix://` or `tcp://`
//! URL, usually from `RUMP_SERVER`) and one kernel process. System calls
//! (the typed ones of [`Syscalls`], shared with every way into a kernel)
//! go out as sysproxy requests; while one runs, the server's copyin and
//! copyout requests are served from the memory the caller registered for
//! that call ([`Region`]s) and nothing else.
//!
//! ```no_run
//! use rumpclient::{Client, Syscalls, O_RDONLY};
//! let c = Client::from_env()?;
//! let fd = c.open("/etc/motd", O_RDONLY, 0)?;
//! let mut buf = [0u8; 128];
//! let n = c.read(fd, &mut buf)?;
//! c.close(fd)?;
//! # Ok::<(), rumpclient::Error>(())
//! ```
//!
//! Reconnection: as NetBSD's default, a lost connection is not re-made;
//! every later call fails with [`Error::Lost`]. [`Client::set_conn_retry`]
//! (NetBSD's `rumpclient_setconnretry`) or, for [`Client::from_env`],
//! `RUMPCLIENT_RETRYCONNECT=inftime|once|die|SECONDS` ([`RETRY_ENV`])
//! choose otherwise: see [`ConnRetry`].
//!
//! What a caller must keep: numbers are NetBSD's (flags, errno values,
//! `struct stat`), not the host's; a [`Region`] must cover every byte the
//! kernel may copy for the call (the server can reach nothing else); and
//! a [`Client`] is one kernel process, so its descriptors and working
//! directory are shared by every thread that uses it.
#![warn(missing_docs)]

mod client;
mod error;
pub mod sys;

pub use netbsd_abi::stat::Timespec;
pub use netbsd_abi::statvfs::Statvfs;
pub use netbsd_abi::{SysError, Syscalls};

pub use client::{addr_of, argv0_name, progname, Client, ConnRetry, ForkCookie, Region, RETRY_ENV};
pub use error::Error;

pub use netbsd_abi::dirent::Dirent;
pub use netbsd_abi::errno::{self, Errno};
pub use netbsd_abi::fcntl::*;
pub use netbsd_abi::reboot::{RB_AUTOBOOT, RB_DUMP, RB_HALT, RB_NOSYNC};
pub use netbsd_abi::stat::Stat;
pub use netbsd_abi::syscall;
