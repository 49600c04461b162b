//! A kernel stand-in for the sysproxy tests and benchmark: just enough of
//! a rump kernel (processes, lwps, a few syscalls that use the copy
//! hypercalls) to drive `rumpuser::sp` from the kernel's side.
//!
//! Used by `hypercall/tests/sysproxy.rs` and `rumpclient/benches/sysproxy.rs`.
//! The upcall table is process-wide and installed once ([`install`]), so
//! the stand-in's state is a process-wide value too ([`STANDIN`]).

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{c_int, c_long, c_void, CStr};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use rumpuser::sp;
use rumpuser::upcalls::{LwpPtr, Upcalls};

/// Stand-in syscalls (numbers NetBSD does not use).
/// `(src, len, dst)`: copy `len` bytes in from `src` and out to `dst`.
pub const SYS_ECHO: i32 = 500;
/// `(src, maxlen, dst)`: copyinstr at most `maxlen`; copy the bytes
/// received out to `dst`; returns how many.
pub const SYS_INSTR: i32 = 501;
/// `(src, len)`: copy `len` bytes in (a write that goes nowhere).
pub const SYS_SINK: i32 = 502;
/// `(addr)`: copy one byte in every 5 ms until that fails; then EFAULT.
pub const SYS_WAITDEATH: i32 = 503;
/// `(value)`: set the process's descriptor-table token.
pub const SYS_SETTOKEN: i32 = 504;
/// `()`: the process's token.
pub const SYS_GETTOKEN: i32 = 505;
/// `()`: `sp::stop_admitting()`.
pub const SYS_STOP: i32 = 506;
/// `(exit, stop, gofile, error)`: the halt sequence. If `stop`,
/// `sp::stop_admitting()` first; if `gofile` (a path string), wait (≤ 20 s)
/// until that file exists; then `sp::fini(client, error)`, then `exit(0)` if
/// `exit`, else return 99 (which fini's early answer hides).
pub const SYS_HALT: i32 = 507;
/// `()`: wait (≤ 10 s) until `SYS_STOP` ran, then return 7.
pub const SYS_SLOW: i32 = 508;
/// `()`: how many `SYS_SLOW` are running.
pub const SYS_SLOWCOUNT: i32 = 509;
/// `(len)`: anonmmap `len`, copy a pattern out there and back in.
pub const SYS_ANON: i32 = 510;
/// `(sig)`: raise NetBSD signal `sig` in the client.
pub const SYS_RAISE: i32 = 511;
/// `()`: block in the kernel (no copy requests) until `gate` opens
/// (≤ 10 s); returns 5.
pub const SYS_GATE: i32 = 512;

const ESRCH: c_int = 3;
const EFAULT: c_int = 14;
const EINVAL: c_int = 22;
const ENOSYS: c_int = 78;
const RUMP_RFFDG: c_int = 1;
const RUMP_RFCFDG: c_int = 2;

struct Proc {
    ppid: i32,
    client: usize,
    lwps: usize,
    exiting: bool,
    /// Stands for the descriptor table: shared, copied or fresh at rfork.
    token: Arc<AtomicU64>,
    comm: String,
}

struct Lwp {
    pid: i32,
}

/// The stand-in kernel's state: its processes and what the tests watch.
#[derive(Default)]
pub struct StandIn {
    procs: Mutex<HashMap<i32, Proc>>,
    next_pid: AtomicI32,
    /// Pids whose last lwp was released, in order.
    pub released: Mutex<Vec<i32>>,
    /// Pids inside SYS_WAITDEATH.
    pub waiting: Mutex<Vec<i32>>,
    /// `SYS_STOP` (or a stopping `SYS_HALT`) ran.
    pub stopped: AtomicBool,
    /// Opens `SYS_GATE` (a test sets it).
    pub gate: AtomicBool,
    /// How many `SYS_SLOW` are running.
    pub slow: AtomicUsize,
    /// Syscalls served so far.
    pub syscalls: AtomicU64,
}

thread_local! {
    static CURLWP: Cell<*mut Lwp> = const { Cell::new(std::ptr::null_mut()) };
}

/// The stand-in (one per process, like the upcall table it serves).
pub static STANDIN: LazyLock<StandIn> = LazyLock::new(|| StandIn {
    next_pid: AtomicI32::new(2),
    ..Default::default()
});

/// Install the stand-in as the kernel (once per process).
pub fn install() -> &'static StandIn {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        rumpuser::upcalls::init(17, Box::new(Up)).expect("upcalls init");
    });
    &STANDIN
}

impl StandIn {
    /// Whether process `pid` exists (rforked and not yet released).
    pub fn is_live(&self, pid: i32) -> bool {
        self.procs.lock().unwrap().contains_key(&pid)
    }

    /// Whether process `pid`'s last lwp was released.
    pub fn was_released(&self, pid: i32) -> bool {
        self.released.lock().unwrap().contains(&pid)
    }

    /// Wait up to `t` for `f` to hold.
    pub fn wait_for(&self, t: Duration, mut f: impl FnMut(&StandIn) -> bool) -> bool {
        crate::wait::poll_until(t, || f(self))
    }

    fn new_lwp(&self, pid: i32) {
        let l = Box::into_raw(Box::new(Lwp { pid }));
        CURLWP.with(|c| c.set(l));
    }

    fn cur_pid(&self) -> Option<i32> {
        let l = CURLWP.with(|c| c.get());
        if l.is_null() {
            None
        } else {
            // SAFETY: lwps are boxes we made and free only in release.
            Some(unsafe { (*l).pid })
        }
    }
}

struct Up;

fn arg(args: &[u64], i: usize) -> u64 {
    args.get(i).copied().unwrap_or(0)
}

impl Upcalls for Up {
    fn schedule(&self) {}
    fn unschedule(&self) {}
    fn backend_unschedule(&self, _nlocks: c_int, _interlock: *mut c_void) -> c_int {
        0
    }
    fn backend_schedule(&self, _nlocks: c_int, _interlock: *mut c_void) {}

    unsafe fn lwproc_switch(&self, l: LwpPtr) {
        CURLWP.with(|c| c.set(l as *mut Lwp));
    }

    fn lwproc_release(&self) {
        let s = &*STANDIN;
        let l = CURLWP.with(|c| c.replace(std::ptr::null_mut()));
        if l.is_null() {
            return;
        }
        // SAFETY: made by Box::into_raw in new_lwp, released once.
        let l = unsafe { Box::from_raw(l) };
        let mut procs = s.procs.lock().unwrap();
        let gone = match procs.get_mut(&l.pid) {
            Some(p) => {
                p.lwps -= 1;
                p.lwps == 0
            }
            None => false,
        };
        if gone {
            procs.remove(&l.pid);
            s.released.lock().unwrap().push(l.pid);
        }
    }

    fn lwproc_rfork(&self, client: sp::ClientHandle, flags: c_int, comm: Option<&CStr>) -> c_int {
        let s = &*STANDIN;
        let parent = s.cur_pid();
        let pid = s.next_pid.fetch_add(1, Ordering::Relaxed);
        let mut procs = s.procs.lock().unwrap();
        let ptoken = parent.and_then(|p| procs.get(&p)).map(|p| p.token.clone());
        let token = match (flags, ptoken) {
            (RUMP_RFCFDG, _) | (_, None) => Arc::new(AtomicU64::new(0)),
            (RUMP_RFFDG, Some(t)) => Arc::new(AtomicU64::new(t.load(Ordering::SeqCst))),
            (0, Some(t)) => t,
            _ => return EINVAL,
        };
        procs.insert(
            pid,
            Proc {
                ppid: parent.unwrap_or(1),
                client: client.0,
                lwps: 1,
                exiting: false,
                token,
                comm: comm.map_or_else(String::new, |c| c.to_string_lossy().into_owned()),
            },
        );
        drop(procs);
        s.new_lwp(pid);
        0
    }

    fn lwproc_newlwp(&self, pid: libc::pid_t) -> c_int {
        let s = &*STANDIN;
        let mut procs = s.procs.lock().unwrap();
        match procs.get_mut(&pid) {
            Some(p) if !p.exiting => {
                p.lwps += 1;
                drop(procs);
                s.new_lwp(pid);
                0
            }
            _ => ESRCH,
        }
    }

    fn lwproc_curlwp(&self) -> LwpPtr {
        CURLWP.with(|c| c.get()) as LwpPtr
    }

    unsafe fn syscall(&self, num: c_int, args: &mut [u64], retval: &mut [c_long; 2]) -> c_int {
        let s = &*STANDIN;
        s.syscalls.fetch_add(1, Ordering::Relaxed);
        let Some(pid) = s.cur_pid() else {
            return EINVAL;
        };
        let (client, ppid, token) = {
            let procs = s.procs.lock().unwrap();
            match procs.get(&pid) {
                Some(p) => (sp::ClientHandle(p.client), p.ppid, p.token.clone()),
                None => return ESRCH,
            }
        };
        let e = |r: Result<(), rumpuser::Errno>| match r {
            Ok(()) => 0,
            Err(e) => e.0,
        };
        match num {
            20 => {
                retval[0] = pid as c_long;
                retval[1] = ppid as c_long;
                0
            }
            SYS_ECHO | SYS_SINK => {
                let len = arg(args, 1) as usize;
                if len > 64 << 20 {
                    return EINVAL;
                }
                let mut buf = vec![0u8; len];
                let r = e(sp::copyin(client, arg(args, 0), &mut buf));
                if r != 0 {
                    return r;
                }
                if num == SYS_ECHO {
                    let r = e(sp::copyout(client, &buf, arg(args, 2)));
                    if r != 0 {
                        return r;
                    }
                }
                retval[0] = len as c_long;
                0
            }
            SYS_INSTR => {
                let max = arg(args, 1) as usize;
                let mut buf = vec![0u8; max.min(1 << 20)];
                match sp::copyinstr(client, arg(args, 0), &mut buf) {
                    Ok(n) => {
                        let r = e(sp::copyout(client, &buf[..n], arg(args, 2)));
                        retval[0] = n as c_long;
                        r
                    }
                    Err(x) => x.0,
                }
            }
            SYS_WAITDEATH => {
                s.waiting.lock().unwrap().push(pid);
                let mut b = [0u8; 1];
                loop {
                    if sp::copyin(client, arg(args, 0), &mut b).is_err() {
                        return EFAULT;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            SYS_SETTOKEN => {
                token.store(arg(args, 0), Ordering::SeqCst);
                0
            }
            SYS_GETTOKEN => {
                retval[0] = token.load(Ordering::SeqCst) as c_long;
                0
            }
            SYS_STOP => {
                sp::stop_admitting();
                s.stopped.store(true, Ordering::SeqCst);
                0
            }
            SYS_HALT => {
                if arg(args, 1) != 0 {
                    sp::stop_admitting();
                    s.stopped.store(true, Ordering::SeqCst);
                }
                if arg(args, 2) != 0 {
                    let mut b = vec![0u8; 4096];
                    let n = match sp::copyinstr(client, arg(args, 2), &mut b) {
                        Ok(n) => n,
                        Err(x) => return x.0,
                    };
                    let end = b[..n].iter().position(|&c| c == 0).unwrap_or(n);
                    let path =
                        std::path::PathBuf::from(String::from_utf8_lossy(&b[..end]).into_owned());
                    let t = Instant::now() + Duration::from_secs(20);
                    while !path.exists() && Instant::now() < t {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                sp::fini(client, arg(args, 3) as i32);
                if arg(args, 0) != 0 {
                    std::process::exit(0);
                }
                retval[0] = 99;
                0
            }
            SYS_SLOW => {
                s.slow.fetch_add(1, Ordering::SeqCst);
                let end = Instant::now() + Duration::from_secs(10);
                while !s.stopped.load(Ordering::SeqCst) && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(2));
                }
                s.slow.fetch_sub(1, Ordering::SeqCst);
                retval[0] = 7;
                0
            }
            SYS_GATE => {
                let end = Instant::now() + Duration::from_secs(10);
                while !s.gate.load(Ordering::SeqCst) && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(1));
                }
                retval[0] = 5;
                0
            }
            SYS_SLOWCOUNT => {
                retval[0] = s.slow.load(Ordering::SeqCst) as c_long;
                0
            }
            SYS_ANON => {
                let len = arg(args, 0) as usize;
                let addr = match sp::anonmmap(client, len) {
                    Ok(a) => a,
                    Err(x) => return x.0,
                };
                let pat: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let r = e(sp::copyout(client, &pat, addr));
                if r != 0 {
                    return r;
                }
                let mut back = vec![0u8; len];
                let r = e(sp::copyin(client, addr, &mut back));
                if r != 0 {
                    return r;
                }
                if back != pat {
                    return EINVAL;
                }
                retval[0] = addr as c_long;
                0
            }
            SYS_RAISE => e(sp::raise(client, arg(args, 0) as i32)),
            _ => ENOSYS,
        }
    }

    fn lwpexit(&self) {
        let s = &*STANDIN;
        if let Some(pid) = s.cur_pid() {
            if let Some(p) = s.procs.lock().unwrap().get_mut(&pid) {
                p.exiting = true;
            }
        }
    }

    fn execnotify(&self, comm: &CStr) {
        let s = &*STANDIN;
        if let Some(pid) = s.cur_pid() {
            if let Some(p) = s.procs.lock().unwrap().get_mut(&pid) {
                p.exiting = false;
                p.comm = comm.to_string_lossy().into_owned();
            }
        }
    }

    fn getpid(&self) -> libc::pid_t {
        STANDIN.cur_pid().unwrap_or(-1)
    }
}
