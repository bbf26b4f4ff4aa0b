//! The `EVENTS` ring buffer: sources the data path saw crossing a detection
//! trigger (`filter_common::Event`). One reader only: the controller. The
//! CLI never opens it, so that it cannot take events from the controller.

use std::{
    os::fd::{AsRawFd, RawFd},
    path::Path,
};

use aya::{
    maps::{Map, MapData, RingBuf},
    Ebpf,
};
use filter_common::{maps as catalog, Event};

use crate::error::{Error, Result};

pub struct Events {
    ring: RingBuf<MapData>,
}

fn open_error(what: String) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |source| Error::Map {
        what,
        source: Box::new(source),
    }
}

impl Events {
    /// Opens the ring pinned under `dir`.
    pub fn from_pins(dir: &Path) -> Result<Events> {
        let path = dir.join(catalog::EVENTS.name);
        let what = format!("opening pinned map {}", path.display());
        let data = MapData::from_pin(&path).map_err(open_error(what.clone()))?;
        let ring = RingBuf::try_from(Map::RingBuf(data)).map_err(open_error(what))?;
        Ok(Events { ring })
    }

    /// Takes the ring out of a freshly loaded object (tests, benchmarks).
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<Events> {
        let name = catalog::EVENTS.name;
        let map = ebpf
            .take_map(name)
            .ok_or_else(|| Error::Load(format!("object has no map {name}")))?;
        let ring = RingBuf::try_from(map).map_err(open_error(format!("map {name}")))?;
        Ok(Events { ring })
    }

    /// Hands every event waiting in the ring to `f`; returns how many.
    /// Records of another size (a different build's) are skipped.
    pub fn drain(&mut self, mut f: impl FnMut(Event)) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            if item.len() != size_of::<Event>() {
                continue;
            }
            // SAFETY: `Event` is Pod and the record holds exactly one.
            let event = unsafe { (item.as_ptr() as *const Event).read_unaligned() };
            f(event);
            n += 1;
        }
        n
    }
}

/// Readable (for `tokio::io::unix::AsyncFd`) when events are waiting.
impl AsRawFd for Events {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}
