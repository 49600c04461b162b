//! Error types of the kernel's parsers.

/// A memory limit (`-r`, `RUMP_MEMLIMIT`) that does not parse; the
/// message says why, naming the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemlimitError {
    /// A percentage that is not a number.
    #[error("bad memory limit \"{0}\"")]
    BadPercent(String),
    /// A percentage outside 1-100.
    #[error("bad memory limit \"{0}\": percentage must be 1-100")]
    PercentRange(String),
    /// A limit of 0 bytes.
    #[error("bad memory limit \"{0}\": must be more than 0")]
    Zero(String),
    /// Not a `dd`-style size ([`crate::etfs::parse_size`]).
    #[error(transparent)]
    Size(crate::etfs::SizeError),
}
