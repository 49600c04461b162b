//! NetBSD's own file systems on the host: `rump_mount` and its names
//! (`rump_ffs`, `rump_msdos`, `rump_cd9660`, ...). NetBSD's rump kernel
//! components (a buildrump.sh build, never part of this project) boot in
//! process on this project's hypercall layer; the image is mounted with
//! NetBSD's `mount(2)` and served to the host through the FUSE adapter
//! ([`rumpfuse`]), whose calls go straight to NetBSD's in-process syscall
//! entry points ([`sys::NetbsdSys`]).

#![warn(missing_docs)]

pub mod components;
pub mod part;
pub mod probe;
pub mod sys;
pub mod types;
