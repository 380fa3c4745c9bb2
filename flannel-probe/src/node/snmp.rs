//! The kernel's UDP counters (`/proc/net/snmp`, and `/proc/net/snmp6` for
//! IPv6): `InCsumErrors` witnesses datagrams the kernel dropped for a bad
//! checksum, whatever their port.

use super::VtepFamily;

/// `InCsumErrors` of the `Udp:` table (not `UdpLite:`): the header line
/// names the columns, the next `Udp:` line holds the values. `None` when
/// the table or the column is missing, or the value is not a number.
pub(crate) fn parse_udp_in_csum_errors(snmp: &str) -> Option<u64> {
    let mut lines = snmp.lines().filter_map(|l| l.strip_prefix("Udp:"));
    let header = lines.next()?;
    let values = lines.next()?;
    let column = header
        .split_whitespace()
        .position(|c| c == "InCsumErrors")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

/// `Udp6InCsumErrors` of `/proc/net/snmp6`: one `name value` per line.
pub(crate) fn parse_udp6_in_csum_errors(snmp6: &str) -> Option<u64> {
    snmp6.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next()? == "Udp6InCsumErrors").then(|| f.next()?.parse().ok())?
    })
}

/// Where [`udp_in_csum_errors`] reads `family`'s counter, and its name.
pub(crate) fn csum_counter(family: VtepFamily) -> (&'static str, &'static str) {
    match family {
        VtepFamily::Ipv4 => ("/proc/net/snmp", "UDP InCsumErrors"),
        VtepFamily::Ipv6 => ("/proc/net/snmp6", "Udp6InCsumErrors"),
    }
}

/// `family`'s UDP `InCsumErrors` in the calling thread's network namespace
/// (cumulative, since the namespace was created). `/proc/thread-self/net`,
/// because `/proc/net` follows the process's main thread, which may sit in
/// another namespace than the thread discovering the node.
pub(crate) fn udp_in_csum_errors(family: VtepFamily) -> Option<u64> {
    let (path, parse): (_, fn(&str) -> Option<u64>) = match family {
        VtepFamily::Ipv4 => ("/proc/thread-self/net/snmp", parse_udp_in_csum_errors),
        VtepFamily::Ipv6 => ("/proc/thread-self/net/snmp6", parse_udp6_in_csum_errors),
    };
    match std::fs::read_to_string(path) {
        Ok(s) => parse(&s),
        Err(e) => {
            tracing::debug!(%path, error = %e, "cannot read the UDP counters");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_udp_in_csum_errors, parse_udp6_in_csum_errors};

    const SNMP: &str = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
        Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
        Udp: 213 0 40 216 0 0 40 0 0\n\
        UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
        UdpLite: 0 0 0 0 0 0 7 0 0\n";

    #[test]
    fn reads_the_udp_column_not_udplite() {
        assert_eq!(parse_udp_in_csum_errors(SNMP), Some(40));
    }

    #[test]
    fn missing_or_garbled_is_none() {
        assert_eq!(parse_udp_in_csum_errors(""), None);
        assert_eq!(parse_udp_in_csum_errors("Udp: InDatagrams\nUdp: 3\n"), None);
        assert_eq!(
            parse_udp_in_csum_errors("Udp: InCsumErrors\nUdp: x\n"),
            None
        );
        assert_eq!(parse_udp_in_csum_errors("Udp: InCsumErrors\n"), None);
    }

    #[test]
    fn reads_this_machine() {
        // Every kernel since 3.10 has the column.
        let s = std::fs::read_to_string("/proc/thread-self/net/snmp").expect("read snmp");
        assert!(parse_udp_in_csum_errors(&s).is_some(), "{s}");
    }

    #[test]
    fn reads_udp6_not_udplite6() {
        let s = "Udp6InDatagrams                 \t5\nUdp6InCsumErrors                \t3\n\
                 UdpLite6InCsumErrors            \t9\n";
        assert_eq!(parse_udp6_in_csum_errors(s), Some(3));
        assert_eq!(parse_udp6_in_csum_errors("Udp6InCsumErrors x\n"), None);
        assert_eq!(parse_udp6_in_csum_errors("Udp6InCsumErrors\n"), None);
        assert_eq!(parse_udp6_in_csum_errors(""), None);
    }

    #[test]
    fn reads_this_machines_snmp6() {
        // Present whenever IPv6 is (this machine and the lab have it).
        let s = std::fs::read_to_string("/proc/thread-self/net/snmp6").expect("read snmp6");
        assert!(parse_udp6_in_csum_errors(&s).is_some(), "{s}");
    }
}
