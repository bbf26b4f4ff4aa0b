//! Offsets of kernel struct members, read from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`), for the data path to read a socket's own
//! counters (`struct tcp_sock`) the way CO-RE would. Only what that needs:
//! walk the type section, find a struct by name, find a member.

use std::path::Path;

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;

/// Byte offsets in `struct tcp_sock` and `struct tcp_request_sock` the
/// data path reads; 0 where the kernel has no BTF or no such member (the
/// data path then reads nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSockOffsets {
    /// `tcp_sock.rcv_nxt` (u32): the next sequence number it expects.
    pub rcv_nxt: u32,
    /// `tcp_sock.bytes_received` (u64): payload bytes it has taken in.
    pub bytes_received: u32,
    /// `tcp_request_sock.rcv_isn` (u32): the client's initial sequence.
    pub req_rcv_isn: u32,
}

impl TcpSockOffsets {
    /// From the running kernel; zeros if its BTF cannot be read.
    pub fn from_kernel() -> TcpSockOffsets {
        Self::from_file(Path::new("/sys/kernel/btf/vmlinux")).unwrap_or_default()
    }

    pub fn from_file(path: &Path) -> Option<TcpSockOffsets> {
        let data = std::fs::read(path).ok()?;
        let off = |m| member_offset(&data, "tcp_sock", m);
        Some(TcpSockOffsets {
            rcv_nxt: off("rcv_nxt")?,
            bytes_received: off("bytes_received")?,
            req_rcv_isn: member_offset(&data, "tcp_request_sock", "rcv_isn")?,
        })
    }

    /// All known.
    pub fn complete(&self) -> bool {
        self.rcv_nxt != 0 && self.bytes_received != 0 && self.req_rcv_isn != 0
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The byte offset of `member` in `struct strukt`, from a little-endian BTF
/// blob; None if either is missing or the member is a bitfield.
/// Whether the running kernel's BTF names `name` (a function, a kfunc):
/// a probe for what the kernel offers.
pub fn kernel_names(name: &str) -> bool {
    std::fs::read("/sys/kernel/btf/vmlinux").is_ok_and(|b| names(&b, name))
}

/// Whether `name` is a whole string of the BTF blob's string section.
pub fn names(btf: &[u8], name: &str) -> bool {
    let strings = (|| {
        if u16_at(btf, 0)? != BTF_MAGIC {
            return None;
        }
        let hdr_len = u32_at(btf, 4)? as usize;
        let (str_off, str_len) = (u32_at(btf, 16)? as usize, u32_at(btf, 20)? as usize);
        btf.get(hdr_len + str_off..hdr_len + str_off + str_len)
    })();
    strings.is_some_and(|s| s.split(|&c| c == 0).any(|n| n == name.as_bytes()))
}

pub fn member_offset(btf: &[u8], strukt: &str, member: &str) -> Option<u32> {
    if u16_at(btf, 0)? != BTF_MAGIC {
        return None;
    }
    let hdr_len = u32_at(btf, 4)? as usize;
    let (type_off, type_len) = (u32_at(btf, 8)? as usize, u32_at(btf, 12)? as usize);
    let (str_off, str_len) = (u32_at(btf, 16)? as usize, u32_at(btf, 20)? as usize);
    let types = btf.get(hdr_len + type_off..hdr_len + type_off + type_len)?;
    let strings = btf.get(hdr_len + str_off..hdr_len + str_off + str_len)?;
    let name = |off: u32| -> Option<&[u8]> {
        let s = strings.get(off as usize..)?;
        Some(&s[..s.iter().position(|&c| c == 0)?])
    };
    let mut at = 0;
    while at + 12 <= types.len() {
        let name_off = u32_at(types, at)?;
        let info = u32_at(types, at + 4)?;
        let (kind, vlen, kind_flag) = ((info >> 24) & 0x1f, (info & 0xffff) as usize, info >> 31);
        at += 12;
        if kind == KIND_STRUCT && name(name_off)? == strukt.as_bytes() {
            for m in 0..vlen {
                let base = at + m * 12;
                if name(u32_at(types, base)?)? == member.as_bytes() {
                    let raw = u32_at(types, base + 8)?;
                    // With kind_flag the high byte is a bitfield size.
                    let (bitfield, bits) = match kind_flag {
                        1 => (raw >> 24, raw & 0xff_ffff),
                        _ => (0, raw),
                    };
                    return (bitfield == 0 && bits % 8 == 0).then_some(bits / 8);
                }
            }
            return None;
        }
        at += match kind {
            1 => 4,             // INT: one u32 of encoding
            3 => 12,            // ARRAY
            4 | 5 => vlen * 12, // STRUCT, UNION: members
            6 => vlen * 8,      // ENUM
            13 => vlen * 8,     // FUNC_PROTO: params
            14 => 4,            // VAR
            15 => vlen * 12,    // DATASEC
            17 => 4,            // DECL_TAG
            19 => vlen * 12,    // ENUM64
            _ => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob: an INT, a struct with three members (one a bitfield),
    /// an ENUM in between to be skipped.
    #[test]
    fn names_finds_whole_strings_only() {
        let b = blob();
        assert!(names(&b, "tcp_sock") && names(&b, "rcv_nxt"));
        assert!(!names(&b, "tcp_soc") && !names(&b, "bpf_sk_assign_tcp_reqsk"));
        assert!(!names(b"not btf", "tcp_sock"));
    }

    fn blob() -> Vec<u8> {
        let strings = b"\0int\0e\0A\0tcp_sock\0first\0rcv_nxt\0flags\0".to_vec();
        let s = |name: &str| {
            let needle = format!("\0{name}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap() as u32
                + 1
        };
        let mut t = Vec::new();
        let mut ty = |name_off: u32, info: u32, size: u32, extra: &[u32]| {
            for v in [name_off, info, size].iter().chain(extra) {
                t.extend_from_slice(&v.to_le_bytes());
            }
        };
        ty(s("int"), 1 << 24, 4, &[32]);
        ty(s("e"), (6 << 24) | 1, 4, &[s("A"), 0]);
        ty(
            s("tcp_sock"),
            (1 << 31) | (4 << 24) | 3,
            64,
            &[
                s("first"),
                1,
                0,
                s("rcv_nxt"),
                1,
                96,
                s("flags"),
                1,
                (3 << 24) | 104,
            ],
        );
        let mut b = Vec::new();
        b.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        for v in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&t);
        b.extend_from_slice(&strings);
        b
    }

    #[test]
    fn finds_members_and_refuses_the_rest() {
        let b = blob();
        assert_eq!(member_offset(&b, "tcp_sock", "first"), Some(0));
        assert_eq!(member_offset(&b, "tcp_sock", "rcv_nxt"), Some(12));
        assert_eq!(member_offset(&b, "tcp_sock", "flags"), None, "a bitfield");
        assert_eq!(member_offset(&b, "tcp_sock", "nope"), None);
        assert_eq!(member_offset(&b, "udp_sock", "first"), None);
        assert_eq!(member_offset(&b[..20], "tcp_sock", "first"), None);
        assert_eq!(member_offset(b"garbage", "tcp_sock", "first"), None);
    }

    #[test]
    fn this_kernel_has_both_tcp_sock_members() {
        // Every kernel this project supports has BTF (DESIGN.md).
        let o = TcpSockOffsets::from_kernel();
        assert!(o.complete(), "{o:?}");
        assert_ne!(o.rcv_nxt, o.bytes_received);
    }
}
