//! `__sysctl(name, namelen, oldv, oldlenp, newv, newlen)`: the nodes a
//! rump kernel client asks about — kern.ostype, kern.osrelease,
//! kern.hostname (read-write), hw.machine, hw.ncpu, hw.pagesize,
//! hw.physmem64 — and the syncer's vfs.sync.delay, filedelay, dirdelay and
//! metadelay (read-write, root only). A name ending in `CTL_QUERY` lists a
//! node's children as NetBSD's `struct sysctlnode` array, which is how
//! `sysctlbyname(3)` and `sysctl(8)` find nodes made at run time.

use netbsd_abi::errno::*;
use netbsd_abi::reboot::*;
use netbsd_abi::Errno;

use super::{Args, Cx, SysResult};
use crate::syncer;

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

/// What a leaf node reads.
#[derive(Clone, Copy)]
enum Leaf {
    OsType,
    OsRelease,
    Hostname,
    Machine,
    Ncpu,
    PageSize,
    Physmem64,
    /// `vfs.sync.<name>`.
    Sync(&'static str),
}

enum Kind {
    Dir(&'static [Node]),
    Leaf(Leaf),
}

struct Node {
    name: &'static str,
    num: i32,
    kind: Kind,
}

const fn leaf(name: &'static str, num: i32, l: Leaf) -> Node {
    Node {
        name,
        num,
        kind: Kind::Leaf(l),
    }
}

const KERN: &[Node] = &[
    leaf("ostype", KERN_OSTYPE, Leaf::OsType),
    leaf("osrelease", KERN_OSRELEASE, Leaf::OsRelease),
    leaf("hostname", KERN_HOSTNAME, Leaf::Hostname),
];
const HW: &[Node] = &[
    leaf("machine", HW_MACHINE, Leaf::Machine),
    leaf("ncpu", HW_NCPU, Leaf::Ncpu),
    leaf("pagesize", HW_PAGESIZE, Leaf::PageSize),
    leaf("physmem64", HW_PHYSMEM64, Leaf::Physmem64),
];
// NetBSD makes vfs.sync and its children at boot, numbered from
// CTL_CREATE_BASE in creation order: clients find them by CTL_QUERY.
const SYNC: &[Node] = &[
    leaf("delay", CTL_CREATE_BASE, Leaf::Sync(syncer::NODES[0])),
    leaf(
        "filedelay",
        CTL_CREATE_BASE + 1,
        Leaf::Sync(syncer::NODES[1]),
    ),
    leaf(
        "dirdelay",
        CTL_CREATE_BASE + 2,
        Leaf::Sync(syncer::NODES[2]),
    ),
    leaf(
        "metadelay",
        CTL_CREATE_BASE + 3,
        Leaf::Sync(syncer::NODES[3]),
    ),
];
const VFS: &[Node] = &[Node {
    name: "sync",
    num: CTL_CREATE_BASE,
    kind: Kind::Dir(SYNC),
}];
const TOP: &[Node] = &[
    Node {
        name: "kern",
        num: CTL_KERN,
        kind: Kind::Dir(KERN),
    },
    Node {
        name: "hw",
        num: CTL_HW,
        kind: Kind::Dir(HW),
    },
    Node {
        name: "vfs",
        num: CTL_VFS,
        kind: Kind::Dir(VFS),
    },
];

/// The children of the node `path` names (the top level for `[]`).
fn children(path: &[i32]) -> Result<&'static [Node], Errno> {
    let mut level = TOP;
    for (depth, &n) in path.iter().enumerate() {
        let node = level
            .iter()
            .find(|x| x.num == n)
            .ok_or(Errno(if depth == 0 { ENOENT } else { EOPNOTSUPP }))?;
        match node.kind {
            Kind::Dir(c) => level = c,
            Kind::Leaf(_) => return Err(Errno(ENOTDIR)),
        }
    }
    Ok(level)
}

/// The leaf `name` names.
fn find(name: &[i32]) -> Result<Leaf, Errno> {
    let (last, path) = name.split_last().ok_or(Errno(EINVAL))?;
    let level = children(path)?;
    let node = level
        .iter()
        .find(|x| x.num == *last)
        .ok_or(Errno(if path.is_empty() { ENOENT } else { EOPNOTSUPP }))?;
    match node.kind {
        Kind::Leaf(l) => Ok(l),
        Kind::Dir(_) => Err(Errno(EISDIR)),
    }
}

fn read(cx: &Cx, l: Leaf) -> Value {
    let c = cx.k.config();
    match l {
        Leaf::OsType => Value::Str(c.ostype.as_bytes().to_vec()),
        Leaf::OsRelease => Value::Str(c.osrelease.as_bytes().to_vec()),
        Leaf::Hostname => Value::Str(cx.k.hostname_bytes()),
        Leaf::Machine => Value::Str(c.machine.as_bytes().to_vec()),
        Leaf::Ncpu => Value::Int(cx.k.ncpu() as i32),
        Leaf::PageSize => Value::Int(PAGE_SIZE),
        Leaf::Physmem64 => Value::Quad(c.memlimit.min(i64::MAX as u64) as i64),
        Leaf::Sync(n) => Value::Int(cx.k.syncer.config().get(n).unwrap_or(0) as i32),
    }
}

/// The `struct sysctlnode` array describing `nodes`.
fn describe(nodes: &[Node]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nodes.len() * SYSCTLNODE_SIZE);
    for n in nodes {
        let mut b = [0u8; SYSCTLNODE_SIZE];
        let (ty, rw, imm) = match &n.kind {
            Kind::Dir(c) => (CTLTYPE_NODE, 0, Some((c.len() as u32, c.len() as u32))),
            Kind::Leaf(Leaf::OsType | Leaf::OsRelease | Leaf::Machine) => (CTLTYPE_STRING, 0, None),
            Kind::Leaf(Leaf::Hostname) => (CTLTYPE_STRING, CTLFLAG_READWRITE, None),
            Kind::Leaf(Leaf::Physmem64) => (CTLTYPE_QUAD, 0, None),
            Kind::Leaf(Leaf::Sync(_)) => (CTLTYPE_INT, CTLFLAG_READWRITE, None),
            Kind::Leaf(_) => (CTLTYPE_INT, 0, None),
        };
        let flags = SYSCTL_VERS_1 | CTLFLAG_PERMANENT | rw | ty;
        b[0..4].copy_from_slice(&flags.to_le_bytes());
        b[4..8].copy_from_slice(&n.num.to_le_bytes());
        let name = n.name.as_bytes();
        b[8..8 + name.len()].copy_from_slice(name);
        if let Some((csize, clen)) = imm {
            b[48..52].copy_from_slice(&csize.to_le_bytes());
            b[52..56].copy_from_slice(&clen.to_le_bytes());
        }
        out.extend_from_slice(&b);
    }
    out
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
    let (query, leaf) = match name.split_last() {
        Some((&CTL_QUERY, path)) => (Some(children(path)?), None),
        _ => (None, Some(find(&name)?)),
    };
    let old = match (query, leaf) {
        (Some(nodes), _) => describe(nodes),
        (None, Some(l)) => read(cx, l).bytes(),
        (None, None) => return Err(Errno(EINVAL)),
    };
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
        // A query's "new" is the caller's version stamp: nothing to set.
        let Some(leaf) = leaf else { return result };
        match leaf {
            Leaf::Hostname => {
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
            Leaf::Sync(node) => {
                if cx.p.cred.uid != 0 {
                    return Err(Errno(EPERM));
                }
                if newlen != 4 {
                    return Err(Errno(EINVAL));
                }
                let mut v = [0u8; 4];
                cx.copyin(newv, &mut v)?;
                let v = i32::from_le_bytes(v);
                let v = u32::try_from(v).map_err(|_| Errno(EINVAL))?;
                let mut c = cx.k.syncer.config();
                c.set(node, v).map_err(|_| Errno(EINVAL))?;
                cx.k.syncer.set_config(&c);
            }
            _ => return Err(Errno(EPERM)),
        }
    }
    result
}
