//! Peer identity on the lab (issue 12, item 1): VXLAN-shaped datagrams
//! from a pod, from a peer's host netns (what ip-masq makes of a pod's),
//! and forged ICMP port unreachable, while pods ping. Nobody but a VTEP
//! peer raises anything about a peer, and the incident is unaffected.
use std::{net::UdpSocket, thread, time::Duration};

use flannel_probe_common::frames::{
    Ipv4Frame, icmp_port_unreachable, udp, vxlan_frame, vxlan_header,
};
use flannel_probe_tests::{
    lab::{Lab, LabSpec, netns::in_netns},
    support::reports::{self, finding, serious},
};
use serde_json::Value;

const GLADIUS: [u8; 4] = [192, 0, 2, 11];

/// Sends `n` datagrams carrying a well-formed VXLAN header for `vni` (and
/// an inner frame's worth of bytes) to `to`:8472 from inside `ns`.
fn send_vxlan_shaped(ns: &str, to: [u8; 4], vni: u32, n: u32) {
    in_netns(ns, || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind a UDP socket");
        let mut payload = vxlan_header(0x08, vni).to_vec();
        payload.extend_from_slice(&[0u8; 64]);
        for _ in 0..n {
            s.send_to(&payload, (std::net::Ipv4Addr::from(to), 8472))
                .expect("send");
            thread::sleep(Duration::from_millis(20));
        }
    })
    .expect("enter the sender's namespace");
}

/// Sends the ICMP message of `frame` from a raw socket in `ns` to its dst.
fn send_icmp(ns: &str, frame: &Ipv4Frame, n: u32) {
    in_netns(ns, || {
        // SAFETY: plain socket calls on a descriptor this closure owns.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
            assert!(
                fd >= 0,
                "raw ICMP socket: {}",
                std::io::Error::last_os_error()
            );
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(frame.dst),
                },
                sin_zero: [0; 8],
            };
            for _ in 0..n {
                let sent = libc::sendto(
                    fd,
                    frame.payload.as_ptr().cast(),
                    frame.payload.len(),
                    0,
                    (&raw const addr).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                );
                assert_eq!(sent, frame.payload.len() as isize, "sendto ICMP");
            }
            libc::close(fd);
        }
    })
    .expect("enter the sender's namespace");
}

fn unknown(report: &Value) -> &Value {
    &report["unknown_sources"]
}

#[test]
fn vxlan_from_a_pod_a_host_process_and_forged_icmp_raise_no_critical() {
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (g, m, e) = (
        lab.node("gladius"),
        lab.node("momonoke"),
        lab.node("eq14-001"),
    );
    let run = reports::start(&lab, g, 6);
    thread::scope(|s| {
        s.spawn(|| lab.ping(g, m.pod_ip, 20, 0.2));
        s.spawn(|| lab.ping(m, g.pod_ip, 20, 0.2));
        s.spawn(|| lab.ping(e, g.pod_ip, 20, 0.2));
        s.spawn(|| {
            // Let the probe attach first.
            thread::sleep(Duration::from_millis(1500));
            send_vxlan_shaped(&m.pod_ns, GLADIUS, 77, 40);
        });
        s.spawn(|| {
            thread::sleep(Duration::from_millis(1500));
            send_vxlan_shaped(&m.ns, GLADIUS, 77, 40);
        });
        s.spawn(|| {
            thread::sleep(Duration::from_millis(1500));
            // Quoting a non-VXLAN datagram of ours, and VXLAN we never sent
            // (from eq14-001's address to momonoke).
            let dns = Ipv4Frame::new(GLADIUS, m.ip.octets(), 17, udp(1, 53, b"q"));
            send_icmp(
                &m.ns,
                &icmp_port_unreachable(m.ip.octets(), &dns.ip_packet()),
                5,
            );
            let theirs = vxlan_frame(e.ip.octets(), m.ip.octets(), 8472, 1, &[0u8; 64]);
            let mut forged = icmp_port_unreachable(m.ip.octets(), &theirs.ip_packet());
            forged.dst = GLADIUS;
            send_icmp(&m.ns, &forged, 7);
        });
    });
    let (code, r) = reports::finish(run, "gladius");
    assert_eq!(serious(&r), vec![], "{:#}", r["findings"]);
    assert_eq!(code, 0, "{:#}", r["findings"]);
    let pod = m.pod_ip.to_string();
    let peers = r["peers"].as_array().expect("peers");
    assert!(
        peers.iter().all(|p| p["peer"] != pod.as_str()),
        "{peers:#?}"
    );
    // The pod is an unknown source with exactly its 40 datagrams.
    let u = unknown(&r);
    let src = u["sources"]
        .as_array()
        .and_then(|v| v.iter().find(|s| s["source"] == pod.as_str()))
        .unwrap_or_else(|| panic!("{pod} not among {u:#}"));
    assert_eq!(src["why"], "pod network");
    assert_eq!(
        (src["rx_packets"].as_u64(), src["rx_other_vni"].as_u64()),
        (Some(40), Some(40))
    );
    assert_eq!(u["icmp_not_ours"], 7, "{u:#}");
    let f = finding(&r, "UNKNOWN_VXLAN_SOURCE").expect("UNKNOWN_VXLAN_SOURCE");
    assert_eq!(f["severity"], "info");
    let line = format!("from {pod} (pod network): 40 packets, 40 for another VNI");
    assert!(
        f["evidence"]
            .as_array()
            .is_some_and(|e| e.iter().any(|l| l.as_str() == Some(line.as_str()))),
        "{f:#}"
    );
    // momonoke's own 40 (ip-masq's view of the pod): its VXLAN decapsulates,
    // so they are evidence in an info finding about it, nothing more.
    let odd = finding(&r, "PEER_ODD_VXLAN").expect("PEER_ODD_VXLAN");
    assert_eq!(
        (odd["severity"].as_str(), odd["peer"].as_str()),
        (Some("info"), Some("192.0.2.12"))
    );
    let mp = reports::peer(&r, "192.0.2.12");
    assert_eq!(mp["rx_other_vni"], 40, "{mp:#}");
    assert_eq!(mp["icmp_port_unreachable"], 0, "{mp:#}");
    assert!(mp["rx_decap_packets"].as_u64() > Some(0));
}
