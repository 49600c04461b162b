//! How to build a kernel: [`KernelConfig`] as a value, and the tools'
//! reading of it from the environment ([`KernelConfig::from_env`]).
//!
//! [`KernelConfig::default`] reads nothing from the process: an embedder
//! gets the same kernel whatever the environment says, and its lock
//! debugging never aborts the embedding process. The tools (`rump_server`,
//! `rump_ext2fs`) honour the `RUMP_*` variables their manual pages list by
//! calling [`KernelConfig::from_env`]; a value that would be refused as a
//! flag is refused there too, as a [`ConfigError`].

use crate::etfs;
use crate::lockdebug::LockDebug;
use crate::syncer::{SyncConfig, MAX_DELAY};
use crate::{MemlimitError, MACHINE, OSRELEASE, OSTYPE};

/// The most virtual CPUs a kernel has (`-c`, `RUMP_NCPU`).
pub const MAX_NCPU: usize = 256;

/// How to build a kernel.
#[derive(Clone, Debug)]
pub struct KernelConfig {
    /// Virtual CPUs, 1 to [`MAX_NCPU`] (`-c`, `RUMP_NCPU`).
    pub ncpu: usize,
    /// Memory limit in bytes (`-r`, `RUMP_MEMLIMIT`): the buffer cache's
    /// limit, the in-memory file system's limit, and `hw.physmem64`.
    pub memlimit: u64,
    /// `kern.hostname`.
    pub hostname: String,
    /// `kern.ostype`, and the banner's OS type.
    pub ostype: String,
    /// `kern.osrelease`, and the banner's release.
    pub osrelease: String,
    /// `hw.machine`, and the banner's machine.
    pub machine: String,
    /// Boot and drive messages at the log's info level (`RUMP_VERBOSE`).
    pub verbose: bool,
    /// The syncer's delays (`vfs.sync.*`; `delay` 0 turns it off).
    pub sync: SyncConfig,
    /// The stall detector (`RUMP_LOCKDEBUG`; see [`crate::lockdebug`]).
    pub lockdebug: LockDebug,
}

/// The host's physical memory in bytes.
fn host_physmem() -> u64 {
    use nix::unistd::{sysconf, SysconfVar};
    let conf = |v| sysconf(v).ok().flatten().filter(|&n| n > 0);
    match (conf(SysconfVar::_PHYS_PAGES), conf(SysconfVar::PAGE_SIZE)) {
        (Some(pages), Some(psize)) => pages as u64 * psize as u64,
        _ => 1 << 30,
    }
}

/// Parse a memory limit: a `dd`-style size (`512m`, `2g`, plain bytes) or
/// a percentage of host memory (`25%`).
pub fn parse_memlimit(s: &str) -> Result<u64, MemlimitError> {
    let s = s.trim();
    if let Some(p) = s.strip_suffix('%') {
        let p: u64 = p
            .trim()
            .parse()
            .map_err(|_| MemlimitError::BadPercent(s.to_string()))?;
        if p == 0 || p > 100 {
            return Err(MemlimitError::PercentRange(s.to_string()));
        }
        return Ok(host_physmem() / 100 * p);
    }
    let v = etfs::parse_size(s).map_err(MemlimitError::Size)?;
    if v == 0 {
        return Err(MemlimitError::Zero(s.to_string()));
    }
    Ok(v)
}

impl Default for KernelConfig {
    /// The host's CPU count, a quarter of host memory, the hypercall
    /// layer's host name, quiet, NetBSD's syncer delays, no lock
    /// debugging. Nothing is read from the environment.
    fn default() -> KernelConfig {
        KernelConfig {
            ncpu: rumpuser::param::host_ncpu().min(MAX_NCPU),
            memlimit: host_physmem() / 4,
            hostname: rumpuser::param::hostname(),
            ostype: OSTYPE.into(),
            osrelease: OSRELEASE.into(),
            machine: MACHINE.into(),
            verbose: false,
            sync: SyncConfig::default(),
            lockdebug: LockDebug::Off,
        }
    }
}

/// A `RUMP_*` variable whose value the kernel refuses, named with its
/// value and the reason as a one-line message
/// (`RUMP_NCPU=0: invalid CPU count (1 to 256, or host)`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `RUMP_NCPU` neither `host` nor 1 to [`MAX_NCPU`].
    #[error("RUMP_NCPU={0}: invalid CPU count (1 to {MAX_NCPU}, or host)")]
    Ncpu(String),
    /// `RUMP_MEMLIMIT` that [`parse_memlimit`] refuses.
    #[error("RUMP_MEMLIMIT={value}: {}", memlimit_reason(source, value))]
    Memlimit {
        /// The value, as set.
        value: String,
        /// Why it is refused.
        source: MemlimitError,
    },
    /// A syncer delay that is not a whole number of seconds.
    #[error("{var}={value}: not a number of seconds")]
    Delay {
        /// `RUMP_SYNCDELAY`, `RUMP_FILEDELAY`, `RUMP_DIRDELAY` or
        /// `RUMP_METADELAY`.
        var: &'static str,
        /// The value, as set.
        value: String,
    },
    /// A syncer delay above [`MAX_DELAY`].
    #[error("{var}={value}: more than {MAX_DELAY} seconds")]
    DelayTooLong {
        /// The variable, as for [`ConfigError::Delay`].
        var: &'static str,
        /// The value, as set.
        value: u32,
    },
    /// `RUMP_LOCKDEBUG` other than `0`, `off`, `warn`, `1` or `abort`.
    #[error("RUMP_LOCKDEBUG={0}: expected 0, warn or abort")]
    LockDebug(String),
}

/// `source`'s reason without the value it names (the message names it
/// once, as `-r` does).
fn memlimit_reason(source: &MemlimitError, value: &str) -> String {
    source
        .to_string()
        .replace(&format!(" \"{}\"", value.trim()), "")
}

/// The syncer's variables and the `vfs.sync` node each sets.
const SYNC_VARS: [(&str, &str); 4] = [
    ("RUMP_SYNCDELAY", "delay"),
    ("RUMP_FILEDELAY", "filedelay"),
    ("RUMP_DIRDELAY", "dirdelay"),
    ("RUMP_METADELAY", "metadelay"),
];

impl KernelConfig {
    /// The tools' configuration: [`KernelConfig::default`], then the
    /// process environment over it (see [`KernelConfig::with_env`]).
    pub fn from_env() -> Result<KernelConfig, ConfigError> {
        KernelConfig::default().with_env(|v| std::env::var(v).ok())
    }

    /// `self` with the variables `get` returns a value for set over it:
    /// `RUMP_NCPU` (1 to [`MAX_NCPU`], or `host`), `RUMP_MEMLIMIT` (as
    /// [`parse_memlimit`] takes it), `RUMP_VERBOSE` (any value but empty
    /// or `0`), `RUMP_SYNCDELAY`, `RUMP_FILEDELAY`, `RUMP_DIRDELAY`,
    /// `RUMP_METADELAY` (seconds) and `RUMP_LOCKDEBUG` (`0`, `warn` or
    /// `abort`; unset, [`LockDebug::tool_default`], which aborts in debug
    /// builds so the test suite finds a broken blocking discipline).
    /// `get` stands in for the environment so tests need not change it.
    pub fn with_env(
        mut self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<KernelConfig, ConfigError> {
        if let Some(v) = get("RUMP_NCPU") {
            self.ncpu = match v.trim() {
                "host" => rumpuser::param::host_ncpu().min(MAX_NCPU),
                t => match t.parse::<usize>() {
                    Ok(n) if (1..=MAX_NCPU).contains(&n) => n,
                    _ => return Err(ConfigError::Ncpu(v)),
                },
            };
        }
        if let Some(v) = get("RUMP_MEMLIMIT") {
            self.memlimit = parse_memlimit(&v).map_err(|source| ConfigError::Memlimit {
                value: v.clone(),
                source,
            })?;
        }
        if let Some(v) = get("RUMP_VERBOSE") {
            self.verbose = !v.is_empty() && v != "0";
        }
        for (var, node) in SYNC_VARS {
            let Some(v) = get(var) else { continue };
            let n: u32 = v.trim().parse().map_err(|_| ConfigError::Delay {
                var,
                value: v.clone(),
            })?;
            self.sync
                .set(node, n)
                .map_err(|_| ConfigError::DelayTooLong { var, value: n })?;
        }
        self.lockdebug = match get("RUMP_LOCKDEBUG") {
            None => LockDebug::tool_default(),
            Some(v) => match v.trim() {
                "0" | "off" => LockDebug::Off,
                "warn" => LockDebug::Warn,
                "1" | "abort" => LockDebug::Abort,
                _ => return Err(ConfigError::LockDebug(v)),
            },
        };
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn default_never_aborts_and_from_an_empty_environment_only_lockdebug_differs() {
        let d = KernelConfig::default();
        assert_eq!(d.lockdebug, LockDebug::Off);
        assert!(!d.verbose);
        let e = KernelConfig::default().with_env(env(&[])).unwrap();
        assert_eq!(
            (e.ncpu, e.memlimit, e.verbose, e.sync),
            (d.ncpu, d.memlimit, d.verbose, d.sync)
        );
        assert_eq!(e.lockdebug, LockDebug::tool_default());
    }

    #[test]
    fn each_variable_sets_its_field() {
        let c = KernelConfig::default()
            .with_env(env(&[
                ("RUMP_NCPU", "3"),
                ("RUMP_MEMLIMIT", "16m"),
                ("RUMP_VERBOSE", "2"),
                ("RUMP_FILEDELAY", "1"),
                ("RUMP_SYNCDELAY", "0"),
                ("RUMP_LOCKDEBUG", "warn"),
            ]))
            .unwrap();
        assert_eq!((c.ncpu, c.memlimit, c.verbose), (3, 16 << 20, true));
        assert_eq!((c.sync.filedelay, c.sync.delay), (1, 0));
        assert_eq!(c.lockdebug, LockDebug::Warn);
        let host = KernelConfig::default()
            .with_env(env(&[("RUMP_NCPU", "host"), ("RUMP_LOCKDEBUG", "0")]))
            .unwrap();
        assert_eq!(host.ncpu, KernelConfig::default().ncpu);
        assert_eq!(host.lockdebug, LockDebug::Off);
    }

    #[test]
    fn a_bad_value_is_a_typed_error_naming_it() {
        let bad = |vars: &'static [(&'static str, &'static str)]| {
            KernelConfig::default().with_env(env(vars)).unwrap_err()
        };
        assert_eq!(bad(&[("RUMP_NCPU", "0")]), ConfigError::Ncpu("0".into()));
        assert_eq!(
            bad(&[("RUMP_NCPU", "257")]).to_string(),
            "RUMP_NCPU=257: invalid CPU count (1 to 256, or host)"
        );
        assert_eq!(
            bad(&[("RUMP_MEMLIMIT", "0")]).to_string(),
            "RUMP_MEMLIMIT=0: bad memory limit: must be more than 0"
        );
        assert!(matches!(
            bad(&[("RUMP_MEMLIMIT", "0")]),
            ConfigError::Memlimit { value, source: MemlimitError::Zero(_) } if value == "0"
        ));
        assert_eq!(
            bad(&[("RUMP_DIRDELAY", "x")]).to_string(),
            "RUMP_DIRDELAY=x: not a number of seconds"
        );
        assert_eq!(
            bad(&[("RUMP_METADELAY", "86401")]),
            ConfigError::DelayTooLong {
                var: "RUMP_METADELAY",
                value: 86401
            }
        );
        assert_eq!(
            bad(&[("RUMP_LOCKDEBUG", "yes")]).to_string(),
            "RUMP_LOCKDEBUG=yes: expected 0, warn or abort"
        );
    }
}
