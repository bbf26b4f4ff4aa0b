//! What a pinned XDP (or TCX) link is attached to. aya (0.14 to 0.16) does not expose
//! an XDP link's interface, so this asks the kernel directly: `BPF_OBJ_GET` on the
//! pin, then `BPF_OBJ_GET_INFO_BY_FD` (struct bpf_link_info: type, id,
//! prog_id, then the xdp member, whose first field is the ifindex, 0 once
//! the device is gone).

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// The `obj` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

/// The `info` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// A pinned XDP link as the kernel sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub link_id: u32,
    pub prog_id: u32,
    /// The interface it is attached to; 0 when the device went away (the
    /// link is then defunct: pinned, but attached to nothing).
    pub ifindex: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a bpf_attr member of the right layout for `cmd`,
    // and every pointer in it refers to a live buffer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as u32,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `enum bpf_link_type` values this reads.
const BPF_LINK_TYPE_XDP: u32 = 6;
const BPF_LINK_TYPE_TCX: u32 = 11;

/// Reads the XDP link pinned at `path`.
pub fn pinned(path: &Path) -> io::Result<LinkState> {
    read(path, BPF_LINK_TYPE_XDP, "an XDP")
}

/// Reads the TCX link pinned at `path` (its union member starts with the
/// ifindex too).
pub fn pinned_tcx(path: &Path) -> io::Result<LinkState> {
    read(path, BPF_LINK_TYPE_TCX, "a TCX")
}

fn read(path: &Path, kind: u32, what: &str) -> io::Result<LinkState> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut get = ObjAttr {
        pathname: c.as_ptr() as u64,
        ..ObjAttr::default()
    };
    let fd = bpf(BPF_OBJ_GET, &mut get)?;
    // SAFETY: BPF_OBJ_GET returned a new descriptor that we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // struct bpf_link_info is larger than what we read; the rest stays 0.
    let mut info = [0u32; 16];
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    if info[0] != kind {
        return Err(io::Error::other(format!(
            "{} is not {what} link (type {})",
            path.display(),
            info[0]
        )));
    }
    Ok(LinkState {
        link_id: info[1],
        prog_id: info[2],
        // The union starts 8-aligned, after type, id, prog_id and padding.
        ifindex: info[4],
    })
}
