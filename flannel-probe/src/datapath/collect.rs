//! Reading the per-CPU maps into a [`Snapshot`]: plain data, summed over
//! CPUs. Two snapshots make a window ([`Snapshot::since`]).
use std::{collections::BTreeMap, net::Ipv4Addr};

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf, Pod,
    maps::{Map, MapData, PerCpuArray, PerCpuHashMap},
};

use super::batch;
use flannel_probe_common::abi::{
    DIR_RX, DropKey, InnerCounters, MAP_DROPS, MAP_INNER, MAP_PEERS, MAP_STATS, MacKey, NUM_STATS,
    PeerCounters, PeerKey, STAT_DROP_OVERFLOW, STAT_MAC_OVERFLOW, STAT_PEER_OVERFLOW,
};
use serde::Serialize;

/// Outer counters of one peer, both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerTotals {
    pub rx: PeerCounters,
    pub tx: PeerCounters,
}

/// Inner counters of one VTEP MAC, both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InnerTotals {
    pub rx: InnerCounters,
    pub tx: InnerCounters,
}

/// Every counter at one instant (or, after [`Snapshot::since`], over a window).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub peers: BTreeMap<Ipv4Addr, PeerTotals>,
    pub inner: BTreeMap<[u8; 6], InnerTotals>,
    /// Drops of VXLAN traffic: packets per [`DropWhere`].
    pub drops: BTreeMap<DropWhere, u64>,
    pub overflow: Overflow,
}

/// One kind of drop: the kernel's reason, the direction, and the peer as
/// far as the packet names it (outer address, or inner VTEP MAC on the
/// overlay device).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DropWhere {
    pub reason: u32,
    pub dir: u8,
    pub peer: Option<Ipv4Addr>,
    pub mac: Option<[u8; 6]>,
}

/// Keys that did not fit into their maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Overflow {
    pub peers: u64,
    pub macs: u64,
    pub drops: u64,
}

fn add_peer(a: &mut PeerCounters, b: &PeerCounters) {
    a.packets += b.packets;
    a.bytes += b.bytes;
    a.malformed += b.malformed;
    a.other_vni += b.other_vni;
    a.icmp_port_unreachable += b.icmp_port_unreachable;
    a.other_port += b.other_port;
    if b.last_other_port != 0 {
        a.last_other_port = b.last_other_port;
    }
    if b.last_other_vni != 0 {
        a.last_other_vni = b.last_other_vni;
    }
    if b.last_inner_src != [0; 6] {
        a.last_inner_src = b.last_inner_src;
    }
}

fn sub_peer(now: &PeerCounters, then: &PeerCounters) -> PeerCounters {
    PeerCounters {
        packets: now.packets.saturating_sub(then.packets),
        bytes: now.bytes.saturating_sub(then.bytes),
        malformed: now.malformed.saturating_sub(then.malformed),
        other_vni: now.other_vni.saturating_sub(then.other_vni),
        icmp_port_unreachable: now
            .icmp_port_unreachable
            .saturating_sub(then.icmp_port_unreachable),
        other_port: now.other_port.saturating_sub(then.other_port),
        last_other_vni: now.last_other_vni,
        last_other_port: now.last_other_port,
        _pad: 0,
        last_inner_src: now.last_inner_src,
        _pad2: [0; 2],
    }
}

fn sub_inner(now: &InnerCounters, then: &InnerCounters) -> InnerCounters {
    InnerCounters {
        packets: now.packets.saturating_sub(then.packets),
        bytes: now.bytes.saturating_sub(then.bytes),
    }
}

impl Snapshot {
    /// Adds one CPU's value of a `PEERS` entry.
    pub fn add_peer(&mut self, key: &PeerKey, v: &PeerCounters) {
        let t = self.peers.entry(Ipv4Addr::from(key.addr)).or_default();
        add_peer(
            if key.dir == DIR_RX {
                &mut t.rx
            } else {
                &mut t.tx
            },
            v,
        );
    }

    /// Adds one CPU's value of an `INNER` entry.
    pub fn add_inner(&mut self, key: &MacKey, v: &InnerCounters) {
        let t = self.inner.entry(key.mac).or_default();
        let side = if key.dir == DIR_RX {
            &mut t.rx
        } else {
            &mut t.tx
        };
        side.packets += v.packets;
        side.bytes += v.bytes;
    }

    /// Adds one CPU's value of a `DROPS` entry.
    pub fn add_drop(&mut self, key: &DropKey, packets: u64) {
        let w = DropWhere {
            reason: key.reason,
            dir: key.dir,
            peer: (key.peer != [0; 4]).then(|| Ipv4Addr::from(key.peer)),
            mac: (key.mac != [0; 6]).then_some(key.mac),
        };
        *self.drops.entry(w).or_default() += packets;
    }

    /// What happened between `earlier` and `self`. Keys that only appear
    /// now count from zero; counters never go backwards (maps are never
    /// cleared while the probe runs), saturating guards the impossible.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let peers = diff(&self.peers, &earlier.peers, |now, then| PeerTotals {
            rx: sub_peer(&now.rx, &then.rx),
            tx: sub_peer(&now.tx, &then.tx),
        });
        let inner = diff(&self.inner, &earlier.inner, |now, then| InnerTotals {
            rx: sub_inner(&now.rx, &then.rx),
            tx: sub_inner(&now.tx, &then.tx),
        });
        let drops = diff(&self.drops, &earlier.drops, |now, then| now.saturating_sub(*then));
        Snapshot {
            peers,
            inner,
            drops,
            overflow: Overflow {
                peers: self.overflow.peers.saturating_sub(earlier.overflow.peers),
                macs: self.overflow.macs.saturating_sub(earlier.overflow.macs),
                drops: self.overflow.drops.saturating_sub(earlier.overflow.drops),
            },
        }
    }
}

/// `now` minus `then`, key by key; a key only in `now` counts from zero.
/// Both maps are walked in order together: no lookup per key.
fn diff<K: Ord + Copy, V: Copy + Default>(
    now: &BTreeMap<K, V>,
    then: &BTreeMap<K, V>,
    sub: impl Fn(&V, &V) -> V,
) -> BTreeMap<K, V> {
    let mut old = then.iter().peekable();
    now.iter()
        .map(|(k, v)| {
            while old.next_if(|(o, _)| *o < k).is_some() {}
            let base = old
                .next_if(|(o, _)| *o == k)
                .map(|(_, b)| *b)
                .unwrap_or_default();
            (*k, sub(v, &base))
        })
        .collect()
}

fn per_cpu_hash<'a, K: Pod, V: Pod>(
    ebpf: &'a Ebpf,
    name: &str,
) -> Result<(PerCpuHashMap<&'a MapData, K, V>, &'a MapData)> {
    let map = ebpf
        .map(name)
        .ok_or_else(|| anyhow!("the eBPF object has no {name} map: rebuild flannel-probe"))?;
    let data = match map {
        Map::PerCpuHashMap(d) => d,
        _ => return Err(anyhow!("{name} is not a per-CPU hash map: rebuild flannel-probe")),
    };
    let typed = PerCpuHashMap::try_from(map)
        .with_context(|| format!("opening the {name} map failed"))?;
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
    // Both readers hand over one key's CPU values one after the other.
    batch::for_each(&map, data, |k: &K, v: &V| match out.last_mut() {
        Some((last, sum)) if last == k => add(sum, v),
        _ => {
            let mut sum = V::default();
            add(&mut sum, v);
            out.push((*k, sum));
        }
    })
    .with_context(|| format!("reading the {name} map failed"))?;
    Ok(out)
}

fn add_inner(a: &mut InnerCounters, b: &InnerCounters) {
    a.packets += b.packets;
    a.bytes += b.bytes;
}

/// Folds entries sorted by address into one value per address with both
/// directions; the input order makes the map a bulk build.
fn group<K, A: Ord + Copy, C, T: Default>(
    sorted: Vec<(K, C)>,
    addr: impl Fn(&K) -> A,
    dir: impl Fn(&K) -> u8,
    sides: impl Fn(&mut T) -> (&mut C, &mut C),
    add: fn(&mut C, &C),
) -> BTreeMap<A, T> {
    let mut out: Vec<(A, T)> = Vec::with_capacity(sorted.len());
    for (k, c) in &sorted {
        let a = addr(k);
        if out.last().is_none_or(|(last, _)| *last != a) {
            out.push((a, T::default()));
        }
        if let Some((_, t)) = out.last_mut() {
            let (rx, tx) = sides(t);
            add(if dir(k) == DIR_RX { rx } else { tx }, c);
        }
    }
    out.into_iter().collect()
}

/// Reads and sums every map.
pub(super) fn read(ebpf: &Ebpf) -> Result<Snapshot> {
    let mut snap = Snapshot::default();
    // Sorted first, so that each BTreeMap is built in one pass rather than
    // by an insert per entry (40 000 entries at 10 000 peers).
    let mut peers = summed::<PeerKey, PeerCounters>(ebpf, MAP_PEERS, add_peer)?;
    peers.sort_unstable_by_key(|(k, _)| k.addr);
    snap.peers = group(peers, |k| Ipv4Addr::from(k.addr), |k| k.dir, |t: &mut PeerTotals| (&mut t.rx, &mut t.tx), add_peer);
    let mut inner = summed::<MacKey, InnerCounters>(ebpf, MAP_INNER, add_inner)?;
    inner.sort_unstable_by_key(|(k, _)| k.mac);
    snap.inner = group(inner, |k| k.mac, |k| k.dir, |t: &mut InnerTotals| (&mut t.rx, &mut t.tx), add_inner);
    // The drop map belongs to an optional program: absent in older objects.
    if ebpf.map(MAP_DROPS).is_some() {
        let drops = summed::<DropKey, u64>(ebpf, MAP_DROPS, |a, b| *a += b)?;
        for (key, n) in &drops {
            snap.add_drop(key, *n);
        }
    }
    let stats: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(
        ebpf.map(MAP_STATS)
            .ok_or_else(|| anyhow!("the eBPF object has no {MAP_STATS} map"))?,
    )?;
    let sum = |i: u32| -> Result<u64> {
        Ok(stats
            .get(&i, 0)
            .with_context(|| format!("reading STATS[{i}] failed"))?
            .iter()
            .sum())
    };
    const { assert!(STAT_DROP_OVERFLOW < NUM_STATS) };
    snap.overflow = Overflow {
        peers: sum(STAT_PEER_OVERFLOW)?,
        macs: sum(STAT_MAC_OVERFLOW)?,
        drops: sum(STAT_DROP_OVERFLOW)?,
    };
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use flannel_probe_common::abi::DIR_TX;

    use super::*;

    fn key(addr: [u8; 4], dir: u8) -> PeerKey {
        PeerKey {
            addr,
            dir,
            _pad: [0; 3],
        }
    }

    #[test]
    fn per_cpu_values_are_summed_per_peer_and_direction() {
        let mut s = Snapshot::default();
        let one = PeerCounters {
            packets: 2,
            bytes: 200,
            ..Default::default()
        };
        s.add_peer(&key([192, 0, 2, 11], DIR_RX), &one);
        s.add_peer(&key([192, 0, 2, 11], DIR_RX), &one);
        s.add_peer(&key([192, 0, 2, 11], DIR_TX), &one);
        let t = s.peers[&Ipv4Addr::new(192, 0, 2, 11)];
        assert_eq!(t.rx.packets, 4);
        assert_eq!(t.rx.bytes, 400);
        assert_eq!(t.tx.packets, 2);
    }

    #[test]
    fn a_window_is_the_difference_of_two_snapshots() {
        let mut then = Snapshot::default();
        let mut now = Snapshot::default();
        let base = PeerCounters {
            packets: 10,
            bytes: 1000,
            ..Default::default()
        };
        let later = PeerCounters {
            packets: 15,
            bytes: 1600,
            icmp_port_unreachable: 1,
            ..Default::default()
        };
        then.add_peer(&key([192, 0, 2, 12], DIR_TX), &base);
        now.add_peer(&key([192, 0, 2, 12], DIR_TX), &later);
        now.add_peer(&key([192, 0, 2, 13], DIR_RX), &base);
        now.add_inner(
            &MacKey {
                mac: [1; 6],
                dir: DIR_RX,
                _pad: 0,
            },
            &InnerCounters {
                packets: 3,
                bytes: 300,
            },
        );
        let w = now.since(&then);
        assert_eq!(w.peers[&Ipv4Addr::new(192, 0, 2, 12)].tx.packets, 5);
        assert_eq!(w.peers[&Ipv4Addr::new(192, 0, 2, 12)].tx.bytes, 600);
        assert_eq!(
            w.peers[&Ipv4Addr::new(192, 0, 2, 12)]
                .tx
                .icmp_port_unreachable,
            1
        );
        assert_eq!(w.peers[&Ipv4Addr::new(192, 0, 2, 13)].rx.packets, 10);
        assert_eq!(w.inner[&[1; 6]].rx.packets, 3);
    }
}
