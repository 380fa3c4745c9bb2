//! What the datapath's maps cost in kernel memory, computed before they
//! are created: the per-CPU tables grow with `--max-peers` times the
//! number of *possible* CPUs (the kernel allocates every per-CPU value for
//! each of them), and that memory is charged to the agent's cgroup, so a
//! DaemonSet's fixed memory limit must know it in advance.
//!
//! The figures follow the kernel's own accounting (`memlock` in a map's
//! fdinfo, `map_mem_usage` in the kernel): exact for the arrays, which are
//! nearly all of it; the hash map's and ring buffer's fixed parts are the
//! sizes of kernel structs (measured on 6.18) and may differ by a few
//! hundred bytes on other kernels.
use anyhow::{Context as _, Result, anyhow};
use flannel_probe_common::abi::{
    MAP_INNER, MAP_MAC_INDEX, MAP_PEER_COLD, MAP_PEER_INDEX, MAP_PEERS, MAP_STATS, NUM_STATS,
    cold_slots, index_slots,
};

use super::EBPF_OBJECT;

/// `sizeof(struct bpf_array)`: the header of every array map.
const ARRAY_HEADER: u64 = 312;
/// `sizeof(struct bpf_htab)`.
const HTAB_HEADER: u64 = 896;
/// `sizeof(struct bucket)` of a hash map.
const HTAB_BUCKET: u64 = 16;
/// `sizeof(struct htab_elem)`, before the key.
const HTAB_ELEM: u64 = 48;
/// `HASHTAB_MAP_LOCK_COUNT`: per-CPU lock counters of a hash map.
const HTAB_LOCKS: u64 = 8;
/// `sizeof(struct bpf_ringbuf_map)` plus the ring's own header.
const RINGBUF_HEADER: u64 = 304;
/// Pages of a ring buffer before its data (consumer, producer positions).
const RINGBUF_META_PAGES: u64 = 3;

// Map types (`enum bpf_map_type`).
const HASH: u32 = 1;
const ARRAY: u32 = 2;
const PERF_EVENT_ARRAY: u32 = 4;
const PERCPU_HASH: u32 = 5;
const PERCPU_ARRAY: u32 = 6;
const RINGBUF: u32 = 27;

/// The map sizes the loader sets instead of the object's: the per-peer
/// tables and their indexes follow `--max-peers`.
pub(crate) fn max_entries(max_peers: u32) -> [(&'static str, u32); 6] {
    [
        (MAP_PEERS, max_peers),
        (MAP_PEER_COLD, cold_slots(max_peers)),
        (MAP_INNER, max_peers),
        (MAP_PEER_INDEX, index_slots(max_peers)),
        (MAP_MAC_INDEX, index_slots(max_peers)),
        // The programs' slots and the heartbeat (`reclaim`).
        (MAP_STATS, NUM_STATS),
    ]
}

/// One map as the kernel will create it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MapShape {
    pub name: String,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

fn round8(n: u32) -> u64 {
    u64::from(n).div_ceil(8) * 8
}

impl MapShape {
    /// Kernel memory of this map on a machine with `cpus` possible CPUs.
    pub(crate) fn bytes(&self, cpus: u64, page: u64) -> u64 {
        let n = u64::from(self.max_entries);
        let v = round8(self.value_size);
        match self.map_type {
            ARRAY => ARRAY_HEADER + n * v,
            // A pointer per entry to its per-CPU values.
            PERCPU_ARRAY => ARRAY_HEADER + n * (8 + v * cpus),
            PERF_EVENT_ARRAY => ARRAY_HEADER + n * 8,
            HASH | PERCPU_HASH => {
                let percpu = self.map_type == PERCPU_HASH;
                let buckets = n.max(1).next_power_of_two();
                // Preallocated: every element exists from the start; a
                // per-CPU element holds a pointer to its values.
                let (elem, values, extra) = if percpu {
                    (HTAB_ELEM + round8(self.key_size) + 8, v * cpus, 0)
                } else {
                    (HTAB_ELEM + round8(self.key_size) + v, 0, cpus)
                };
                HTAB_HEADER
                    + HTAB_BUCKET * buckets
                    + 4 * cpus * HTAB_LOCKS
                    + (elem + values) * (n + extra)
            }
            RINGBUF => {
                let data_pages = n.div_ceil(page);
                // Data pages are mapped twice (page pointers) to wrap.
                RINGBUF_HEADER
                    + (RINGBUF_META_PAGES + data_pages) * page
                    + (RINGBUF_META_PAGES + 2 * data_pages) * 8
            }
            // Not in our object; a plain estimate keeps the sum an upper
            // bound of the key and value bytes.
            _ => ARRAY_HEADER + n * (round8(self.key_size) + v),
        }
    }
}

/// Every map of the datapath object with the sizes the loader will give
/// it for `max_peers`.
pub(crate) fn shapes(max_peers: u32) -> Result<Vec<MapShape>> {
    let obj = aya_obj::Object::parse(EBPF_OBJECT).map_err(|e| {
        anyhow!("reading the eBPF object's maps failed ({e}): rebuild flannel-probe")
    })?;
    let set = max_entries(max_peers);
    let mut v: Vec<MapShape> = obj
        .maps
        .iter()
        .map(|(name, m)| MapShape {
            name: name.clone(),
            map_type: m.map_type(),
            key_size: m.key_size(),
            value_size: m.value_size(),
            max_entries: set
                .iter()
                .find(|(n, _)| n == name)
                .map_or(m.max_entries(), |(_, e)| *e),
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

/// The number of possible CPUs (`/sys/devices/system/cpu/possible`, e.g.
/// `0-127` or `0,2-5`): what the kernel sizes per-CPU values by.
pub(crate) fn possible_cpus() -> Result<u64> {
    let path = "/sys/devices/system/cpu/possible";
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {path} failed: is /sys mounted?"))?;
    parse_cpu_list(&text).ok_or_else(|| anyhow!("{path} says {:?}: not a CPU list", text.trim()))
}

/// Counts the CPUs of a kernel CPU list (`0-3,8`).
pub(crate) fn parse_cpu_list(text: &str) -> Option<u64> {
    let mut n = 0u64;
    for part in text.trim().split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?),
            None => {
                let a = part.parse::<u64>().ok()?;
                (a, a)
            }
        };
        n += b.checked_sub(a)? + 1;
    }
    (n > 0).then_some(n)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

/// The datapath's kernel memory for `max_peers` on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapMemory {
    pub bytes: u64,
    pub cpus: u64,
}

/// Computes [`MapMemory`] for `max_peers` on this machine.
pub fn map_memory(max_peers: u32) -> Result<MapMemory> {
    let cpus = possible_cpus()?;
    let page = page_size();
    let bytes = shapes(max_peers)?.iter().map(|m| m.bytes(cpus, page)).sum();
    Ok(MapMemory { bytes, cpus })
}

/// `n` bytes for people: `2.6 MiB`.
pub(crate) fn human(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    #[allow(clippy::cast_precision_loss)] // a figure for a log line
    let mib = n as f64 / MIB;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(map_type: u32, key: u32, value: u32, entries: u32) -> MapShape {
        MapShape {
            name: String::new(),
            map_type,
            key_size: key,
            value_size: value,
            max_entries: entries,
        }
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0,2-5,8"), Some(6));
        assert_eq!(parse_cpu_list("0-127"), Some(128));
        for bad in ["", "x", "3-1", "0-"] {
            assert_eq!(parse_cpu_list(bad), None, "{bad:?}");
        }
    }

    /// The figures the 6.18 kernel reported in fdinfo `memlock` for these
    /// maps on a 2-CPU machine (the lab test checks the live sum).
    #[test]
    fn matches_the_kernels_accounting_of_each_map_type() {
        let page = 4096;
        assert_eq!(shape(PERCPU_ARRAY, 4, 136, 4096).bytes(2, page), 1_147_192);
        assert_eq!(
            shape(PERCPU_ARRAY, 4, 16, 131_072).bytes(2, page),
            5_243_192
        );
        assert_eq!(shape(PERCPU_ARRAY, 4, 8, 9).bytes(2, page), 528);
        assert_eq!(shape(ARRAY, 4, 54, 1).bytes(2, page), 368);
        assert_eq!(shape(PERCPU_HASH, 16, 8, 1024).bytes(2, page), 107_456);
        assert_eq!(shape(RINGBUF, 0, 0, 131_072).bytes(2, page), 144_200);
    }

    #[test]
    fn the_per_peer_tables_follow_max_peers_and_the_cpus() {
        let small: u64 = shapes(4096)
            .expect("shapes")
            .iter()
            .map(|m| m.bytes(2, 4096))
            .sum();
        let big: u64 = shapes(65536)
            .expect("shapes")
            .iter()
            .map(|m| m.bytes(2, 4096))
            .sum();
        // PEERS + INNER per peer, two index slots per peer in each index.
        // A PeerSlot is 64 bytes (224 with its key and the anomaly
        // counters, which moved to the PEER_COLD pool: 1024 slots for both
        // sizes); a PEER_INDEX slot 24 (its key 16), a MAC_INDEX slot 16.
        let per_peer = (8 + 64 * 2) + (8 + 40 * 2) + 2 * (8 + 24 * 2) + 2 * (8 + 16 * 2);
        assert_eq!(big - small, (65536 - 4096) * per_peer);
        let many: u64 = shapes(4096)
            .expect("shapes")
            .iter()
            .map(|m| m.bytes(128, 4096))
            .sum();
        assert!(many > 100 << 20, "4096 peers on 128 CPUs: {}", human(many));
    }
}
