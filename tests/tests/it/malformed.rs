//! Crafted and malformed VXLAN fired at a lab node from a raw socket: the
//! probe's counts must match what the shared parser says of exactly the
//! frames sent, and the well-formed ones must still be decapsulated (the
//! probe never drops or alters a packet).
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use flannel_probe_common::{
    frames::{Ipv4Frame, icmp_echo, udp, vxlan_frame, vxlan_header},
    parse::{Outer, parse_outer},
};
use flannel_probe_tests::{
    lab::{Lab, LabNode, LabSpec, parse_mac},
    support::{
        in_netns,
        reports::{finish, peer, start},
    },
};

pub(crate) fn eth0_mac(lab: &Lab, node: &LabNode) -> [u8; 6] {
    let out = lab
        .sh(&node.ns, &["cat", "/sys/class/net/eth0/address"])
        .expect("read MAC");
    parse_mac(String::from_utf8_lossy(&out.stdout).trim()).expect("a MAC")
}

/// Sends `frames` out of `eth0` in `ns` through an AF_PACKET socket.
pub(crate) fn send_raw(ns: &str, frames: &[Vec<u8>]) {
    in_netns(ns, || {
        // SAFETY: plain socket calls with valid, sized arguments.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            let sock = OwnedFd::from_raw_fd(fd);
            let ifindex = libc::if_nametoindex(c"eth0".as_ptr());
            assert!(ifindex > 0);
            for f in frames {
                let mut addr: libc::sockaddr_ll = std::mem::zeroed();
                addr.sll_family = libc::AF_PACKET as u16;
                addr.sll_ifindex = ifindex as i32;
                addr.sll_halen = 6;
                addr.sll_addr[..6].copy_from_slice(&f[..6]);
                let n = libc::sendto(
                    sock.as_raw_fd(),
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&raw const addr).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(
                    n,
                    f.len() as isize,
                    "sendto: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    })
    .expect("enter namespace");
}

/// Tiny deterministic generator: the flood is the same every run.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn malformed_vxlan_is_counted_exactly_and_good_vxlan_still_flows() {
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (g, e) = (lab.node("gladius"), lab.node("eq14-001"));
    let (g_mac, e_mac) = (eth0_mac(&lab, g), eth0_mac(&lab, e));
    let (src, dst) = (g.ip.octets(), e.ip.octets());
    let outer = |mut f: Ipv4Frame| {
        f.src_mac = g_mac;
        f.dst_mac = e_mac;
        f.build()
    };
    // A pod-to-pod echo as gladius's VTEP would encapsulate it.
    let mut inner = Ipv4Frame::new(g.pod_ip.octets(), e.pod_ip.octets(), 1, icmp_echo(9, 1, 56));
    inner.src_mac = g.vtep_mac;
    inner.dst_mac = e.vtep_mac;
    let inner = inner.build();
    let vx = |flags: u8, vni: u32, payload: &[u8]| {
        let mut p = vxlan_header(flags, vni).to_vec();
        p.extend_from_slice(payload);
        outer(Ipv4Frame::new(src, dst, 17, udp(40001, 8472, &p)))
    };

    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut good = 0u64;
    for _ in 0..10 {
        frames.push(outer(vxlan_frame(src, dst, 8472, 1, &inner)));
        good += 1;
    }
    for _ in 0..4 {
        let mut f = vxlan_frame(src, dst, 8472, 1, &inner);
        f.options = vec![1, 1, 1, 1];
        frames.push(outer(f));
        good += 1;
    }
    for _ in 0..5 {
        frames.push(outer(Ipv4Frame::new(
            src,
            dst,
            17,
            udp(40001, 8472, &[8, 0, 0, 0]),
        )));
    }
    for _ in 0..6 {
        frames.push(vx(0x00, 1, &inner));
    }
    for _ in 0..7 {
        frames.push(vx(0x88, 1, &inner));
    }
    for _ in 0..8 {
        frames.push(vx(0x08, 77, &inner));
    }
    for _ in 0..5 {
        let mut f = vxlan_frame(src, dst, 8472, 1, &inner);
        f.frag_offset = 64;
        frames.push(outer(f));
    }
    // A flood of random payloads to UDP 8472.
    let mut rng = XorShift(0x5eed_f1a0_0000_0001);
    for _ in 0..300 {
        let len = (rng.next() % 120) as usize;
        let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        frames.push(outer(Ipv4Frame::new(
            src,
            dst,
            17,
            udp(40002, 8472, &payload),
        )));
    }
    // What the shared parser says of exactly these frames.
    let (mut vxlan, mut malformed, mut other_vni) = (0u64, 0u64, 0u64);
    for f in &frames {
        if let Outer::Vxlan(v) = parse_outer(&f.as_slice(), 8472) {
            vxlan += 1;
            if v.malformed.is_some() {
                malformed += 1;
            } else if v.vni != 1 {
                other_vni += 1;
            }
        }
    }
    assert!(
        malformed >= 18 && other_vni >= 8,
        "the mix has what it should"
    );

    let run = start(&lab, e, 5);
    send_raw(&g.ns, &frames);
    let (_, report) = finish(run, "eq14-001");
    let p = peer(&report, &g.ip.to_string());
    assert_eq!(p["rx_encap_packets"], vxlan, "{p:#}");
    assert_eq!(p["rx_malformed"], malformed, "{p:#}");
    assert_eq!(p["rx_other_vni"], other_vni, "{p:#}");
    assert_eq!(p["rx_last_other_vni"], 77);
    // The well-formed ones reached flannel.1: nothing was dropped by us.
    assert_eq!(p["rx_decap_packets"], good, "{p:#}");
    // The kernel itself drops the bad headers, and says so.
    let reasons: Vec<&str> = report["drops"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"VXLAN_INVALID_HDR"), "{reasons:?}");
    assert!(reasons.contains(&"VXLAN_VNI_NOT_FOUND"), "{reasons:?}");
}
