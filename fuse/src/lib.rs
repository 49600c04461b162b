//! rumpfuse: a rump kernel's file tree on the host through FUSE.
//!
//! One adapter ([`RumpFuse`]) serves both ways in: the in-process kernel
//! of `rump_ext2fs` ([`sys::LocalBackend`], a kernel process per caller so
//! the kernel checks each caller's credentials) and a running server over
//! sysproxy (`rumpctl fuse`, [`sys::RemoteBackend`], root as NetBSD makes
//! every sysproxy client). Both implement [`sys::Syscalls`], "a syscall
//! path". The FUSE protocol is spoken by the `fuser` crate (no libfuse).
#![warn(missing_docs)]

pub mod cli;
mod fs;
pub mod host;
pub mod sys;

pub use fs::{Options, RumpFuse};
pub use sys::{Backend, LocalBackend, RemoteBackend, Syscalls};
