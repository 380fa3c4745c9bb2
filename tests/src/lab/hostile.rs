//! VXLAN a broken sender emits, sent from a lab node's own namespace so it
//! leaves with that node's underlay address: what a peer with the checksum
//! offload bug (flannel#1279) puts on the wire.
use std::{net::IpAddr, thread, time::Duration};

use anyhow::{Result, ensure};
use flannel_probe_common::frames::{
    Ipv4Frame, Ipv6Frame, checksum, checksum6, inner_echo, inner_echo6, vxlan_header,
};

use super::{IpFamily, Lab, netns::in_netns};

/// Between two datagrams of [`Lab::send_bad_checksums`].
pub const BAD_CHECKSUM_GAP: Duration = Duration::from_millis(20);

impl Lab {
    /// `count` VXLAN datagrams with a wrong UDP checksum from node `from`'s
    /// namespace to node `to`'s VXLAN port, [`BAD_CHECKSUM_GAP`] apart, each
    /// carrying a pod-to-pod echo between their VTEP MACs (the
    /// `bad-checksum` fault; callable while pings borrow the lab).
    pub fn send_bad_checksums(&self, from: &str, to: &str, count: u32) -> Result<()> {
        self.send_bad_checksums_on(IpFamily::V4, from, to, count)
    }

    /// [`Lab::send_bad_checksums`] over `family`'s overlay: IPv6 datagrams
    /// between the nodes' IPv6 VTEPs carry an echo between their
    /// `flannel-v6.1` MACs and IPv6 pods.
    pub fn send_bad_checksums_on(
        &self,
        family: IpFamily,
        from: &str,
        to: &str,
        count: u32,
    ) -> Result<()> {
        let (f, t) = (self.node_named(from)?, self.node_named(to)?);
        let what = match family {
            IpFamily::V4 => BadChecksums {
                src: f.ip.into(),
                dst: t.ip.into(),
                port: self.spec.port,
                vni: self.spec.vni,
                src_vtep_mac: f.vtep_mac,
                dst_vtep_mac: t.vtep_mac,
                src_pod: f.pod_ip.into(),
                dst_pod: t.pod_ip.into(),
            },
            IpFamily::V6 => {
                let v6 = |n: &super::LabNode| -> Result<_> {
                    match (n.ip6, n.pod_ip6) {
                        (Some(ip), Some(pod)) => Ok((ip, pod)),
                        _ => anyhow::bail!("{} has no IPv6 (an IPv4-only lab)", n.name),
                    }
                };
                let ((fs, fp), (ts, tp)) = (v6(f)?, v6(t)?);
                BadChecksums {
                    src: fs.into(),
                    dst: ts.into(),
                    port: self.spec.port,
                    vni: self.spec.vni,
                    src_vtep_mac: f.vtep_mac6,
                    dst_vtep_mac: t.vtep_mac6,
                    src_pod: fp.into(),
                    dst_pod: tp.into(),
                }
            }
        };
        send_bad_checksums(&f.ns, &what, count, BAD_CHECKSUM_GAP)
    }
}

/// A checksum that is set (not 0, not its one's-complement twin 0xffff)
/// and differs from `good`.
fn wrong_sum(good: u16) -> u16 {
    if good == 0x1234 { 0x4321 } else { 0x1234 }
}

/// UDP header (source port 40000, checksum 0) + VXLAN header + `inner`.
fn vxlan_datagram(port: u16, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(16 + inner.len());
    d.extend_from_slice(&40000u16.to_be_bytes());
    d.extend_from_slice(&port.to_be_bytes());
    d.extend_from_slice(&((16 + inner.len()) as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(&vxlan_header(0x08, vni));
    d.extend_from_slice(inner);
    d
}

/// A VXLAN datagram (UDP header + VXLAN header + `inner`) from `src` to
/// `dst`:`port` whose UDP checksum is set and wrong: a correct one over the
/// pseudo-header, then replaced by another non-zero value.
pub fn bad_checksum_datagram(
    src: [u8; 4],
    dst: [u8; 4],
    port: u16,
    vni: u32,
    inner: &[u8],
) -> Vec<u8> {
    let mut d = vxlan_datagram(port, vni, inner);
    let len = d.len() as u16;
    let mut pseudo = Vec::with_capacity(12 + d.len());
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&len.to_be_bytes());
    pseudo.extend_from_slice(&d);
    let bad = wrong_sum(checksum(&pseudo));
    d[6..8].copy_from_slice(&bad.to_be_bytes());
    d
}

/// The whole IPv6 packet of a VXLAN datagram from `src` to `dst`:`port`
/// whose UDP checksum is wrong (over IPv6 a zero checksum is itself
/// invalid; a wrong non-zero one is what the offload bug produces).
pub fn bad_checksum_packet6(
    src: [u8; 16],
    dst: [u8; 16],
    port: u16,
    vni: u32,
    inner: &[u8],
) -> Vec<u8> {
    let d = vxlan_datagram(port, vni, inner);
    let good = checksum6(&src, &dst, 17, &d);
    // Ipv6Frame fills in the right sum: put the wrong one back after it.
    let mut p = Ipv6Frame::new(src, dst, 17, d).ip_packet();
    p[46..48].copy_from_slice(&wrong_sum(good).to_be_bytes());
    p
}

/// What [`send_bad_checksums`] sends: from one VTEP to another.
/// The underlay and pod addresses are of one family (checked on send).
pub struct BadChecksums {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub port: u16,
    pub vni: u32,
    pub src_vtep_mac: [u8; 6],
    pub dst_vtep_mac: [u8; 6],
    pub src_pod: IpAddr,
    pub dst_pod: IpAddr,
}

/// Sends `count` datagrams with a wrong UDP checksum, `gap` apart, from an
/// `IPPROTO_RAW` socket in `ns` (IP header ours, routed by the kernel; an
/// `AF_INET6` one is header-included too). That socket only sends: one for
/// UDP would also queue a copy of every VXLAN datagram the node receives,
/// purged (a kernel drop) on close. Every one must leave: a short send is
/// an error.
pub fn send_bad_checksums(ns: &str, what: &BadChecksums, count: u32, gap: Duration) -> Result<()> {
    let (packet, dst) = match (what.src, what.dst, what.src_pod, what.dst_pod) {
        (IpAddr::V4(s), IpAddr::V4(d), IpAddr::V4(sp), IpAddr::V4(dp)) => {
            let inner = inner_echo(
                what.src_vtep_mac,
                what.dst_vtep_mac,
                sp.octets(),
                dp.octets(),
            );
            let u = bad_checksum_datagram(s.octets(), d.octets(), what.port, what.vni, &inner);
            (
                Ipv4Frame::new(s.octets(), d.octets(), 17, u).ip_packet(),
                what.dst,
            )
        }
        (IpAddr::V6(s), IpAddr::V6(d), IpAddr::V6(sp), IpAddr::V6(dp)) => {
            let inner = inner_echo6(
                what.src_vtep_mac,
                what.dst_vtep_mac,
                sp.octets(),
                dp.octets(),
            );
            let p = bad_checksum_packet6(s.octets(), d.octets(), what.port, what.vni, &inner);
            (p, what.dst)
        }
        _ => anyhow::bail!("bad-checksum datagrams need one address family throughout"),
    };
    in_netns(ns, || -> Result<()> {
        // SAFETY: plain socket calls with valid, sized arguments on a
        // descriptor this closure owns and closes.
        unsafe {
            let af = if dst.is_ipv4() {
                libc::AF_INET
            } else {
                libc::AF_INET6
            };
            let fd = libc::socket(af, libc::SOCK_RAW, libc::IPPROTO_RAW);
            ensure!(
                fd >= 0,
                "raw IP socket in {ns}: {} (needs root)",
                std::io::Error::last_os_error()
            );
            let mut storage: libc::sockaddr_storage = std::mem::zeroed();
            let len = match dst {
                IpAddr::V4(d) => {
                    let a = (&raw mut storage).cast::<libc::sockaddr_in>();
                    (*a).sin_family = libc::AF_INET as libc::sa_family_t;
                    (*a).sin_addr.s_addr = u32::from_ne_bytes(d.octets());
                    size_of::<libc::sockaddr_in>()
                }
                IpAddr::V6(d) => {
                    let a = (&raw mut storage).cast::<libc::sockaddr_in6>();
                    (*a).sin6_family = libc::AF_INET6 as libc::sa_family_t;
                    (*a).sin6_addr.s6_addr = d.octets();
                    size_of::<libc::sockaddr_in6>()
                }
            };
            let mut result = Ok(());
            for i in 0..count {
                if i > 0 {
                    thread::sleep(gap);
                }
                let n = libc::sendto(
                    fd,
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (&raw const storage).cast(),
                    len as libc::socklen_t,
                );
                if n != packet.len() as isize {
                    result = Err(anyhow::anyhow!(
                        "sending bad-checksum VXLAN from {ns}: {}",
                        std::io::Error::last_os_error()
                    ));
                    break;
                }
            }
            libc::close(fd);
            result
        }
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_is_set_and_wrong() {
        let (src, dst) = ([192, 0, 2, 11], [192, 0, 2, 13]);
        let d = bad_checksum_datagram(src, dst, 8472, 1, &[0xab; 20]);
        assert_eq!(d.len(), 8 + 8 + 20);
        assert_eq!(&d[2..4], &8472u16.to_be_bytes());
        assert_eq!(&d[4..6], &36u16.to_be_bytes());
        assert_eq!(d[8], 0x08, "VXLAN I flag");
        assert_eq!(&d[12..15], &[0, 0, 1], "VNI 1");
        let sum = u16::from_be_bytes([d[6], d[7]]);
        assert_ne!(sum, 0, "0 would mean no checksum");
        // Verifying over the pseudo-header: a right sum folds to 0.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&[0, 17, 0, 36]);
        pseudo.extend_from_slice(&d);
        assert_ne!(checksum(&pseudo), 0, "the receiver must find it wrong");
        // And the same datagram with the right sum verifies.
        let mut fixed = d.clone();
        fixed[6..8].copy_from_slice(&[0, 0]);
        let mut p2 = pseudo[..12].to_vec();
        p2.extend_from_slice(&fixed);
        let good = checksum(&p2);
        fixed[6..8].copy_from_slice(&good.to_be_bytes());
        let mut p3 = pseudo[..12].to_vec();
        p3.extend_from_slice(&fixed);
        assert_eq!(checksum(&p3), 0);
    }

    #[test]
    fn the_ipv6_checksum_is_set_and_wrong() {
        let (src, dst) = (
            [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 11],
            [0xfd; 16],
        );
        let p = bad_checksum_packet6(src, dst, 8472, 1, &[0xab; 20]);
        assert_eq!(p.len(), 40 + 8 + 8 + 20);
        assert_eq!(p[0] >> 4, 6);
        assert_eq!(p[6], 17, "next header UDP");
        assert_eq!(&p[42..44], &8472u16.to_be_bytes());
        let udp = &p[40..];
        let sum = u16::from_be_bytes([udp[6], udp[7]]);
        assert!(sum != 0 && sum != 0xffff, "set: {sum:#x}");
        // Verified over the pseudo-header, a right sum folds to 0.
        assert_ne!(
            checksum6(&src, &dst, 17, udp),
            0,
            "the receiver must find it wrong"
        );
        let mut fixed = udp.to_vec();
        fixed[6..8].fill(0);
        let good = checksum6(&src, &dst, 17, &fixed);
        fixed[6..8].copy_from_slice(&good.to_be_bytes());
        assert_eq!(checksum6(&src, &dst, 17, &fixed), 0);
    }
}
