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
    match client.reboot(flags) {
        Ok(()) => {}
        // The kernel halted but its flush failed: the data is not safe.
        Err(rumpclient::Error::Errno(e)) => die(format_args!("halt: file system flush failed: {e}")),
        Err(e) => die(e),
    }
}
