//! The built-in rump kernel.

pub mod vfs;
