//! The host's TCP settings the cookie routes depend on. The listener-bound
//! route needs `net.ipv4.tcp_syncookies` (it applies to IPv6 too) at 2: only
//! then does the kernel give a cookie for a listener whose queue is not
//! full. The transparent route needs it on (1 or 2), and answers with the
//! options and window scale the kernel would use (`tcp_timestamps`,
//! `tcp_sack`, `tcp_window_scaling`, `tcp_rmem`, `rmem_max`).

use std::path::Path;

const SYNCOOKIES: &str = "/proc/sys/net/ipv4/tcp_syncookies";

fn read(path: &str) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

fn number(path: &str) -> std::io::Result<u64> {
    let text = read(path)?;
    text.parse()
        .map_err(|_| std::io::Error::other(format!("{path}: '{text}'")))
}

/// The current value.
pub fn syncookies() -> std::io::Result<u8> {
    number(SYNCOOKIES).map(|v| v.min(u8::MAX as u64) as u8)
}

/// Sets the value.
pub fn set_syncookies(value: u8) -> std::io::Result<()> {
    std::fs::write(Path::new(SYNCOOKIES), format!("{value}\n"))
}

/// What the host's TCP offers in a SYN-ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpOptionsOn {
    pub timestamps: bool,
    pub sack: bool,
    pub window_scaling: bool,
    /// The window scale the kernel announces for a listener with default
    /// buffers: `ilog2(max(tcp_rmem[2], rmem_max)) - 15`, within 0..=14
    /// (`tcp_select_initial_window`).
    pub wscale: u8,
}

/// Reads them (a setting that cannot be read counts as off; the window
/// scale then as 7, Linux's default).
pub fn tcp_options() -> TcpOptionsOn {
    let on = |name: &str| number(&format!("/proc/sys/net/ipv4/{name}")).is_ok_and(|v| v != 0);
    let rmem_max = read("/proc/sys/net/ipv4/tcp_rmem")
        .ok()
        .and_then(|t| t.split_whitespace().nth(2)?.parse::<u64>().ok());
    let core_max = number("/proc/sys/net/core/rmem_max").ok();
    let space = rmem_max.into_iter().chain(core_max).max();
    TcpOptionsOn {
        timestamps: on("tcp_timestamps"),
        sack: on("tcp_sack"),
        window_scaling: on("tcp_window_scaling"),
        wscale: space.map_or(7, window_scale),
    }
}

/// The kernel's window scale for a receive space of `space` bytes.
pub fn window_scale(space: u64) -> u8 {
    let space = space.clamp(1, u32::MAX as u64);
    (space.ilog2() as i64 - 15).clamp(0, 14) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_scale_as_the_kernel_computes_it() {
        // Linux's default tcp_rmem[2] (6 MiB) gives 7; 32 MiB gives 10;
        // a small buffer none; a huge one is capped at 14.
        assert_eq!(window_scale(6 << 20), 7);
        assert_eq!(window_scale(32 << 20), 10);
        assert_eq!(window_scale(65_535), 0);
        assert_eq!(window_scale(1 << 40), 14);
        assert_eq!(window_scale(0), 0);
    }
}
