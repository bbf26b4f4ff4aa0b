//! `BPF_MAP_LOOKUP_BATCH` for per-CPU hash maps. aya (0.14 to 0.16) has no batch
//! API, and reading a large map one key at a time costs two system calls per
//! entry (~3.6 µs here): at 262 144 sources that fills a 1 s interval. The
//! batch call returns hundreds of entries per system call.
//!
//! Kernels without batch support answer EINVAL; callers then fall back to
//! aya's iterator.

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use aya::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries asked for per call.
const BATCH: usize = 1024;

/// The `batch` member of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of a per-CPU hash map as (key, one value per possible CPU);
/// with `nr_cpus` 1, of a plain hash map whose value size is a multiple of 8.
pub fn lookup_percpu<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    nr_cpus: usize,
) -> io::Result<Vec<(K, Vec<V>)>> {
    let mut out = Vec::new();
    for_each_percpu(fd, nr_cpus, |key: K, per_cpu: &[V]| {
        out.push((key, per_cpu.to_vec()))
    })?;
    Ok(out)
}

/// [`lookup_percpu`] one entry at a time, without holding the map: `f`
/// gets each key and its values (one per possible CPU) as they arrive, a
/// batch at a time. Memory stays at one batch however large the map.
pub fn for_each_percpu<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    nr_cpus: usize,
    mut f: impl FnMut(K, &[V]),
) -> io::Result<()> {
    // Per-CPU values come back padded to 8 bytes each.
    let stride = size_of::<V>().next_multiple_of(8);
    let mut capacity = BATCH;
    // The batch token is a bucket index (u32) for hash maps; 8 bytes is ample.
    let mut token_in = [0u8; 8];
    let mut token_out = [0u8; 8];
    let mut first = true;
    let mut per_cpu: Vec<V> = Vec::with_capacity(nr_cpus);
    loop {
        let mut keys = vec![0u8; capacity * size_of::<K>()];
        let mut values = vec![0u8; capacity * nr_cpus * stride];
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { token_in.as_ptr() as u64 },
            out_batch: token_out.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: capacity as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: attr points at buffers sized for `count` keys and values
        // that outlive the call; the kernel writes at most that much.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>() as u32,
            )
        };
        let err = (rc < 0).then(io::Error::last_os_error);
        match err.as_ref().and_then(io::Error::raw_os_error) {
            // A bucket holds more entries than asked for: ask for more.
            Some(libc::ENOSPC) => {
                capacity *= 2;
                continue;
            }
            Some(libc::ENOENT) | None => {}
            Some(_) => return Err(err.expect("set when an errno is")),
        }
        for i in 0..attr.count as usize {
            // SAFETY: both are Pod; the slices hold `count` complete entries.
            let key =
                unsafe { (keys.as_ptr().add(i * size_of::<K>()) as *const K).read_unaligned() };
            per_cpu.clear();
            per_cpu.extend((0..nr_cpus).map(|cpu| unsafe {
                (values.as_ptr().add((i * nr_cpus + cpu) * stride) as *const V).read_unaligned()
            }));
            f(key, &per_cpu);
        }
        if err.is_some() {
            // ENOENT: that was the last batch.
            return Ok(());
        }
        token_in = token_out;
        first = false;
    }
}
