//! Bounded flood generation for the rig.
//!
//! Crafted floods (SYN, SYN-ACK, ACK, RST, FIN, their variants) use the `flood` XDP program
//! through BPF_PROG_TEST_RUN with live frames: the kernel runs it on a
//! template frame and transmits the result with XDP_TX out of the attacker's
//! interface, several million frames per second on this machine. Connection
//! churn uses real sockets. Every flood stops by itself at its packet count
//! or its duration, whichever comes first.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use aya::{
    maps::Array,
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp},
    Ebpf,
};
use filter_test_common::FloodConfig;
use ipnet::Ipv4Net;

/// Longest flood allowed, whatever is asked.
pub const MAX_DURATION: Duration = Duration::from_secs(60);
/// Most packets in one flood, whatever is asked.
pub const MAX_PACKETS: u64 = 200_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Syn,
    SynAck,
    Ack,
    Rst,
    Fin,
    /// ACKs carrying one byte of payload.
    AckData,
    /// SYNs sent as tiny first fragments: 8 bytes of TCP (ports and
    /// sequence), the flags in a fragment that never comes.
    FragSyn,
    /// SYNs to random destination ports (a port scan).
    Scan,
    /// Complete TCP handshakes, closed at once, from the attacker's address.
    Churn,
}

impl Kind {
    fn tcp_flags(self) -> u8 {
        match self {
            Kind::Syn | Kind::FragSyn | Kind::Scan => 0x02,
            Kind::SynAck => 0x12,
            Kind::Ack | Kind::AckData => 0x10,
            Kind::Rst => 0x04,
            Kind::Fin => 0x11,
            Kind::Churn => 0,
        }
    }

    /// Bytes of TCP payload in the template.
    fn payload(self) -> usize {
        match self {
            Kind::AckData => 1,
            _ => 0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub kind: Kind,
    /// Interface to send from (inside the current network namespace).
    pub iface: String,
    /// Sources: a /32 is one fixed source, a wider net random sources in it.
    pub src: Ipv4Net,
    pub dst: SocketAddrV4,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Packets per second; 0 = as fast as possible.
    pub rate: u64,
    pub duration: Duration,
    pub count: u64,
    /// An IPv6 SYN flood instead (`src` then gives the random bits).
    pub v6: Option<V6>,
}

#[derive(Clone, Copy, Debug)]
pub struct Report {
    pub sent: u64,
    pub elapsed: Duration,
}

impl Report {
    pub fn pps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The template frame: Ethernet, IPv4 (20 bytes), TCP (20 bytes) and the
/// kind's payload; for a fragmented SYN, only the first 8 bytes of TCP in
/// a first fragment.
pub fn template(spec: &Spec) -> Vec<u8> {
    let payload = spec.kind.payload();
    let fragment = spec.kind == Kind::FragSyn;
    let tot_len = if fragment { 28 } else { 40 + payload as u16 };
    // DF for whole segments, MF (offset 0) for the first fragment.
    let frags: u16 = if fragment { 0x2000 } else { 0x4000 };
    let mut f = Vec::with_capacity(54 + payload);
    f.extend_from_slice(&spec.dst_mac);
    f.extend_from_slice(&spec.src_mac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&tot_len.to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34]);
    f.extend_from_slice(&frags.to_be_bytes());
    f.extend_from_slice(&[64, 6, 0, 0]);
    f.extend_from_slice(&spec.src.addr().octets());
    f.extend_from_slice(&spec.dst.ip().octets());
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&spec.dst.port().to_be_bytes());
    f.extend_from_slice(&1u32.to_be_bytes());
    let ack = if spec.kind.tcp_flags() & 0x10 != 0 {
        1u32
    } else {
        0
    };
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, spec.kind.tcp_flags(), 0xff, 0xff, 0, 0, 0, 0]);
    f.extend(std::iter::repeat_n(b'x', payload));
    if fragment {
        f.truncate(14 + 28);
    }
    f
}

/// An IPv6 SYN flood's addresses: the source's /64s vary in their second
/// 32-bit word (the generator fills it with `src`'s random bits).
#[derive(Clone, Debug)]
pub struct V6 {
    pub src: std::net::Ipv6Addr,
    pub dst: std::net::SocketAddrV6,
}

/// The IPv6 template: Ethernet, IPv6, a bare TCP SYN.
pub fn template_v6(spec: &Spec, v6: &V6) -> Vec<u8> {
    let mut f = Vec::with_capacity(74);
    f.extend_from_slice(&spec.dst_mac);
    f.extend_from_slice(&spec.src_mac);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&20u16.to_be_bytes());
    f.extend_from_slice(&[6, 64]);
    f.extend_from_slice(&v6.src.octets());
    f.extend_from_slice(&v6.dst.ip().octets());
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&v6.dst.port().to_be_bytes());
    f.extend_from_slice(&1u32.to_be_bytes());
    f.extend_from_slice(&0u32.to_be_bytes());
    f.extend_from_slice(&[0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

/// Runs one bounded flood from the current thread's network namespace.
pub fn run(spec: &Spec) -> anyhow::Result<Report> {
    let duration = spec.duration.min(MAX_DURATION);
    let count = spec.count.min(MAX_PACKETS);
    if spec.kind == Kind::Churn {
        return churn(spec, duration, count);
    }
    let ifindex = filter_ctl::kernel::loader::if_index(&spec.iface)?;
    let mut ebpf = Ebpf::load(crate::FLOOD_OBJECT)?;
    let frame = match &spec.v6 {
        Some(v6) => template_v6(spec, v6),
        None => template(spec),
    };
    let cfg = FloodConfig {
        src_base: u32::from(spec.src.addr()),
        src_random_mask: !u32::from(spec.src.netmask()),
        randomize_ports: 1,
        randomize_dport: u32::from(spec.kind == Kind::Scan),
        frame_len: frame.len() as u32,
        tcp_checksum: u32::from(spec.kind != Kind::FragSyn),
        ipv6: u32::from(spec.v6.is_some()),
    };
    Array::try_from(ebpf.map_mut("FLOOD").expect("FLOOD map"))?.set(0, &cfg, 0)?;
    let prog: &mut Xdp = ebpf
        .program_mut("flood")
        .expect("flood program")
        .try_into()?;
    prog.load()?;
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
    // rx_queue_index, egress_ifindex.
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    let start = Instant::now();
    let mut sent = 0u64;
    // Rate control in 10 ms slices.
    const SLICE: Duration = Duration::from_millis(10);
    while sent < count && start.elapsed() < duration {
        let batch = if spec.rate == 0 {
            262_144
        } else {
            let due = (start.elapsed() + SLICE).as_secs_f64() * spec.rate as f64;
            (due as u64).saturating_sub(sent)
        };
        let batch = batch.min(count - sent).min(u32::MAX as u64) as u32;
        if batch == 0 {
            std::thread::sleep(SLICE / 2);
            continue;
        }
        prog.test_run(TestRunOptions {
            data_in: Some(&frame),
            ctx_in: Some(&ctx),
            repeat: batch,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
            ..TestRunOptions::default()
        })?;
        sent += batch as u64;
    }
    Ok(Report {
        sent,
        elapsed: start.elapsed(),
    })
}

/// Real connections: connect, then close at once.
fn churn(spec: &Spec, duration: Duration, count: u64) -> anyhow::Result<Report> {
    use socket2::{Domain, Socket, Type};
    let start = Instant::now();
    let mut sent = 0;
    let src = std::net::SocketAddr::from(SocketAddrV4::new(spec.src.addr(), 0));
    while sent < count && start.elapsed() < duration {
        if spec.rate > 0 {
            let due = start.elapsed().as_secs_f64() * spec.rate as f64;
            if sent as f64 >= due {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        }
        let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        s.bind(&src.into())?;
        let _ = s.connect_timeout(
            &std::net::SocketAddr::from(spec.dst).into(),
            Duration::from_millis(200),
        );
        sent += 1;
    }
    Ok(Report {
        sent,
        elapsed: start.elapsed(),
    })
}

/// Parses `02:00:00:00:00:01`.
pub fn parse_mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("'{s}' is not a MAC address"))?;
    parts
        .try_into()
        .map_err(|_| anyhow::anyhow!("'{s}' is not a MAC address"))
}

/// `10.0.0.0/8` as it is, `10.1.2.3` as `10.1.2.3/32`.
pub fn parse_src(src: &str) -> anyhow::Result<Ipv4Net> {
    let text = if src.contains('/') {
        src.to_owned()
    } else {
        format!("{src}/32")
    };
    text.parse()
        .map_err(|_| anyhow::anyhow!("'{src}' is not an IPv4 address or CIDR"))
}

/// A spec aimed at the rig's server from its attacker side.
pub fn rig_spec(kind: Kind, src: &str, rate: u64, duration: Duration) -> Spec {
    use crate::rig::*;
    Spec {
        kind,
        iface: ATT_IF.into(),
        src: parse_src(src).expect("source"),
        dst: SocketAddrV4::new(SRV_ATT_IP.parse::<Ipv4Addr>().unwrap(), 8080),
        src_mac: parse_mac(ATT_MAC).unwrap(),
        dst_mac: parse_mac(SRV_ATT_MAC).unwrap(),
        rate,
        duration,
        count: MAX_PACKETS,
        v6: None,
    }
}

/// An IPv6 SYN flood at the rig's server from random /64s (the IPv4
/// `src` field then only says which bits are random: a /0 for all 32).
pub fn rig_spec_v6(rate: u64, duration: Duration) -> Spec {
    use crate::rig::*;
    Spec {
        src: "0.0.0.0/0".parse().unwrap(),
        v6: Some(V6 {
            src: SPOOF_NET6.parse().unwrap(),
            dst: std::net::SocketAddrV6::new(SRV_ATT_IP6.parse().unwrap(), 8080, 0, 0),
        }),
        ..rig_spec(Kind::Syn, "10.200.0.0/16", rate, duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_a_valid_ipv4_tcp_frame() {
        let spec = rig_spec(Kind::Fin, "10.200.0.0/16", 0, Duration::from_secs(1));
        let f = template(&spec);
        assert_eq!(f.len(), 54);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 40);
        assert_eq!(&f[30..34], &[10, 77, 1, 1]);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 8080);
        assert_eq!(f[47], 0x11);
        assert!(parse_mac("02:00:zz:00:00:01").is_err());
        let data = template(&rig_spec(
            Kind::AckData,
            "10.1.1.1",
            0,
            Duration::from_secs(1),
        ));
        assert_eq!(data.len(), 55);
        assert_eq!(u16::from_be_bytes([data[16], data[17]]), 41);
        let frag = template(&rig_spec(
            Kind::FragSyn,
            "10.1.1.1",
            0,
            Duration::from_secs(1),
        ));
        assert_eq!(frag.len(), 42);
        assert_eq!(u16::from_be_bytes([frag[16], frag[17]]), 28);
        assert_eq!(frag[20] & 0x20, 0x20, "more fragments");
    }
}
