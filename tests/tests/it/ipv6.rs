//! An IPv6 underlay (issue 17): two nodes in namespaces of their own, each
//! with `flannel-v6.1` programmed as flannel's VXLAN backend does for IPv6
//! (`pkg/backend/vxlan`: the device `local` the node's public IPv6, the
//! address `<v6 subnet>::/128`, and per remote node a route to its subnet
//! via its subnet's `::` address `onlink`, a permanent neighbour for that
//! address with the remote VTEP MAC, an FDB entry for that MAC to the
//! remote's public IPv6). The probe's datapath is attached with
//! `--overlay flannel-v6.1 --uplink eth0`; the test asserts the datapath's
//! per-peer counts in the report (the node side's IPv6 findings are the
//! v6node helper's part).
//!
//! The small setup lives here until the lab has its dual-stack and
//! IPv6-only options: it is meant to move onto the lab at merge.
use std::{process::Command, time::Duration};

use flannel_probe_tests::{
    lab::netns::{Netns, try_run},
    support::{ProbeRun, probe_bin, reports::peer, scaled, time_scale},
};
use serde_json::Value;

const PINGS: u32 = 10;
/// Long enough for both probes to start and the pings (2 s) to end inside.
const WINDOW_SECS: u32 = 6;
const DEV: &str = "flannel-v6.1";

/// One node of the pair.
struct Node {
    ns: Netns,
    name: &'static str,
    /// The public (underlay) IPv6 on eth0: `fd00::<n>`.
    ip: String,
    /// Its IPv6 pod subnet's first address (flannel's gateway address):
    /// `2001:cafe:42:<n>::`, of the subnet `/64`.
    subnet_ip: String,
    /// flannel-v6.1's MAC.
    mac: String,
}

impl Node {
    /// Node `n` (1 or 2) in a namespace of its own; `None` when not root.
    fn new(name: &'static str, n: u8) -> Option<Node> {
        Some(Node {
            ns: Netns::for_test()?,
            name,
            ip: format!("fd00::{n}"),
            subnet_ip: format!("2001:cafe:42:{n}::"),
            mac: format!("0e:00:00:00:66:{n:02x}"),
        })
    }
}

/// Two nodes on one veth pair (fd00::1 and fd00::2), flannel-v6.1 on each,
/// each programmed for the other. `None` when not root (the test skips),
/// except under `CI=true`.
fn pair() -> Option<(Node, Node)> {
    let (a, b) = (Node::new("v6-gladius", 1)?, Node::new("v6-eq14", 2)?);
    a.ns.ip(&format!(
        "link add eth0 type veth peer name eth0 netns {}",
        b.ns.name()
    ));
    for n in [&a, &b] {
        // No duplicate address detection: the addresses work at once.
        n.ns.write_sysctl("net/ipv6/conf/all/accept_dad", "0");
        n.ns.write_sysctl("net/ipv6/conf/default/accept_dad", "0");
        n.ns.ip(&format!("addr add {}/64 dev eth0 nodad", n.ip));
        n.ns.ip("link set eth0 up");
        add_overlay(n);
    }
    program(&a, &b);
    program(&b, &a);
    Some((a, b))
}

/// `flannel-v6.1` on `n` as flannel creates it: VNI 1, port 8472, local
/// the public IPv6, no learning, MTU uplink - 70, the subnet's `::`/128.
fn add_overlay(n: &Node) {
    n.ns.ip(&format!(
        "link add {DEV} type vxlan id 1 local {} dev eth0 dstport 8472 nolearning",
        n.ip
    ));
    n.ns.ip(&format!("link set {DEV} address {} mtu 1430", n.mac));
    // No link-local address, router or multicast listener chatter: only
    // the test's pings cross the overlay.
    n.ns.ip(&format!("link set {DEV} addrgenmode none"));
    n.ns.ip(&format!("addr add {}/128 dev {DEV} nodad", n.subnet_ip));
    n.ns.ip(&format!("link set {DEV} up"));
}

/// On `n`, what flannel installs for the remote node `r`.
fn program(n: &Node, r: &Node) {
    n.ns.ip(&format!(
        "neigh add {} lladdr {} dev {DEV} nud permanent",
        r.subnet_ip, r.mac
    ));
    n.ns.bridge(&format!(
        "fdb append {} dev {DEV} dst {} self permanent",
        r.mac, r.ip
    ));
    n.ns.ip(&format!(
        "route add {}/64 via {} dev {DEV} onlink",
        r.subnet_ip, r.subnet_ip
    ));
}

/// `report --format json` on both nodes for `secs` (scaled), watching
/// flannel-v6.1 on eth0; both spawned before either is waited for, so the
/// windows overlap; returned once observing.
fn reports(a: &Node, b: &Node, secs: u32) -> (ProbeRun, ProbeRun) {
    let spawn = |n: &Node| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", n.ns.name(), "unshare", "--uts", "sh", "-c"])
            .arg(r#"hostname "$0" && exec "$@""#)
            .arg(n.name)
            .arg(probe_bin())
            .args(["report", "--format", "json", "--duration"])
            .arg(format!("{}s", secs * time_scale()))
            .args(["--overlay", DEV, "--uplink", "eth0"]);
        ProbeRun::spawn(cmd).expect("start flannel-probe")
    };
    let (mut ra, mut rb) = (spawn(a), spawn(b));
    for (run, n) in [(&mut ra, a), (&mut rb, b)] {
        run.wait_for("observing", scaled(Duration::from_secs(60)))
            .unwrap_or_else(|e| panic!("probe on {}: {e:#}", n.name));
    }
    (ra, rb)
}

fn finish(run: ProbeRun, n: &Node) -> Value {
    let (_, out) = run
        .finish(scaled(Duration::from_secs(60)))
        .expect("the probe exits");
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("report of {} is not JSON ({e}): {out:?}", n.name));
    assert_eq!(v["node"]["hostname"], n.name);
    v
}

/// `ping -6` from `from` to `to`'s pod subnet address; packets received.
fn ping(from: &Node, to: &Node, count: u32) -> u32 {
    let out = try_run(
        "ip",
        &[
            "netns",
            "exec",
            from.ns.name(),
            "ping",
            "-6",
            "-n",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            "1",
            &to.subnet_ip,
        ],
    );
    // ping exits 1 when nothing came back: the summary is what counts.
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let summary = flannel_probe_tests::lab::parse_ping_summary(&text)
        .unwrap_or_else(|| panic!("no ping summary in {text:?}"));
    assert_eq!(summary.transmitted, count, "{text}");
    summary.received
}

/// Healthy, then the incident over IPv6: exact per-peer VXLAN counts for
/// the IPv6 peer, then, with the remote's VXLAN socket gone, every echo
/// request answered by an ICMPv6 port unreachable counted for that peer,
/// and the remote's kernel dropping each (NO_SOCKET) for the sender.
#[test]
fn ipv6_underlay_counts_per_peer_and_icmp6_port_unreachable() {
    let Some((a, b)) = pair() else {
        return;
    };
    // Underlay neighbour discovery before any window.
    assert_eq!(ping(&a, &b, 1), 1, "the IPv6 overlay answers");

    let (on_a, on_b) = reports(&a, &b, WINDOW_SECS);
    assert_eq!(ping(&a, &b, PINGS), PINGS);
    let (ra, rb) = (finish(on_a, &a), finish(on_b, &b));
    let n = u64::from(PINGS);
    // Each echo and each reply is one VXLAN packet (permanent neighbours:
    // nothing else crosses). 104-byte ICMPv6 echo + inner Ethernet 14 +
    // IPv6 VXLAN overhead (Ethernet 14 + IPv6 40 + UDP 8 + VXLAN 8) = 188.
    let to_b = peer(&ra, &b.ip);
    assert_eq!(to_b["tx_encap_packets"], n, "{to_b:#}");
    assert_eq!(to_b["rx_encap_packets"], n, "{to_b:#}");
    assert_eq!(to_b["tx_encap_bytes"], n * 188, "{to_b:#}");
    assert_eq!(to_b["rx_encap_bytes"], n * 188, "{to_b:#}");
    assert_eq!(
        to_b["rx_vtep_mac"],
        b.mac.as_str(),
        "the inner source MAC: {to_b:#}"
    );
    assert_eq!(to_b["icmp_port_unreachable"], 0);
    let from_a = peer(&rb, &a.ip);
    assert_eq!(from_a["rx_encap_packets"], n, "{from_a:#}");
    assert_eq!(from_a["tx_encap_packets"], n, "{from_a:#}");
    for r in [&ra, &rb] {
        let peers = r["peers"].as_array().map_or(0, Vec::len);
        assert_eq!(peers, 1, "one peer, the other node: {r:#}");
    }

    // The incident: b's flannel-v6.1 deleted, so no socket on UDP 8472.
    // ICMPv6 errors are rate limited per destination (1 s by default):
    // off in b, so every echo request gets its port unreachable.
    b.ns.write_sysctl("net/ipv6/icmp/ratelimit", "0");
    b.ns.ip(&format!("link del {DEV}"));
    let (on_a, on_b) = reports(&a, &b, WINDOW_SECS);
    assert_eq!(ping(&a, &b, PINGS), 0, "b's overlay is gone");
    let (ra, rb) = (finish(on_a, &a), finish(on_b, &b));
    // b is a peer (its FDB entry has an IPv6 `dst`): every echo request
    // still encapsulated, one ICMPv6 port unreachable each, no VXLAN back.
    let to_b = peer(&ra, &b.ip);
    assert_eq!(to_b["tx_encap_packets"], n, "{ra:#}");
    assert_eq!(to_b["icmp_port_unreachable"], n, "{ra:#}");
    assert_eq!(to_b["rx_encap_packets"], 0, "no VXLAN back: {ra:#}");
    assert!(
        ra["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f["code"] == "PEER_PORT_UNREACHABLE" && f["peer"] == b.ip.as_str()),
        "the sender names b: {:#}",
        ra["findings"]
    );
    let from_a = peer(&rb, &a.ip);
    assert_eq!(from_a["rx_encap_packets"], n, "{from_a:#}");
    assert_eq!(
        from_a["drops"]["NO_SOCKET"], n,
        "b's kernel drops each for want of a socket: {from_a:#}"
    );
}

/// A dual-stack node watches `flannel.1` and `flannel-v6.1` at once: the
/// overlay programs attached to two devices, one per-MAC table for both.
/// Inner IPv4 on one and inner IPv6 on the other are each counted for
/// their VTEP MAC; detaching one device leaves the other counting.
#[test]
fn overlay_hooks_on_two_devices_count_ipv4_and_ipv6_inner_frames() {
    use flannel_probe::datapath::{Datapath, Hook, LoadOptions};
    const MAC4: [u8; 6] = [0x0e, 0, 0, 0, 0x44, 0x02];
    const MAC6: [u8; 6] = [0x0e, 0, 0, 0, 0x66, 0x02];
    let Some(ns) = Netns::for_test() else {
        return;
    };
    // Two stand-ins for the overlay devices, with a permanent neighbour
    // each (as flannel programs): what is sent to it leaves with its MAC.
    for (dev, addr, neigh, mac) in [
        ("ov4", "10.99.0.1/24", "10.99.0.2", "0e:00:00:00:44:02"),
        ("ov6", "fd01::1/64", "fd01::2", "0e:00:00:00:66:02"),
    ] {
        ns.add_nic(dev);
        ns.ip(&format!("addr add {addr} dev {dev} nodad"));
        ns.ip(&format!(
            "neigh add {neigh} lladdr {mac} dev {dev} nud permanent"
        ));
    }
    ns.run_in(|| {
        let mut dp = Datapath::load(&LoadOptions::default()).expect("load the eBPF object");
        for hook in [Hook::OverlayIngress, Hook::OverlayEgress] {
            for dev in ["ov4", "ov6"] {
                dp.attach_also(hook, dev).expect("attach");
            }
        }
        let mut on: Vec<(Hook, String)> = dp
            .attachments()
            .into_iter()
            .map(|(h, d, _)| (h, d))
            .collect();
        on.sort();
        assert_eq!(on.len(), 4, "both hooks on both devices: {on:?}");
        let send = |to: &str, n: usize| {
            let local = if to.starts_with('[') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let s = std::net::UdpSocket::bind(local).expect("a UDP socket");
            for _ in 0..n {
                s.send_to(b"x", to).expect("send");
            }
        };
        let snap = |dp: &mut Datapath| dp.snapshot().expect("read the maps");
        send("10.99.0.2:9", 5);
        send("[fd01::2]:9", 3);
        let s = snap(&mut dp);
        let (m4, m6) = (s.inner[&MAC4], s.inner[&MAC6]);
        // Ethernet 14 + IPv4 20 / IPv6 40 + UDP 8 + 1 byte.
        assert_eq!((m4.tx.packets, m4.tx.bytes), (5, 5 * 43));
        assert_eq!((m6.tx.packets, m6.tx.bytes), (3, 3 * 63));
        // One device detached: the other still counts.
        dp.detach_from(Hook::OverlayEgress, "ov4");
        send("10.99.0.2:9", 2);
        send("[fd01::2]:9", 2);
        let s = snap(&mut dp);
        assert_eq!(s.inner[&MAC4].tx.packets, 5, "ov4's egress is detached");
        assert_eq!(s.inner[&MAC6].tx.packets, 5);
        assert_eq!(dp.attachments().len(), 3);
    });
}
