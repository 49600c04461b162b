//! rump_server: boot a rump kernel and serve it to sysproxy clients.
//!
//! `rump_server [-sv] [-c ncpu] [-d drivespec] [-l library] [-m module]
//! [-r total_ram] url` — NetBSD's options. Without `-s` it daemonizes and
//! returns only once the server accepts connections, or has failed.
//!
//! Without `-l`, the built-in kernel serves. With `-l`, NetBSD's own
//! component libraries are loaded and booted on this program's hypercall
//! layer (see `rumprun::netbsd`); `-m` then loads NetBSD kernel modules.

use std::process::exit;

use rumprun::getopt::getopt;
use rumprun::netbsd::NetbsdKernel;
use rumprun::{parse_memlimit, Rump};

const USAGE: &str =
    "usage: rump_server [-sv] [-c ncpu] [-d drivespec] [-l library] [-m module] [-r total_ram] url";

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("rump_server: {msg}");
    }
    eprintln!("{USAGE}");
    exit(1)
}

struct Opts {
    foreground: bool,
    verbose: bool,
    ncpu: Option<usize>,
    drives: Vec<String>,
    libs: Vec<String>,
    modules: Vec<String>,
    memlimit: Option<u64>,
    url: String,
}

fn parse_args() -> Opts {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let p = getopt(&args, "c:d:l:m:r:sv").unwrap_or_else(|e| usage(&e));
    let mut o = Opts {
        foreground: false,
        verbose: false,
        ncpu: None,
        drives: vec![],
        libs: vec![],
        modules: vec![],
        memlimit: None,
        url: String::new(),
    };
    for (c, v) in p.opts {
        let v = v.unwrap_or_default();
        match c {
            's' => o.foreground = true,
            'v' => o.verbose = true,
            'c' => match v.parse::<usize>() {
                Ok(n) if n > 0 => o.ncpu = Some(n),
                _ => usage(&format!("-c {v}: invalid CPU count")),
            },
            'd' => o.drives.push(v),
            'l' => o.libs.push(v),
            'm' => o.modules.push(v),
            'r' => match parse_memlimit(&v) {
                Ok(n) => o.memlimit = Some(n),
                Err(e) => usage(&format!("-r: {e}")),
            },
            _ => usage(""),
        }
    }
    match p.operands.as_slice() {
        [url] => o.url = url.clone(),
        [] => usage("missing url"),
        _ => usage("too many arguments"),
    }
    o
}

/// The kernel being served.
enum Served {
    Builtin(Rump),
    Netbsd(NetbsdKernel),
}

/// Boot, add drives, serve. Everything that can fail before the server
/// is up, with a one-line reason.
fn start(o: &Opts) -> Result<Served, String> {
    if !o.libs.is_empty() {
        return start_netbsd(o).map(Served::Netbsd);
    }
    if let Some(m) = o.modules.first() {
        return Err(format!("-m {m}: kernel modules need NetBSD components (-l)"));
    }
    let mut b = Rump::builder().verbose(o.verbose);
    if let Some(n) = o.ncpu {
        b = b.ncpu(n);
    }
    if let Some(m) = o.memlimit {
        b = b.memlimit(m);
    }
    for d in &o.drives {
        b = b.drive(d);
    }
    // Test-only fault injection: RUMP_FAULT=KEY=MODE[:CONTROLFILE][;...]
    if let Ok(f) = std::env::var("RUMP_FAULT") {
        for one in f.split(';').filter(|s| !s.is_empty()) {
            let (key, spec) = one.split_once('=').ok_or_else(|| format!("RUMP_FAULT {one}: expected KEY=MODE"))?;
            b = b.fault(key, spec);
        }
    }
    let mut rump = b.boot().map_err(|e| e.to_string())?;
    rump.serve(&o.url).map_err(|e| e.to_string())?;
    Ok(Served::Builtin(rump))
}

/// `-l`: NetBSD's components on our hypercall layer.
fn start_netbsd(o: &Opts) -> Result<NetbsdKernel, String> {
    if std::env::var_os("RUMP_FAULT").is_some() {
        return Err("RUMP_FAULT: fault injection is a built-in kernel feature (not with -l)".into());
    }
    // A bad URL is refused before the kernel boots.
    netbsd_abi::sp::parse_url(&o.url, true).map_err(|e| format!("{}: {e}", o.url))?;
    let mut b = NetbsdKernel::builder().verbose(o.verbose);
    for l in &o.libs {
        b = b.lib(l);
    }
    for m in &o.modules {
        b = b.module(m);
    }
    if let Some(n) = o.ncpu {
        b = b.ncpu(n);
    }
    if let Some(m) = o.memlimit {
        b = b.memlimit(m);
    }
    for d in &o.drives {
        b = b.drive(d);
    }
    let mut k = b.boot().map_err(|e| e.to_string())?;
    if o.verbose {
        let names: Vec<&str> = k.libraries().iter().map(|l| l.path.as_str()).collect();
        eprintln!("rump_server: NetBSD components: {}", names.join(" "));
    }
    k.serve(&o.url).map_err(|e| e.to_string())?;
    Ok(k)
}

/// Block SIGTERM and SIGINT in every thread; one thread takes them with
/// sigwait and turns them into a halt.
fn block_signals() -> libc::sigset_t {
    // SAFETY: the sigset is initialised by sigemptyset before use and
    // pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is an initialised sigset and `sig` a valid out-pointer.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn main() {
    let o = parse_args();
    if o.verbose {
        std::env::set_var("RUMP_VERBOSE", "1");
    }
    let set = block_signals();
    rumpuser::sp::raise_nofile_limit();
    // Fork before any thread exists; the parent waits for our word.
    if !o.foreground {
        if let Err(e) = rumpuser::daemonize::begin() {
            eprintln!("rump_server: daemonize: {e}");
            exit(1);
        }
    }
    let served = match start(&o) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rump_server: {e}");
            if !o.foreground {
                let _ = rumpuser::daemonize::done(1);
            }
            exit(1);
        }
    };
    if o.verbose {
        eprintln!("rump_server: serving {} (pid {})", o.url, std::process::id());
    }
    if !o.foreground {
        if let Err(e) = rumpuser::daemonize::done(0) {
            eprintln!("rump_server: daemonize: {e}");
            exit(1);
        }
    }
    match served {
        Served::Builtin(rump) => serve_builtin(&o, &set, rump),
        Served::Netbsd(k) => serve_netbsd(&o, &set, k),
    }
}

fn serve_builtin(o: &Opts, set: &libc::sigset_t, rump: Rump) -> ! {
    let rump = std::sync::Arc::new(rump);
    loop {
        let sig = wait_signal(set);
        if halt::quiesced() {
            // Halted with -h: the host process goes when told to, and says
            // in its status whether the halt's flush worked.
            exit(if halt::flush_failed() { 1 } else { 0 });
        }
        if halt::halting() {
            // A second signal while the first halt flushes: the rescue.
            eprintln!("rump_server: signal {sig} during the halt: skipping the rest of the flush");
            let _ = rump.halt(netbsd_abi::reboot::RB_NOSYNC);
            continue;
        }
        if o.verbose {
            eprintln!("rump_server: signal {sig}: halting");
        }
        // Same as `rump.halt` with no flags: flush, then exit. On its own
        // thread, so that this one takes the next signal.
        let r = rump.clone();
        std::thread::spawn(move || {
            if let Err(e) = r.halt(0) {
                eprintln!("rump_server: halt: {e}");
            }
        });
    }
}

/// NetBSD's kernel halts itself (its `cpu_reboot` ends in our
/// `rumpuser_sp_fini` and `rumpuser_exit`); a signal asks it to, as
/// `rump.halt` with no flags would.
fn serve_netbsd(o: &Opts, set: &libc::sigset_t, k: NetbsdKernel) -> ! {
    loop {
        let sig = wait_signal(set);
        if k.halted() {
            // Halted with -h (sysproxy shut down, process kept): go now.
            exit(0);
        }
        if o.verbose {
            eprintln!("rump_server: signal {sig}: halting");
        }
        // NetBSD's reboot(2) from this thread: sync, then exit(0).
        if let Err(e) = k.reboot(0) {
            eprintln!("rump_server: halt: {e}");
        }
    }
}
