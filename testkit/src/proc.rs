//! Host process state, read from `/proc`.

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
