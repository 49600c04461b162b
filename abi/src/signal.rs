//! NetBSD signal numbers and their host (Linux) counterparts.

/// Pairs (NetBSD signal number, host signal number) for every signal both define; signals the host lacks are not listed.
pub const NETBSD_TO_LINUX: &[(i32, i32)] = &[
    (1, libc::SIGHUP),
    (2, libc::SIGINT),
    (3, libc::SIGQUIT),
    (4, libc::SIGILL),
    (5, libc::SIGTRAP),
    (6, libc::SIGABRT),
    (8, libc::SIGFPE),
    (9, libc::SIGKILL),
    (10, libc::SIGBUS),
    (11, libc::SIGSEGV),
    (12, libc::SIGSYS),
    (13, libc::SIGPIPE),
    (14, libc::SIGALRM),
    (15, libc::SIGTERM),
    (16, libc::SIGURG),
    (17, libc::SIGSTOP),
    (18, libc::SIGTSTP),
    (19, libc::SIGCONT),
    (20, libc::SIGCHLD),
    (21, libc::SIGTTIN),
    (22, libc::SIGTTOU),
    (23, libc::SIGIO),
    (24, libc::SIGXCPU),
    (25, libc::SIGXFSZ),
    (26, libc::SIGVTALRM),
    (27, libc::SIGPROF),
    (28, libc::SIGWINCH),
    (30, libc::SIGUSR1),
    (31, libc::SIGUSR2),
    (32, libc::SIGPWR),
];

/// NetBSD signal → host signal; `None` for signals the host lacks
/// (SIGEMT, SIGINFO).
pub fn to_host(sig: i32) -> Option<i32> {
    NETBSD_TO_LINUX.iter().find(|p| p.0 == sig).map(|p| p.1)
}

/// Host signal → NetBSD signal.
pub fn from_host(sig: i32) -> Option<i32> {
    NETBSD_TO_LINUX.iter().find(|p| p.1 == sig).map(|p| p.0)
}
