//! The listening socket: binding (the socket file's mode and identity),
//! the accept loop, the handshake deadline and the connection cap
//! (evicting the oldest connection that has not handshaken).

use super::*;

pub(super) struct Listener {
    pub(super) fd: Mutex<Option<OwnedFd>>,
    pub(super) wake_r: OwnedFd,
    pub(super) wake_w: OwnedFd,
    pub(super) unix_path: Option<PathBuf>,
    /// Device and inode of the socket file we bound: halt removes the
    /// path only if it is still that file.
    pub(super) unix_id: Option<(u64, u64)>,
    pub(super) banner: Vec<u8>,
    pub(super) is_tcp: bool,
}

impl Listener {
    /// Close the listening socket (new connects are refused from now on)
    /// and wake the acceptor so it exits.
    pub(super) fn close(&self) {
        let fd = self.fd.lock().take();
        if let Some(f) = &fd {
            // Closing alone does not stop the listening while the acceptor
            // still polls the socket (its poll holds the file): a connect
            // in that moment would be queued, then reset. Shutting it down
            // refuses new connects at once.
            // SAFETY: shutdown(2) on a descriptor we own.
            unsafe { libc::shutdown(f.as_raw_fd(), libc::SHUT_RDWR) };
        }
        drop(fd);
        // SAFETY: one byte from a live local into our own pipe.
        unsafe { libc::write(self.wake_w.as_raw_fd(), b"x".as_ptr() as *const c_void, 1) };
    }
}

/// Make way for a unix socket at `path`: nothing there, or a socket no
/// server accepts on any more (left by a `kill -9`), which is removed.
/// A socket a server still accepts on, or anything that is not a socket,
/// is left as it is and named in the message.
pub(super) fn clear_stale_socket(path: &std::path::Path) -> Result<(), SocketPathError> {
    use std::os::unix::fs::FileTypeExt;
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    let ft = m.file_type();
    if !ft.is_socket() {
        let what = if ft.is_file() {
            "a regular file"
        } else if ft.is_dir() {
            "a directory"
        } else if ft.is_symlink() {
            "a symbolic link"
        } else if ft.is_fifo() {
            "a FIFO"
        } else {
            "a device"
        };
        return Err(SocketPathError::NotASocket(what));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(SocketPathError::InUse),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            dprint(&format!(
                "rump_sp: {}: replacing a stale socket (nothing accepts on it)\n",
                path.display()
            ));
            std::fs::remove_file(path).map_err(|e| SocketPathError::NotRemoved(Errno::from(e)))
        }
        // Not ours to judge (no permission, ...): let bind say why.
        Err(_) => Ok(()),
    }
}

/// Bind a listening unix socket at `path` whose file has `mode` whatever
/// the umask: bound, then chmod'ed, then (only then) listening, so nobody
/// connects through a wider mode. Returns the socket and the file's
/// device and inode.
pub(super) fn bind_unix(
    path: &std::path::Path,
    mode: u32,
) -> std::io::Result<(OwnedFd, (u64, u64))> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all zeros is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= sa.sun_path.len() || bytes.contains(&0) {
        return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in sa.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: socket(2) with constant arguments.
    let raw = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: socket(2) just returned this descriptor; nobody else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let salen = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    // SAFETY: `sa` is a valid sockaddr_un of at least `salen` bytes.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sa as *const libc::sockaddr_un as *const libc::sockaddr,
            salen,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    let id = (|| {
        let m = std::fs::symlink_metadata(path)?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        let m2 = std::fs::symlink_metadata(path)?;
        if (m.dev(), m.ino()) != (m2.dev(), m2.ino()) || m2.mode() & 0o777 != mode {
            // Replaced under us (only someone who may write the directory).
            return Err(std::io::Error::from_raw_os_error(libc::EEXIST));
        }
        Ok((m.dev(), m.ino()))
    })();
    let id = match id {
        Ok(id) => id,
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    };
    // SAFETY: listen(2) on the socket we own.
    if unsafe { libc::listen(fd.as_raw_fd(), 4096) } != 0 {
        let e = std::io::Error::last_os_error();
        remove_socket(path, Some(id));
        return Err(e);
    }
    Ok((fd, id))
}

/// Remove the socket file at `path` if it is still the one we bound
/// (same device and inode): never a file someone else put there.
pub(super) fn remove_socket(path: &std::path::Path, id: Option<(u64, u64)>) {
    use std::os::unix::fs::MetadataExt;
    let Some(id) = id else { return };
    match std::fs::symlink_metadata(path) {
        Ok(m) if (m.dev(), m.ino()) == id => {
            let _ = std::fs::remove_file(path);
        }
        Ok(_) => dprint(&format!(
            "rump_sp: {}: not removed: no longer the socket this server created\n",
            path.display()
        )),
        Err(_) => {}
    }
}

pub(super) fn accept_loop(srv: Arc<Srv>, l: Arc<Listener>) {
    // Refused connections stay open a moment (then close), so the client
    // can send its handshake and read why, rather than find a broken pipe.
    let mut lingering: std::collections::VecDeque<(OwnedFd, u64)> =
        std::collections::VecDeque::new();
    loop {
        let now = now_ns();
        while lingering
            .front()
            .is_some_and(|(_, t)| now.saturating_sub(*t) > 1_000_000_000)
        {
            lingering.pop_front();
        }
        if !srv.accepting() {
            return;
        }
        let lfd = match l.fd.lock().as_ref() {
            Some(f) => f.as_raw_fd(),
            None => return,
        };
        let mut pfd = [
            libc::pollfd {
                fd: lfd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: l.wake_r.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Wake up now and then to close connections past their
        // handshake deadline.
        let tick = (ns(srv.cfg.handshake_timeout) / 4_000_000).clamp(10, 1000) as c_int;
        // SAFETY: `pfd` is a valid array of two pollfds.
        let n = unsafe { libc::poll(pfd.as_mut_ptr(), 2, tick) };
        if pfd[1].revents != 0 || !srv.accepting() {
            return;
        }
        sweep_handshakes(&srv);
        if has_stale_preforks(&srv) {
            // Releasing runs kernel code: on a worker, not here.
            let s = srv.clone();
            pool().submit(move || release_stale_preforks(&s));
        }
        if n <= 0 || pfd[0].revents == 0 {
            continue;
        }
        let nfd = {
            let g = l.fd.lock();
            let Some(f) = g.as_ref() else { return };
            // SAFETY: accept4 on our listening socket; peer address unused.
            unsafe {
                libc::accept4(
                    f.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            }
        };
        if nfd < 0 {
            let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if e == libc::EMFILE || e == libc::ENFILE || e == libc::ENOBUFS || e == libc::ENOMEM {
                // Out of descriptors: make room by closing the oldest
                // connection that has not handshaken, so a client that
                // does is never locked out.
                static LOGGED: AtomicU64 = AtomicU64::new(0);
                let evicted = evict_oldest_new(&srv);
                log_limited(&LOGGED, || {
                    format!(
                        "rump_sp: accept: {}{}\n",
                        std::io::Error::from_raw_os_error(e),
                        if evicted {
                            "; closed the oldest connection not yet handshaken"
                        } else {
                            ""
                        }
                    )
                });
                std::thread::sleep(std::time::Duration::from_millis(if evicted {
                    1
                } else {
                    10
                }));
            }
            continue;
        }
        // SAFETY: accept4 returned a new descriptor that we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(nfd) };
        if let Some(refused) = new_connection(&srv, fd, &l) {
            if lingering.len() >= 64 {
                lingering.pop_front();
            }
            lingering.push_back((refused, now_ns()));
        }
    }
}

/// Close every connection whose handshake deadline has passed.
pub(super) fn sweep_handshakes(srv: &Arc<Srv>) {
    let now = now_ns();
    let limit = ns(srv.cfg.handshake_timeout);
    let late: Vec<Arc<Conn>> = REGISTRY
        .read()
        .values()
        .filter(|c| {
            Arc::ptr_eq(&c.srv, srv)
                && c.state.load(Ordering::Acquire) == ST_NEW
                && !c.evicted.load(Ordering::Acquire)
                && now.saturating_sub(c.accepted) > limit
        })
        .cloned()
        .collect();
    if late.is_empty() {
        return;
    }
    static LOGGED: AtomicU64 = AtomicU64::new(0);
    let n = late.iter().filter(|c| c.evict()).count();
    log_limited(&LOGGED, || {
        format!(
            "rump_sp: closed {n} connection(s) that did not handshake within {:.1} s\n",
            limit as f64 / 1e9
        )
    });
}

/// Close the oldest connection that has not handshaken yet; false if
/// there is none.
pub(super) fn evict_oldest_new(srv: &Arc<Srv>) -> bool {
    let victim = REGISTRY
        .read()
        .values()
        .filter(|c| {
            Arc::ptr_eq(&c.srv, srv)
                && c.state.load(Ordering::Acquire) == ST_NEW
                && !c.evicted.load(Ordering::Acquire)
        })
        .min_by_key(|c| c.id)
        .cloned();
    match victim {
        Some(c) => {
            c.evict();
            true
        }
        None => false,
    }
}

/// Admit a new connection; a refused one comes back, told why, to be
/// closed a moment later.
pub(super) fn new_connection(srv: &Arc<Srv>, fd: OwnedFd, l: &Listener) -> Option<OwnedFd> {
    let live = REGISTRY
        .read()
        .values()
        .filter(|c| Arc::ptr_eq(&c.srv, srv) && !c.evicted.load(Ordering::Acquire))
        .count();
    if live >= srv.cfg.max_clients && !evict_oldest_new(srv) {
        // Every slot holds a client that handshook: refuse this one
        // clearly, without waiting for it.
        static LOGGED: AtomicU64 = AtomicU64::new(0);
        log_limited(&LOGGED, || {
            format!("rump_sp: refused a connection: {live} clients connected (the most)\n")
        });
        let h = Header::new(
            Class::Error,
            Type::Handshake,
            0,
            ProtoError::TryAgain as u32,
            0,
        );
        let _ = send_all(std::os::fd::AsFd::as_fd(&fd), &[&l.banner, &h.encode()]);
        // SAFETY: shutdown(2) on the descriptor we own: no more from us.
        unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) };
        return Some(fd);
    }
    if l.is_tcp {
        let one: c_int = 1;
        // SAFETY: setsockopt with a valid pointer to an int.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &one as *const c_int as *const c_void,
                std::mem::size_of::<c_int>() as libc::socklen_t,
            )
        };
    }
    if send_all(std::os::fd::AsFd::as_fd(&fd), &[&l.banner]).is_err() {
        return None;
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let conn = Arc::new(Conn::new(id, fd, srv.clone()));
    REGISTRY.write().insert(id, conn.clone());
    pool().submit(move || reader_job(conn));
    None
}
