//! rump.halt [-dhn]: halt the rump kernel named by `RUMP_SERVER`.
//!
//! -d  dump core (by the host's rules)
//! -h  shut down kernel activity, but leave the host process up
//! -n  do not flush the file system cache

use std::process::exit;

use netbsd_abi::reboot::{RB_DUMP, RB_HALT, RB_NOSYNC};
use rumprun::getopt::getopt;

const PROG: &str = "rump.halt";

fn usage() -> ! {
    eprintln!("usage: {PROG} [-dhn]");
    exit(1)
}

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("{PROG}: {msg}");
    exit(1)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let p = match getopt(&args, "dhn") {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{PROG}: {e}");
            usage()
        }
    };
    if !p.operands.is_empty() {
        usage();
    }
    let mut flags = 0;
    for (c, _) in &p.opts {
        flags |= match c {
            'd' => RB_DUMP,
            'h' => RB_HALT,
            'n' => RB_NOSYNC,
            _ => usage(),
        };
    }
    let verbose = std::env::var_os("RUMP_VERBOSE").is_some_and(|v| v != "0");
    let client = rumpclient::Client::from_env().unwrap_or_else(|e| die(e));
    if verbose {
        eprintln!("{PROG}: reboot({flags:#x})");
    }
    let url = client.url().to_string();
    match reboot_telling(client, flags, &url) {
        Ok(()) => {}
        Err(rumpclient::Error::Errno(e)) if e.0 == netbsd_abi::errno::EBUSY => die(format_args!(
            "{url}: a halt is already under way (rump.halt -n skips its flush)"
        )),
        // The kernel halted but its flush failed: the data is not safe.
        Err(rumpclient::Error::Errno(e)) => die(format_args!("halt: file system flush failed: {e}")),
        Err(rumpclient::Error::Lost { .. }) if flags & RB_NOSYNC == 0 => die(format_args!(
            "{url}: the server went away before its flush completed (overtaken by rump.halt -n?)"
        )),
        Err(e) => die(e),
    }
}

/// `reboot(2)` on another thread; past 2 s, say what we wait for.
fn reboot_telling(client: rumpclient::Client, flags: i32, url: &str) -> Result<(), rumpclient::Error> {
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
                return Err(rumpclient::Error::Lost { url: url.to_string(), source: None })
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let what = if flags & RB_NOSYNC != 0 {
                    "to stop its running system calls".to_string()
                } else {
                    format!(
                        "to flush its file systems and drives to the host (a hung drive? \
                         `RUMP_SERVER={url} {PROG} -n` skips the flush)"
                    )
                };
                eprintln!("{PROG}: waiting {}s for {url} {what}", start.elapsed().as_secs());
                next += std::time::Duration::from_secs(if next.as_secs() < 10 { 4 } else { 20 });
            }
        }
    }
}
