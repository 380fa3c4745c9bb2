//! The kernel's UDP counters (`/proc/net/snmp`): `InCsumErrors` witnesses
//! datagrams the kernel dropped for a bad checksum, whatever their port.

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

/// `InCsumErrors` of the calling thread's network namespace (cumulative,
/// since the namespace was created). `/proc/thread-self/net`, because
/// `/proc/net` follows the process's main thread, which may sit in another
/// namespace than the thread discovering the node.
pub(crate) fn udp_in_csum_errors() -> Option<u64> {
    let path = "/proc/thread-self/net/snmp";
    match std::fs::read_to_string(path) {
        Ok(s) => parse_udp_in_csum_errors(&s),
        Err(e) => {
            tracing::debug!(%path, error = %e, "cannot read the UDP counters");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_udp_in_csum_errors;

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
}
