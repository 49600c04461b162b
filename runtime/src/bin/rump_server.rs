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

use std::sync::OnceLock;

use nix::sys::signal::{SigSet, Signal};

use rumprun::getopt::{getopt, text};
use rumprun::netbsd::NetbsdKernel;
use rumprun::{parse_memlimit, parse_ncpu, tool, KernelConfig, Rump};

const SYNOPSIS: &str =
    "[-sv] [-c ncpu] [-d drivespec] [-l library] [-m module] [-r total_ram] [-S node=value] url";

/// The program name from argv[0], for every message.
fn prog() -> &'static str {
    static P: OnceLock<String> = OnceLock::new();
    P.get_or_init(|| tool::progname("rump_server"))
}

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        rumprun::say!("{}: {msg}", prog());
    }
    rumprun::say!("usage: {} {SYNOPSIS}", prog());
    exit(1)
}

fn help() -> String {
    format!(
        "usage: {} {SYNOPSIS}\n\
         Boot a rump kernel and serve its system calls on url (unix://PATH or tcp://ADDR:PORT).\n\
         \x20 -s            stay in the foreground (default: daemonize once serving)\n\
         \x20 -v            verbose (again for more; RUMP_VERBOSE likewise)\n\
         \x20 -c ncpu       virtual CPUs (default RUMP_NCPU, else the host's count)\n\
         \x20 -d drivespec  a host drive: key=K,hostpath=P,size=S|host|disklabel=P[,offset=O]\n\
         \x20               [,type=blk|chr|reg][,sectorsize=N]\n\
         \x20 -l library    boot NetBSD's component library instead of the built-in kernel:\n\
         \x20               a path, or a name found in $RUMP_NETBSD_DIR/lib (rumpfs_ffs)\n\
         \x20 -m module     load a NetBSD kernel module (with -l)\n\
         \x20 -r total_ram  memory limit of the file system cache (64m, 1g, 25%)\n\
         \x20 -S node=value set a sysctl node at boot: vfs.sync.delay, filedelay, dirdelay,\n\
         \x20               metadelay (seconds; vfs.sync.delay=0 turns the syncer off)\n\
         SIGTERM, SIGINT or SIGHUP halts as rump.halt does. See rump_server(1).\n",
        prog()
    )
}

struct Opts {
    foreground: bool,
    /// -v count plus RUMP_VERBOSE.
    verbosity: usize,
    verbose: bool,
    ncpu: Option<usize>,
    drives: Vec<String>,
    libs: Vec<String>,
    modules: Vec<String>,
    memlimit: Option<u64>,
    /// The kernel's settings from the environment (`RUMP_NCPU`,
    /// `RUMP_MEMLIMIT`, the syncer's delays, `RUMP_LOCKDEBUG`), which the
    /// flags then override.
    cfg: KernelConfig,
    url: String,
}

fn parse_args() -> Opts {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    tool::help_and_version(prog(), &args, help);
    let p = getopt(&args, "c:d:l:m:r:S:sv").unwrap_or_else(|e| usage(&e.to_string()));
    // A RUMP_* value that would be refused as a flag is refused here too,
    // for either kernel.
    let cfg = KernelConfig::from_env().unwrap_or_else(|e| {
        rumprun::say!("{}: {e}", prog());
        exit(1)
    });
    let mut o = Opts {
        foreground: false,
        verbosity: 0,
        verbose: false,
        ncpu: None,
        drives: vec![],
        libs: vec![],
        modules: vec![],
        memlimit: None,
        cfg,
        url: String::new(),
    };
    for (c, v) in p.opts {
        let v = v.unwrap_or_default();
        // Values are text: numbers, drive specs, library names.
        let v = text(&format!("-{c} "), &v).unwrap_or_else(|e| usage(&e));
        match c {
            's' => o.foreground = true,
            'v' => o.verbosity += 1,
            'c' => o.ncpu = Some(parse_ncpu(v).unwrap_or_else(|e| usage(&format!("-c {e}")))),
            'd' => o.drives.push(v.to_string()),
            'S' => {
                let set = v.split_once('=').and_then(|(node, val)| {
                    let node = node.strip_prefix("vfs.sync.")?;
                    Some((node, val.trim().parse::<u32>().ok()?))
                });
                match set {
                    Some((node, n)) => {
                        if let Err(e) = o.cfg.sync.set(node, n) {
                            usage(&format!("-S {v}: {e}"));
                        }
                    }
                    None => usage(&format!(
                        "-S {v}: expected vfs.sync.{{delay,filedelay,dirdelay,metadelay}}=SECONDS"
                    )),
                }
            }
            'l' => o.libs.push(v.to_string()),
            'm' => o.modules.push(v.to_string()),
            'r' => match parse_memlimit(v) {
                Ok(n) => o.memlimit = Some(n),
                // Name the value once: `-r 1x: bad size: ...`.
                Err(e) => usage(&format!(
                    "-r {v}: {}",
                    e.to_string().replace(&format!(" \"{}\"", v.trim()), "")
                )),
            },
            _ => usage(""),
        }
    }
    match p.operands.as_slice() {
        [url] => {
            o.url = text("", url).map(str::to_string).unwrap_or_else(|e| {
                usage(&format!(
                    "url {e} (expected unix://PATH or tcp://HOST:PORT)"
                ))
            })
        }
        [] => usage("missing url"),
        [_, extra, ..] => usage(&format!(
            "{}: unexpected argument after the url",
            extra.to_string_lossy()
        )),
    }
    o.verbosity += tool::verbosity(0);
    o.verbose = o.verbosity > 0;
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
    // The sysproxy limits (rump_server(1) LIMITS), checked before either
    // kernel boots: NetBSD's reads them again as it starts our server.
    let limits = rumpuser::sp::ServerConfig::from_env().map_err(|e| e.to_string())?;
    if !o.libs.is_empty() {
        return start_netbsd(o).map(Served::Netbsd);
    }
    if let Some(m) = o.modules.first() {
        return Err(format!(
            "-m {m}: kernel modules need NetBSD components (-l)"
        ));
    }
    let mut b = Rump::builder().config(o.cfg.clone()).verbose(o.verbose);
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
            let (key, spec) = one
                .split_once('=')
                .ok_or_else(|| format!("RUMP_FAULT {one}: expected KEY=MODE"))?;
            b = b.fault(key, spec);
        }
    }
    let mut rump = b.boot().map_err(|e| e.to_string())?;
    rump.serve_with(&o.url, limits).map_err(|e| e.to_string())?;
    Ok(Served::Builtin(rump))
}

/// `-l`: NetBSD's components on our hypercall layer.
fn start_netbsd(o: &Opts) -> Result<NetbsdKernel, String> {
    if std::env::var_os("RUMP_FAULT").is_some() {
        return Err(
            "RUMP_FAULT: fault injection is a built-in kernel feature (not with -l)".into(),
        );
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
    // SAFETY: `-l` names NetBSD's rump kernel component libraries (the
    // option's documented meaning; rump_server(1)), of the v17 interface
    // this layer implements, and `-m` its modules; no other thread touches
    // the environment while it boots (the server's own start before it).
    let mut k = unsafe { b.boot() }.map_err(|e| e.to_string())?;
    if o.verbose {
        let names: Vec<&str> = k.libraries().iter().map(|l| l.path.as_str()).collect();
        tracing::info!("NetBSD components: {}", names.join(" "));
    }
    k.serve(&o.url).map_err(|e| e.to_string())?;
    Ok(k)
}

/// Block SIGTERM, SIGINT and SIGHUP (a closed terminal or ssh session) in
/// every thread; one thread takes them with sigwait and turns them into a
/// halt. SIGPIPE is ignored, as in every Rust program: a peer or a log
/// reader that went away is an error to handle, never a death.
fn block_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    if let Err(e) = set.thread_block() {
        rumprun::say!("{}: pthread_sigmask: {e}", prog());
        exit(1);
    }
    set
}

fn wait_signal(set: &SigSet) -> Signal {
    loop {
        match set.wait() {
            Ok(sig) => return sig,
            // sigwait fails only on a bad set; retry as the C loop would.
            Err(_) => continue,
        }
    }
}

fn main() {
    let o = parse_args();
    if o.verbose {
        std::env::set_var("RUMP_VERBOSE", o.verbosity.to_string());
    }
    tool::init_logging(prog(), o.verbosity);
    let set = block_signals();
    rumpuser::sp::raise_nofile_limit();
    // Fork before any thread exists; the parent waits for our word.
    if !o.foreground {
        // SAFETY: no thread exists yet: option parsing, the logging
        // set-up (whose writer thread starts with the first line logged,
        // and nothing is logged on the way here), the signal mask and the
        // descriptor limit start none, and no kernel is booted yet.
        if let Err(e) = unsafe { rumpuser::daemonize::begin() } {
            rumprun::say!("{}: daemonize: {e}", prog());
            exit(1);
        }
    }
    let served = match start(&o) {
        Ok(r) => r,
        Err(e) => {
            rumprun::say!("{}: {e}", prog());
            if !o.foreground {
                let _ = rumpuser::daemonize::done(1);
            }
            exit(1);
        }
    };
    tracing::info!("serving {} (pid {})", o.url, std::process::id());
    if !o.foreground {
        if let Err(e) = rumpuser::daemonize::done(0) {
            rumprun::say!("{}: daemonize: {e}", prog());
            exit(1);
        }
    }
    if let Served::Builtin(rump) = &served {
        // Every halt, whoever asks for it, tells the service manager.
        rump.on_halt_flags(Box::new(|flags| {
            let status = if flags & netbsd_abi::reboot::RB_NOSYNC != 0 {
                "halting without a flush (RB_NOSYNC)".to_string()
            } else {
                "halting: flushing the file system cache to the drives".to_string()
            };
            notify(&[
                sd_notify::NotifyState::Stopping,
                sd_notify::NotifyState::Status(&status),
            ]);
        }));
    }
    // systemd's Type=notify: serving now (MAINPID: the daemon's pid when
    // it forked).
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::MainPid(std::process::id()),
        sd_notify::NotifyState::Status(&format!("serving {}", o.url)),
    ]);
    match served {
        Served::Builtin(rump) => serve_builtin(&o, &set, rump),
        Served::Netbsd(k) => serve_netbsd(&o, &set, k),
    }
}

/// Tell the service manager (`NOTIFY_SOCKET`, sd_notify(3)) about a
/// change of state; nothing when it is unset. A failure is logged, never
/// fatal: the kernel serves whether or not systemd hears of it.
fn notify(states: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(
            "NOTIFY_SOCKET {}: {}",
            std::env::var_os("NOTIFY_SOCKET")
                .unwrap_or_default()
                .to_string_lossy(),
            tool::io_text(&e)
        );
    }
}

fn signame(sig: Signal) -> &'static str {
    sig.as_str()
}

fn serve_builtin(_o: &Opts, set: &SigSet, rump: Rump) -> ! {
    let rump = std::sync::Arc::new(rump);
    loop {
        let sig = wait_signal(set);
        if rump.halt_state().quiesced() {
            // Halted with -h: the host process goes when told to, and says
            // in its status whether the halt's flush worked.
            exit(if rump.halt_state().flush_failed() {
                1
            } else {
                0
            });
        }
        if rump.halt_state().halting() {
            // A second signal while the first halt flushes: the rescue.
            rumprun::say!(
                "{}: {} during the halt: skipping the rest of the flush",
                prog(),
                signame(sig)
            );
            let _ = rump.halt(netbsd_abi::reboot::RB_NOSYNC);
            continue;
        }
        tracing::info!("{}: halting", signame(sig));
        // Same as `rump.halt` with no flags: flush, then exit. On its own
        // thread, so that this one takes the next signal.
        let r = rump.clone();
        std::thread::spawn(move || {
            if let Err(e) = r.halt(0) {
                rumprun::say!("{}: halt: {e}", prog());
            }
        });
    }
}

/// NetBSD's kernel halts itself (its `cpu_reboot` ends in our
/// `rumpuser_sp_fini` and `rumpuser_exit`); a signal asks it to, as
/// `rump.halt` with no flags would.
fn serve_netbsd(_o: &Opts, set: &SigSet, k: NetbsdKernel) -> ! {
    loop {
        let sig = wait_signal(set);
        if k.halted() {
            // Halted with -h (sysproxy shut down, process kept): go now.
            exit(0);
        }
        tracing::info!("{}: halting", signame(sig));
        // NetBSD's reboot(2) from this thread: sync, then exit(0).
        if let Err(e) = k.reboot(0) {
            rumprun::say!("{}: halt: {e}", prog());
        }
    }
}
