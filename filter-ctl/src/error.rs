//! Errors at the library boundary. Each says what the operator can do.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// The pin directory does not live on a BPF filesystem.
    #[error(
        "{0} is not on a bpf filesystem; mount one (mount -t bpf bpf /sys/fs/bpf) or pass --pin-dir"
    )]
    NotBpffs(PathBuf),
    /// Nothing is pinned where the CLI looks for the running filter.
    #[error("no filter state in {0}: attach the filter first (filter-ctl attach IFACE) or pass --pin-dir")]
    NotAttached(PathBuf),
    /// Another controller holds the pin directory.
    #[error("another controller is running on {0} (it holds the pin directory's lock); stop it first, or give this one another pin_dir")]
    PinDirLocked(PathBuf),
    /// Detach asked for an interface that has no pinned link.
    #[error("{iface} is not attached (no link pinned at {path})")]
    IfaceNotAttached { iface: String, path: PathBuf },
    /// A pinned map was made by a build with another layout.
    #[error("pinned map {name} in {dir} has key/value sizes {found:?} but this build uses {expected:?}: it was made by another version; `filter-ctl detach --all --purge --pin-dir {dir}` removes the old state")]
    IncompatiblePin {
        name: String,
        dir: PathBuf,
        found: (u32, u32),
        expected: (u32, u32),
    },
    /// The named network interface does not exist.
    #[error("no such network interface '{0}'")]
    UnknownInterface(String),
    /// A CIDR with bits set beyond its prefix, e.g. 10.0.0.5/24.
    #[error("'{given}' has host bits set beyond /{prefix}; did you mean {suggested}?")]
    HostBitsSet {
        given: String,
        prefix: u8,
        suggested: String,
    },
    /// An IPv4-mapped IPv6 address: the filter sees such a source as IPv4,
    /// so the entry would never match.
    #[error("'{given}' is an IPv4-mapped IPv6 address, which never matches: traffic from it arrives as IPv4; write {v4}")]
    MappedV4 { given: String, v4: String },
    /// Not an IP address or CIDR.
    #[error("'{0}' is not an IP address or CIDR (examples: 203.0.113.7, 198.51.100.0/24, 2001:db8::/48)")]
    BadAddress(String),
    /// The kernel refused to attach in the requested mode.
    #[error("attaching to {iface} in {mode} mode failed: {error}{hint}")]
    Attach {
        iface: String,
        mode: String,
        hint: &'static str,
        error: Box<aya::programs::ProgramError>,
    },
    /// The verifier or the kernel refused a program.
    #[error("loading the filter's BPF programs failed: {0}")]
    Load(String),
    /// The kernel refused the object (its maps or programs); the cause
    /// carries the errno.
    #[error("loading the filter object")]
    Object(#[source] Box<aya::EbpfError>),
    /// A map operation failed.
    #[error("{what}")]
    Map {
        what: String,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// Any other I/O failure, with the path involved.
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Hint appended to an error whose cause is a permission failure.
pub const PRIVILEGE_HINT: &str = "filter-ctl needs root (CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)";

/// Whether the failure comes from missing privileges: an `io::Error` with
/// EPERM or EACCES somewhere in the cause chain (every error here keeps
/// its cause as its source, down to the syscall's).
pub fn is_permission_error(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)))
    })
}
