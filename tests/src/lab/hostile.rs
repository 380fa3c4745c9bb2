//! VXLAN a broken sender emits, sent from a lab node's own namespace so it
//! leaves with that node's underlay address: what a peer with the checksum
//! offload bug (flannel#1279) puts on the wire.
use std::{thread, time::Duration};

use anyhow::{Result, ensure};
use flannel_probe_common::frames::{Ipv4Frame, checksum, inner_echo, vxlan_header};

use super::{Lab, netns::in_netns};

/// Between two datagrams of [`Lab::send_bad_checksums`].
pub const BAD_CHECKSUM_GAP: Duration = Duration::from_millis(20);

impl Lab {
    /// `count` VXLAN datagrams with a wrong UDP checksum from node `from`'s
    /// namespace to node `to`'s VXLAN port, [`BAD_CHECKSUM_GAP`] apart, each
    /// carrying a pod-to-pod echo between their VTEP MACs (the
    /// `bad-checksum` fault; callable while pings borrow the lab).
    pub fn send_bad_checksums(&self, from: &str, to: &str, count: u32) -> Result<()> {
        let (f, t) = (self.node_named(from)?, self.node_named(to)?);
        let what = BadChecksums {
            src: f.ip.octets(),
            dst: t.ip.octets(),
            port: self.spec.port,
            vni: self.spec.vni,
            src_vtep_mac: f.vtep_mac,
            dst_vtep_mac: t.vtep_mac,
            src_pod: f.pod_ip.octets(),
            dst_pod: t.pod_ip.octets(),
        };
        send_bad_checksums(&f.ns, &what, count, BAD_CHECKSUM_GAP)
    }
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
    let mut d = Vec::with_capacity(16 + inner.len());
    let len = (16 + inner.len()) as u16;
    d.extend_from_slice(&40000u16.to_be_bytes());
    d.extend_from_slice(&port.to_be_bytes());
    d.extend_from_slice(&len.to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(&vxlan_header(0x08, vni));
    d.extend_from_slice(inner);
    let mut pseudo = Vec::with_capacity(12 + d.len());
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&len.to_be_bytes());
    pseudo.extend_from_slice(&d);
    let good = checksum(&pseudo);
    // 0 would mean "no checksum" and 0xffff equals 0 in one's complement;
    // 0x1234 is neither, and differs from the correct sum.
    let bad: u16 = if good == 0x1234 { 0x4321 } else { 0x1234 };
    d[6..8].copy_from_slice(&bad.to_be_bytes());
    d
}

/// What [`send_bad_checksums`] sends: from one VTEP to another.
pub struct BadChecksums {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub port: u16,
    pub vni: u32,
    pub src_vtep_mac: [u8; 6],
    pub dst_vtep_mac: [u8; 6],
    pub src_pod: [u8; 4],
    pub dst_pod: [u8; 4],
}

/// Sends `count` datagrams with a wrong UDP checksum, `gap` apart, from an
/// `IPPROTO_RAW` socket in `ns` (IP header ours, routed by the kernel).
/// That socket only sends: one for UDP would also queue a copy of every
/// VXLAN datagram the node receives, purged (a kernel drop) on close.
/// Every one must leave: a short send is an error.
pub fn send_bad_checksums(ns: &str, what: &BadChecksums, count: u32, gap: Duration) -> Result<()> {
    let inner = inner_echo(
        what.src_vtep_mac,
        what.dst_vtep_mac,
        what.src_pod,
        what.dst_pod,
    );
    let d = bad_checksum_datagram(what.src, what.dst, what.port, what.vni, &inner);
    let d = Ipv4Frame::new(what.src, what.dst, 17, d).ip_packet();
    in_netns(ns, || -> Result<()> {
        // SAFETY: plain socket calls with valid, sized arguments on a
        // descriptor this closure owns and closes.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
            ensure!(
                fd >= 0,
                "raw IP socket in {ns}: {} (needs root)",
                std::io::Error::last_os_error()
            );
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(what.dst),
                },
                sin_zero: [0; 8],
            };
            let mut result = Ok(());
            for i in 0..count {
                if i > 0 {
                    thread::sleep(gap);
                }
                let n = libc::sendto(
                    fd,
                    d.as_ptr().cast(),
                    d.len(),
                    0,
                    (&raw const addr).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                );
                if n != d.len() as isize {
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
}
