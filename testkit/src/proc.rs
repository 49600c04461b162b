//! Host process and mount state, read from `/proc`.

/// Whether process `pid` still runs. A zombie leader counts as gone only
/// once its other threads are: until the last one exits, the process
/// still holds its files (a FUSE daemon's image and its lock).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let zombie = s
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z');
            let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|d| d.count())
                .unwrap_or(0);
            !zombie || threads > 1
        }
        Err(_) => false,
    }
}

/// Wait until process `pid` (ours or not) is gone, as
/// [`process_alive`] says; panics naming `what` after `timeout` (a
/// deadline for a hang, not a latency bound).
pub fn wait_gone(what: &str, pid: i32, timeout: std::time::Duration) {
    crate::wait::wait_until(&format!("{what} (pid {pid}) has exited"), timeout, || {
        !process_alive(pid)
    });
}

/// Wait up to `timeout` for our child to exit; its status, or `None` if
/// it still runs then (the caller decides whether that is a failure).
pub fn wait_child(
    child: &mut std::process::Child,
    timeout: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let mut st = None;
    crate::wait::poll_until(timeout, || {
        st = child.try_wait().ok().flatten();
        st.is_some()
    });
    st
}

/// Whether a file system is mounted on `dir` (`/proc/self/mountinfo`;
/// `dir` is canonicalized first, as the kernel lists mount points).
pub fn is_mounted(dir: &std::path::Path) -> bool {
    let want = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let Some(want) = want.to_str() else {
        return false;
    };
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_alive_until_reaped_then_gone() {
        let mut c = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("spawn sleep");
        let pid = c.id() as i32;
        assert!(process_alive(pid));
        assert!(wait_child(&mut c, std::time::Duration::from_millis(20)).is_none());
        c.kill().expect("kill");
        wait_gone("sleep", pid, std::time::Duration::from_secs(20));
        assert!(wait_child(&mut c, std::time::Duration::from_secs(20)).is_some());
        assert!(is_mounted(std::path::Path::new("/")));
        assert!(!is_mounted(std::path::Path::new("/no/such/dir")));
    }
}
