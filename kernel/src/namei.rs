//! Path name lookup: absolute and relative paths, "." and "..", symbolic
//! links (at most `MAXSYMLINKS` per lookup, then `ELOOP`), and mount
//! points crossed both ways.

use std::collections::VecDeque;

use netbsd_abi::errno::*;
use netbsd_abi::Errno;

use crate::syscall::cred::{self, Who, PERM_X};
use crate::vfs::{FileKind, Ino};
use crate::vnode::{Mounts, Vnode};

/// `MAXPATHLEN`, including the terminating NUL.
pub const MAXPATHLEN: usize = 1024;
/// Symbolic links followed in one lookup before `ELOOP`.
pub const MAXSYMLINKS: usize = 32;
/// `NAME_MAX`.
pub const NAME_MAX: usize = netbsd_abi::dirent::MAXNAMLEN;

/// The result of a lookup that stops at the parent of the last component.
pub struct Parent {
    /// The directory that holds (or would hold) the last component.
    pub dir: Vnode,
    /// The last component; "." when the path names the root or ends in
    /// ".", ".." when it ends in "..".
    pub name: Vec<u8>,
    /// The last component's vnode when it exists (not followed if it is a
    /// symbolic link, and not crossed into a mount on it).
    pub node: Option<Vnode>,
    /// Whether the path ended with '/'.
    pub trailing_slash: bool,
}

fn split(path: &[u8]) -> VecDeque<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(|c| c.to_vec())
        .collect()
}

/// The parent of directory `vn`, crossing up out of mounts.
pub fn parent_of(m: &Mounts, root: &Vnode, vn: &Vnode) -> Result<Vnode, Errno> {
    let mut cur = vn.clone();
    loop {
        if cur.same(root) {
            return Ok(cur);
        }
        if cur.is_mount_root() {
            if let Some(cov) = &cur.mnt.covered {
                cur = cov.clone();
                continue;
            }
            return Ok(cur);
        }
        break;
    }
    if cur.mnt.is_dead() {
        return Err(Errno(ENOENT));
    }
    let ino = cur.mnt.fs.lookup(cur.ino, b"..")?;
    Ok(m.cross_down(Vnode {
        mnt: cur.mnt.clone(),
        ino,
    }))
}

fn lookup_child(dir: &Vnode, name: &[u8]) -> Result<Vnode, Errno> {
    if name.len() > NAME_MAX {
        return Err(Errno(ENAMETOOLONG));
    }
    if dir.mnt.is_dead() {
        return Err(Errno(ENOENT));
    }
    let ino: Ino = dir.mnt.fs.lookup(dir.ino, name)?;
    Ok(Vnode {
        mnt: dir.mnt.clone(),
        ino,
    })
}

/// Who walks a path: `None` for root, who may search every directory;
/// otherwise each directory the walk looks a name up in must grant
/// `search` (execute) to these credentials, or the walk fails with
/// `EACCES`, as NetBSD's lookup does.
pub type Searcher<'a> = Option<Who<'a>>;

/// Walk `path` from `cwd` (or `root` when absolute). With `parent`, stop at
/// the last component and report it; otherwise return the vnode it names.
/// `follow` says whether a symbolic link as the last component is followed.
fn walk(
    m: &Mounts,
    root: &Vnode,
    cwd: &Vnode,
    path: &[u8],
    follow: bool,
    parent: bool,
    who: Searcher<'_>,
) -> Result<(Vnode, Option<Parent>), Errno> {
    if path.is_empty() {
        return Err(Errno(ENOENT));
    }
    if path.len() >= MAXPATHLEN {
        return Err(Errno(ENAMETOOLONG));
    }
    let mut trailing_slash = path.len() > 1 && path.ends_with(b"/");
    let mut cur = if path[0] == b'/' {
        root.clone()
    } else {
        cwd.clone()
    };
    let mut comps = split(path);
    let mut links = 0usize;
    if comps.is_empty() {
        // "/" (or "///"): the root itself.
        if parent {
            return Ok((
                cur.clone(),
                Some(Parent {
                    dir: cur.clone(),
                    name: b".".to_vec(),
                    node: Some(cur),
                    trailing_slash: false,
                }),
            ));
        }
        return Ok((cur, None));
    }
    while let Some(comp) = comps.pop_front() {
        let last = comps.is_empty();
        // Every step starts from a directory the walker may search.
        let a = cur.getattr()?;
        if a.kind != FileKind::Dir {
            return Err(Errno(ENOTDIR));
        }
        if let Some(c) = who {
            cred::check(c, &a, PERM_X)?;
        }
        if last && parent && (comp == b"." || comp == b"..") {
            return Ok((
                cur.clone(),
                Some(Parent {
                    dir: cur,
                    name: comp,
                    node: None,
                    trailing_slash,
                }),
            ));
        }
        if comp == b"." {
            continue;
        }
        if comp == b".." {
            cur = parent_of(m, root, &cur)?;
            continue;
        }
        let child = match lookup_child(&cur, &comp) {
            Ok(c) => c,
            Err(e) if e.0 == ENOENT && last && parent => {
                return Ok((
                    cur.clone(),
                    Some(Parent {
                        dir: cur,
                        name: comp,
                        node: None,
                        trailing_slash,
                    }),
                ));
            }
            Err(e) => return Err(e),
        };
        let kind = child.kind()?;
        if kind == FileKind::Lnk && (!last || follow || trailing_slash) {
            links += 1;
            if links > MAXSYMLINKS {
                return Err(Errno(ELOOP));
            }
            let target = child.mnt.fs.readlink(child.ino)?;
            if target.is_empty() {
                return Err(Errno(ENOENT));
            }
            if target.len() + comps.iter().map(|c| c.len() + 1).sum::<usize>() >= MAXPATHLEN {
                return Err(Errno(ENAMETOOLONG));
            }
            if target[0] == b'/' {
                cur = root.clone();
            }
            if last && target.ends_with(b"/") {
                trailing_slash = true;
            }
            let mut t = split(&target);
            if t.is_empty() {
                // A link to "/": continue at the root.
                if last {
                    if parent {
                        return Ok((
                            cur.clone(),
                            Some(Parent {
                                dir: cur.clone(),
                                name: b".".to_vec(),
                                node: Some(cur),
                                trailing_slash,
                            }),
                        ));
                    }
                    return Ok((cur, None));
                }
                continue;
            }
            t.extend(comps.drain(..));
            comps = t;
            continue;
        }
        if last && parent {
            if trailing_slash && kind != FileKind::Dir && kind != FileKind::Lnk {
                return Err(Errno(ENOTDIR));
            }
            return Ok((
                cur.clone(),
                Some(Parent {
                    dir: cur,
                    name: comp,
                    node: Some(child),
                    trailing_slash,
                }),
            ));
        }
        cur = m.cross_down(child);
    }
    if trailing_slash && cur.kind()? != FileKind::Dir {
        return Err(Errno(ENOTDIR));
    }
    Ok((cur, None))
}

/// The vnode `path` names.
pub fn namei(
    m: &Mounts,
    root: &Vnode,
    cwd: &Vnode,
    path: &[u8],
    follow: bool,
    who: Searcher<'_>,
) -> Result<Vnode, Errno> {
    walk(m, root, cwd, path, follow, false, who).map(|r| r.0)
}

/// The directory that holds the last component of `path`, and that
/// component. With `follow`, a symbolic link as the last component is
/// followed (so `open(O_CREAT)` creates a dangling link's target).
pub fn namei_parent(
    m: &Mounts,
    root: &Vnode,
    cwd: &Vnode,
    path: &[u8],
    follow: bool,
    who: Searcher<'_>,
) -> Result<Parent, Errno> {
    match walk(m, root, cwd, path, follow, true, who)? {
        (_, Some(p)) => Ok(p),
        // A followed link ended at an existing non-parent result: report it
        // as found in its own directory.
        (vn, None) => Ok(Parent {
            dir: vn.clone(),
            name: b".".to_vec(),
            node: Some(vn),
            trailing_slash: false,
        }),
    }
}

/// The path of directory `dir` from `root`, by walking ".." and searching
/// each parent for the child's inode number.
pub fn getcwd(m: &Mounts, root: &Vnode, dir: &Vnode) -> Result<Vec<u8>, Errno> {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut cur = dir.clone();
    let mut total = 0usize;
    while !cur.same(root) {
        // Step out of a mount to the directory it covers.
        let mut here = cur.clone();
        while here.is_mount_root() {
            match &here.mnt.covered {
                Some(c) => here = c.clone(),
                None => break,
            }
        }
        if here.same(root) {
            break;
        }
        let up = parent_of(m, root, &here)?;
        let mut found = None;
        let want = here.ino;
        let want_dev = here.mnt.dev;
        if up.mnt.dev != want_dev {
            return Err(Errno(ENOENT));
        }
        up.mnt.fs.readdir(up.ino, 0, &mut |e| {
            if e.ino == want && e.name != b"." && e.name != b".." {
                found = Some(e.name);
                false
            } else {
                true
            }
        })?;
        let name = found.ok_or(Errno(ENOENT))?;
        total += name.len() + 1;
        if total >= MAXPATHLEN * 4 {
            return Err(Errno(ENAMETOOLONG));
        }
        parts.push(name);
        cur = up;
    }
    if parts.is_empty() {
        return Ok(b"/".to_vec());
    }
    let mut out = Vec::with_capacity(total);
    for p in parts.iter().rev() {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    Ok(out)
}
