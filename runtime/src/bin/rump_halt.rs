//! rump.halt [-dhn] [-v]: halt the rump kernel named by `RUMP_SERVER`.
//!
//! -d  dump core (by the host's rules)
//! -h  shut down kernel activity, but leave the host process up
//! -n  do not flush the file system cache
//! -v  say what is sent, what the server answered and how long it took
//!     (again for more; `RUMP_VERBOSE` likewise)

use std::process::exit;
use std::time::Instant;

use netbsd_abi::reboot::{RbFlags, RB_DUMP, RB_HALT, RB_NOSYNC};
use netbsd_abi::Syscalls;
use rumprun::getopt::getopt;
use rumprun::tool;

const SYNOPSIS: &str = "[-dhn] [-v]";

fn help(prog: &str) -> String {
    format!(
        "usage: {prog} {SYNOPSIS}\n\
         Halt the rump kernel named by RUMP_SERVER (unix://PATH or tcp://ADDR:PORT).\n\
         \x20 -d  dump core after the flush (with -h: a forked copy dumps)\n\
         \x20 -h  halt the kernel but keep the host process\n\
         \x20 -n  do not flush the file system cache\n\
         \x20 -v  verbose: the request, the server's answer and the time taken\n"
    )
}

fn main() {
    let prog = tool::progname("rump.halt");
    let usage = || -> ! {
        eprintln!("usage: {prog} {SYNOPSIS}");
        exit(1)
    };
    let die = |msg: &dyn std::fmt::Display| -> ! {
        eprintln!("{prog}: {msg}");
        exit(1)
    };
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    tool::help_and_version(&prog, &args, || help(&prog));
    let p = match getopt(&args, "dhnv") {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{prog}: {e}");
            usage()
        }
    };
    if !p.operands.is_empty() {
        usage();
    }
    let mut flags = 0;
    let mut verbose = 0;
    for (c, _) in &p.opts {
        match c {
            'd' => flags |= RB_DUMP,
            'h' => flags |= RB_HALT,
            'n' => flags |= RB_NOSYNC,
            'v' => verbose += 1,
            _ => usage(),
        }
    }
    tool::init_logging(&prog, tool::verbosity(verbose));
    let url = std::env::var("RUMP_SERVER").unwrap_or_default();
    let t = Instant::now();
    let client = rumpclient::Client::from_env().unwrap_or_else(|e| die(&e));
    tracing::info!("connected to {url} in {:.1?}", t.elapsed());
    tracing::info!("reboot({}) to {url}", RbFlags(flags));
    let t = Instant::now();
    let r = reboot_telling(client, flags, &url, &prog);
    let took = t.elapsed();
    match r {
        Ok(()) => tracing::info!("{url} answered: halted (error 0) after {took:.1?}"),
        Err(rumpclient::Error::Errno(e)) if e.0 == netbsd_abi::errno::EBUSY => {
            tracing::info!("{url} answered: EBUSY after {took:.1?}");
            die(&format_args!(
                "{url}: a halt is already under way ({prog} -n skips its flush)"
            ))
        }
        // The kernel halted but its flush failed: the data is not safe.
        Err(rumpclient::Error::Errno(e)) => {
            tracing::info!(
                "{url} answered: error {} ({}) after {took:.1?}",
                e.0,
                netbsd_abi::errno::name(e.0).unwrap_or("unknown")
            );
            die(&format_args!("halt: file system flush failed: {e}"))
        }
        Err(rumpclient::Error::Lost { .. }) if flags & RB_NOSYNC == 0 => {
            tracing::info!("no answer from {url} after {took:.1?}");
            die(&format_args!(
                "{url}: the server went away before its flush completed (overtaken by {prog} -n?)"
            ))
        }
        Err(e) => {
            tracing::info!("no answer from {url} after {took:.1?}");
            die(&e)
        }
    }
}

/// `reboot(2)` on another thread; past 2 s, say what we wait for.
fn reboot_telling(
    client: rumpclient::Client,
    flags: i32,
    url: &str,
    prog: &str,
) -> Result<(), rumpclient::Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(client.reboot(flags));
    });
    let start = std::time::Instant::now();
    let mut next = std::time::Duration::from_secs(2);
    loop {
        match rx.recv_timeout(next.saturating_sub(start.elapsed())) {
            Ok(r) => return r,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(rumpclient::Error::Lost {
                    url: url.to_string(),
                    source: None,
                })
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let what = if flags & RB_NOSYNC != 0 {
                    "to stop its running system calls".to_string()
                } else {
                    format!(
                        "to flush its file systems and drives to the host (a hung drive? \
                         `RUMP_SERVER={url} {prog} -n` skips the flush)"
                    )
                };
                eprintln!(
                    "{prog}: waiting {}s for {url} {what}",
                    start.elapsed().as_secs()
                );
                next += std::time::Duration::from_secs(if next.as_secs() < 10 { 4 } else { 20 });
            }
        }
    }
}
