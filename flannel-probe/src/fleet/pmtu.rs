//! `UNDERLAY_MTU_BLACKHOLE` in the mesh: on a link, encapsulated packets
//! in two size classes (outer IPv4 total length above
//! [`LARGE_OUTER_LEN`] or not), what the sender sent against what the
//! receiver got. Large ones lost while small ones arrive is a path that is
//! narrower than the overlay's MTU assumes (and drops silently: no ICMP
//! comes back, or the sender's report would say so).
use flannel_probe_common::abi::LARGE_OUTER_LEN;

use crate::{
    diagnose::pmtu::remedy,
    report::{FindingCode, Severity, Traffic},
};

/// One link's size classes over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Classes {
    pub large_sent: u64,
    pub large_received: u64,
    pub small_sent: u64,
    pub small_received: u64,
    /// The largest outer IPv4 length the receiver has had from the sender
    /// since its agent started, and whether that maximum grew in the
    /// window (then it is the window's own).
    pub max_received: u64,
    pub max_in_window: bool,
}

impl Classes {
    /// From the sender's tx to the receiver and the receiver's rx from the
    /// sender, each over the window (`end - start`), and the receiver's
    /// running maximum at the start and the end.
    pub(crate) fn new(sent: &Traffic, received: &Traffic, max_before: u64) -> Self {
        Self {
            large_sent: sent.tx_encap_large,
            large_received: received.rx_encap_large,
            small_sent: sent.tx_encap_packets.saturating_sub(sent.tx_encap_large),
            small_received: received
                .rx_encap_packets
                .saturating_sub(received.rx_encap_large),
            max_received: received.rx_encap_max_len,
            max_in_window: received.rx_encap_max_len > max_before,
        }
    }
}

/// Share of `sent` not received, in percent, and whether the loss counts:
/// above `threshold_pct` and more than `allowance` packets.
fn lossy(sent: u64, received: u64, threshold_pct: f64, allowance: u64) -> bool {
    let lost = sent.saturating_sub(received);
    sent > 0 && lost as f64 * 100.0 / sent as f64 > threshold_pct && lost > allowance
}

/// What the finding says of a link.
pub(crate) struct Blackhole {
    pub summary: String,
    pub evidence: Vec<String>,
    pub remediation: String,
    pub severity: Severity,
    pub code: FindingCode,
}

/// The finding of a link, `None` when the large class is not lost, or the
/// small one is lost alike (plain loss: `UNDERLAY_LOSS`). `allowance`
/// gives a class's in-flight allowance from what it sent (the link's).
#[allow(clippy::too_many_arguments)]
pub(crate) fn blackhole(
    c: &Classes,
    from_host: &str,
    to_host: &str,
    to_vtep: &str,
    from_vtep: &str,
    overlay: &str,
    threshold_pct: f64,
    allowance: impl Fn(u64) -> u64,
) -> Option<Blackhole> {
    if !lossy(
        c.large_sent,
        c.large_received,
        threshold_pct,
        allowance(c.large_sent),
    ) {
        return None;
    }
    // Small ones must arrive, and not be lost like the large ones.
    if c.small_received == 0
        || lossy(
            c.small_sent,
            c.small_received,
            threshold_pct,
            allowance(c.small_sent),
        )
    {
        return None;
    }
    let lost = c.large_sent.saturating_sub(c.large_received);
    let pct = lost as f64 * 100.0 / c.large_sent as f64;
    let largest = if c.max_in_window {
        format!(
            "the largest outer packet {to_host} received from {from_vtep} in the window: {} bytes",
            c.max_received
        )
    } else {
        format!(
            "no outer packet larger than {} bytes arrived at {to_host} from {from_vtep} in the window \
             (the largest since its agent started)",
            c.max_received
        )
    };
    // What passed is a lower bound of the path MTU; the class boundary is
    // the one known to pass when nothing larger did.
    let path =
        (c.max_in_window && c.max_received > u64::from(LARGE_OUTER_LEN)).then_some(c.max_received);
    let code = FindingCode::UnderlayMtuBlackhole;
    Some(Blackhole {
        summary: format!(
            "{pct:.1}% of large VXLAN (outer IPv4 > {LARGE_OUTER_LEN} bytes) from {from_host} to {to_host} lost \
             while small packets arrive: the underlay path MTU is below the overlay's"
        ),
        evidence: vec![
            format!(
                "{from_host} sent {} large and {} small encapsulated packets to {to_vtep}",
                c.large_sent, c.small_sent
            ),
            format!(
                "{to_host} received {} large and {} small from {from_vtep}",
                c.large_received, c.small_received
            ),
            largest,
        ],
        remediation: remedy(path, overlay),
        severity: code.severity().unwrap_or(Severity::Warning),
        code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(large: (u64, u64), small: (u64, u64)) -> Classes {
        Classes {
            large_sent: large.0,
            large_received: large.1,
            small_sent: small.0,
            small_received: small.1,
            max_received: 134,
            max_in_window: false,
        }
    }

    fn run(c: &Classes) -> Option<Blackhole> {
        blackhole(
            c,
            "gladius",
            "eq14-001",
            "192.0.2.13",
            "192.0.2.11",
            "flannel.1",
            2.0,
            |_| 2,
        )
    }

    #[test]
    fn large_lost_while_small_arrive_is_a_blackhole() {
        let f = run(&classes((20, 0), (40, 40))).expect("a blackhole");
        assert_eq!(f.code, FindingCode::UnderlayMtuBlackhole);
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.summary.contains("100.0% of large"), "{}", f.summary);
        assert_eq!(
            f.evidence[..2],
            [
                "gladius sent 20 large and 40 small encapsulated packets to 192.0.2.13".to_string(),
                "eq14-001 received 0 large and 40 small from 192.0.2.11".to_string()
            ]
        );
        assert!(f.evidence[2].contains("134 bytes"), "{}", f.evidence[2]);
        // Nothing large passed: the class boundary is what to set.
        assert!(f.remediation.contains("MTU to 1350"), "{}", f.remediation);
        assert!(f.remediation.contains("\"MTU\": 1400"), "{}", f.remediation);
    }

    #[test]
    fn a_lossy_link_that_loses_both_classes_is_no_blackhole() {
        assert!(run(&classes((20, 10), (40, 20))).is_none());
        // Small ones do not arrive at all: nothing says the size matters.
        assert!(run(&classes((20, 0), (40, 0))).is_none());
        assert!(run(&classes((20, 0), (0, 0))).is_none());
    }

    #[test]
    fn within_the_threshold_or_the_allowance_nothing_is_lost() {
        // 2 of 200 large missing: 1 %, below the threshold.
        assert!(run(&classes((200, 198), (40, 40))).is_none());
        // 2 of 20 (10 %) but within the in-flight allowance.
        assert!(run(&classes((20, 18), (40, 40))).is_none());
        // Nothing large sent.
        assert!(run(&classes((0, 0), (40, 40))).is_none());
    }

    #[test]
    fn a_larger_size_that_arrived_in_the_window_is_the_path_mtu() {
        let mut c = classes((100, 10), (40, 40));
        c.max_received = 1420;
        c.max_in_window = true;
        let f = run(&c).expect("a blackhole");
        assert!(f.evidence[2].contains("in the window: 1420 bytes"));
        assert!(f.remediation.contains("MTU to 1370"), "{}", f.remediation);
    }

    #[test]
    fn classes_split_the_windows_counters() {
        let sent = Traffic {
            tx_encap_packets: 60,
            tx_encap_large: 20,
            ..Traffic::default()
        };
        let received = Traffic {
            rx_encap_packets: 40,
            rx_encap_large: 0,
            rx_encap_max_len: 134,
            ..Traffic::default()
        };
        let c = Classes::new(&sent, &received, 134);
        assert_eq!(
            (
                c.large_sent,
                c.small_sent,
                c.large_received,
                c.small_received
            ),
            (20, 40, 0, 40)
        );
        assert!(!c.max_in_window);
        assert!(Classes::new(&sent, &received, 100).max_in_window);
    }
}
