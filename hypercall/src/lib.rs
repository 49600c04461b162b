//! The rumpuser(3) hypercall layer, interface version 17.
//!
//! Two faces over one implementation: the C ABI (`rumpuser_*`, exported from
//! `librumpuser.so`) for NetBSD's kernel, and a safe Rust API for the
//! built-in kernel. One module per hypercall family.

pub mod upcalls;

pub use netbsd_abi::errno::{self, Errno};
pub use upcalls::{Upcalls, RUMPUSER_VERSION};
