//! UDP sockets through `NETLINK_SOCK_DIAG` (what `ss -uan` shows), kernel
//! sockets such as the VXLAN device's included.
//!
//! The request/receive loop is written here rather than taken from
//! netlink-proto (in the lock through rtnetlink), on purpose:
//! - netlink-proto is async: a connection task on a tokio runtime, a handle,
//!   a stream of replies. These functions are synchronous and answer for
//!   the *calling thread's* network namespace (tests call them on a thread
//!   moved into a test namespace with `setns`); a runtime per call, or a
//!   connection task that may run on another worker thread in another
//!   namespace, is more machinery than the loop it would replace.
//! - Its sync part, `NetlinkCodec::decode`, splits a datagram into messages
//!   but logs and skips an undecodable message and clears the buffer on a
//!   bad header: a garbled reply would then look like "more to come" and
//!   end in the receive timeout instead of the error `parse_datagram` gives.
//! - It has no receive timeout; this loop has one (`SO_RCVTIMEO`), so a
//!   kernel that never answers cannot hang the snapshot.
//!
//! Sockets, addresses and message (de)serialisation are netlink-sys's and
//! the netlink-packet crates'; only the loop over datagrams is ours.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_UDP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr as NlAddr};

/// How long to wait for each reply datagram before giving up.
// libc deprecates naming time_t on musl (it became 64-bit in musl 1.2.0);
// it is still timeval's field type, and the static dist build is musl.
#[allow(deprecated)]
const RECV_TIMEOUT_SECS: libc::time_t = 5;
/// Netlink dump datagrams are at most 32 KiB; leave room.
const RECV_BUF: usize = 64 * 1024;

/// True if any UDP socket (IPv4 or IPv6, any state, kernel sockets included)
/// of the calling thread's network namespace has local port `port`.
#[cfg(test)]
pub(crate) fn udp_port_bound(port: u16) -> io::Result<bool> {
    Ok(!udp_local_addrs_on_port(port)?.is_empty())
}

/// The local addresses of all UDP sockets (IPv4 and IPv6, any state) of the
/// calling thread's network namespace whose local port is `port`, e.g.
/// `0.0.0.0:8472` for a VXLAN device without `local`.
pub(crate) fn udp_local_addrs_on_port(port: u16) -> io::Result<Vec<SocketAddr>> {
    let sock = open().map_err(|e| ctx(e, "opening a NETLINK_SOCK_DIAG socket"))?;
    let mut out = Vec::new();
    for (seq, family) in [(1, AF_INET), (2, AF_INET6)] {
        match dump_udp(&sock, family, seq) {
            Ok(addrs) => out.extend(addrs.into_iter().filter(|a| a.port() == port)),
            // No IPv6 in this kernel: then there are no IPv6 sockets either.
            Err(e)
                if family == AF_INET6
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EAFNOSUPPORT | libc::ENOENT | libc::EPROTONOSUPPORT)
                    ) =>
            {
                tracing::debug!(error = %e, "no IPv6 UDP sock_diag");
            }
            Err(e) => {
                let fam = if family == AF_INET { "IPv4" } else { "IPv6" };
                return Err(ctx(e, &format!("sock_diag dump of {fam} UDP sockets")));
            }
        }
    }
    Ok(out)
}

fn ctx(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn open() -> io::Result<Socket> {
    let mut sock = Socket::new(NETLINK_SOCK_DIAG)?;
    sock.bind_auto()?;
    sock.connect(&NlAddr::new(0, 0))?;
    let tv = libc::timeval {
        tv_sec: RECV_TIMEOUT_SECS,
        tv_usec: 0,
    };
    // SAFETY: a valid socket fd and a timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// Dumps all UDP sockets of `family` and returns their local addresses.
fn dump_udp(sock: &Socket, family: u8, seq: u32) -> io::Result<Vec<SocketAddr>> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let mut req = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_UDP,
            extensions: ExtensionFlags::empty(),
            // UDP sockets are TCP_CLOSE when unconnected and
            // TCP_ESTABLISHED when connected: ask for every state.
            states: StateFlags::all(),
            socket_id: if family == AF_INET6 {
                SocketId::new_v6()
            } else {
                SocketId::new_v4()
            },
        })
        .into(),
    );
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);
    let sent = sock.send(&buf, 0)?;
    if sent != buf.len() {
        return Err(io::Error::other(format!(
            "short netlink send ({sent} of {} bytes)",
            buf.len()
        )));
    }

    let mut out = Vec::new();
    let mut rbuf: Vec<u8> = Vec::with_capacity(RECV_BUF);
    loop {
        rbuf.clear();
        // MSG_TRUNC makes recv return the datagram's real size.
        let n = match sock.recv(&mut rbuf, libc::MSG_TRUNC) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no sock_diag reply within {RECV_TIMEOUT_SECS} s"),
                ));
            }
            Err(e) => return Err(e),
        };
        if n > rbuf.len() {
            return Err(io::Error::other(format!(
                "sock_diag reply of {n} bytes truncated to {}",
                rbuf.len()
            )));
        }
        if parse_datagram(&rbuf, seq, &mut out)? {
            return Ok(out);
        }
    }
}

/// Parses one datagram of a dump reply into `out`; true once NLMSG_DONE is seen.
fn parse_datagram(mut bytes: &[u8], seq: u32, out: &mut Vec<SocketAddr>) -> io::Result<bool> {
    while !bytes.is_empty() {
        let msg = NetlinkMessage::<SockDiagMessage>::deserialize(bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("undecodable sock_diag reply: {e}"),
            )
        })?;
        let len = msg.header.length as usize;
        if len < 16 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("sock_diag reply with bad length {len}"),
            ));
        }
        if msg.header.sequence_number != seq {
            tracing::debug!(
                got = msg.header.sequence_number,
                seq,
                "stray sock_diag reply"
            );
        } else {
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(true),
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    let id = &r.header.socket_id;
                    out.push(SocketAddr::new(id.source_address, id.source_port));
                }
                NetlinkPayload::Overrun(_) => {
                    return Err(io::Error::other("sock_diag dump overrun"));
                }
                _ => {}
            }
        }
        // Messages are 4-byte aligned within a datagram.
        let next = len.next_multiple_of(4).min(bytes.len());
        bytes = &bytes[next..];
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use flannel_probe_tests::lab::netns::Netns;

    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};

    #[test]
    fn sees_user_sockets_v4_and_v6() {
        let Some(ns) = Netns::for_test() else { return };
        let (before, v4, v6, other) = ns.run_in(|| {
            let before = udp_port_bound(40001).expect("sock_diag");
            let _a = UdpSocket::bind((Ipv4Addr::LOCALHOST, 40001)).expect("bind v4");
            let v4 = udp_local_addrs_on_port(40001).expect("sock_diag");
            let _b = UdpSocket::bind((Ipv6Addr::LOCALHOST, 40002)).expect("bind v6");
            let v6 = udp_local_addrs_on_port(40002).expect("sock_diag");
            let other = udp_port_bound(40003).expect("sock_diag");
            (before, v4, v6, other)
        });
        assert!(!before);
        assert_eq!(v4, vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 40001))]);
        assert_eq!(v6, vec![SocketAddr::from((Ipv6Addr::LOCALHOST, 40002))]);
        assert!(!other);
    }

    #[test]
    fn sees_kernel_vxlan_socket() {
        let Some(ns) = Netns::for_test() else { return };
        ns.ip("link add vx0 type vxlan id 42 dstport 4790");
        ns.ip("link set vx0 up");
        let addrs = ns.run_in(|| udp_local_addrs_on_port(4790).expect("sock_diag"));
        assert_eq!(addrs, vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, 4790))]);
    }

    #[test]
    fn parse_rejects_garbage() {
        let mut out = Vec::new();
        assert!(parse_datagram(&[1, 2, 3], 1, &mut out).is_err());
        assert!(parse_datagram(&[], 1, &mut out).is_ok_and(|done| !done));
    }
}
