//! The host's `net.ipv4.tcp_syncookies` (it applies to IPv6 too), which
//! the listener-bound cookie route needs at 2: only then does the kernel
//! give a cookie for a listener whose queue is not full.

use std::path::Path;

const SYNCOOKIES: &str = "/proc/sys/net/ipv4/tcp_syncookies";

/// The current value.
pub fn syncookies() -> std::io::Result<u8> {
    let text = std::fs::read_to_string(SYNCOOKIES)?;
    text.trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("{SYNCOOKIES}: '{}'", text.trim())))
}

/// Sets the value.
pub fn set_syncookies(value: u8) -> std::io::Result<()> {
    std::fs::write(Path::new(SYNCOOKIES), format!("{value}\n"))
}
