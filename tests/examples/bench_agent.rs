//! The agent's side of `cargo xtask bench` (a helper it runs as root, not a
//! test): the real datapath maps, the real summing and the real diagnosis.
//!
//! ```text
//! bench_agent timing --peers 1,100,1000,10000 [--reps 15] [--budget-secs 60] [--max-peers 24576]
//! bench_agent fill --pid PID --peers N [--every-ms MS]
//! bench_agent hooks [--repeat 200000] [--stats]
//! bench_agent reference --iface IFACE [--iface IFACE ...]
//! ```
//!
//! - `timing` loads the datapath (nothing attached), fills `PEERS` and
//!   `INNER` with N synthetic peers (traffic both ways) through aya's
//!   `PerCpuHashMap::insert`, and times `snapshot()` (read and sum over
//!   CPUs), `since()` and `diagnose()` against a node on which every one of
//!   those peers is programmed as Flannel does it (route, neighbour, FDB
//!   entry). The counters grow between repetitions, so every window is
//!   non-empty. A size stops after `--reps` repetitions, or earlier once
//!   its measured repetitions took `--budget-secs` (but never fewer than
//!   3). One JSON line per size.
//! - `fill` writes the same peers into the maps of a running flannel-probe,
//!   found through `/proc/PID/fdinfo`; with `--every-ms` it keeps raising
//!   their counters at that period until killed, so that every window the
//!   probe diagnoses has traffic from every peer.
//! - `hooks` runs each classifier under `BPF_PROG_TEST_RUN` (kernel-side
//!   repeat) on the frames the load produces: the cost per run in isolation;
//!   with `--stats` while the kernel's BPF run-time statistics are on; the
//!   do-nothing `reference_pass` alongside, for what any run costs.
//! - `reference` attaches `reference_pass` to an interface (tcx ingress and
//!   egress) until killed: the lab's part 3 reads its statistics next to
//!   the probe's.
use std::{
    borrow::{Borrow, BorrowMut},
    collections::BTreeMap,
    hint::black_box,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use aya::{
    maps::{Map, MapData, MapInfo, PerCpuArray, PerCpuValues},
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, TestRun as _, TestRunOptions, tc::TcAttachOptions,
    },
};
use flannel_probe::{
    datapath::{AttachMode, Datapath, EBPF_OBJECT, FamilyMatch, Hook, LoadOptions, Matching},
    diagnose::{Inputs, diagnose},
    node::{
        FdbEntry, NUD_PERMANENT, NeighEntry, NodeState, Overlay, RouteEntry, Uplink, UplinkSource,
        VtepFamily,
    },
    report::Severity,
};
use flannel_probe_common::{
    abi::{
        HotCounters, INDEX_PROBES, InnerCounters, InnerValue, MAP_INNER, MAP_PEER_INDEX, MAP_PEERS,
        MAP_STATS, MacSlot, PeerIndexSlot, PeerKey, PeerSlot, STAT_MACS_USED, STAT_PEERS_USED,
        mac_key, peer_index_start, peer_key,
    },
    frames::{Ipv4Frame, tcp, udp, vxlan_frame},
};
use flannel_probe_tests::synthetic::{
    MAX_PEERS, SUBNET_PREFIX, peer_ip, peer_mac, peer_subnet, peer_vtep_ip,
};
use serde_json::json;
// Dependencies of the package's other targets, which an example sees too.
use {clap as _, libc as _, percent_encoding as _, serde as _, serde_norway as _, tempfile as _};

/// This node: gladius of the lab.
const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const LOCAL_MAC: [u8; 6] = [0x02, 0xbe, 0xff, 0, 0, 0x11];
const OVERLAY_IFINDEX: u32 = 4;
const UPLINK_IFINDEX: u32 = 2;
const VXLAN_PORT: u16 = 8472;
/// Outer frame of a 64-byte UDP payload across the overlay: 14 + 20 + 8 + 8
/// (VXLAN) + 14 + 20 + 8 + 64.
const WIRE_BYTES: u64 = 156;
const INNER_BYTES: u64 = 106;

fn main() {
    if let Err(e) = real_main() {
        eprintln!("bench_agent: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args
        .split_first()
        .ok_or_else(|| anyhow!("usage: bench_agent timing|fill|hooks [options]"))?;
    let opt = |name: &str| -> Option<&str> {
        rest.iter()
            .position(|a| a == name)
            .and_then(|i| rest.get(i + 1))
            .map(String::as_str)
    };
    let num = |name: &str, default: u64| -> Result<u64> {
        opt(name).map_or(Ok(default), |v| {
            v.parse()
                .with_context(|| format!("{name} wants a number, not {v:?}"))
        })
    };
    match cmd.as_str() {
        "timing" => {
            let sizes: Vec<u32> = opt("--peers")
                .unwrap_or("1,100,1000,10000")
                .split(',')
                .map(|s| s.trim().parse().with_context(|| format!("bad size {s:?}")))
                .collect::<Result<_>>()?;
            let reps = u32::try_from(num("--reps", 15)?)?;
            let budget = Duration::from_secs(num("--budget-secs", 60)?);
            let max_peers = u32::try_from(num("--max-peers", 24_576)?)?;
            for n in sizes {
                println!("{}", timing(n, reps, budget, max_peers)?);
            }
        }
        "fill" => {
            let pid = u32::try_from(num("--pid", 0)?)?;
            ensure!(pid != 0, "fill needs --pid");
            let n = u32::try_from(num("--peers", 1)?)?;
            fill_process(pid, n, Duration::from_millis(num("--every-ms", 0)?))?;
        }
        "reference" => {
            let ifaces: Vec<&str> = rest
                .iter()
                .zip(rest.iter().skip(1))
                .filter(|(flag, _)| *flag == "--iface")
                .map(|(_, v)| v.as_str())
                .collect();
            ensure!(!ifaces.is_empty(), "reference needs --iface");
            reference(&ifaces)?;
        }
        "hooks" => {
            let repeat = u32::try_from(num("--repeat", 200_000)?)?;
            // The kernel's run-time statistics on, as in the lab's part 3:
            // what they add to every run.
            let _stats = if rest.iter().any(|a| a == "--stats") {
                Some(aya::sys::enable_stats(aya::sys::Stats::RunTime)?)
            } else {
                None
            };
            println!("{}", hooks(repeat)?);
        }
        other => bail!("unknown command {other:?}: timing, fill, hooks or reference"),
    }
    Ok(())
}

/// The probe's tables, opened by whoever holds them.
struct Tables<P, X, I, S> {
    peers: PerCpuArray<P, PeerSlot>,
    index: PerCpuArray<X, PeerIndexSlot>,
    inner: PerCpuArray<I, MacSlot>,
    stats: PerCpuArray<S, u64>,
}

impl<P, X, I, S> Tables<P, X, I, S>
where
    P: BorrowMut<MapData> + Borrow<MapData>,
    X: BorrowMut<MapData> + Borrow<MapData>,
    I: BorrowMut<MapData> + Borrow<MapData>,
    S: BorrowMut<MapData> + Borrow<MapData>,
{
    /// Enters `key` -> `slot` into every CPU's `PEER_INDEX` where the
    /// datapath would look for it (its hashed start, then the next
    /// entries), beside whatever the datapath entered itself. Where those
    /// entries are taken (linear probing near a full index: about 0.5 % of
    /// keys at half load), any free entry: the agent reads the index
    /// whole, and no real packet comes from a synthetic peer.
    fn index(&mut self, key: PeerKey, slot: u32) -> Result<()> {
        let len = self.index.len();
        let mask = len - 1;
        let start = peer_index_start(key, mask);
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow!("{what}: {e}"))?;
        let mut placed = vec![false; cpus];
        let probes = (0..INDEX_PROBES).map(|p| start.wrapping_add(p) & mask);
        let rest = (0..len).map(|p| start.wrapping_add(INDEX_PROBES + p) & mask);
        for at in probes.chain(rest) {
            let mut v: Vec<PeerIndexSlot> = self.index.get(&at, 0)?.iter().copied().collect();
            let mut changed = false;
            for (c, e) in v.iter_mut().enumerate() {
                if placed[c] || !(e.key == key || e.key == PeerKey::default()) {
                    continue;
                }
                *e = PeerIndexSlot { key, slot, ..*e };
                placed[c] = true;
                changed = true;
            }
            if changed {
                self.index.set(at, PerCpuValues::try_from(v)?, 0)?;
            }
            if placed.iter().all(|p| *p) {
                return Ok(());
            }
        }
        bail!("{MAP_PEER_INDEX} is full: raise --max-peers")
    }

    /// The slots in use on the busiest CPU: synthetic peers go after them.
    fn used(&self) -> Result<u32> {
        let v = self.stats.get(&STAT_PEERS_USED, 0)?;
        Ok(v.iter().copied().max().unwrap_or(0) as u32)
    }

    /// Writes peers `0..n` into slots `base..base + n` on every CPU, each
    /// CPU's slot holding `round` times a per-peer base count (healthy
    /// traffic both ways), and marks the slots used, as the datapath does
    /// when it meets a peer. Round 1 also enters them into the index (the
    /// slots stay theirs after).
    fn fill(&mut self, base: u32, n: u32, round: u64) -> Result<()> {
        ensure!(n <= MAX_PEERS, "at most {MAX_PEERS} synthetic peers");
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow!("{what}: {e}"))?;
        for i in 0..n {
            let packets = round * (100 + u64::from(i % 7));
            let outer = HotCounters {
                packets,
                bytes: packets * WIRE_BYTES,
                large: 0,
            };
            let slot = PeerSlot {
                rx: outer,
                tx: outer,
                last_inner_src: peer_mac(i),
                ..Default::default()
            };
            if round == 1 {
                let key = peer_key(flannel_probe_common::parse::Addr::v4(peer_ip(i).octets()));
                self.index(key, base + i)?;
            }
            self.peers
                .set(base + i, PerCpuValues::try_from(vec![slot; cpus])?, 0)
                .with_context(|| format!("writing peer {i} into {MAP_PEERS}"))?;
            let decap = InnerCounters {
                packets,
                bytes: packets * INNER_BYTES,
            };
            let slot = MacSlot {
                key: mac_key(peer_mac(i)),
                v: InnerValue {
                    rx: decap,
                    tx: decap,
                },
            };
            self.inner
                .set(base + i, PerCpuValues::try_from(vec![slot; cpus])?, 0)
                .with_context(|| format!("writing MAC {i} into {MAP_INNER}"))?;
        }
        for stat in [STAT_PEERS_USED, STAT_MACS_USED] {
            let now = self.stats.get(&stat, 0)?;
            let used: Vec<u64> = now.iter().map(|u| (*u).max(u64::from(base + n))).collect();
            self.stats
                .set(stat, PerCpuValues::try_from(used)?, 0)
                .context("marking the slots used")?;
        }
        Ok(())
    }
}

fn fill_datapath(dp: &mut Datapath, n: u32, round: u64) -> Result<()> {
    let ebpf = dp.ebpf_mut();
    let [Some(p), Some(x), Some(i), Some(s)] =
        ebpf.maps_disjoint_mut([MAP_PEERS, MAP_PEER_INDEX, MAP_INNER, MAP_STATS])
    else {
        bail!("the eBPF object lacks {MAP_PEERS}, {MAP_PEER_INDEX}, {MAP_INNER} or {MAP_STATS}");
    };
    let mut t = Tables {
        peers: p.try_into()?,
        index: x.try_into()?,
        inner: i.try_into()?,
        stats: s.try_into()?,
    };
    t.fill(0, n, round)
}

/// The map ids a process holds, by map name (from `/proc/PID/fdinfo`).
fn process_maps(pid: u32) -> Result<BTreeMap<String, u32>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(text) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        let Some(id) = text
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))
            .and_then(|v| v.trim().parse::<u32>().ok())
        else {
            continue;
        };
        let info = MapInfo::from_id(id).with_context(|| format!("map id {id}"))?;
        if let Some(name) = info.name_as_str() {
            out.insert(name.to_string(), id);
        }
    }
    Ok(out)
}

fn fill_process(pid: u32, n: u32, every: Duration) -> Result<()> {
    let maps = process_maps(pid)?;
    let open = |name: &str| -> Result<Map> {
        let id = maps
            .get(name)
            .ok_or_else(|| anyhow!("process {pid} holds no map {name} (is it flannel-probe?)"))?;
        Ok(Map::from_map_data(MapData::from_id(*id)?)?)
    };
    let mut t = Tables {
        peers: open(MAP_PEERS)?.try_into()?,
        index: open(MAP_PEER_INDEX)?.try_into()?,
        inner: open(MAP_INNER)?.try_into()?,
        stats: open(MAP_STATS)?.try_into()?,
    };
    // After the lab's own peers, in whichever CPU's slots they are.
    let base = t.used()?;
    for round in 1.. {
        t.fill(base, n, round)?;
        if every.is_zero() {
            break;
        }
        std::thread::sleep(every);
    }
    Ok(())
}

/// gladius with peers `0..n` programmed as Flannel does it.
fn node_with_peers(n: u32) -> NodeState {
    let fdb = (0..n)
        .map(|i| FdbEntry {
            mac: peer_mac(i),
            dst: Some(peer_ip(i).into()),
            permanent: true,
        })
        .collect();
    let neighbours = (0..n)
        .map(|i| NeighEntry {
            ip: peer_vtep_ip(i).into(),
            mac: Some(peer_mac(i)),
            state: NUD_PERMANENT,
        })
        .collect();
    let mut routes: Vec<RouteEntry> = (0..n)
        .map(|i| RouteEntry {
            dst: peer_subnet(i).into(),
            prefix_len: SUBNET_PREFIX,
            gateway: Some(peer_vtep_ip(i).into()),
            oif: Some(OVERLAY_IFINDEX),
            onlink: true,
        })
        .collect();
    routes.push(RouteEntry {
        dst: Ipv4Addr::UNSPECIFIED.into(),
        prefix_len: 0,
        gateway: Some(Ipv4Addr::new(192, 0, 2, 1).into()),
        oif: Some(UPLINK_IFINDEX),
        onlink: false,
    });
    NodeState {
        hostname: "gladius".into(),
        kernel: "bench".into(),
        overlay_name: "flannel.1".into(),
        overlay: Some(Overlay {
            name: "flannel.1".into(),
            ifindex: OVERLAY_IFINDEX,
            kind: "vxlan".into(),
            admin_up: true,
            oper_up: true,
            mac: Some(LOCAL_MAC),
            mtu: Some(1450),
            vni: Some(1),
            port: Some(VXLAN_PORT),
            local: Some(LOCAL.into()),
            link: Some(UPLINK_IFINDEX),
            learning: Some(false),
            ipv6: false,
        }),
        uplink: Some(Uplink {
            name: "eth0".into(),
            ifindex: UPLINK_IFINDEX,
            up: true,
            mtu: Some(1500),
            mac: Some([0x02, 1, 192, 0, 2, 11]),
            addrs: vec![LOCAL],
            addrs6: vec![],
        }),
        uplink_source: Some(UplinkSource::VxlanDev),
        no_uplink: None,
        vxlan_port: VXLAN_PORT,
        vni: Some(1),
        local_vtep: Some(LOCAL.into()),
        port_bound: true,
        fdb,
        neighbours,
        routes,
        forwarding: Some(true),
        udp_in_csum_errors: None,
        family: VtepFamily::Ipv4,
        other_overlays: vec![],
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Repetitions kept whatever the budget.
const MIN_REPS: usize = 3;

/// Times read + sum, window and diagnosis with `n` peers in the maps.
fn timing(n: u32, reps: u32, budget: Duration, max_peers: u32) -> Result<serde_json::Value> {
    ensure!(
        n <= max_peers,
        "{n} peers need {n} map slots, --max-peers is {max_peers}"
    );
    let mut dp = Datapath::load(&LoadOptions {
        max_peers,
        attach_mode: AttachMode::Auto,
    })?;
    dp.configure(Matching::one(FamilyMatch {
        vxlan_port: VXLAN_PORT,
        vni: Some(1),
        local_vtep: None,
        overlay_mac: None,
    }))?;
    let node = node_with_peers(n);
    let fill_start = Instant::now();
    fill_datapath(&mut dp, n, 1)?;
    let fill_us = micros(fill_start.elapsed());
    let mut prev = dp.snapshot()?;
    let (mut snapshot, mut since, mut diag, mut total) = (vec![], vec![], vec![], vec![]);
    let mut serious = 0;
    let mut spent = Duration::ZERO;
    // Repetition 0 warms caches and the allocator up and is not kept
    // (unless it alone took more than a second: nothing left to warm).
    for rep in 0..=reps {
        if total.len() >= MIN_REPS && spent >= budget {
            break;
        }
        fill_datapath(&mut dp, n, u64::from(rep) + 2)?;
        let t0 = Instant::now();
        let now = dp.snapshot()?;
        let t1 = Instant::now();
        let window = now.since(&prev);
        let t2 = Instant::now();
        let report = diagnose(&Inputs {
            window: &window,
            window_secs: 1.0,
            node: &node,
            drop_reason: &|r| dp.drop_reason(r),
            attached: BTreeMap::new(),
            drops_unavailable: dp.drops_unavailable(),
            attach_gaps: 0,
            detached: Vec::new(),
        });
        let t3 = Instant::now();
        ensure!(
            report.peers.len() == n as usize,
            "the report has {} peers, not {n}",
            report.peers.len()
        );
        serious = report
            .findings
            .iter()
            .filter(|f| f.severity != Severity::Info)
            .count();
        black_box(&report);
        if rep > 0 || t3 - t0 > Duration::from_secs(1) {
            spent += t3 - t0;
            snapshot.push(micros(t1 - t0));
            since.push(micros(t2 - t1));
            diag.push(micros(t3 - t2));
            total.push(micros(t3 - t0));
        }
        prev = now;
    }
    Ok(json!({
        "peers": n,
        "map_entries": 2 * u64::from(n),
        "reps": total.len(),
        "fill_us": fill_us,
        "snapshot_us": snapshot,
        "since_us": since,
        "diagnose_us": diag,
        "total_us": total,
        "serious_findings": serious,
    }))
}

/// The eBPF object's do-nothing classifier (never attached by the agent).
const REFERENCE: &str = "reference_pass";

/// Attaches the do-nothing reference at each interface's tcx ingress and
/// egress (after whatever is there) and holds it until killed. In the lab
/// its statistics show what any program costs per run there, next to
/// ours, for the same packets; its links go with the process.
fn reference(ifaces: &[&str]) -> Result<()> {
    // The raw object: only this program is loaded, and no drop tracer.
    let mut ebpf = aya::Ebpf::load(EBPF_OBJECT).context("loading the eBPF object")?;
    let prog: &mut SchedClassifier = ebpf
        .program_mut(REFERENCE)
        .ok_or_else(|| anyhow!("no program {REFERENCE}"))?
        .try_into()?;
    prog.load()?;
    for iface in ifaces {
        for t in [TcAttachType::Ingress, TcAttachType::Egress] {
            prog.attach_with_options(iface, t, TcAttachOptions::TcxOrder(LinkOrder::last()))
                .with_context(|| format!("attaching {REFERENCE} to {iface} ({t:?}, tcx)"))?;
        }
    }
    println!("ready");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// `struct __sk_buff` is UAPI: 192 bytes.
const SKB_SIZE: usize = 192;
/// GSO segments and size a test run's ctx_in gives the skb.
type Gso = (u32, u32);
/// Offsets of `gso_segs` and `gso_size` in it, which `BPF_PROG_TEST_RUN`
/// copies into the test skb's shared info.
const SKB_GSO_SEGS: usize = 164;
const SKB_GSO_SIZE: usize = 176;
/// The TCP payload per segment of the GSO case (a 1500-byte overlay MTU's).
const GSO_MSS: u32 = 1448;

/// Cost per run of each classifier on each kind of frame it meets, from
/// `BPF_PROG_TEST_RUN` with a kernel-side repeat.
fn hooks(repeat: u32) -> Result<serde_json::Value> {
    let mut dp = Datapath::load(&LoadOptions::default())?;
    dp.configure(Matching::one(FamilyMatch {
        vxlan_port: VXLAN_PORT,
        vni: Some(1),
        local_vtep: None,
        // The stale-MAC check runs (and finds the frames addressed to us).
        overlay_mac: Some(LOCAL_MAC),
    }))?;
    let peer = [192, 0, 2, 12];
    let me = LOCAL.octets();
    // A pod's frame to a pod behind this node.
    let inner_l4 = |proto: u8, l4: Vec<u8>| -> Vec<u8> {
        let mut f = Ipv4Frame::new([10, 42, 2, 54], [10, 42, 1, 54], proto, l4);
        f.src_mac = peer_mac(0);
        f.dst_mac = LOCAL_MAC;
        f.build()
    };
    let inner = |payload: usize| inner_l4(17, udp(40000, 5201, &vec![0; payload]));
    // Test runs use loopback, whose MAC is all zeros: PACKET_HOST.
    let outer = |mut f: Ipv4Frame| {
        f.dst_mac = [0; 6];
        f.build()
    };
    let frames: Vec<(&str, Vec<u8>, Option<Gso>)> = vec![
        (
            "vxlan_udp64",
            outer(vxlan_frame(peer, me, VXLAN_PORT, 1, &inner(64))),
            None,
        ),
        (
            "vxlan_1400",
            outer(vxlan_frame(peer, me, VXLAN_PORT, 1, &inner(1372))),
            None,
        ),
        // A TCP segment of a pod's stream, as GSO/GRO hands the uplink 44
        // of them at once (the lab's TCP case): gso_segs and gso_size come
        // from ctx_in, the data is the first segment's (a test run takes
        // one page).
        (
            "vxlan_tcp_gso44",
            outer(vxlan_frame(
                peer,
                me,
                VXLAN_PORT,
                1,
                &inner_l4(6, tcp(5201, 40000, 8, GSO_MSS as usize)),
            )),
            Some((44, GSO_MSS)),
        ),
        (
            "tcp_not_vxlan",
            outer(Ipv4Frame::new(peer, me, 6, tcp(5201, 40000, 5, 64))),
            None,
        ),
        ("inner_udp64", inner(64), None),
    ];
    let mut out = serde_json::Map::new();
    let mut measured = serde_json::Map::new();
    // The do-nothing reference: what a run costs before any work of ours.
    let reference: &mut SchedClassifier = dp
        .ebpf_mut()
        .program_mut(REFERENCE)
        .ok_or_else(|| anyhow!("no program {REFERENCE}"))?
        .try_into()?;
    reference.load()?;
    let names = Hook::ALL
        .iter()
        .map(|h| {
            (
                h.program(),
                !matches!(h, Hook::OverlayIngress | Hook::OverlayEgress),
            )
        })
        .chain([(REFERENCE, true)]);
    for (program, uplink) in names {
        let prog: &mut SchedClassifier = dp
            .ebpf_mut()
            .program_mut(program)
            .ok_or_else(|| anyhow!("no program {program}"))?
            .try_into()?;
        let mut per_frame = serde_json::Map::new();
        let mut per_frame_stats = serde_json::Map::new();
        for (name, frame, gso) in &frames {
            // Uplinks see outer frames, the overlay device inner ones.
            if uplink == name.starts_with("inner") {
                continue;
            }
            let mut ctx = [0u8; SKB_SIZE];
            if let Some((segs, size)) = gso {
                ctx[SKB_GSO_SEGS..SKB_GSO_SEGS + 4].copy_from_slice(&segs.to_ne_bytes());
                ctx[SKB_GSO_SIZE..SKB_GSO_SIZE + 4].copy_from_slice(&size.to_ne_bytes());
            }
            let mut data_out = vec![0u8; frame.len() + 256];
            // What the kernel's statistics (when on) count for these runs.
            let counted = |p: &SchedClassifier| -> Result<(u64, u64)> {
                let i = p.info()?;
                Ok((i.run_time().as_nanos() as u64, i.run_count()))
            };
            let before = counted(prog)?;
            // The median of a few kernel-side loops.
            let mut ns: Vec<f64> = (0..5)
                .map(|_| {
                    let res = prog.test_run(TestRunOptions {
                        data_in: Some(frame),
                        data_out: Some(&mut data_out),
                        ctx_in: Some(&ctx),
                        repeat,
                        ..TestRunOptions::default()
                    })?;
                    Ok(res.duration.as_nanos() as f64)
                })
                .collect::<Result<_>>()?;
            ns.sort_by(f64::total_cmp);
            per_frame.insert((*name).to_string(), json!(ns[ns.len() / 2]));
            let after = counted(prog)?;
            if after.1 > before.1 {
                let stats_ns = (after.0 - before.0) as f64 / (after.1 - before.1) as f64;
                per_frame_stats.insert((*name).to_string(), json!(stats_ns));
            }
        }
        out.insert(program.to_string(), serde_json::Value::Object(per_frame));
        measured.insert(
            program.to_string(),
            serde_json::Value::Object(per_frame_stats),
        );
    }
    // `stats_ns_per_run`: what the statistics measured (with --stats),
    // comparable to the lab's part 3.
    Ok(json!({ "repeat": repeat, "ns_per_run": out, "stats_ns_per_run": measured }))
}
