//! Each classifier run by the kernel on crafted frames (BPF_PROG_TEST_RUN),
//! asserting the exact map contents afterwards.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::programs::{SchedClassifier, TestRun as _, TestRunOptions};
use flannel_probe::datapath::{Datapath, FamilyMatch, Hook, LoadOptions, Matching, Snapshot};
use flannel_probe_common::{
    frames::{
        ExtHeader, Ipv4Frame, Ipv6Frame, ext_chain, icmp_frag_needed, icmp_port_unreachable,
        icmp6_packet_too_big, icmp6_port_unreachable, inner_echo, inner_echo6, tcp, udp,
        vxlan_frame, vxlan_header, vxlan6_frame,
    },
    parse::{Addr, VXLAN_OVERHEAD, VXLAN6_OVERHEAD},
};
use flannel_probe_tests::require_root;

/// TCX_NEXT / TC_ACT_UNSPEC (-1) as the test run reports it.
const CARRY_ON: u32 = u32::MAX;
const ME: [u8; 4] = [192, 0, 2, 13];
const PEER: [u8; 4] = [192, 0, 2, 11];
const OTHER: [u8; 4] = [192, 0, 2, 12];
const MAC_PEER: [u8; 6] = [0x0e, 0, 0, 0, 0, 0x11];
const MAC_ME: [u8; 6] = [0x0e, 0, 0, 0, 0, 0x13];
/// The IPv6 underlay: this node fd00::13 (as in the parser's corpus), peers
/// fd00::11 and fd00::12; flannel-v6.1 has a MAC of its own.
const ME6: [u8; 16] = v6(0x13);
const PEER6: [u8; 16] = v6(0x11);
const OTHER6: [u8; 16] = v6(0x12);
const MAC_ME6: [u8; 6] = [0x0e, 0, 0, 0, 0x66, 0x13];
const MAC_PEER6: [u8; 6] = [0x0e, 0, 0, 0, 0x66, 0x11];

const fn v6(last: u8) -> [u8; 16] {
    [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]
}

/// Both families watched on 8472 / VNI 1: IPv4 with `ME` and `mac`, IPv6
/// with `ME6` and `MAC_ME6` (`None`: no overlay MAC for either).
fn matching(mac: Option<[u8; 6]>) -> Matching {
    Matching {
        v4: Some(FamilyMatch {
            vxlan_port: 8472,
            vni: Some(1),
            local_vtep: Some(IpAddr::from(ME)),
            overlay_mac: mac,
        }),
        v6: Some(FamilyMatch {
            vxlan_port: 8472,
            vni: Some(1),
            local_vtep: Some(IpAddr::from(ME6)),
            overlay_mac: mac.map(|_| MAC_ME6),
        }),
    }
}

/// `struct __sk_buff` is UAPI: 192 bytes, gso_segs at 164, gso_size at 176.
const SKB_SIZE: usize = 192;
const SKB_GSO_SEGS: usize = 164;
const SKB_GSO_SIZE: usize = 176;

/// The datapath for one test, matching VXLAN on 8472 with VNI 1: `None`
/// (the test returns, skipped) when not root, except under `CI=true`.
fn datapath_with(opts: &LoadOptions) -> Option<Datapath> {
    if !require_root() {
        return None;
    }
    let mut dp = Datapath::load(opts).expect("load the eBPF object");
    dp.configure(matching(Some(MAC_ME))).expect("configure");
    Some(dp)
}

fn datapath() -> Option<Datapath> {
    datapath_with(&LoadOptions::default())
}

/// Runs `hook` on `frame` `times` times, optionally as a GSO packet of
/// `segs` segments, and checks it let the packet pass untouched.
fn run(dp: &mut Datapath, hook: Hook, frame: &[u8], segs: Option<(u32, u32)>, times: u32) {
    let prog: &mut SchedClassifier = dp
        .ebpf_mut()
        .program_mut(hook.program())
        .expect("program")
        .try_into()
        .expect("classifier");
    let mut ctx = [0u8; SKB_SIZE];
    if let Some((n, size)) = segs {
        ctx[SKB_GSO_SEGS..SKB_GSO_SEGS + 4].copy_from_slice(&n.to_ne_bytes());
        ctx[SKB_GSO_SIZE..SKB_GSO_SIZE + 4].copy_from_slice(&size.to_ne_bytes());
    }
    let mut out = vec![0u8; frame.len() + 256];
    for _ in 0..times {
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::default()
        };
        let res = prog.test_run(opts).expect("BPF_PROG_TEST_RUN");
        assert_eq!(
            res.return_value,
            CARRY_ON,
            "{} must return TCX_NEXT (-1): anything else ends a tcx chain",
            hook.program()
        );
        assert_eq!(
            &out[..frame.len()],
            frame,
            "{} must not alter the packet",
            hook.program()
        );
    }
}

fn snap(dp: &mut Datapath) -> Snapshot {
    dp.snapshot().expect("read maps")
}

/// A frame as the uplink sees it arriving: addressed to the device's MAC
/// (test runs use loopback, whose MAC is all zeros), so it is PACKET_HOST.
fn to_host(mut f: Ipv4Frame) -> Vec<u8> {
    f.dst_mac = [0; 6];
    f.build()
}

fn inner_frame() -> Vec<u8> {
    inner_echo(MAC_PEER, MAC_ME, [10, 42, 1, 54], [10, 42, 0, 54])
}

#[test]
fn uplink_ingress_counts_vxlan_per_peer() {
    let Some(mut dp) = datapath() else {
        return;
    };
    let f = to_host(vxlan_frame(PEER, ME, 8472, 1, &inner_frame()));
    run(&mut dp, Hook::UplinkIngress, &f, None, 7);
    let other = to_host(vxlan_frame(OTHER, ME, 8472, 1, &inner_frame()));
    run(&mut dp, Hook::UplinkIngress, &other, None, 2);
    let s = snap(&mut dp);
    let p = s.peers[&IpAddr::from(PEER)];
    assert_eq!(p.rx.packets, 7);
    assert_eq!(p.rx.bytes, 7 * f.len() as u64);
    assert_eq!((p.rx.malformed, p.rx.other_vni, p.tx.packets), (0, 0, 0));
    assert_eq!(s.peers[&IpAddr::from(OTHER)].rx.packets, 2);
    assert_eq!(s.peers.len(), 2);
}

/// Pins the calling thread to `cpu` (test runs execute on the caller's CPU).
fn pin(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Pins the calling thread to the first CPU it may run on, so that every
/// test run below meets the same CPU's tables.
fn pin_to_a_cpu() {
    let cpu = (0..libc::CPU_SETSIZE as usize)
        .find(|c| pin(*c))
        .expect("a CPU to pin to");
    assert!(pin(cpu));
}

/// Each CPU keeps its own slots, in the order it meets peers: a peer seen
/// on every CPU is still one peer, with every CPU's packets, and both
/// directions of it share one entry.
#[test]
fn a_peer_met_on_several_cpus_is_one_peer() {
    let Some(mut dp) = datapath() else {
        return;
    };
    let online: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|c| std::path::Path::new(&format!("/sys/devices/system/cpu/cpu{c}")).exists())
        .filter(|c| pin(*c))
        .collect();
    assert!(!online.is_empty(), "no CPU to pin to");
    let peer = to_host(vxlan_frame(PEER, ME, 8472, 1, &inner_frame()));
    let other = to_host(vxlan_frame(OTHER, ME, 8472, 1, &inner_frame()));
    let out = vxlan_frame(ME, PEER, 8472, 1, &inner_frame()).build();
    for (n, cpu) in online.iter().enumerate() {
        assert!(pin(*cpu), "pin to CPU {cpu}");
        // The first CPU meets OTHER first, the others PEER first.
        if n == 0 {
            run(&mut dp, Hook::UplinkIngress, &other, None, 1);
        }
        run(&mut dp, Hook::UplinkIngress, &peer, None, n as u32 + 1);
        run(&mut dp, Hook::UplinkEgress, &out, None, 2);
    }
    let cpus = online.len() as u64;
    let s = snap(&mut dp);
    assert_eq!(s.peers.len(), 2, "{:?}", s.peers.keys());
    let p = s.peers[&IpAddr::from(PEER)];
    assert_eq!(p.rx.packets, cpus * (cpus + 1) / 2);
    assert_eq!(p.tx.packets, 2 * cpus);
    assert_eq!(s.peers[&IpAddr::from(OTHER)].rx.packets, 1);
}

#[test]
fn uplink_ingress_ignores_frames_for_other_hosts_and_other_traffic() {
    let Some(mut dp) = datapath() else {
        return;
    };
    // A flooded frame for another MAC: PACKET_OTHERHOST.
    let mut flooded = vxlan_frame(PEER, OTHER, 8472, 1, &inner_frame());
    flooded.dst_mac = [0x02, 9, 9, 9, 9, 9];
    run(&mut dp, Hook::UplinkIngress, &flooded.build(), None, 3);
    // Not VXLAN: DNS, TCP to 8472, a non-first fragment.
    run(
        &mut dp,
        Hook::UplinkIngress,
        &to_host(Ipv4Frame::new(PEER, ME, 17, udp(1, 53, b"x"))),
        None,
        1,
    );
    run(
        &mut dp,
        Hook::UplinkIngress,
        &to_host(Ipv4Frame::new(PEER, ME, 6, tcp(1, 8472, 5, 0))),
        None,
        1,
    );
    let mut frag = vxlan_frame(PEER, ME, 8472, 1, &inner_frame());
    frag.frag_offset = 100;
    run(&mut dp, Hook::UplinkIngress, &to_host(frag), None, 1);
    let s = snap(&mut dp);
    assert!(
        s.peers.is_empty(),
        "nothing should be counted, got {:?}",
        s.peers
    );
}

#[test]
fn uplink_ingress_counts_vxlan_to_the_other_well_known_port_apart() {
    let Some(mut dp) = datapath() else {
        return;
    };
    run(
        &mut dp,
        Hook::UplinkIngress,
        &to_host(vxlan_frame(PEER, ME, 4789, 1, &inner_frame())),
        None,
        3,
    );
    let p = snap(&mut dp).peers[&IpAddr::from(PEER)];
    assert_eq!(
        (p.rx.packets, p.rx.other_port, p.rx.last_other_port),
        (0, 3, 4789)
    );
}

#[test]
fn uplink_ingress_remembers_the_inner_source_mac() {
    let Some(mut dp) = datapath() else {
        return;
    };
    run(
        &mut dp,
        Hook::UplinkIngress,
        &to_host(vxlan_frame(PEER, ME, 8472, 1, &inner_frame())),
        None,
        1,
    );
    let p = snap(&mut dp).peers[&IpAddr::from(PEER)];
    assert_eq!(p.rx.last_inner_src, MAC_PEER);
}

/// VTEP_MAC_STALE's count: decapsulatable frames for our VNI addressed to
/// a unicast MAC that is not our overlay's, per sending peer, GSO segments
/// counted; broadcast, multicast, ours and another VNI's are not.
#[test]
fn uplink_ingress_counts_frames_for_a_stale_vtep_mac() {
    let Some(mut dp) = datapath() else {
        return;
    };
    const OLD: [u8; 6] = [0x0e, 0, 0, 0, 0xee, 0x13];
    let to = |dst: [u8; 6], vni: u32| {
        let inner = inner_echo(MAC_PEER, dst, [10, 42, 1, 54], [10, 42, 0, 54]);
        to_host(vxlan_frame(PEER, ME, 8472, vni, &inner))
    };
    run(&mut dp, Hook::UplinkIngress, &to(OLD, 1), None, 3);
    run(&mut dp, Hook::UplinkIngress, &to(OLD, 1), Some((4, 100)), 1);
    run(&mut dp, Hook::UplinkIngress, &to([0xff; 6], 1), None, 2);
    let multicast = [0x01, 0, 0x5e, 0, 0, 1];
    run(&mut dp, Hook::UplinkIngress, &to(multicast, 1), None, 2);
    run(&mut dp, Hook::UplinkIngress, &to(MAC_ME, 1), None, 2);
    run(&mut dp, Hook::UplinkIngress, &to(OLD, 2), None, 2);
    let p = snap(&mut dp).peers[&IpAddr::from(PEER)];
    assert_eq!(p.rx.packets, 3 + 4 + 2 + 2 + 2 + 2);
    assert_eq!((p.rx.stale_dst, p.rx.last_stale_dst), (7, OLD));
    assert_eq!(p.rx.other_vni, 2);
    assert_eq!(p.rx.last_inner_src, MAC_PEER);

    // Without a known overlay MAC nothing is stale.
    dp.configure(matching(None)).expect("configure");
    run(&mut dp, Hook::UplinkIngress, &to(OLD, 1), None, 5);
    let p = snap(&mut dp).peers[&IpAddr::from(PEER)];
    assert_eq!((p.rx.packets, p.rx.stale_dst), (15 + 5, 7));
}

#[test]
fn uplink_egress_counts_gso_segments_and_wire_bytes() {
    let Some(mut dp) = datapath() else {
        return;
    };
    // A TCP super-packet of 10 segments of 300 bytes inside VXLAN (test
    // runs take at most about a page of data).
    let mut inner = Ipv4Frame::new(
        [10, 42, 0, 54],
        [10, 42, 1, 54],
        6,
        tcp(5201, 40000, 8, 3000),
    );
    inner.src_mac = MAC_ME;
    inner.dst_mac = MAC_PEER;
    let f = vxlan_frame(ME, PEER, 8472, 1, &inner.build()).build();
    run(&mut dp, Hook::UplinkEgress, &f, Some((10, 300)), 1);
    let one = vxlan_frame(ME, PEER, 8472, 1, &inner_frame()).build();
    run(&mut dp, Hook::UplinkEgress, &one, None, 1);
    let s = snap(&mut dp);
    let p = s.peers[&IpAddr::from(PEER)];
    assert_eq!(p.tx.packets, 11);
    // Each extra segment repeats outer (50) + inner Ethernet, IPv4 and TCP (14 + 20 + 32).
    let headers = (VXLAN_OVERHEAD + 14 + 20 + 32) as u64;
    assert_eq!(p.tx.bytes, f.len() as u64 + 9 * headers + one.len() as u64);
    assert_eq!(p.rx.packets, 0);
}

#[test]
fn uplink_counts_malformed_and_foreign_vni_headers() {
    let Some(mut dp) = datapath() else {
        return;
    };
    let mut no_i = vxlan_header(0x00, 1).to_vec();
    no_i.extend_from_slice(&inner_frame());
    run(
        &mut dp,
        Hook::UplinkIngress,
        &to_host(Ipv4Frame::new(PEER, ME, 17, udp(1, 8472, &no_i))),
        None,
        2,
    );
    run(
        &mut dp,
        Hook::UplinkIngress,
        &to_host(Ipv4Frame::new(PEER, ME, 17, udp(1, 8472, &[8, 0]))),
        None,
        1,
    );
    run(
        &mut dp,
        Hook::UplinkIngress,
        &to_host(vxlan_frame(PEER, ME, 8472, 42, &inner_frame())),
        None,
        4,
    );
    let mut tagged = vxlan_frame(PEER, ME, 8472, 1, &inner_frame());
    tagged.vlan = Some(7);
    tagged.options = vec![1, 1, 1, 1];
    run(&mut dp, Hook::UplinkIngress, &to_host(tagged), None, 1);
    let p = snap(&mut dp).peers[&IpAddr::from(PEER)];
    assert_eq!(p.rx.packets, 8);
    assert_eq!(p.rx.malformed, 3);
    assert_eq!(p.rx.other_vni, 4);
    assert_eq!(p.rx.last_other_vni, 42);
}

#[test]
fn uplink_ingress_counts_icmp_port_unreachable_per_vtep() {
    let Some(mut dp) = datapath() else {
        return;
    };
    let sent = vxlan_frame(ME, PEER, 8472, 1, &inner_frame());
    let icmp = to_host(icmp_port_unreachable(PEER, &sent.ip_packet()));
    run(&mut dp, Hook::UplinkIngress, &icmp, None, 3);
    // The same ICMP leaving (we are the one without a socket) is not counted.
    run(&mut dp, Hook::UplinkEgress, &icmp, None, 1);
    let s = snap(&mut dp);
    let p = s.peers[&IpAddr::from(PEER)];
    assert_eq!(p.rx.icmp_port_unreachable, 3);
    assert_eq!(
        (p.rx.packets, p.tx.packets, p.tx.icmp_port_unreachable),
        (0, 0, 0)
    );
}

#[test]
fn overlay_counts_inner_frames_per_vtep_mac() {
    let Some(mut dp) = datapath() else {
        return;
    };
    let inbound = inner_frame();
    run(&mut dp, Hook::OverlayIngress, &inbound, None, 5);
    let outbound = inner_echo(MAC_ME, MAC_PEER, [10, 42, 0, 54], [10, 42, 1, 54]);
    run(&mut dp, Hook::OverlayEgress, &outbound, None, 4);
    let s = snap(&mut dp);
    let m = s.inner[&MAC_PEER];
    assert_eq!(m.rx.packets, 5);
    assert_eq!(m.rx.bytes, 5 * inbound.len() as u64);
    assert_eq!(m.tx.packets, 4);
    assert_eq!(s.inner.len(), 1, "keyed by the remote VTEP's MAC only");
}

#[test]
fn more_peers_than_slots_are_counted_as_overflow_not_failures() {
    let Some(mut dp) = datapath_with(&LoadOptions {
        max_peers: 16,
        ..LoadOptions::default()
    }) else {
        return;
    };
    for i in 0..20u8 {
        let f = to_host(vxlan_frame(
            [192, 0, 2, 100 + i],
            ME,
            8472,
            1,
            &inner_frame(),
        ));
        run(&mut dp, Hook::UplinkIngress, &f, None, 2);
    }
    let s = snap(&mut dp);
    assert_eq!(s.peers.len(), 16, "the map holds its slots");
    assert!(s.peers.values().all(|p| p.rx.packets == 2));
    assert_eq!(
        s.overflow.peers,
        4 * 2,
        "every packet of a peer without a slot"
    );
}

/// The agent learns a slot's key from the hashed index, which it must read
/// whole: it does so only when a CPU took a slot it does not know (a new
/// peer, or a first anomaly), not on every read.
#[test]
fn the_index_is_read_again_only_for_new_slots() {
    let Some(mut dp) = datapath() else {
        return;
    };
    pin_to_a_cpu();
    let from_peer = to_host(vxlan_frame(PEER, ME, 8472, 1, &inner_frame()));
    assert_eq!(snap(&mut dp).peers.len(), 0);
    let before = dp.index_reads();
    run(&mut dp, Hook::UplinkIngress, &from_peer, None, 2);
    assert_eq!(snap(&mut dp).peers[&IpAddr::from(PEER)].rx.packets, 2);
    assert_eq!(dp.index_reads(), before + 1, "a new peer: read once");
    for n in 1..=3 {
        run(&mut dp, Hook::UplinkIngress, &from_peer, None, 1);
        assert_eq!(snap(&mut dp).peers[&IpAddr::from(PEER)].rx.packets, 2 + n);
    }
    assert_eq!(dp.index_reads(), before + 1, "known slots: not read again");
    // Its first anomaly takes a cold slot: read once more.
    run(
        &mut dp,
        Hook::UplinkIngress,
        &to_host(vxlan_frame(PEER, ME, 8472, 42, &inner_frame())),
        None,
        1,
    );
    let p = snap(&mut dp).peers[&IpAddr::from(PEER)];
    assert_eq!((p.rx.packets, p.rx.other_vni), (6, 1));
    assert_eq!(dp.index_reads(), before + 2);
    run(
        &mut dp,
        Hook::UplinkIngress,
        &to_host(vxlan_frame(OTHER, ME, 8472, 1, &inner_frame())),
        None,
        1,
    );
    let s = snap(&mut dp);
    assert_eq!(
        (s.peers.len(), s.peers[&IpAddr::from(OTHER)].rx.packets),
        (2, 1)
    );
    assert_eq!(dp.index_reads(), before + 3);
}

/// Anomaly counters live in a pool smaller than the peer table
/// (`cold_slots`: 64 for 256 peers): peers with anomalies beyond it keep
/// their per-packet counts exact, and the anomalies that found no slot are
/// counted as overflow, not lost silently. A peer that has a slot keeps
/// counting every kind of anomaly in it.
#[test]
fn anomalies_beyond_the_cold_pool_are_overflow_and_packets_stay_exact() {
    use flannel_probe_common::abi::cold_slots;
    let Some(mut dp) = datapath_with(&LoadOptions {
        max_peers: 256,
        ..LoadOptions::default()
    }) else {
        return;
    };
    // One CPU: each CPU has a pool of its own.
    pin_to_a_cpu();
    let pool = cold_slots(256);
    assert_eq!(pool, 64);
    let peer = |i: u32| [192, 0, 3, i as u8];
    let mut no_i = vxlan_header(0x00, 1).to_vec();
    no_i.extend_from_slice(&inner_frame());
    for i in 0..100 {
        let ok = to_host(vxlan_frame(peer(i), ME, 8472, 1, &inner_frame()));
        run(&mut dp, Hook::UplinkIngress, &ok, None, 1);
        let bad = to_host(Ipv4Frame::new(peer(i), ME, 17, udp(1, 8472, &no_i)));
        run(&mut dp, Hook::UplinkIngress, &bad, None, 1);
    }
    // Peer 0 has a slot: another VNI and an ICMP error land in it too.
    run(
        &mut dp,
        Hook::UplinkIngress,
        &to_host(vxlan_frame(peer(0), ME, 8472, 42, &inner_frame())),
        None,
        3,
    );
    let sent = vxlan_frame(ME, peer(0), 8472, 1, &inner_frame());
    let icmp = to_host(icmp_port_unreachable(peer(0), &sent.ip_packet()));
    run(&mut dp, Hook::UplinkIngress, &icmp, None, 2);
    let s = snap(&mut dp);
    assert_eq!(s.peers.len(), 100);
    for i in 0..100 {
        let p = s.peers[&IpAddr::from(peer(i))];
        let extra = if i == 0 { 3 } else { 0 };
        assert_eq!(p.rx.packets, 2 + extra, "peer {i}: every packet");
        let kept = u64::from(i < pool);
        assert_eq!(
            p.rx.malformed, kept,
            "peer {i}: malformed where a slot was free"
        );
    }
    let first = s.peers[&IpAddr::from(peer(0))];
    assert_eq!((first.rx.other_vni, first.rx.last_other_vni), (3, 42));
    assert_eq!(first.rx.icmp_port_unreachable, 2);
    assert_eq!(s.overflow.anomalies, u64::from(100 - pool));
    assert_eq!(s.overflow.peers, 0);
}

/// Thousands of peers, each CPU holding them in slots of its own (in
/// another order on each CPU, as when CPUs meet peers in another order):
/// the batched read, the per-CPU values summed by key, and (from the
/// second read on, when the maps are known to be big) the two tables read
/// side by side. Every peer is checked.
#[test]
fn big_tables_are_read_whole_and_summed_over_cpus() {
    use aya::maps::{PerCpuArray, PerCpuValues};
    use flannel_probe_common::abi::{
        HotCounters, InnerCounters, InnerValue, MacSlot, PeerIndexSlot, PeerSlot, PeerValue,
        STAT_COLD_USED, STAT_MACS_USED, STAT_PEERS_USED, mac_key, peer_key,
    };
    // Loaded unconfigured: the test fills the maps itself.
    if !require_root() {
        return;
    }
    const N: u32 = 6000;
    let mut dp = Datapath::load(&LoadOptions {
        max_peers: 8192,
        ..LoadOptions::default()
    })
    .expect("load");
    let cpus = aya::util::nr_cpus().expect("possible CPUs");
    let addr = |i: u32| IpAddr::from(Ipv4Addr::from(0x0a00_0000 + i));
    let mac = |i: u32| {
        let b = i.to_be_bytes();
        [0x0e, 0, b[0], b[1], b[2], b[3]]
    };
    // Which peer CPU `c` keeps in slot `s`: CPU 0 in order, the others
    // rotated.
    let peer_at = |c: u32, s: u32| (s + c * 977) % N;
    {
        let ebpf = dp.ebpf_mut();
        let [Some(p), Some(x), Some(co), Some(m), Some(st)] =
            ebpf.maps_disjoint_mut(["PEERS", "PEER_INDEX", "PEER_COLD", "INNER", "STATS"])
        else {
            panic!("the object lacks PEERS, PEER_INDEX, PEER_COLD, INNER or STATS");
        };
        let mut peers: PerCpuArray<_, PeerSlot> = p.try_into().expect("PEERS");
        let mut index: PerCpuArray<_, PeerIndexSlot> = x.try_into().expect("PEER_INDEX");
        let mut cold: PerCpuArray<_, PeerValue> = co.try_into().expect("PEER_COLD");
        let mut inner: PerCpuArray<_, MacSlot> = m.try_into().expect("INNER");
        let mut stats: PerCpuArray<_, u64> = st.try_into().expect("STATS");
        // Each CPU's cold slots, taken in slot order by its peers with
        // anomalies (every tenth).
        let mut cold_used = vec![0u32; cpus];
        for s in 0..N {
            // CPU c holds (c + 1) * i rx packets and i + c tx packets of peer i.
            let values: Vec<PeerSlot> = (0..cpus as u32)
                .map(|c| {
                    let i = peer_at(c, s);
                    PeerSlot {
                        rx: HotCounters {
                            packets: u64::from(c + 1) * u64::from(i),
                            ..Default::default()
                        },
                        tx: HotCounters {
                            packets: u64::from(i + c),
                            ..Default::default()
                        },
                        ..Default::default()
                    }
                })
                .collect();
            peers
                .set(s, PerCpuValues::try_from(values).expect("values"), 0)
                .expect("write a PEERS slot");
            // The index is hashed; the agent reads all of it, so where an
            // entry sits does not matter here.
            let mut entries = Vec::new();
            let mut colds = Vec::new();
            for (c, used) in cold_used.iter_mut().enumerate() {
                let i = peer_at(c as u32, s);
                let mut e = PeerIndexSlot {
                    key: peer_key(Addr::v4((0x0a00_0000 + i).to_be_bytes())),
                    slot: s,
                    cold: 0,
                };
                if i % 10 == 0 {
                    *used += 1;
                    e.cold = *used;
                }
                entries.push(e);
                colds.push((e.cold, i));
            }
            index
                .set(s, PerCpuValues::try_from(entries).expect("values"), 0)
                .expect("write a PEER_INDEX entry");
            // CPU c keeps c + 1 malformed packets of such a peer.
            for (c, (at, i)) in colds.iter().enumerate() {
                let Some(at) = at.checked_sub(1) else {
                    continue;
                };
                let mut v: Vec<PeerValue> =
                    cold.get(&at, 0).expect("cold").iter().copied().collect();
                v[c].rx.malformed = c as u64 + 1;
                v[c].rx.last_other_vni = *i;
                cold.set(at, PerCpuValues::try_from(v).expect("values"), 0)
                    .expect("write a PEER_COLD slot");
            }
            let values: Vec<MacSlot> = (0..cpus as u32)
                .map(|c| MacSlot {
                    key: mac_key(mac(peer_at(c, s))),
                    v: InnerValue {
                        rx: InnerCounters {
                            packets: u64::from(c) + 1,
                            bytes: 100,
                        },
                        ..Default::default()
                    },
                })
                .collect();
            inner
                .set(s, PerCpuValues::try_from(values).expect("values"), 0)
                .expect("write an INNER slot");
        }
        for stat in [STAT_PEERS_USED, STAT_MACS_USED] {
            stats
                .set(
                    stat,
                    PerCpuValues::try_from(vec![u64::from(N); cpus]).expect("values"),
                    0,
                )
                .expect("write STATS");
        }
        let used: Vec<u64> = cold_used.iter().map(|u| u64::from(*u)).collect();
        stats
            .set(
                STAT_COLD_USED,
                PerCpuValues::try_from(used).expect("values"),
                0,
            )
            .expect("write STATS");
    }
    let n = cpus as u64;
    let cpu_sum = n * (n + 1) / 2;
    for read in 0..2 {
        let s = snap(&mut dp);
        assert_eq!(s.peers.len(), N as usize, "read {read}: every peer");
        assert_eq!(s.inner.len(), N as usize, "read {read}: every MAC");
        for i in 0..N {
            let p = s.peers[&addr(i)];
            assert_eq!(p.rx.packets, cpu_sum * u64::from(i), "peer {i} rx");
            assert_eq!(
                p.tx.packets,
                n * u64::from(i) + n * (n - 1) / 2,
                "peer {i} tx"
            );
            // A peer with anomalies has a cold slot on every CPU (each CPU
            // met every peer), CPU c holding c + 1 malformed packets.
            let (malformed, vni) = if i % 10 == 0 { (cpu_sum, i) } else { (0, 0) };
            assert_eq!(p.rx.malformed, malformed, "peer {i} malformed");
            assert_eq!(p.rx.last_other_vni, vni, "peer {i} last VNI");
            let m = s.inner[&mac(i)];
            assert_eq!(m.rx.packets, cpu_sum, "MAC {i} rx");
            assert_eq!(m.rx.bytes, 100 * n, "MAC {i} rx bytes");
            assert_eq!(m.tx.packets, 0);
        }
    }
}

/// Runs of uplink ingress per `BPF_PROG_TEST_RUN` in [`cost_per_run`].
const REPEAT: u32 = 200_000;

/// The best of 5 kernel-side loops of [`REPEAT`] runs of uplink ingress on
/// `frame`: ns per run.
fn cost_per_run(dp: &mut Datapath, frame: &[u8]) -> u128 {
    let prog: &mut SchedClassifier = dp
        .ebpf_mut()
        .program_mut(Hook::UplinkIngress.program())
        .expect("program")
        .try_into()
        .expect("classifier");
    let ctx = [0u8; SKB_SIZE];
    let mut out = vec![0u8; frame.len() + 256];
    let mut best = u128::MAX;
    for _ in 0..5 {
        let res = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                repeat: REPEAT,
                ..TestRunOptions::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        assert_eq!(res.return_value, CARRY_ON);
        best = best.min(res.duration.as_nanos());
    }
    best
}

/// The uplink ingress program's cost per run on a VXLAN frame from a known
/// peer (the common case), as the kernel measures it over many runs.
/// Printed for the record; the bound only catches a gross regression.
#[test]
fn uplink_ingress_cost_per_run() {
    let Some(mut dp) = datapath() else {
        return;
    };
    let f = to_host(vxlan_frame(PEER, ME, 8472, 1, &inner_frame()));
    let (best, repeat) = (cost_per_run(&mut dp, &f), REPEAT);
    eprintln!("uplink ingress: {best} ns per run (best of 5 x {repeat} runs)");
    assert!(best < 5_000, "{best} ns per run");
    let p = snap(&mut dp).peers[&IpAddr::from(PEER)];
    assert_eq!(p.rx.packets, 5 * u64::from(repeat));
}

/// Inbound VXLAN to another address than the local VTEP is no peer's, and
/// ICMP port unreachable counts only when it quotes our own VXLAN (source
/// the local VTEP, destination our port).
#[test]
fn uplink_ingress_counts_only_traffic_for_the_local_vtep() {
    let Some(mut dp) = datapath() else {
        return;
    };
    let elsewhere = to_host(vxlan_frame(PEER, [192, 0, 2, 99], 8472, 1, &inner_frame()));
    run(&mut dp, Hook::UplinkIngress, &elsewhere, None, 4);
    // A forged quote: a datagram from another address to our port.
    let forged = vxlan_frame(OTHER, PEER, 8472, 1, &inner_frame());
    let icmp = to_host(icmp_port_unreachable(PEER, &forged.ip_packet()));
    run(&mut dp, Hook::UplinkIngress, &icmp, None, 3);
    // A quote of a non-VXLAN datagram from us: not counted at all.
    let dns = Ipv4Frame::new(ME, PEER, 17, udp(1, 53, b"q"));
    let icmp = to_host(icmp_port_unreachable(PEER, &dns.ip_packet()));
    run(&mut dp, Hook::UplinkIngress, &icmp, None, 2);
    let s = snap(&mut dp);
    assert!(s.peers.is_empty(), "{:?}", s.peers);
    assert_eq!((s.not_ours.rx_not_local, s.not_ours.icmp_not_ours), (4, 3));
}

/// Differential: every frame of the parser's committed corpus
/// (flannel-probe-common/tests/corpus) through the kernel's uplink ingress
/// program agrees with what the host parser says it must count.
#[test]
fn kernel_and_host_parser_agree_on_the_corpus() {
    use flannel_probe_common::parse::{Outer, parse_outer};
    let Some(mut dp) = datapath() else {
        return;
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../flannel-probe-common/tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the corpus directory")
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    // The crafted frames and the structured cases (`fuzzcase::seeds`).
    assert!(files.len() >= 50, "{} corpus frames", files.len());
    for path in files {
        let text = std::fs::read_to_string(&path).expect("a corpus file");
        let hex = text.lines().nth(1).unwrap_or_default().trim();
        let mut frame: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        if frame.len() >= 6 {
            // Addressed to the (loopback) device: PACKET_HOST.
            frame[..6].fill(0);
        }
        let before = snap(&mut dp);
        if frame.len() >= 14 {
            run(&mut dp, Hook::UplinkIngress, &frame, None, 1);
        }
        let d = snap(&mut dp).since(&before);
        let name = path.display();
        // The local VTEP of the address's family.
        let ip = |a: Addr| Ipv6Addr::from(a.octets()).to_canonical();
        let me = |a: Addr| ip(a) == IpAddr::from(ME) || ip(a) == IpAddr::from(ME6);
        let peer_rx = |a: Addr| d.peers.get(&ip(a)).map(|p| p.rx);
        match parse_outer(&frame.as_slice(), 8472) {
            Outer::Vxlan(v) if !me(v.dst) => {
                assert_eq!(d.not_ours.rx_not_local, 1, "{name}");
            }
            Outer::Vxlan(v) => {
                let rx = peer_rx(v.src).unwrap_or_else(|| panic!("{name}: no peer"));
                assert_eq!(rx.packets, 1, "{name}");
                assert_eq!(rx.bytes, frame.len() as u64, "{name}");
                assert_eq!(rx.malformed, u64::from(v.malformed.is_some()), "{name}");
                assert_eq!(
                    rx.other_vni,
                    u64::from(v.malformed.is_none() && v.vni != 1),
                    "{name}"
                );
            }
            Outer::ForeignPort { src, dst, .. } if me(dst) => {
                assert_eq!(peer_rx(src).map(|r| r.other_port), Some(1), "{name}");
            }
            Outer::PortUnreachable {
                vtep, quoted_src, ..
            } => {
                if me(quoted_src) {
                    assert_eq!(
                        peer_rx(vtep).map(|r| r.icmp_port_unreachable),
                        Some(1),
                        "{name}"
                    );
                } else {
                    assert_eq!(d.not_ours.icmp_not_ours, 1, "{name}");
                }
            }
            Outer::FragNeeded {
                vtep,
                quoted_src,
                mtu,
                ..
            } => {
                if me(quoted_src) {
                    let rx = peer_rx(vtep).unwrap_or_else(|| panic!("{name}: no peer"));
                    assert_eq!((rx.frag_needed, rx.last_frag_mtu), (1, mtu), "{name}");
                } else {
                    assert_eq!(d.not_ours.icmp_not_ours, 1, "{name}");
                }
            }
            _ => {
                let counted: u64 = d
                    .peers
                    .values()
                    .map(|p| {
                        p.rx.packets
                            + p.rx.other_port
                            + p.rx.icmp_port_unreachable
                            + p.rx.frag_needed
                    })
                    .sum();
                assert_eq!(counted, 0, "{name}: counted {:?}", d.peers);
                assert_eq!(d.not_ours, Default::default(), "{name}");
            }
        }
    }
}

/// An outer VXLAN frame from `src` to `dst` whose outer IPv4 total length is
/// `ip_len` (an inner UDP datagram padded to it).
fn vxlan_of_len(src: [u8; 4], dst: [u8; 4], ip_len: usize) -> Ipv4Frame {
    // Outer IPv4 + UDP + VXLAN, inner Ethernet + IPv4 + UDP.
    let payload = ip_len - (20 + 8 + 8 + 14 + 20 + 8);
    let mut inner = Ipv4Frame::new(
        [10, 42, 1, 54],
        [10, 42, 0, 54],
        17,
        udp(40000, 5201, &vec![0; payload]),
    );
    inner.src_mac = MAC_PEER;
    inner.dst_mac = MAC_ME;
    vxlan_frame(src, dst, 8472, 1, &inner.build())
}

/// UNDERLAY_MTU_BLACKHOLE's counters: packets above 1400 bytes of outer
/// IPv4 per peer and direction (1400 itself is small), the largest size,
/// and a GSO super-packet classed segment by segment.
#[test]
fn uplink_counts_large_packets_and_the_largest_outer_size() {
    let Some(mut dp) = datapath() else {
        return;
    };
    let small = to_host(vxlan_frame(PEER, ME, 8472, 1, &inner_frame()));
    run(&mut dp, Hook::UplinkIngress, &small, None, 3);
    let edge = to_host(vxlan_of_len(PEER, ME, 1400));
    run(&mut dp, Hook::UplinkIngress, &edge, None, 1);
    let large = to_host(vxlan_of_len(PEER, ME, 1401));
    run(&mut dp, Hook::UplinkIngress, &large, None, 2);
    // Leaving: one 1478-byte packet (a 1400-byte ping's), and a TCP
    // super-packet of 2 segments cut at 1448 bytes of payload: the first
    // 102 + 1448 = 1550 bytes (large), the last 102 + 552 (small).
    let ping = vxlan_of_len(ME, PEER, 1478).build();
    run(&mut dp, Hook::UplinkEgress, &ping, None, 1);
    let mut inner = Ipv4Frame::new(
        [10, 42, 0, 54],
        [10, 42, 1, 54],
        6,
        tcp(5201, 40000, 8, 2000),
    );
    inner.src_mac = MAC_ME;
    inner.dst_mac = MAC_PEER;
    let gso = vxlan_frame(ME, PEER, 8472, 1, &inner.build()).build();
    run(&mut dp, Hook::UplinkEgress, &gso, Some((2, 1448)), 1);
    let p = snap(&mut dp).peers[&IpAddr::from(PEER)];
    assert_eq!((p.rx.packets, p.rx.large, p.rx.max_outer_len), (6, 2, 1401));
    assert_eq!((p.tx.packets, p.tx.large, p.tx.max_outer_len), (3, 2, 1550));
    assert_eq!((p.rx.frag_needed, p.tx.frag_needed), (0, 0));
}

/// ICMP "fragmentation needed" from a router on the way, quoting our
/// VXLAN to the peer: counted for that peer with the next-hop MTU; one
/// quoting a datagram we did not send is not ours.
#[test]
fn uplink_ingress_counts_fragmentation_needed_per_vtep() {
    let Some(mut dp) = datapath() else {
        return;
    };
    let router = [198, 51, 100, 1];
    let sent = vxlan_of_len(ME, PEER, 1478);
    let icmp = to_host(icmp_frag_needed(router, &sent.ip_packet(), 1400));
    run(&mut dp, Hook::UplinkIngress, &icmp, None, 3);
    let forged = vxlan_of_len(OTHER, PEER, 1478);
    let not_ours = to_host(icmp_frag_needed(router, &forged.ip_packet(), 1300));
    run(&mut dp, Hook::UplinkIngress, &not_ours, None, 1);
    // Leaving (we are the router) is not counted.
    run(&mut dp, Hook::UplinkEgress, &icmp, None, 1);
    let s = snap(&mut dp);
    let p = s.peers[&IpAddr::from(PEER)];
    assert_eq!((p.rx.frag_needed, p.rx.last_frag_mtu), (3, 1400));
    assert_eq!(
        (p.rx.icmp_port_unreachable, p.rx.packets, p.tx.frag_needed),
        (0, 0, 0)
    );
    assert!(!s.peers.contains_key(&IpAddr::from(router)));
    assert_eq!(s.not_ours.icmp_not_ours, 1);
}

// --- IPv6 underlay (flannel-v6.1): the same counters, keyed by IPv6 peer.

fn to_host6(mut f: Ipv6Frame) -> Vec<u8> {
    f.dst_mac = [0; 6];
    f.build()
}

fn inner_frame6() -> Vec<u8> {
    inner_echo6(MAC_PEER6, MAC_ME6, v6(0x54), v6(0x55))
}

#[test]
fn uplink_counts_ipv6_vxlan_per_peer_beside_ipv4() {
    let Some(mut dp) = datapath() else {
        return;
    };
    let f = to_host6(vxlan6_frame(PEER6, ME6, 8472, 1, &inner_frame6()));
    run(&mut dp, Hook::UplinkIngress, &f, None, 7);
    let other = to_host6(vxlan6_frame(OTHER6, ME6, 8472, 1, &inner_frame6()));
    run(&mut dp, Hook::UplinkIngress, &other, None, 2);
    let out = vxlan6_frame(ME6, PEER6, 8472, 1, &inner_frame6()).build();
    run(&mut dp, Hook::UplinkEgress, &out, None, 3);
    let v4 = to_host(vxlan_frame(PEER, ME, 8472, 1, &inner_frame()));
    run(&mut dp, Hook::UplinkIngress, &v4, None, 4);
    let s = snap(&mut dp);
    assert_eq!(s.peers.len(), 3, "{:?}", s.peers.keys());
    let p = s.peers[&IpAddr::from(PEER6)];
    assert_eq!((p.rx.packets, p.rx.bytes), (7, 7 * f.len() as u64));
    assert_eq!((p.tx.packets, p.tx.bytes), (3, 3 * out.len() as u64));
    assert_eq!((p.rx.malformed, p.rx.other_vni, p.rx.stale_dst), (0, 0, 0));
    assert_eq!(p.rx.last_inner_src, MAC_PEER6);
    assert_eq!(s.peers[&IpAddr::from(OTHER6)].rx.packets, 2);
    // The IPv4 peer is keyed as IPv4, as before IPv6.
    assert_eq!(s.peers[&IpAddr::from(PEER)].rx.packets, 4);
    assert!(s.peers.keys().all(|k| match k {
        IpAddr::V6(a) => a.to_ipv4_mapped().is_none(),
        IpAddr::V4(_) => true,
    }));
}

#[test]
fn uplink_steps_over_ipv6_extension_headers_but_not_later_fragments() {
    let Some(mut dp) = datapath() else {
        return;
    };
    let mut f = vxlan6_frame(PEER6, ME6, 8472, 1, &inner_frame6());
    f.ext = ext_chain();
    run(&mut dp, Hook::UplinkIngress, &to_host6(f.clone()), None, 3);
    // A fifth header is past the bound; a later fragment has no UDP.
    let mut long = f.clone();
    long.ext.push(ExtHeader::Options { kind: 60, units: 0 });
    run(&mut dp, Hook::UplinkIngress, &to_host6(long), None, 2);
    let mut later = vxlan6_frame(PEER6, ME6, 8472, 1, &inner_frame6());
    later.ext = vec![ExtHeader::Fragment {
        offset: 185,
        more: false,
    }];
    run(&mut dp, Hook::UplinkIngress, &to_host6(later), None, 2);
    let s = snap(&mut dp);
    let p = s.peers[&IpAddr::from(PEER6)];
    assert_eq!((p.rx.packets, p.rx.malformed), (3, 0));
    assert_eq!(
        p.rx.last_inner_src, MAC_PEER6,
        "the inner frame after the chain"
    );
    assert_eq!(s.peers.len(), 1);
}

#[test]
fn uplink_ingress_counts_icmp6_port_unreachable_and_packet_too_big_per_vtep() {
    let Some(mut dp) = datapath() else {
        return;
    };
    let sent = vxlan6_frame(ME6, PEER6, 8472, 1, &inner_frame6());
    let unreach = to_host6(icmp6_port_unreachable(PEER6, &sent.ip_packet()));
    run(&mut dp, Hook::UplinkIngress, &unreach, None, 3);
    // Leaving (we are the one without a socket): not counted.
    run(&mut dp, Hook::UplinkEgress, &unreach, None, 1);
    let router = {
        let mut r = [0u8; 16];
        r[..2].copy_from_slice(&[0x20, 0x01]);
        r[15] = 1;
        r
    };
    let too_big = to_host6(icmp6_packet_too_big(router, &sent.ip_packet(), 1400));
    run(&mut dp, Hook::UplinkIngress, &too_big, None, 2);
    // Quotes of a datagram another address sent: not ours, whatever kind.
    let forged = vxlan6_frame(OTHER6, PEER6, 8472, 1, &inner_frame6());
    let f1 = to_host6(icmp6_port_unreachable(PEER6, &forged.ip_packet()));
    let f2 = to_host6(icmp6_packet_too_big(router, &forged.ip_packet(), 1300));
    run(&mut dp, Hook::UplinkIngress, &f1, None, 1);
    run(&mut dp, Hook::UplinkIngress, &f2, None, 1);
    let s = snap(&mut dp);
    let p = s.peers[&IpAddr::from(PEER6)];
    assert_eq!(p.rx.icmp_port_unreachable, 3);
    assert_eq!((p.rx.frag_needed, p.rx.last_frag_mtu), (2, 1400));
    assert_eq!(
        (p.rx.packets, p.tx.packets, p.tx.icmp_port_unreachable),
        (0, 0, 0)
    );
    assert_eq!(s.peers.len(), 1, "{:?}", s.peers.keys());
    assert_eq!(s.not_ours.icmp_not_ours, 2);
}

/// Each family has its local VTEP: IPv6 VXLAN to another IPv6 address is
/// no peer's, and a family that is not configured is not watched.
#[test]
fn each_family_is_matched_with_its_own_local_vtep_and_port() {
    let Some(mut dp) = datapath() else {
        return;
    };
    let elsewhere = to_host6(vxlan6_frame(PEER6, v6(0x99), 8472, 1, &inner_frame6()));
    run(&mut dp, Hook::UplinkIngress, &elsewhere, None, 4);
    // IPv6 to our IPv4 VTEP's mapped address is not to our IPv6 VTEP.
    let mapped_me = Ipv4Addr::from(ME).to_ipv6_mapped().octets();
    let odd = to_host6(vxlan6_frame(PEER6, mapped_me, 8472, 1, &inner_frame6()));
    run(&mut dp, Hook::UplinkIngress, &odd, None, 1);
    let s = snap(&mut dp);
    assert!(s.peers.is_empty(), "{:?}", s.peers);
    assert_eq!(s.not_ours.rx_not_local, 5);

    // IPv4 only: IPv6 VXLAN is not looked at; IPv6 only (another port):
    // IPv4 VXLAN is not, and IPv6 on 8472 is a foreign port.
    let v4 = to_host(vxlan_frame(PEER, ME, 8472, 1, &inner_frame()));
    let v6 = to_host6(vxlan6_frame(PEER6, ME6, 8472, 1, &inner_frame6()));
    let mut only = matching(None);
    only.v6 = None;
    dp.configure(only).expect("configure");
    run(&mut dp, Hook::UplinkIngress, &v4, None, 2);
    run(&mut dp, Hook::UplinkIngress, &v6, None, 3);
    let mut only = matching(None);
    only.v4 = None;
    if let Some(f) = only.v6.as_mut() {
        f.vxlan_port = 4789;
    }
    dp.configure(only).expect("configure");
    run(&mut dp, Hook::UplinkIngress, &v4, None, 5);
    run(&mut dp, Hook::UplinkIngress, &v6, None, 6);
    let s = snap(&mut dp);
    assert_eq!(s.peers.len(), 2, "{:?}", s.peers.keys());
    assert_eq!(s.peers[&IpAddr::from(PEER)].rx.packets, 2);
    let p = s.peers[&IpAddr::from(PEER6)];
    assert_eq!(
        (p.rx.packets, p.rx.other_port, p.rx.last_other_port),
        (0, 6, 8472)
    );
}

/// VTEP_MAC_STALE per family: an IPv6 frame is compared with
/// flannel-v6.1's MAC, an IPv4 one with flannel.1's.
#[test]
fn stale_vtep_macs_are_per_family() {
    let Some(mut dp) = datapath() else {
        return;
    };
    let to6 = |dst: [u8; 6]| {
        let inner = inner_echo6(MAC_PEER6, dst, v6(0x54), v6(0x55));
        to_host6(vxlan6_frame(PEER6, ME6, 8472, 1, &inner))
    };
    run(&mut dp, Hook::UplinkIngress, &to6(MAC_ME6), None, 2);
    // flannel.1's MAC is not flannel-v6.1's: stale over IPv6.
    run(&mut dp, Hook::UplinkIngress, &to6(MAC_ME), None, 3);
    let inner = inner_echo(MAC_PEER, MAC_ME6, [10, 42, 1, 54], [10, 42, 0, 54]);
    run(
        &mut dp,
        Hook::UplinkIngress,
        &to_host(vxlan_frame(PEER, ME, 8472, 1, &inner)),
        None,
        1,
    );
    let s = snap(&mut dp);
    let p = s.peers[&IpAddr::from(PEER6)];
    assert_eq!(
        (p.rx.packets, p.rx.stale_dst, p.rx.last_stale_dst),
        (5, 3, MAC_ME)
    );
    let p = s.peers[&IpAddr::from(PEER)];
    assert_eq!((p.rx.stale_dst, p.rx.last_stale_dst), (1, MAC_ME6));
}

/// The overlay programs count inner IPv6 frames per VTEP MAC, and a
/// super-packet's repeated headers with IPv6's length.
#[test]
fn overlay_counts_inner_ipv6_frames_per_vtep_mac() {
    let Some(mut dp) = datapath() else {
        return;
    };
    let inbound = inner_frame6();
    run(&mut dp, Hook::OverlayIngress, &inbound, None, 5);
    let mut t = Ipv6Frame::new(v6(0x55), v6(0x54), 6, tcp(5201, 40000, 8, 3000));
    t.src_mac = MAC_ME6;
    t.dst_mac = MAC_PEER6;
    let gso = t.build();
    run(&mut dp, Hook::OverlayEgress, &gso, Some((10, 300)), 1);
    let s = snap(&mut dp);
    let m = s.inner[&MAC_PEER6];
    assert_eq!((m.rx.packets, m.rx.bytes), (5, 5 * inbound.len() as u64));
    // Each extra segment repeats Ethernet, IPv6 and TCP (14 + 40 + 32).
    assert_eq!(
        (m.tx.packets, m.tx.bytes),
        (10, gso.len() as u64 + 9 * (14 + 40 + 32))
    );
    assert_eq!(s.inner.len(), 1);
}

#[test]
fn uplink_egress_counts_ipv6_gso_segments_with_ipv6_headers() {
    let Some(mut dp) = datapath() else {
        return;
    };
    let mut inner = Ipv6Frame::new(v6(0x55), v6(0x54), 6, tcp(5201, 40000, 8, 3000));
    inner.src_mac = MAC_ME6;
    inner.dst_mac = MAC_PEER6;
    let f = vxlan6_frame(ME6, PEER6, 8472, 1, &inner.build()).build();
    run(&mut dp, Hook::UplinkEgress, &f, Some((10, 300)), 1);
    let p = snap(&mut dp).peers[&IpAddr::from(PEER6)];
    let headers = (VXLAN6_OVERHEAD + 14 + 40 + 32) as u64;
    assert_eq!(
        (p.tx.packets, p.tx.bytes),
        (10, f.len() as u64 + 9 * headers)
    );
    // Outer IPv6 size per segment: 40 + 8 + 8 + 14 + 40 + 32 + 300.
    assert_eq!(p.tx.max_outer_len, 40 + 8 + 8 + 14 + 40 + 32 + 300);
}

/// The cost per run of uplink ingress on an IPv6 VXLAN frame from a known
/// peer, printed beside the IPv4 one (`uplink_ingress_cost_per_run`).
#[test]
fn uplink_ingress_ipv6_cost_per_run() {
    let Some(mut dp) = datapath() else {
        return;
    };
    let f = to_host6(vxlan6_frame(PEER6, ME6, 8472, 1, &inner_frame6()));
    let (best, repeat) = (cost_per_run(&mut dp, &f), REPEAT);
    eprintln!("uplink ingress, IPv6: {best} ns per run (best of 5 x {repeat} runs)");
    assert!(best < 5_000, "{best} ns per run");
    let p = snap(&mut dp).peers[&IpAddr::from(PEER6)];
    assert_eq!(p.rx.packets, 5 * u64::from(repeat));
}
