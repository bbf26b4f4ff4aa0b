//! Loading the XDP object, attaching it, pinning its link and maps, and
//! taking it down again.
//!
//! Pin layout under the pin directory (default `/sys/fs/bpf/filter`):
//! one file per map (named as in the catalogue, `filter_common::maps`) and one
//! `link_<iface>` per attached interface. The pinned link keeps the program
//! attached after `filter-ctl` exits; the pinned maps keep every entry and
//! counter, and a later load reuses them.

use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

use aya::{
    maps::MapData,
    programs::{
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
        ProgramError, Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
use filter_common::{maps as catalog, Config, PROGRAM_NAME};

use crate::{
    error::{Error, Result},
    kernel::{handover, links, maps::Maps},
    policy::{AttachMode, Capacities},
};

const SYS_FS_BPF: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe4a11;
const LINK_PREFIX: &str = "link_";

/// The kernel's name for an attach mode.
fn xdp_mode(mode: AttachMode) -> XdpMode {
    match mode {
        AttachMode::Auto => XdpMode::Default,
        AttachMode::Native => XdpMode::Driver,
        AttachMode::Skb => XdpMode::Skb,
    }
}

/// Fails unless `dir` (or, if it does not exist yet, its nearest existing
/// ancestor) is on a BPF filesystem.
pub fn check_bpffs(dir: &Path) -> Result<()> {
    let mut probe = dir;
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p,
            None => return Err(Error::NotBpffs(dir.to_owned())),
        }
    }
    if probe != dir && probe.parent().is_none() {
        // Only "/" exists: certainly not bpffs.
        return Err(Error::NotBpffs(dir.to_owned()));
    }
    let c = CString::new(probe.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::NotBpffs(dir.to_owned()))?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(Error::Io {
            what: "statfs",
            path: probe.to_owned(),
            error: std::io::Error::last_os_error(),
        });
    }
    if st.f_type as i64 != BPF_FS_MAGIC {
        return Err(Error::NotBpffs(dir.to_owned()));
    }
    Ok(())
}

/// Like [`check_bpffs`], but if `dir` lies under `/sys/fs/bpf` and nothing
/// is mounted there yet (a host without systemd's mount, a fresh
/// namespace), mounts a bpf filesystem there first, as bpftool and libxdp
/// do. Returns whether it mounted one.
pub fn ensure_bpffs(dir: &Path) -> Result<bool> {
    let root = Path::new(SYS_FS_BPF);
    if check_bpffs(dir).is_ok() {
        return Ok(false);
    }
    if !dir.starts_with(root) || !root.is_dir() || check_bpffs(root).is_ok() {
        return check_bpffs(dir).map(|()| false);
    }
    let c = |s: &str| CString::new(s).expect("no NUL");
    let (src, target, fstype, opts) = (c("bpf"), c(SYS_FS_BPF), c("bpf"), c("mode=0700"));
    // SAFETY: valid C strings; mount(2) has no other preconditions.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            opts.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(Error::Io {
            what: "mounting a bpf filesystem on",
            path: root.to_owned(),
            error: std::io::Error::last_os_error(),
        });
    }
    check_bpffs(dir).map(|()| true)
}

/// Loads (verifies) the filter program with default map sizes. With
/// `pin_dir`, every map is reused from its pin if present, or created and
/// pinned there.
pub fn load(pin_dir: Option<&Path>) -> Result<Ebpf> {
    load_with(pin_dir, &Capacities::default())
}

/// Fails if a map pinned under `dir` has another layout than this build's
/// (state left by another version): re-adopting it would be refused by the
/// verifier at best and misread at worst.
pub fn check_pinned_layouts(dir: &Path) -> Result<()> {
    for def in catalog::ALL {
        let name = def.name;
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let what = format!("opening pinned map {}", path.display());
        let info = MapData::from_pin(&path)
            .and_then(|m| m.info())
            .map_err(|error| Error::Map {
                what,
                source: Box::new(error),
            })?;
        let found = (info.key_size(), info.value_size());
        let expected = (def.key_size, def.value_size);
        if found != expected {
            return Err(Error::IncompatiblePin {
                name: name.to_owned(),
                dir: dir.to_owned(),
                found,
                expected,
            });
        }
    }
    Ok(())
}

/// [`load`] with map sizes; a map reused from its pin keeps its size.
pub fn load_with(pin_dir: Option<&Path>, caps: &Capacities) -> Result<Ebpf> {
    if let Some(dir) = pin_dir {
        check_pinned_layouts(dir)?;
    }
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(catalog::SOURCES.name, caps.sources)
        .map_max_entries(catalog::ALLOW_V4.name, caps.allow)
        .map_max_entries(catalog::ALLOW_V6.name, caps.allow)
        .map_max_entries(catalog::BLOCK_V4.name, caps.block_exact)
        .map_max_entries(catalog::BLOCK_V6.name, caps.block_exact)
        .map_max_entries(catalog::BLOCK_NET_V4.name, caps.block_net)
        .map_max_entries(catalog::BLOCK_NET_V6.name, caps.block_net);
    // Where the kernel keeps a connection's sequence and byte counts: the
    // data path reads them at a connection's close (empty connections).
    let tcp = crate::kernel::btf::TcpSockOffsets::from_kernel();
    let sketch_key = random_key()?;
    loader
        .override_global("SKETCH_KEY", &sketch_key, true)
        .override_global("TCP_SOCK_RCV_NXT", &tcp.rcv_nxt, true)
        .override_global("TCP_SOCK_BYTES_RECEIVED", &tcp.bytes_received, true)
        .override_global("TCP_REQ_RCV_ISN", &tcp.req_rcv_isn, true);
    let paths = pin_paths(&catalog::ALL, pin_dir);
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader
        .load(crate::FILTER_OBJECT)
        .map_err(|e| Error::Object(Box::new(e)))?;
    program(&mut ebpf)?
        .load()
        .map_err(|e| load_error(PROGRAM_NAME, e))?;
    // The challenge program, entered from the filter by tail call.
    let challenge: &mut Xdp = ebpf
        .program_mut(filter_common::CHALLENGE_PROGRAM)
        .ok_or_else(|| {
            Error::Load(format!(
                "object has no program {}",
                filter_common::CHALLENGE_PROGRAM
            ))
        })?
        .try_into()
        .map_err(|e: ProgramError| Error::Load(e.to_string()))?;
    challenge
        .load()
        .map_err(|e| load_error(filter_common::CHALLENGE_PROGRAM, e))?;
    let fd = challenge
        .fd()
        .and_then(|fd| fd.try_clone().map_err(Into::into))
        .map_err(|e| Error::Load(format!("the challenge program's fd: {e}")))?;
    let jump = ebpf
        .map_mut(catalog::JUMP.name)
        .ok_or_else(|| Error::Load(format!("object has no map {}", catalog::JUMP.name)))?;
    aya::maps::ProgramArray::try_from(jump)
        .and_then(|mut slots| slots.set(0, &fd, 0))
        .map_err(|source| Error::Map {
            what: "entering the challenge program into JUMP".into(),
            source: Box::new(source),
        })?;
    Ok(ebpf)
}

/// Where each of `maps` is pinned under `pin_dir` (none without one).
pub(crate) fn pin_paths(
    maps: &[filter_common::MapDef],
    pin_dir: Option<&Path>,
) -> Vec<(&'static str, PathBuf)> {
    pin_dir
        .map(|d| maps.iter().map(|m| (m.name, d.join(m.name))).collect())
        .unwrap_or_default()
}

/// 128 random bits from the kernel's CSPRNG: the sketch's hash key.
fn random_key() -> Result<[u64; 2]> {
    let mut key = [0u8; 16];
    // SAFETY: the buffer is ours and 16 bytes long.
    let n = unsafe { libc::getrandom(key.as_mut_ptr().cast(), key.len(), 0) };
    if n != key.len() as isize {
        return Err(Error::Io {
            what: "getrandom",
            path: PathBuf::from("(sketch key)"),
            error: std::io::Error::last_os_error(),
        });
    }
    Ok([
        u64::from_le_bytes(key[..8].try_into().expect("8 bytes")),
        u64::from_le_bytes(key[8..].try_into().expect("8 bytes")),
    ])
}

/// The filter program of a loaded object.
pub fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    ebpf.program_mut(PROGRAM_NAME)
        .ok_or_else(|| Error::Load(format!("object has no program {PROGRAM_NAME}")))?
        .try_into()
        .map_err(|e: ProgramError| Error::Load(e.to_string()))
}

/// The kernel's refusal of the program `name`, with the verifier's log.
pub(crate) fn load_error(name: &str, e: ProgramError) -> Error {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => Error::Load(format!(
            "program {name}: {io_error}\nverifier log:\n{verifier_log}"
        )),
        other => Error::Load(format!("program {name}: {other}")),
    }
}

/// An exclusive lock on a pin directory, held while a controller runs
/// (flock on the directory itself: bpffs holds no regular files). Released
/// when dropped, or when the process dies.
pub struct PinLock(#[allow(dead_code)] std::os::fd::OwnedFd);

/// Takes the pin directory's lock, creating the directory on a bpf
/// filesystem first if needed; fails at once if another process holds it.
pub fn lock_pin_dir(pin_dir: &Path) -> Result<PinLock> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    if ensure_bpffs(pin_dir)? {
        log::warn!("mounted a bpf filesystem on {SYS_FS_BPF}");
    }
    std::fs::create_dir_all(pin_dir).map_err(|error| Error::Io {
        what: "creating pin directory",
        path: pin_dir.to_owned(),
        error,
    })?;
    let c = CString::new(pin_dir.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::NotBpffs(pin_dir.to_owned()))?;
    // SAFETY: a valid C string; the descriptor is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Error::Io {
            what: "opening pin directory",
            path: pin_dir.to_owned(),
            error: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: open returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a valid descriptor.
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(Error::PinDirLocked(pin_dir.to_owned()));
        }
        return Err(Error::Io {
            what: "locking pin directory",
            path: pin_dir.to_owned(),
            error,
        });
    }
    Ok(PinLock(fd))
}

/// Interface index, or a clear error.
pub fn if_index(iface: &str) -> Result<u32> {
    let c = CString::new(iface).map_err(|_| Error::UnknownInterface(iface.to_owned()))?;
    // SAFETY: valid C string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(Error::UnknownInterface(iface.to_owned())),
        i => Ok(i),
    }
}

fn link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join(format!("{LINK_PREFIX}{iface}"))
}

/// What [`attach`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Attached {
    /// Newly attached.
    New,
    /// A live link was pinned for this interface, running this build's
    /// program; nothing changed.
    Already,
    /// A live link ran another build's program: it now runs this one,
    /// swapped in place (`BPF_LINK_UPDATE`), with no moment unfiltered.
    Upgraded,
    /// A link was pinned but attached to nothing or to another device (the
    /// interface was deleted and re-created): it was dropped and the
    /// filter attached afresh.
    Reattached { why: String },
}

/// Attaches the filter to `iface` and pins the link under `pin_dir`, with
/// the maps pinned there (reused if present). `config` is written only
/// into maps created by this call: attaching never changes the
/// configuration of a running filter. Idempotent for a live link running
/// this build's program; a link from another build is upgraded in place,
/// and a stale one (its device gone) is replaced.
///
/// Where the kernel has the kfunc of the transparent cookie route, the
/// `handover` TC program is attached beside it (a failure there is logged:
/// `syn_cookie` then takes the listener-bound route).
pub fn attach(
    iface: &str,
    mode: AttachMode,
    pin_dir: &Path,
    config: &Config,
    caps: &Capacities,
) -> Result<Attached> {
    let how = attach_xdp(iface, mode, pin_dir, config, caps)?;
    if handover::available() {
        let attached = if_index(iface).and_then(|i| handover::attach(iface, i, pin_dir));
        if let Err(e) = attached {
            log::warn!(
                "{iface}: the transparent cookie route's TC program did not attach ({:#}); \
                 syn_cookie will use the listener-bound route",
                anyhow::Error::from(e)
            );
        }
    }
    Ok(how)
}

fn attach_xdp(
    iface: &str,
    mode: AttachMode,
    pin_dir: &Path,
    config: &Config,
    caps: &Capacities,
) -> Result<Attached> {
    let ifindex = if_index(iface)?;
    if ensure_bpffs(pin_dir)? {
        log::warn!("mounted a bpf filesystem on {SYS_FS_BPF}");
    }
    let link_path = link_pin(pin_dir, iface);
    let mut stale = None;
    if link_path.exists() {
        match links::pinned(&link_path) {
            Ok(s) if s.ifindex == ifindex => return refresh(iface, &link_path, s, pin_dir, caps),
            Ok(s) if s.ifindex == 0 => stale = Some("its device went away".to_owned()),
            Ok(s) => {
                stale = Some(format!(
                    "it is attached to another device (ifindex {})",
                    s.ifindex
                ))
            }
            Err(e) => stale = Some(format!("it cannot be read ({e})")),
        }
        std::fs::remove_file(&link_path).map_err(|error| Error::Io {
            what: "removing the stale link",
            path: link_path.clone(),
            error,
        })?;
    }
    std::fs::create_dir_all(pin_dir).map_err(|error| Error::Io {
        what: "creating pin directory",
        path: pin_dir.to_owned(),
        error,
    })?;
    let fresh_maps = !pin_dir.join(catalog::CONFIG.name).exists();
    let mut ebpf = load_with(Some(pin_dir), caps)?;
    if fresh_maps {
        Maps::from_ebpf(&mut ebpf)?.set_config(config)?;
    }
    let prog = program(&mut ebpf)?;
    let link_id = prog
        .attach(ifindex, xdp_mode(mode))
        .map_err(|source| Error::Attach {
            iface: iface.to_owned(),
            mode: mode.to_string(),
            hint: if mode == AttachMode::Native {
                "; the driver may lack native XDP: try --xdp-mode skb"
            } else {
                ""
            },
            error: Box::new(source),
        })?;
    let link = prog
        .take_link(link_id)
        .map_err(|e| Error::Load(e.to_string()))?;
    let fd_link: FdLink = link.try_into().map_err(|e| {
        Error::Load(format!(
            "kernel attached {iface} without a bpf_link, which cannot be pinned: {e}"
        ))
    })?;
    fd_link.pin(&link_path).map_err(|e| Error::Io {
        what: "pinning link at",
        path: link_path.clone(),
        error: std::io::Error::other(e.to_string()),
    })?;
    Ok(match stale {
        Some(why) => Attached::Reattached { why },
        None => Attached::New,
    })
}

/// Whether the program with id `running` (a pinned link's) has the tag of
/// `ours`, this build's program just loaded. Without CAP_SYS_ADMIN the
/// loaded programs cannot be listed: then false (the caller swaps its
/// program in place, which is harmless).
pub(crate) fn runs_this_build(
    ours: std::result::Result<aya::programs::ProgramInfo, ProgramError>,
    running: u32,
) -> Result<bool> {
    let ours = ours
        .map_err(|e| Error::Load(format!("reading the loaded program: {e}")))?
        .tag();
    Ok(aya::programs::loaded_programs()
        .flatten()
        .find(|p| p.id() == running)
        .is_some_and(|p| p.tag() == ours))
}

/// A live link on the right device: left alone if it runs this build's
/// program (same tag), else given this build's program in place.
fn refresh(
    iface: &str,
    link_path: &Path,
    state: links::LinkState,
    pin_dir: &Path,
    caps: &Capacities,
) -> Result<Attached> {
    let mut ebpf = load_with(Some(pin_dir), caps)?;
    let prog = program(&mut ebpf)?;
    if runs_this_build(prog.info(), state.prog_id)? {
        return Ok(Attached::Already);
    }
    let pinned = PinnedLink::from_pin(link_path).map_err(|e| Error::Io {
        what: "opening pinned link",
        path: link_path.to_owned(),
        error: std::io::Error::other(e.to_string()),
    })?;
    let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| {
        Error::Load(format!(
            "the link pinned for {iface} is not an XDP link: {e}"
        ))
    })?;
    prog.attach_to_link(link)
        .map_err(|e| Error::Load(format!("replacing the program on {iface}'s link: {e}")))?;
    log::info!("{iface}: replaced the program of another build in place");
    Ok(Attached::Upgraded)
}

/// Whether the link pinned for `iface` is live on the device of that name
/// now: what the controller checks every cycle (two syscalls, no load).
pub fn link_is_live(pin_dir: &Path, iface: &str) -> bool {
    let Ok(ifindex) = if_index(iface) else {
        return false;
    };
    links::pinned(&link_pin(pin_dir, iface)).is_ok_and(|s| s.ifindex == ifindex)
}

/// Interfaces with a pinned link under `pin_dir`.
pub fn attached_interfaces(pin_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(pin_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(LINK_PREFIX))
                .map(str::to_owned)
        })
        .collect();
    out.sort();
    out
}

/// Detaches from `iface` by removing its pinned link. With `purge`, and
/// once no interface is left attached, also removes the pinned maps (every
/// block entry and counter is then gone).
pub fn detach(iface: &str, pin_dir: &Path, purge: bool) -> Result<()> {
    check_bpffs(pin_dir)?;
    let link_path = link_pin(pin_dir, iface);
    if !link_path.exists() {
        return Err(Error::IfaceNotAttached {
            iface: iface.to_owned(),
            path: link_path,
        });
    }
    handover::detach(iface, pin_dir)?;
    let link = PinnedLink::from_pin(&link_path).map_err(|e| Error::Io {
        what: "opening pinned link",
        path: link_path.clone(),
        error: std::io::Error::other(e.to_string()),
    })?;
    // Dropping the last reference to the link detaches the program.
    drop(link.unpin().map_err(|error| Error::Io {
        what: "removing pinned link",
        path: link_path.clone(),
        error,
    })?);
    if purge && attached_interfaces(pin_dir).is_empty() {
        purge_maps(pin_dir)?;
    }
    Ok(())
}

/// Removes the map pins and the directory (if empty afterwards).
pub fn purge_maps(pin_dir: &Path) -> Result<()> {
    for def in catalog::ALL {
        let path = pin_dir.join(def.name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Io {
                    what: "removing pinned map",
                    path,
                    error: source,
                })
            }
        }
    }
    let _ = std::fs::remove_dir(pin_dir);
    Ok(())
}
