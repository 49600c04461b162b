//! `reboot(2)` flags (`sys/reboot.h`) and the `__sysctl` names we serve.

pub const RB_AUTOBOOT: i32 = 0;
pub const RB_NOSYNC: i32 = 0x0000_0004;
pub const RB_HALT: i32 = 0x0000_0008;
pub const RB_DUMP: i32 = 0x0000_0100;
pub const RB_POWERDOWN: i32 = RB_HALT | 0x800;

pub const CTL_KERN: i32 = 1;
pub const CTL_HW: i32 = 6;
pub const KERN_OSTYPE: i32 = 1;
pub const KERN_OSRELEASE: i32 = 2;
pub const KERN_HOSTNAME: i32 = 10;
pub const HW_MACHINE: i32 = 1;
pub const HW_NCPU: i32 = 3;
pub const HW_PAGESIZE: i32 = 7;
pub const HW_PHYSMEM64: i32 = 13;
