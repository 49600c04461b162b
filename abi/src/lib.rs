//! NetBSD's binary interface, as facts: the numbers and layouts a rump
//! kernel host must match exactly (amd64). No behaviour lives here.

pub mod errno;

pub use errno::Errno;
