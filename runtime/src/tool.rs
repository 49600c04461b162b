//! What the command-line tools (`rump_server`, `rump.halt`, `rumpctl`)
//! share: the program name from `argv[0]`, `--help`, logs on standard
//! error through `tracing` at the level `-v`/`RUMP_VERBOSE` ask for, and a
//! quiet exit when the reader of standard output has gone (`EPIPE`).

use std::fmt;
use std::io::{self, Write};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Print a message on standard error through the log queue (what tools
/// use instead of `eprintln!`, which panics when standard error fails).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::log::push(format!("{}\n", format_args!($($arg)*)).into_bytes())
    };
}

/// The program's name for messages: the last component of `argv[0]`
/// (`rump_halt` or `rump.halt`, as the user called it), else `default`.
pub fn progname(default: &str) -> String {
    rumpclient::argv0_name().unwrap_or_else(|| default.to_string())
}

/// `--help` anywhere before a `--`: print the usage on standard output
/// and exit 0 (before anything else happens: no connection is made).
pub fn help_requested<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> bool {
    long_option(args, "--help")
}

/// `--version` anywhere before a `--`: print `prog VERSION` on standard
/// output and exit 0, as `--help` does.
pub fn version_requested<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> bool {
    long_option(args, "--version")
}

fn long_option<S: AsRef<std::ffi::OsStr>>(args: &[S], name: &str) -> bool {
    args.iter()
        .map(|a| a.as_ref())
        .take_while(|a| *a != "--")
        .any(|a| a == name)
}

/// `--help` and `--version`, before anything else: print and exit 0.
pub fn help_and_version<S: AsRef<std::ffi::OsStr>>(
    prog: &str,
    args: &[S],
    help: impl FnOnce() -> String,
) {
    if help_requested(args) {
        print_help(&help());
    }
    if version_requested(args) {
        print_help(&format!(
            "{prog} {} (rump kernel host runtime)\n",
            env!("CARGO_PKG_VERSION")
        ));
    }
}

/// Print `text` on standard output and exit 0 (`--help`).
pub fn print_help(text: &str) -> ! {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        stdout_failed("", &e);
    }
    std::process::exit(0)
}

/// The log level: `RUMP_VERBOSE` (a number; any other non-empty value
/// but `0` counts as 1) plus the number of `-v` flags. 0 is warnings and
/// errors only, 1 adds what is being done (info), 2 debug, 3 and more
/// trace.
pub fn verbosity(v_flags: usize) -> usize {
    let env = match std::env::var("RUMP_VERBOSE") {
        Ok(v) if v.is_empty() || v == "0" => 0,
        Ok(v) => v.trim().parse::<usize>().unwrap_or(1),
        Err(_) => 0,
    };
    env + v_flags
}

/// The `tracing` level for a [`verbosity`].
pub fn level(verbosity: usize) -> Level {
    match verbosity {
        0 => Level::WARN,
        1 => Level::INFO,
        2 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// Log on standard error, one line per event in the Unix style:
/// `prog: message` (`prog: warning: ...`, `prog: debug: ...` for the
/// other levels), fields after the message as `name=value`.
pub fn init_logging(prog: &str, verbosity: usize) {
    crate::log::set_progname(prog);
    let sub = tracing_subscriber::fmt()
        .with_writer(crate::log::LineWriter::default)
        .with_max_level(level(verbosity))
        .event_format(UnixStyle {
            prog: prog.to_string(),
        })
        .finish();
    let _ = tracing::subscriber::set_global_default(sub);
}

struct UnixStyle {
    prog: String,
}

impl<S, N> FormatEvent<S, N> for UnixStyle
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        ev: &Event<'_>,
    ) -> fmt::Result {
        write!(w, "{}: ", self.prog)?;
        match *ev.metadata().level() {
            Level::ERROR => w.write_str("error: ")?,
            Level::WARN => w.write_str("warning: ")?,
            Level::INFO => {}
            Level::DEBUG => w.write_str("debug: ")?,
            Level::TRACE => w.write_str("trace: ")?,
        }
        ctx.field_format().format_fields(w.by_ref(), ev)?;
        writeln!(w)
    }
}

/// Writing standard output failed: when the reader has gone (`EPIPE`, as
/// in `rumpctl cat f | head -c1`) exit 0 without a word, as there is no
/// one left to tell; otherwise say why and exit 1.
pub fn stdout_failed(prog: &str, e: &io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    let _ = writeln!(io::stderr(), "{prog}: standard output: {}", io_text(e));
    std::process::exit(1)
}

pub use netbsd_abi::text::show;

pub use netbsd_abi::errno::io_text;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_is_found_before_the_end_of_options() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(help_requested(&v(&["--help"])));
        assert!(help_requested(&v(&["ls", "--help"])));
        assert!(!help_requested(&v(&["cat", "--", "--help"])));
        assert!(!help_requested(&v(&["-v"])));
        assert!(version_requested(&v(&["-v", "--version"])));
        assert!(!version_requested(&v(&["--", "--version"])));
    }

    #[test]
    fn names_show_their_bytes() {
        assert_eq!(show(b"a/\xff\xfe"), "a/\\xff\\xfe");
        assert_eq!(show("é".as_bytes()), "é");
    }

    #[test]
    fn levels() {
        assert_eq!(level(0), Level::WARN);
        assert_eq!(level(1), Level::INFO);
        assert_eq!(level(2), Level::DEBUG);
        assert_eq!(level(7), Level::TRACE);
    }
}
