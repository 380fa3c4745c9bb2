//! Reading per-CPU maps in a few `BPF_MAP_LOOKUP_BATCH` calls (Linux 5.6+)
//! instead of one or two `bpf()` calls per entry: at 10 000 peers the maps
//! hold 20 000 entries, and aya 0.14 only reads key by key.
//!
//! Hand-written on purpose: aya 0.14 (pinned, see the workspace Cargo.toml)
//! has no batch map API; aya-rs/aya#1434, which adds one, is still open.
//! When a release with it is usable here, this module goes.
use std::{
    io,
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr,
};

use aya::{
    Pod,
    maps::{MapData, PerCpuArray, PerCpuHashMap},
};
use aya_obj::generated::{bpf_attr, bpf_cmd};

/// Entries asked for per call. The kernel answers ENOSPC when one hash
/// bucket holds more than this; the reader then doubles it.
const FIRST_BATCH: usize = 4096;

/// The kernel does not know `BPF_MAP_LOOKUP_BATCH` (or not for this map
/// type): the caller reads key by key instead.
fn unsupported(e: &io::Error) -> bool {
    // ENOTSUPP (524) is the kernel-internal code some versions leak.
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EOPNOTSUPP | 524)
    )
}

/// Calls `f` with every key of `map` and each CPU's value of it.
///
/// Uses batched lookups; falls back to aya's per-key iteration on kernels
/// without them. Entries added or removed during the walk may or may not
/// be seen (as with any map walk); the probe never removes entries.
pub(super) fn for_each<K: Pod, V: Pod>(
    map: &PerCpuHashMap<&MapData, K, V>,
    data: &MapData,
    mut f: impl FnMut(&K, &V),
) -> io::Result<()> {
    // Falling back after some entries were handed over would count them
    // twice: only a kernel that refuses the first call gets the fallback.
    let mut delivered = false;
    let batched = lookup_batch(data, None, &mut |k: &K, _, v: &V| {
        delivered = true;
        f(k, v);
    });
    match batched {
        Err(e) if unsupported(&e) && !delivered => {}
        other => return other,
    }
    for item in map {
        let (key, values) = item.map_err(io::Error::other)?;
        for v in values.iter() {
            f(&key, v);
        }
    }
    Ok(())
}

/// Calls `f(slot, cpu, value)` with each CPU's value of the first `n`
/// slots of a per-CPU array, in a batch where the kernel has them, else
/// slot by slot.
pub(super) fn for_each_slot<V: Pod>(
    map: &PerCpuArray<&MapData, V>,
    data: &MapData,
    n: u32,
    mut f: impl FnMut(u32, usize, &V),
) -> io::Result<()> {
    if n == 0 {
        return Ok(());
    }
    let mut delivered = false;
    let batched = lookup_batch(data, Some(n as usize), &mut |i: &u32, cpu, v: &V| {
        delivered = true;
        f(*i, cpu, v);
    });
    match batched {
        Err(e) if unsupported(&e) && !delivered => {}
        other => return other,
    }
    for i in 0..n {
        let values = map.get(&i, 0).map_err(io::Error::other)?;
        for (cpu, v) in values.iter().enumerate() {
            f(i, cpu, v);
        }
    }
    Ok(())
}

/// The batched walk: every entry, or the first `limit` (the order is the
/// map's: index order for arrays), each CPU's value with its CPU.
fn lookup_batch<K: Pod, V: Pod>(
    data: &MapData,
    limit: Option<usize>,
    f: &mut impl FnMut(&K, usize, &V),
) -> io::Result<()> {
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
    // The kernel lays out one value per possible CPU, each rounded up to 8
    // bytes (bpf_map_value_size()).
    let slot = size_of::<V>().next_multiple_of(8);
    let stride = slot * cpus;
    let mut batch = FIRST_BATCH;
    let mut keys: Vec<u8> = Vec::new();
    let mut values: Vec<u64> = Vec::new();
    // The kernel's cursor for hash maps is a bucket index (u32); 8 bytes
    // leave room for whatever a later kernel keeps there.
    let mut token = [0u64; 1];
    let mut first = true;
    let mut left = limit.unwrap_or(usize::MAX);
    loop {
        let batch_now = batch.min(left);
        if batch_now == 0 {
            return Ok(());
        }
        // Sized for this call, not the largest: reading 10 slots of a
        // per-CPU array should not fault in a megabyte every second.
        keys.resize(batch_now * size_of::<K>(), 0);
        values.resize(batch_now * stride / 8, 0);
        // SAFETY: bpf_attr is plain data; all-zero is its "unset" state.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        // SAFETY: writing the batch member of a zeroed union.
        unsafe {
            let b = &mut attr.batch;
            b.in_batch = if first { 0 } else { token.as_ptr() as u64 };
            b.out_batch = token.as_mut_ptr() as u64;
            b.keys = keys.as_mut_ptr() as u64;
            b.values = values.as_mut_ptr() as u64;
            b.count = u32::try_from(batch_now).unwrap_or(u32::MAX);
            b.map_fd = data.fd().as_fd().as_raw_fd() as u32;
        }
        // SAFETY: attr points at buffers sized for `count` keys and values,
        // alive for the whole call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                bpf_cmd::BPF_MAP_LOOKUP_BATCH as libc::c_long,
                ptr::from_mut(&mut attr),
                size_of::<bpf_attr>(),
            )
        };
        let end = if rc < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // The walk is over; this last call may still have returned
                // entries.
                Some(libc::ENOENT) => true,
                // A bucket did not fit: nothing was returned, ask for more.
                Some(libc::ENOSPC) if batch < (1 << 20) => {
                    batch *= 2;
                    continue;
                }
                _ => return Err(e),
            }
        } else {
            false
        };
        // SAFETY: the kernel wrote `count` back into the union member it read.
        let got = unsafe { attr.batch.count } as usize;
        let got = got.min(batch_now);
        left -= got;
        let vbytes = values.as_ptr().cast::<u8>();
        for i in 0..got {
            // SAFETY: i < got <= batch_now, so both reads stay inside the
            // buffers; Pod types accept any bytes; reads are unaligned-safe.
            let key: K =
                unsafe { ptr::read_unaligned(keys.as_ptr().add(i * size_of::<K>()).cast()) };
            for cpu in 0..cpus {
                // SAFETY: as above, slot `cpu` of entry `i`.
                let v: V =
                    unsafe { ptr::read_unaligned(vbytes.add(i * stride + cpu * slot).cast()) };
                f(&key, cpu, &v);
            }
        }
        if end {
            return Ok(());
        }
        first = false;
    }
}
