//! `reboot(2)` flags (`sys/reboot.h`) and the `__sysctl` names we serve.

/// `reboot(2)`: no flag: flush, then end (for a rump kernel, the host process exits).
pub const RB_AUTOBOOT: i32 = 0;
/// `reboot(2)`: do not flush file systems first (`rump.halt -n`).
pub const RB_NOSYNC: i32 = 0x0000_0004;
/// `reboot(2)`: halt, do not reboot: a rump kernel quiesces and its host process stays (`rump.halt -h`).
pub const RB_HALT: i32 = 0x0000_0008;
/// `reboot(2)`: dump core (`rump.halt -d`).
pub const RB_DUMP: i32 = 0x0000_0100;
/// `reboot(2)`: halt and power the machine down (it includes `RB_HALT`).
pub const RB_POWERDOWN: i32 = RB_HALT | 0x800;

/// `__sysctl` top level: the kernel.
pub const CTL_KERN: i32 = 1;
/// `__sysctl` top level: the hardware.
pub const CTL_HW: i32 = 6;
/// `kern.ostype`: "NetBSD".
pub const KERN_OSTYPE: i32 = 1;
/// `kern.osrelease`: the release the kernel claims.
pub const KERN_OSRELEASE: i32 = 2;
/// `kern.hostname`.
pub const KERN_HOSTNAME: i32 = 10;
/// `hw.machine`: "amd64".
pub const HW_MACHINE: i32 = 1;
/// `hw.ncpu`: the number of virtual CPUs.
pub const HW_NCPU: i32 = 3;
/// `hw.pagesize`.
pub const HW_PAGESIZE: i32 = 7;
/// `hw.physmem64`: the memory limit, in bytes.
pub const HW_PHYSMEM64: i32 = 13;
/// The `vfs` top-level node.
pub const CTL_VFS: i32 = 10;
/// A name ending in this asks for the children of the node before it
/// (an array of `struct sysctlnode`).
pub const CTL_QUERY: i32 = -2;
/// The first number of nodes created at run time (`vfs.sync` and its
/// children are).
pub const CTL_CREATE_BASE: i32 = 1024;
/// `struct sysctlnode` on amd64: 96 bytes; `sysctl_flags` at 0,
/// `sysctl_num` at 4, `sysctl_name` (32 bytes, NUL-terminated) at 8,
/// `sysctl_ver` at 40, for a node the child array's size and length at 48
/// and 52, for an immediate int its value at 48.
pub const SYSCTLNODE_SIZE: usize = 96;
/// Longest node name, with the NUL.
pub const SYSCTL_NAMELEN: usize = 32;
/// `sysctl_flags` (the type in the low bits, then access and the API
/// version) type: a node with children.
pub const CTLTYPE_NODE: u32 = 1;
/// `sysctl_flags` type: an `int`.
pub const CTLTYPE_INT: u32 = 2;
/// `sysctl_flags` type: a string.
pub const CTLTYPE_STRING: u32 = 3;
/// `sysctl_flags` type: a 64-bit integer.
pub const CTLTYPE_QUAD: u32 = 4;
/// `sysctl_flags`: readable and writable.
pub const CTLFLAG_READWRITE: u32 = 0x70;
/// `sysctl_flags`: a node that cannot be removed.
pub const CTLFLAG_PERMANENT: u32 = 0x200;
/// `sysctl_flags`: the node layout version this module encodes.
pub const SYSCTL_VERS_1: u32 = 0x0100_0000;

/// `reboot(2)` flags spelled out for messages and logs: `RB_HALT|RB_DUMP`,
/// `RB_AUTOBOOT` for 0, unknown bits as hex (`RB_NOSYNC|0x40`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RbFlags(pub i32);

/// The named `RB_*` bits, in the order they are printed.
const RB_NAMES: &[(i32, &str)] = &[
    (0x0000_0001, "RB_ASKNAME"),
    (0x0000_0002, "RB_SINGLE"),
    (RB_NOSYNC, "RB_NOSYNC"),
    (RB_HALT, "RB_HALT"),
    (0x0000_0010, "RB_INITNAME"),
    (0x0000_0040, "RB_KDB"),
    (0x0000_0080, "RB_RDONLY"),
    (RB_DUMP, "RB_DUMP"),
    (0x0000_0200, "RB_MINIROOT"),
    (0x0000_0400, "RB_STRING"),
    (0x0000_0800, "RB_POWERDOWN"),
    (0x0000_1000, "RB_USERCONF"),
];

impl std::fmt::Display for RbFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == 0 {
            return f.write_str("RB_AUTOBOOT");
        }
        let mut rest = self.0;
        let mut first = true;
        for &(bit, name) in RB_NAMES {
            if rest & bit != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !bit;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{:#x}", rest as u32)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_spelled_out() {
        assert_eq!(RbFlags(0).to_string(), "RB_AUTOBOOT");
        assert_eq!(RbFlags(RB_HALT | RB_DUMP).to_string(), "RB_HALT|RB_DUMP");
        assert_eq!(RbFlags(RB_NOSYNC).to_string(), "RB_NOSYNC");
        assert_eq!(
            RbFlags(RB_NOSYNC | 0x0100_0000).to_string(),
            "RB_NOSYNC|0x1000000"
        );
        // RB_POWERDOWN (NetBSD's value includes RB_HALT) shows both bits.
        assert_eq!(RbFlags(RB_POWERDOWN).to_string(), "RB_HALT|RB_POWERDOWN");
    }
}
