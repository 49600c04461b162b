//! `__sysctl(name, namelen, oldv, oldlenp, newv, newlen)` for the nodes a
//! rump kernel client asks about: kern.ostype, kern.osrelease,
//! kern.hostname (read-write), hw.machine, hw.ncpu, hw.pagesize,
//! hw.physmem64.

use netbsd_abi::errno::*;
use netbsd_abi::reboot::*;
use netbsd_abi::Errno;

use super::{Args, Cx, SysResult};

/// `CTL_MAXNAME`.
const CTL_MAXNAME: u64 = 12;
/// `MAXHOSTNAMELEN`, with the NUL.
const MAXHOSTNAMELEN: usize = 256;
const PAGE_SIZE: i32 = 4096;

enum Value {
    Str(Vec<u8>),
    Int(i32),
    Quad(i64),
}

impl Value {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Value::Str(s) => {
                let mut v = s.clone();
                v.push(0);
                v
            }
            Value::Int(i) => i.to_le_bytes().to_vec(),
            Value::Quad(q) => q.to_le_bytes().to_vec(),
        }
    }
}

fn lookup(cx: &Cx, name: &[i32]) -> Result<Value, Errno> {
    let c = cx.k.config();
    Ok(match name {
        [CTL_KERN, KERN_OSTYPE] => Value::Str(c.ostype.as_bytes().to_vec()),
        [CTL_KERN, KERN_OSRELEASE] => Value::Str(c.osrelease.as_bytes().to_vec()),
        [CTL_KERN, KERN_HOSTNAME] => Value::Str(cx.k.hostname_bytes()),
        [CTL_HW, HW_MACHINE] => Value::Str(c.machine.as_bytes().to_vec()),
        [CTL_HW, HW_NCPU] => Value::Int(cx.k.ncpu() as i32),
        [CTL_HW, HW_PAGESIZE] => Value::Int(PAGE_SIZE),
        [CTL_HW, HW_PHYSMEM64] => Value::Quad(c.memlimit.min(i64::MAX as u64) as i64),
        [CTL_KERN, _] | [CTL_HW, _] => return Err(Errno(EOPNOTSUPP)),
        [CTL_KERN] | [CTL_HW] => return Err(Errno(EISDIR)),
        _ => return Err(Errno(ENOENT)),
    })
}

pub fn sysctl(cx: &Cx, a: &Args) -> SysResult {
    let namelen = a.u(1);
    if namelen == 0 || namelen > CTL_MAXNAME {
        return Err(Errno(EINVAL));
    }
    let mut raw = vec![0u8; namelen as usize * 4];
    cx.copyin(a.u(0), &mut raw)?;
    let name: Vec<i32> = raw
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let (oldv, oldlenp, newv, newlen) = (a.u(2), a.u(3), a.u(4), a.u(5));
    let val = lookup(cx, &name)?;
    let old = val.bytes();
    let mut result = Ok(());
    if oldlenp != 0 {
        let have = cx.p.mem.copyin_u64(oldlenp)?;
        if oldv != 0 {
            let n = (have.min(old.len() as u64)) as usize;
            cx.copyout(&old[..n], oldv)?;
            if n < old.len() {
                result = Err(Errno(ENOMEM));
            }
        }
        cx.copyout(&(old.len() as u64).to_le_bytes(), oldlenp)?;
    } else if oldv != 0 {
        return Err(Errno(EINVAL));
    }
    if newv != 0 {
        match (&val, name.as_slice()) {
            (Value::Str(_), [CTL_KERN, KERN_HOSTNAME]) => {
                if newlen as usize >= MAXHOSTNAMELEN {
                    return Err(Errno(EINVAL));
                }
                let mut h = vec![0u8; newlen as usize];
                cx.copyin(newv, &mut h)?;
                if let Some(z) = h.iter().position(|&b| b == 0) {
                    h.truncate(z);
                }
                cx.k.set_hostname(&h);
            }
            _ => return Err(Errno(EPERM)),
        }
    }
    result
}
