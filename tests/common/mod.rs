//! What the `rumprun` integration tests share: the programs cargo built
//! for them, and the helpers of the `testkit` crate (the rump_server
//! harness, host tools, test data).

// Each test binary uses its own part of these.
#![allow(dead_code, unused_imports)]

pub use testkit::data::pattern;
pub use testkit::proc::{is_mounted, process_alive, wait_gone};
pub use testkit::server::*;
pub use testkit::timing::{assert_within, timed};
pub use testkit::tools::{find_tool, host_cmd, require_e2fsprogs, require_tool};
pub use testkit::wait::{poll_until, wait_for, wait_for_text, wait_until};

/// `rump_server`, as cargo built it for these tests.
pub const RUMP_SERVER: &str = env!("CARGO_BIN_EXE_rump_server");
/// `rump_halt` (installed as `rump.halt`: see [`rump_halt`]).
pub const RUMP_HALT: &str = env!("CARGO_BIN_EXE_rump_halt");
/// `rumpctl`.
pub const RUMPCTL: &str = env!("CARGO_BIN_EXE_rumpctl");
