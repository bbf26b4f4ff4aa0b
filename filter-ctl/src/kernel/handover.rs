//! The transparent cookie route's TC-ingress program (`handover`, its own
//! object: it calls the kfunc `bpf_sk_assign_tcp_reqsk`, Linux 6.9+, and
//! the filter must load on kernels without it). It is attached beside the
//! filter on every interface, over TCX, with its link pinned as
//! `handover_<iface>`; it shares `CONFIG`, `SYNCOOKIE` and `COUNTERS` with
//! the filter through their pins, and does nothing unless `SYNCOOKIE` names
//! the transparent route and the mode is `syn_cookie`.

use std::path::{Path, PathBuf};

use aya::{
    programs::{
        links::{FdLink, PinnedLink},
        tc::SchedClassifierLink,
        LinkOrder, ProgramError, SchedClassifier, TcAttach, TcAttachType,
    },
    Ebpf, EbpfLoader,
};
use filter_common::{maps as catalog, HANDOVER_PROGRAM};

use crate::{
    error::{Error, Result},
    kernel::{btf, links, loader},
};

/// The kfunc the route needs.
pub const KFUNC: &str = "bpf_sk_assign_tcp_reqsk";
const LINK_PREFIX: &str = "handover_";

/// Whether this kernel has the kfunc (its BTF names it).
pub fn available() -> bool {
    btf::kernel_names(KFUNC)
}

fn link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join(format!("{LINK_PREFIX}{iface}"))
}

/// Loads the object, its maps taken from the filter's pins under `pin_dir`
/// (which must exist: the filter is attached first).
fn load(pin_dir: &Path) -> Result<Ebpf> {
    let shared = [catalog::CONFIG, catalog::SYNCOOKIE, catalog::COUNTERS];
    let paths = loader::pin_paths(&shared, Some(pin_dir));
    let mut objects = EbpfLoader::new();
    for (name, path) in &paths {
        objects.map_pin_path(name, path.as_path());
    }
    let mut ebpf = objects
        .load(crate::HANDOVER_OBJECT)
        .map_err(|e| Error::Object(Box::new(e)))?;
    program(&mut ebpf)?
        .load()
        .map_err(|e| loader::load_error(HANDOVER_PROGRAM, e))?;
    Ok(ebpf)
}

fn program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier> {
    ebpf.program_mut(HANDOVER_PROGRAM)
        .ok_or_else(|| Error::Load(format!("object has no program {HANDOVER_PROGRAM}")))?
        .try_into()
        .map_err(|e: ProgramError| Error::Load(e.to_string()))
}

/// Attaches the program at `iface`'s TC ingress (after the filter was
/// attached there), pinning its link. Idempotent: a live link running this
/// build's program is left alone, one running another build's gets this
/// one in place, a stale one is replaced.
pub fn attach(iface: &str, ifindex: u32, pin_dir: &Path) -> Result<()> {
    let path = link_pin(pin_dir, iface);
    let mut ebpf = load(pin_dir)?;
    let prog = program(&mut ebpf)?;
    let io = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |e: String| Error::Io {
            what,
            path,
            error: std::io::Error::other(e),
        }
    };
    if path.exists() {
        match links::pinned_tcx(&path) {
            Ok(s) if s.ifindex == ifindex => {
                if loader::runs_this_build(prog.info(), s.prog_id)? {
                    return Ok(());
                }
                let pinned = PinnedLink::from_pin(&path)
                    .map_err(|e| io("opening pinned link", &path)(e.to_string()))?;
                let link = SchedClassifierLink::try_from(FdLink::from(pinned))
                    .map_err(|e| Error::Load(format!("{}: {e}", path.display())))?;
                prog.attach_to_link(link).map_err(|e| {
                    Error::Load(format!("replacing the program on {iface}'s TC link: {e}"))
                })?;
                return Ok(());
            }
            _ => std::fs::remove_file(&path).map_err(|error| Error::Io {
                what: "removing the stale link",
                path: path.clone(),
                error,
            })?,
        }
    }
    let id = prog
        .attach(
            ifindex,
            TcAttach::Tcx {
                attach_type: TcAttachType::Ingress,
                order: LinkOrder::default(),
            },
        )
        .map_err(|e| Error::Load(format!("attaching the handover program to {iface}: {e}")))?;
    let link = prog.take_link(id).map_err(|e| Error::Load(e.to_string()))?;
    let fd: FdLink = link
        .try_into()
        .map_err(|e| Error::Load(format!("the TC link of {iface}: {e}")))?;
    fd.pin(&path)
        .map_err(|e| io("pinning link at", &path)(e.to_string()))?;
    Ok(())
}

/// Whether the program is attached to `iface` (index `ifindex`) now.
pub fn live(pin_dir: &Path, iface: &str, ifindex: u32) -> bool {
    links::pinned_tcx(&link_pin(pin_dir, iface)).is_ok_and(|s| s.ifindex == ifindex)
}

/// Detaches from `iface` (nothing to do if it was not attached).
pub fn detach(iface: &str, pin_dir: &Path) -> Result<()> {
    let path = link_pin(pin_dir, iface);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(Error::Io {
            what: "removing pinned link",
            path,
            error,
        }),
    }
}
