//! A builder for the frames the tests feed to the XDP program. It writes
//! real header layouts (lengths, offsets, flags) so the program parses what
//! a NIC would hand it. Checksums are left zero since XDP never checks them;
//! [`Packet::ipv4_datagram`] fills them in for packets the host's stack
//! must accept.

use std::net::IpAddr;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;

pub const HOPOPTS: u8 = 0;
pub const ROUTING: u8 = 43;
pub const FRAGMENT: u8 = 44;
pub const AH: u8 = 51;
pub const DSTOPTS: u8 = 60;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Description of one frame. Start from [`Packet::tcp`] and adjust fields.
#[derive(Clone, Debug)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TPIDs of VLAN tags, outermost first.
    pub vlans: Vec<u16>,
    /// IPv4 option bytes (padded to a multiple of 4).
    pub ipv4_options: usize,
    /// Fragment offset in 8-byte units (IPv4 header, or IPv6 fragment header).
    pub frag_offset: u16,
    pub more_fragments: bool,
    /// IPv6 extension headers, in order (HOPOPTS, ROUTING, FRAGMENT, AH, DSTOPTS).
    pub ipv6_ext: Vec<u8>,
    /// L4 protocol number.
    pub proto: u8,
    pub tcp_flags: u8,
    pub sport: u16,
    pub dport: u16,
    /// TCP header length in 32-bit words (5 = no options).
    pub tcp_doff: u8,
    pub seq: u32,
    pub ack: u32,
    /// An MSS option in the first four option bytes (needs `tcp_doff` ≥ 6).
    pub mss: Option<u16>,
    /// Raw TCP option bytes; when not empty they replace `mss` and the NOP
    /// fill, and `tcp_doff` follows their length (padded with EOL).
    pub options: Vec<u8>,
    pub payload: usize,
    /// Bytes of the L4 header and payload kept (a tiny first fragment);
    /// None keeps everything. The IP length fields follow.
    pub l4_truncate: Option<usize>,
}

impl Packet {
    pub fn tcp(src: &str, flags: u8) -> Packet {
        let src: IpAddr = src.parse().expect("test address");
        let dst: IpAddr = if src.is_ipv4() {
            "192.0.2.1".parse().unwrap()
        } else {
            "2001:db8:ffff::1".parse().unwrap()
        };
        Packet {
            src,
            dst,
            vlans: Vec::new(),
            ipv4_options: 0,
            frag_offset: 0,
            more_fragments: false,
            ipv6_ext: Vec::new(),
            proto: PROTO_TCP,
            tcp_flags: flags,
            sport: 40000,
            dport: 80,
            tcp_doff: 5,
            seq: 1,
            ack: 0,
            mss: None,
            options: Vec::new(),
            payload: 0,
            l4_truncate: None,
        }
    }

    pub fn with(mut self, f: impl FnOnce(&mut Packet)) -> Packet {
        f(&mut self);
        self
    }

    /// Offset where the L4 header starts in the built frame.
    pub fn l4_offset(&self) -> usize {
        let l2 = 14 + 4 * self.vlans.len();
        match self.src {
            IpAddr::V4(_) => l2 + 20 + self.ipv4_options,
            IpAddr::V6(_) => l2 + 40 + self.ipv6_ext.iter().map(|&h| ext_len(h)).sum::<usize>(),
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        if self.proto == PROTO_TCP {
            l4.extend_from_slice(&self.sport.to_be_bytes());
            l4.extend_from_slice(&self.dport.to_be_bytes());
            l4.extend_from_slice(&self.seq.to_be_bytes());
            l4.extend_from_slice(&self.ack.to_be_bytes());
            let doff = match self.options.len() {
                0 => self.tcp_doff,
                n => 5 + n.div_ceil(4) as u8,
            };
            l4.push(doff << 4);
            l4.push(self.tcp_flags);
            l4.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, csum, urg
            let mut opts = (doff as usize * 4).saturating_sub(20);
            if !self.options.is_empty() {
                l4.extend_from_slice(&self.options);
                l4.extend(std::iter::repeat_n(0u8, opts - self.options.len()));
                opts = 0;
            } else if let (Some(mss), true) = (self.mss, opts >= 4) {
                l4.extend_from_slice(&[2, 4]);
                l4.extend_from_slice(&mss.to_be_bytes());
                opts -= 4;
            }
            l4.extend(std::iter::repeat_n(1u8, opts)); // NOPs
        } else {
            // UDP: ports, length (header only), no checksum.
            l4.extend_from_slice(&self.sport.to_be_bytes());
            l4.extend_from_slice(&self.dport.to_be_bytes());
            l4.extend_from_slice(&[0, 8, 0, 0]);
        }
        l4.extend(std::iter::repeat_n(0xabu8, self.payload));
        if let Some(n) = self.l4_truncate {
            l4.truncate(n);
        }

        let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
        let ethertype: u16 = if self.src.is_ipv4() { 0x0800 } else { 0x86dd };
        for (i, tpid) in self.vlans.iter().enumerate() {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(100 + i as u16).to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let ihl = 20 + self.ipv4_options;
                let tot = (ihl + l4.len()) as u16;
                f.push(0x40 | (ihl / 4) as u8);
                f.push(0);
                f.extend_from_slice(&tot.to_be_bytes());
                f.extend_from_slice(&0x1234u16.to_be_bytes());
                let frags = (u16::from(self.more_fragments) << 13) | (self.frag_offset & 0x1fff);
                f.extend_from_slice(&frags.to_be_bytes());
                f.push(64);
                f.push(self.proto);
                f.extend_from_slice(&[0, 0]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
                // Options: NOPs then End of Options.
                if self.ipv4_options > 0 {
                    f.extend(std::iter::repeat_n(1u8, self.ipv4_options - 1));
                    f.push(0);
                }
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let ext: usize = self.ipv6_ext.iter().map(|&h| ext_len(h)).sum();
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&((ext + l4.len()) as u16).to_be_bytes());
                f.push(*self.ipv6_ext.first().unwrap_or(&self.proto));
                f.push(64);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
                for (i, &h) in self.ipv6_ext.iter().enumerate() {
                    let next = *self.ipv6_ext.get(i + 1).unwrap_or(&self.proto);
                    match h {
                        FRAGMENT => {
                            f.extend_from_slice(&[next, 0]);
                            let v = (self.frag_offset << 3) | u16::from(self.more_fragments);
                            f.extend_from_slice(&v.to_be_bytes());
                            f.extend_from_slice(&0xdead_beefu32.to_be_bytes());
                        }
                        AH => {
                            // 12 bytes: payload len field 1 → (1 + 2) * 4.
                            f.extend_from_slice(&[next, 1, 0, 0]);
                            f.extend_from_slice(&[0; 8]);
                        }
                        _ => {
                            // 8 bytes: hdr ext len 0, one PadN option of 4.
                            f.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
                        }
                    }
                }
            }
            _ => panic!("src and dst must be the same family"),
        }
        f.extend_from_slice(&l4);
        f
    }
}

impl Packet {
    /// The IPv4 datagram (no Ethernet, no VLAN) with correct IPv4 header
    /// and TCP checksums, for a raw socket: the host's stack checks them.
    pub fn ipv4_datagram(&self) -> Vec<u8> {
        assert!(self.vlans.is_empty() && self.src.is_ipv4() && self.proto == PROTO_TCP);
        let mut d = self.build().split_off(14);
        let ihl = 20 + self.ipv4_options;
        let csum = checksum(&d[..ihl], 0);
        d[10..12].copy_from_slice(&csum.to_be_bytes());
        let tcp_len = d.len() - ihl;
        let mut pseudo = 0u32;
        for w in d[12..20].chunks(2) {
            pseudo += u16::from_be_bytes([w[0], w[1]]) as u32;
        }
        pseudo += PROTO_TCP as u32 + tcp_len as u32;
        let csum = checksum(&d[ihl..], pseudo);
        d[ihl + 16..ihl + 18].copy_from_slice(&csum.to_be_bytes());
        d
    }
}

/// The Internet checksum of `bytes` plus a partial `sum`.
fn checksum(bytes: &[u8], mut sum: u32) -> u16 {
    for w in bytes.chunks(2) {
        sum += u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ext_len(h: u8) -> usize {
    if h == AH {
        12
    } else {
        8
    }
}

/// An ARP request frame (not IP).
pub fn arp() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 192, 0, 2, 2]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[192, 0, 2, 1]);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_frame_layout() {
        let p = Packet::tcp("198.51.100.7", SYN).with(|p| {
            p.vlans = vec![TPID_8021AD, TPID_8021Q];
            p.ipv4_options = 8;
            p.payload = 3;
        });
        let f = p.build();
        assert_eq!(&f[12..14], &[0x88, 0xa8]);
        assert_eq!(&f[16..18], &[0x81, 0x00]);
        assert_eq!(&f[20..22], &[0x08, 0x00]);
        assert_eq!(f[22], 0x47); // version 4, ihl 7
        assert_eq!(&f[34..38], &[198, 51, 100, 7]);
        assert_eq!(p.l4_offset(), 22 + 28);
        assert_eq!(f[p.l4_offset() + 13], SYN);
        assert_eq!(f.len(), p.l4_offset() + 20 + 3);
        let tot = u16::from_be_bytes([f[24], f[25]]) as usize;
        assert_eq!(tot, 28 + 20 + 3);
    }

    #[test]
    fn ipv4_datagram_checksums_verify() {
        let d = Packet::tcp("10.9.0.2", SYN)
            .with(|p| {
                p.dst = "10.9.0.1".parse().unwrap();
                p.payload = 3;
            })
            .ipv4_datagram();
        // Summing a header with its checksum in place gives all ones.
        assert_eq!(checksum(&d[..20], 0), 0);
        let mut pseudo = 0u32;
        for w in d[12..20].chunks(2) {
            pseudo += u16::from_be_bytes([w[0], w[1]]) as u32;
        }
        pseudo += 6 + (d.len() - 20) as u32;
        assert_eq!(checksum(&d[20..], pseudo), 0);
    }

    #[test]
    fn truncated_l4_shortens_the_ip_lengths() {
        let p = Packet::tcp("198.51.100.7", SYN).with(|p| {
            p.more_fragments = true;
            p.l4_truncate = Some(8);
        });
        let f = p.build();
        assert_eq!(f.len(), 14 + 20 + 8);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 28);
    }

    #[test]
    fn ipv6_chain_layout() {
        let p = Packet::tcp("2001:db8::9", ACK).with(|p| p.ipv6_ext = vec![HOPOPTS, AH, FRAGMENT]);
        let f = p.build();
        assert_eq!(f[14 + 6], HOPOPTS);
        assert_eq!(f[54], AH); // hop-by-hop's next header
        assert_eq!(f[62], FRAGMENT); // AH's next header
        assert_eq!(f[74], PROTO_TCP); // fragment's next header
        assert_eq!(p.l4_offset(), 54 + 8 + 12 + 8);
        assert_eq!(f[p.l4_offset() + 13], ACK);
    }
}
