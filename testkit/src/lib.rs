//! What the workspace's tests share, in one place instead of files
//! included by path from another crate's directory.
//!
//! * [`tools`]: host programs a test needs (`mke2fs`, `gdb`, ...), found
//!   or the test fails naming the program and the package to install —
//!   never a silent skip;
//! * [`tmp`]: private temporary directories;
//! * [`wait`]: waiting for a condition instead of sleeping a guessed time;
//! * [`timing`]: latency bounds against a baseline measured in the same
//!   test, not fixed numbers of seconds;
//! * [`data`]: deterministic test data;
//! * [`proc`]: host process state;
//! * [`netbsd`]: NetBSD's prebuilt rump kernel (`RUMP_NETBSD_DIR`) made
//!   usable, and C clients of our own built against its `librumpclient`;
//! * `server` (feature `server`): real `rump_server` processes, and the
//!   benchmarks' harness and host floors (`bench`);
//! * `standin` (feature `standin`): a stand-in kernel that drives the
//!   sysproxy server from the kernel's side;
//! * `exercise` (feature `ext2`): every kind of operation on an untrusted
//!   ext2 image, for the corpus test and the fuzz target.
//!
//! Only a dev-dependency: helpers panic with a message on failure, as a
//! test wants, instead of returning errors.
#![warn(missing_docs)]

pub mod data;
pub mod fusebench;
pub mod netbsd;
pub mod proc;
pub mod timing;
pub mod tmp;
pub mod tools;
pub mod wait;

#[cfg(feature = "server")]
pub mod bench;
#[cfg(feature = "server")]
pub mod server;

#[cfg(feature = "standin")]
pub mod standin;

#[cfg(feature = "ext2")]
pub mod exercise;
