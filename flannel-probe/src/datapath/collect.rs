//! Reading the per-CPU maps into a [`Snapshot`]: plain data, summed over
//! CPUs. Two snapshots make a window ([`Snapshot::since`]).
use std::{collections::BTreeMap, net::IpAddr};

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf, Pod,
    maps::{Map, MapData, PerCpuArray, PerCpuHashMap},
};

use super::batch;
use flannel_probe_common::abi::{
    DropKey, InnerValue, MAP_DROPS, MAP_INNER, MAP_PEER_COLD, MAP_PEER_INDEX, MAP_PEERS, MAP_STATS,
    MacSlot, NUM_STATS, PeerIndexSlot, PeerKey, PeerSlot, PeerValue, STAT_COLD_OVERFLOW,
    STAT_COLD_USED, STAT_DROP_OVERFLOW, STAT_ICMP_NOT_OURS, STAT_MAC_OVERFLOW, STAT_MACS_USED,
    STAT_PEER_OVERFLOW, STAT_PEERS_USED, STAT_RX_NOT_LOCAL, key_mac, key_peer,
};
use flannel_probe_common::parse::Addr;
use serde::Serialize;

/// Every counter at one instant (or, after [`Snapshot::since`], over a window).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Outer counters per peer (IPv4 or IPv6 underlay address), both
    /// directions: `PEERS` values summed over CPUs.
    pub peers: BTreeMap<IpAddr, PeerValue>,
    /// Inner counters per VTEP MAC, both directions: `INNER` values summed
    /// over CPUs.
    pub inner: BTreeMap<[u8; 6], InnerValue>,
    /// Drops of VXLAN traffic: packets per [`DropWhere`].
    pub drops: BTreeMap<DropWhere, u64>,
    pub overflow: Overflow,
    /// Inbound traffic the datapath saw and attributed to no peer.
    pub not_ours: NotOurs,
}

/// What the uplink saw and kept out of every peer's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NotOurs {
    /// VXLAN-shaped UDP to our port addressed to another local address
    /// than the VTEP.
    pub rx_not_local: u64,
    /// ICMP port unreachable quoting a datagram the local VTEP did not send.
    pub icmp_not_ours: u64,
}

/// One kind of drop: the kernel's reason, the direction, and the peer as
/// far as the packet names it (outer address, or inner VTEP MAC on the
/// overlay device).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DropWhere {
    pub reason: u32,
    pub dir: u8,
    pub peer: Option<IpAddr>,
    pub mac: Option<[u8; 6]>,
}

/// Keys that did not fit into their maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Overflow {
    pub peers: u64,
    pub macs: u64,
    pub drops: u64,
    /// Anomalies (malformed, another VNI or port, ICMP errors, a stale
    /// MAC) of peers that found the anomaly pool (`PEER_COLD`) full: not
    /// counted for their peer.
    pub anomalies: u64,
}

impl Snapshot {
    /// Adds one CPU's value of a `DROPS` entry.
    pub fn add_drop(&mut self, key: &DropKey, packets: u64) {
        let w = DropWhere {
            reason: key.reason,
            dir: key.dir,
            peer: (key.peer != [0; 16]).then(|| super::from_addr(Addr::v6(key.peer))),
            mac: (key.mac != [0; 6]).then_some(key.mac),
        };
        *self.drops.entry(w).or_default() += packets;
    }

    /// What happened between `earlier` and `self`. Keys that only appear
    /// now count from zero; counters never go backwards (maps are never
    /// cleared while the probe runs), saturating guards the impossible.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let peers = diff(&self.peers, &earlier.peers, |now, then| *now - *then);
        let inner = diff(&self.inner, &earlier.inner, |now, then| *now - *then);
        let drops = diff(&self.drops, &earlier.drops, |now, then| {
            now.saturating_sub(*then)
        });
        Snapshot {
            peers,
            inner,
            drops,
            overflow: Overflow {
                peers: self.overflow.peers.saturating_sub(earlier.overflow.peers),
                macs: self.overflow.macs.saturating_sub(earlier.overflow.macs),
                drops: self.overflow.drops.saturating_sub(earlier.overflow.drops),
                anomalies: self
                    .overflow
                    .anomalies
                    .saturating_sub(earlier.overflow.anomalies),
            },
            not_ours: NotOurs {
                rx_not_local: (self.not_ours.rx_not_local)
                    .saturating_sub(earlier.not_ours.rx_not_local),
                icmp_not_ours: (self.not_ours.icmp_not_ours)
                    .saturating_sub(earlier.not_ours.icmp_not_ours),
            },
        }
    }
}

/// `now` minus `then`, key by key; a key only in `now` counts from zero.
/// Both maps are walked in order together: no lookup per key. The result
/// is a clone of `now` changed in place: collecting into a new map
/// buffered and re-checked the order of every entry first (at 100 000
/// peers, 20 MB more per read).
fn diff<K: Ord + Copy, V: Copy + Default>(
    now: &BTreeMap<K, V>,
    then: &BTreeMap<K, V>,
    sub: impl Fn(&V, &V) -> V,
) -> BTreeMap<K, V> {
    let mut out = now.clone();
    let mut old = then.iter().peekable();
    for (k, v) in &mut out {
        while old.next_if(|(o, _)| *o < k).is_some() {}
        let base = old
            .next_if(|(o, _)| *o == k)
            .map(|(_, b)| *b)
            .unwrap_or_default();
        *v = sub(v, &base);
    }
    out
}

fn per_cpu_hash<'a, K: Pod, V: Pod>(
    ebpf: &'a Ebpf,
    name: &str,
) -> Result<(PerCpuHashMap<&'a MapData, K, V>, &'a MapData)> {
    let map = ebpf
        .map(name)
        .ok_or_else(|| anyhow!("the eBPF object has no {name} map: rebuild flannel-probe"))?;
    let Map::PerCpuHashMap(data) = map else {
        return Err(anyhow!(
            "{name} is not a per-CPU hash map: rebuild flannel-probe"
        ));
    };
    let typed =
        PerCpuHashMap::try_from(map).with_context(|| format!("opening the {name} map failed"))?;
    Ok((typed, data))
}

/// Every entry of a per-CPU hash map with its values summed over CPUs, in
/// the map's order.
fn summed<K: Pod + PartialEq, V: Pod + Default>(
    ebpf: &Ebpf,
    name: &str,
    add: fn(&mut V, &V),
) -> Result<Vec<(K, V)>> {
    let (map, data) = per_cpu_hash::<K, V>(ebpf, name)?;
    let mut out: Vec<(K, V)> = Vec::new();
    batch::for_each(&map, data, |k: &K, v: &V| fold_cpu(&mut out, k, v, add))
        .with_context(|| format!("reading the {name} map failed"))?;
    Ok(out)
}

fn add_peer_value(a: &mut PeerValue, b: &PeerValue) {
    *a += *b;
}

fn add_inner_value(a: &mut InnerValue, b: &InnerValue) {
    *a += *b;
}

/// Adds one CPU's value of `key` to `out`, where the readers hand over a
/// key's CPU values one after the other.
fn fold_cpu<K: PartialEq + Copy, V: Default>(
    out: &mut Vec<(K, V)>,
    key: &K,
    v: &V,
    add: fn(&mut V, &V),
) {
    match out.last_mut() {
        Some((last, sum)) if last == key => add(sum, v),
        _ => {
            let mut sum = V::default();
            add(&mut sum, v);
            out.push((*key, sum));
        }
    }
}

/// Entries above which `PEERS` and `INNER` are read side by side: the
/// kernel spends hundreds of nanoseconds per entry handing them over, and
/// a thread costs tens of microseconds to start.
pub(super) const PARALLEL_ABOVE: usize = 2000;

/// Every CPU's values of `STATS`, by slot.
fn read_stats(ebpf: &Ebpf) -> Result<Vec<Vec<u64>>> {
    let (stats, data) = per_cpu_array::<u64>(ebpf, MAP_STATS)?;
    // Slot by slot, each slot's CPUs one after the other.
    let mut all = Vec::new();
    batch::for_each_slot(&stats, data, NUM_STATS, |_, _, v: &u64| all.push(*v))
        .with_context(|| format!("reading the {MAP_STATS} map failed"))?;
    let cpus = all.len() / NUM_STATS as usize;
    Ok(all.chunks(cpus.max(1)).map(<[u64]>::to_vec).collect())
}

fn per_cpu_array<'a, S: Pod>(
    ebpf: &'a Ebpf,
    name: &str,
) -> Result<(PerCpuArray<&'a MapData, S>, &'a MapData)> {
    let map = ebpf
        .map(name)
        .ok_or_else(|| anyhow!("the eBPF object has no {name} map: rebuild flannel-probe"))?;
    let Map::PerCpuArray(data) = map else {
        return Err(anyhow!(
            "{name} is not a per-CPU array: rebuild flannel-probe"
        ));
    };
    let typed =
        PerCpuArray::try_from(map).with_context(|| format!("opening the {name} map failed"))?;
    Ok((typed, data))
}

/// The used slots of a slot table (`INNER`): each CPU's slot with its key,
/// where the CPU has used it, into `out`.
fn read_slots<S: Pod, R: Copy + Default + PartialEq, K, V: Copy>(
    ebpf: &Ebpf,
    name: &str,
    used: u32,
    split: fn(&S) -> (R, V),
    key: fn(R) -> K,
    out: &mut Vec<(K, V)>,
) -> Result<()> {
    let (typed, data) = per_cpu_array::<S>(ebpf, name)?;
    batch::for_each_slot(&typed, data, used, |_, _, s: &S| {
        let (k, v) = split(s);
        // The default key (0, or [0, 0]) is a slot this CPU never used.
        if k != R::default() {
            out.push((key(k), v));
        }
    })
    .with_context(|| format!("reading the {name} map failed"))
}

/// The rows of one read of a slot table, kept from read to read: at
/// 100 000 peers they are 20 MB, and a fresh buffer each second faulted in
/// every page of it again (a fifth of the read).
#[derive(Debug)]
pub(super) struct Rows<K, V> {
    /// (key, one CPU's value), in slot order.
    rows: Vec<(K, V)>,
    /// (key, position in `rows`), sorted.
    order: Vec<(K, u32)>,
}

impl<K, V> Default for Rows<K, V> {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            order: Vec::new(),
        }
    }
}

impl<K: Ord + Copy, V: Copy> Rows<K, V> {
    /// One value per key, summed over the CPUs that hold it (each CPU keeps
    /// a key in a slot of its own); the map is built from sorted input in
    /// one pass. What is sorted is (key, position), not the values: a
    /// peer's is 208 bytes, and moving them about was most of the sort at
    /// 100 000 peers. The buffers are left empty, their memory kept.
    fn fold(&mut self, add: fn(&mut V, &V)) -> BTreeMap<K, V> {
        let rows = &self.rows;
        self.order.clear();
        // Positions fit u32: a table has at most u32::MAX slots per CPU,
        // and the rows of one read are far fewer.
        self.order
            .extend(rows.iter().enumerate().map(|(i, (k, _))| (*k, i as u32)));
        self.order.sort_unstable();
        let mut sorted = self.order.iter().peekable();
        let map = std::iter::from_fn(|| {
            let &(k, i) = sorted.next()?;
            let mut sum = rows[i as usize].1;
            while let Some(&(_, j)) = sorted.next_if(|(o, _)| *o == k) {
                add(&mut sum, &rows[j as usize].1);
            }
            Some((k, sum))
        })
        .collect();
        self.rows.clear();
        map
    }
}

/// The buffers [`read`] fills, kept by the `Datapath` between reads.
#[derive(Debug, Default)]
pub(super) struct ReadBuffers {
    peers: Rows<IpAddr, PeerValue>,
    inner: Rows<[u8; 6], InnerValue>,
}

/// Each CPU's keys of its `PEERS` and `PEER_COLD` slots, from its
/// `PEER_INDEX`, kept from one read to the next.
///
/// The index is hashed, so finding a slot's key means reading all of it
/// (at 128 CPUs and 4096 peers, 25 MB). But a CPU's slots are taken in
/// order and never given back, so a slot's key never changes: the index
/// is read again only when some CPU has taken a slot the cache does not
/// know, as when a new peer appears.
#[derive(Debug, Default)]
pub(super) struct SlotKeys {
    /// By CPU, the keys of slots `0..len`.
    hot: Vec<Vec<PeerKey>>,
    cold: Vec<Vec<PeerKey>>,
    /// Times the index was read (`Datapath::index_reads`).
    pub(super) index_reads: u64,
}

impl SlotKeys {
    /// Brings the keys up to `used[cpu]` hot and `cold_used[cpu]` cold
    /// slots of each CPU (`STATS`), reading the index if needed.
    fn update(&mut self, ebpf: &Ebpf, used: &[u64], cold_used: &[u64]) -> Result<()> {
        let behind = |known: &[Vec<PeerKey>], want: &[u64]| {
            want.iter()
                .enumerate()
                .any(|(cpu, n)| known.get(cpu).map_or(0, Vec::len) < *n as usize)
        };
        if !behind(&self.hot, used) && !behind(&self.cold, cold_used) {
            return Ok(());
        }
        let (index, data) = per_cpu_array::<PeerIndexSlot>(ebpf, MAP_PEER_INDEX)?;
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, e)| e)
            .context("counting the possible CPUs failed")?;
        let width = |v: &[u64], cpu: usize| v.get(cpu).map_or(0, |n| *n as usize);
        let mut hot: Vec<Vec<Option<PeerKey>>> =
            (0..cpus).map(|c| vec![None; width(used, c)]).collect();
        let mut cold: Vec<Vec<Option<PeerKey>>> =
            (0..cpus).map(|c| vec![None; width(cold_used, c)]).collect();
        batch::for_each_slot(&index, data, index.len(), |_, cpu, e: &PeerIndexSlot| {
            if e.key == PeerKey::default() {
                return;
            }
            if let Some(k) = hot.get_mut(cpu).and_then(|v| v.get_mut(e.slot as usize)) {
                *k = Some(e.key);
            }
            if let Some(c) = e.cold.checked_sub(1)
                && let Some(k) = cold.get_mut(cpu).and_then(|v| v.get_mut(c as usize))
            {
                *k = Some(e.key);
            }
        })
        .with_context(|| format!("reading the {MAP_PEER_INDEX} map failed"))?;
        self.index_reads += 1;
        // Up to the first slot whose entry was not there yet: the datapath
        // writes the entry before it counts the slot, but without a barrier
        // the agent may see the count first (not on x86). Later slots wait
        // for the next read.
        let known = |v: Vec<Vec<Option<PeerKey>>>| -> Vec<Vec<PeerKey>> {
            v.into_iter()
                .map(|keys| keys.into_iter().map_while(|k| k).collect())
                .collect()
        };
        self.hot = known(hot);
        self.cold = known(cold);
        Ok(())
    }
}

/// Every CPU's values of a keyless slot table, each with the key
/// `keys[cpu][slot]` (slots without one are skipped: the next read has
/// them).
fn read_keyless<S: Pod>(
    ebpf: &Ebpf,
    name: &str,
    keys: &[Vec<PeerKey>],
    value: fn(&S) -> PeerValue,
    out: &mut Vec<(IpAddr, PeerValue)>,
) -> Result<()> {
    let n = keys.iter().map(Vec::len).max().unwrap_or(0);
    if n == 0 {
        return Ok(());
    }
    let (typed, data) = per_cpu_array::<S>(ebpf, name)?;
    batch::for_each_slot(&typed, data, n as u32, |slot, cpu, s: &S| {
        if let Some(k) = keys.get(cpu).and_then(|v| v.get(slot as usize)) {
            out.push((super::from_addr(key_peer(*k)), value(s)));
        }
    })
    .with_context(|| format!("reading the {name} map failed"))
}

fn read_peers(
    ebpf: &Ebpf,
    keys: &mut SlotKeys,
    rows: &mut Rows<IpAddr, PeerValue>,
    used: &[u64],
    cold_used: &[u64],
) -> Result<BTreeMap<IpAddr, PeerValue>> {
    keys.update(ebpf, used, cold_used)?;
    rows.rows.reserve(used.iter().sum::<u64>() as usize);
    read_keyless(ebpf, MAP_PEERS, &keys.hot, PeerSlot::value, &mut rows.rows)?;
    read_keyless(
        ebpf,
        MAP_PEER_COLD,
        &keys.cold,
        |v: &PeerValue| *v,
        &mut rows.rows,
    )?;
    Ok(rows.fold(add_peer_value))
}

fn read_inner(
    ebpf: &Ebpf,
    rows: &mut Rows<[u8; 6], InnerValue>,
    used: u32,
) -> Result<BTreeMap<[u8; 6], InnerValue>> {
    let split = |s: &MacSlot| (s.key, s.v);
    read_slots(ebpf, MAP_INNER, used, split, key_mac, &mut rows.rows)?;
    Ok(rows.fold(add_inner_value))
}

/// Reads and sums every map; `parallel` reads the two big ones at once
/// (the caller knows from the last read whether they are big).
pub(super) fn read(
    ebpf: &Ebpf,
    keys: &mut SlotKeys,
    bufs: &mut ReadBuffers,
    parallel: bool,
) -> Result<Snapshot> {
    let mut snap = Snapshot::default();
    let stats = read_stats(ebpf)?;
    let sum = |i: u32| stats.get(i as usize).map_or(0, |v| v.iter().sum());
    // Each CPU fills its slots from 0: read as far as the furthest CPU.
    let used = |i: u32| {
        stats
            .get(i as usize)
            .and_then(|v| v.iter().max())
            .map_or(0, |n| u32::try_from(*n).unwrap_or(u32::MAX))
    };
    const { assert!(STAT_COLD_OVERFLOW < NUM_STATS && STAT_COLD_USED < NUM_STATS) };
    snap.overflow = Overflow {
        peers: sum(STAT_PEER_OVERFLOW),
        macs: sum(STAT_MAC_OVERFLOW),
        drops: sum(STAT_DROP_OVERFLOW),
        anomalies: sum(STAT_COLD_OVERFLOW),
    };
    snap.not_ours = NotOurs {
        rx_not_local: sum(STAT_RX_NOT_LOCAL),
        icmp_not_ours: sum(STAT_ICMP_NOT_OURS),
    };
    let per_cpu = |i: u32| stats.get(i as usize).map_or(&[][..], Vec::as_slice);
    let (peers_used, cold_used) = (per_cpu(STAT_PEERS_USED), per_cpu(STAT_COLD_USED));
    let macs_used = used(STAT_MACS_USED);
    if parallel {
        let (peers, inner) = std::thread::scope(|s| {
            let inner = s.spawn(|| read_inner(ebpf, &mut bufs.inner, macs_used));
            let peers = read_peers(ebpf, keys, &mut bufs.peers, peers_used, cold_used);
            let inner = inner
                .join()
                .unwrap_or_else(|_| Err(anyhow!("reading the {MAP_INNER} map panicked")));
            (peers, inner)
        });
        snap.peers = peers?;
        snap.inner = inner?;
    } else {
        snap.peers = read_peers(ebpf, keys, &mut bufs.peers, peers_used, cold_used)?;
        snap.inner = read_inner(ebpf, &mut bufs.inner, macs_used)?;
    }
    // The drop map belongs to an optional program: absent in older objects.
    if ebpf.map(MAP_DROPS).is_some() {
        let drops = summed::<DropKey, u64>(ebpf, MAP_DROPS, |a, b| *a += b)?;
        for (key, n) in &drops {
            snap.add_drop(key, *n);
        }
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use flannel_probe_common::abi::{InnerCounters, PeerCounters};

    use super::*;

    /// Folds `slots` as a read does, through one kept buffer.
    fn fold_sorted(slots: Vec<(IpAddr, PeerValue)>) -> BTreeMap<IpAddr, PeerValue> {
        let mut rows = Rows {
            rows: slots,
            order: Vec::new(),
        };
        let out = rows.fold(add_peer_value);
        assert!(rows.rows.is_empty(), "the buffer is emptied, kept");
        out
    }

    fn counters(packets: u64) -> PeerCounters {
        PeerCounters {
            packets,
            bytes: packets * 100,
            ..Default::default()
        }
    }

    #[test]
    fn each_cpus_slots_are_summed_per_peer_and_direction() {
        let (a, b) = (IpAddr::from([192, 0, 2, 11]), IpAddr::from([192, 0, 2, 12]));
        let cpu = |rx, tx| PeerValue {
            rx: counters(rx),
            tx: counters(tx),
        };
        // CPU 0 met a then b, CPU 1 only b: slots in another order.
        let slots = vec![(a, cpu(2, 1)), (b, cpu(0, 5)), (b, cpu(3, 0))];
        let out = fold_sorted(slots);
        assert_eq!(out.len(), 2);
        assert_eq!(out[&a].rx.packets, 2);
        assert_eq!(out[&a].rx.bytes, 200);
        assert_eq!(out[&a].tx.packets, 1);
        assert_eq!(out[&b].rx.packets, 3);
        assert_eq!(out[&b].tx.packets, 5);
        assert_eq!(out[&b].tx.bytes, 500);
    }

    #[test]
    fn a_kept_buffer_carries_nothing_from_one_read_to_the_next() {
        let (a, b) = (IpAddr::from([192, 0, 2, 11]), IpAddr::from([192, 0, 2, 12]));
        let v = |rx| PeerValue {
            rx: counters(rx),
            ..Default::default()
        };
        let mut rows = Rows::default();
        rows.rows.extend([(b, v(4)), (a, v(1)), (b, v(2))]);
        let first = rows.fold(add_peer_value);
        assert_eq!((first[&a].rx.packets, first[&b].rx.packets), (1, 6));
        let kept = rows.rows.capacity();
        assert!(kept >= 3, "the memory stays");
        // The next read: cumulative counts, one CPU's slot of b only.
        rows.rows.push((b, v(9)));
        let second = rows.fold(add_peer_value);
        assert_eq!(second.len(), 1, "{second:?}");
        assert_eq!(second[&b].rx.packets, 9);
        assert_eq!(rows.rows.capacity(), kept);
    }

    #[test]
    fn the_last_seen_fields_come_from_the_cpu_that_saw_them() {
        let a = IpAddr::from([192, 0, 2, 11]);
        let saw = PeerValue {
            rx: PeerCounters {
                last_inner_src: [2, 0, 0, 0, 0, 1],
                last_other_vni: 7,
                other_vni: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        for slots in [
            vec![(a, saw), (a, PeerValue::default())],
            vec![(a, PeerValue::default()), (a, saw)],
        ] {
            let out = fold_sorted(slots);
            assert_eq!(out[&a].rx.last_inner_src, [2, 0, 0, 0, 0, 1]);
            assert_eq!(out[&a].rx.last_other_vni, 7);
            assert_eq!(out[&a].rx.other_vni, 1);
        }
    }

    #[test]
    fn a_hash_maps_cpu_values_arrive_together_and_are_summed() {
        let (k1, k2) = (
            DropKey::default(),
            DropKey {
                reason: 2,
                ..Default::default()
            },
        );
        let mut out = Vec::new();
        for (k, v) in [(k1, 1u64), (k1, 2), (k2, 5), (k2, 0)] {
            fold_cpu(&mut out, &k, &v, |a, b| *a += b);
        }
        assert_eq!(out, vec![(k1, 3), (k2, 5)]);
    }

    #[test]
    fn drop_peers_are_ipv4_when_mapped_and_ipv6_otherwise() {
        let mut snap = Snapshot::default();
        let v4: std::net::Ipv4Addr = "192.0.2.11".parse().expect("IPv4");
        let v6: std::net::Ipv6Addr = "fd00::2".parse().expect("IPv6");
        for (peer, n) in [
            (v4.to_ipv6_mapped().octets(), 2),
            (v6.octets(), 3),
            ([0; 16], 5),
        ] {
            snap.add_drop(
                &DropKey {
                    reason: 2,
                    peer,
                    ..Default::default()
                },
                n,
            );
        }
        let by_peer: Vec<(Option<IpAddr>, u64)> =
            snap.drops.iter().map(|(w, n)| (w.peer, *n)).collect();
        assert_eq!(
            by_peer,
            vec![(None, 5), (Some(v4.into()), 2), (Some(v6.into()), 3)]
        );
        assert_eq!(
            super::super::to_addr(v4.into()).octets(),
            v4.to_ipv6_mapped().octets()
        );
        assert_eq!(
            super::super::from_addr(Addr::v6(v6.octets())),
            IpAddr::V6(v6)
        );
    }

    #[test]
    fn a_window_is_the_difference_of_two_snapshots() {
        let mut then = Snapshot::default();
        let mut now = Snapshot::default();
        let a = IpAddr::from([192, 0, 2, 12]);
        let b = IpAddr::from([192, 0, 2, 13]);
        then.peers.insert(
            a,
            PeerValue {
                tx: counters(10),
                ..Default::default()
            },
        );
        // Only in the earlier one: absent from the window.
        then.peers
            .insert(IpAddr::from([192, 0, 2, 1]), PeerValue::default());
        now.peers.insert(
            a,
            PeerValue {
                tx: PeerCounters {
                    icmp_port_unreachable: 1,
                    ..counters(15)
                },
                ..Default::default()
            },
        );
        now.peers.insert(
            b,
            PeerValue {
                rx: counters(10),
                ..Default::default()
            },
        );
        now.inner.insert(
            [1; 6],
            InnerValue {
                rx: InnerCounters {
                    packets: 3,
                    bytes: 300,
                },
                ..Default::default()
            },
        );
        let w = now.since(&then);
        assert_eq!(w.peers.len(), 2);
        assert_eq!(w.peers[&a].tx.packets, 5);
        assert_eq!(w.peers[&a].tx.bytes, 500);
        assert_eq!(w.peers[&a].tx.icmp_port_unreachable, 1);
        assert_eq!(w.peers[&b].rx.packets, 10);
        assert_eq!(w.inner[&[1; 6]].rx.packets, 3);
    }
}
