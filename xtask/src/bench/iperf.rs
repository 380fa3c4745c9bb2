//! What one `iperf3 -c ... -J` run measured, from its JSON.
use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A TCP run, as the receiver saw it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct TcpResult {
    pub bits_per_second: f64,
    pub seconds: f64,
    pub retransmits: u64,
}

/// A UDP run: what was sent and what arrived.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct UdpResult {
    pub seconds: f64,
    /// Datagrams the client sent.
    pub sent: u64,
    /// Datagrams the server received (its highest sequence number minus
    /// the ones it never saw).
    pub received: u64,
    pub lost_percent: f64,
}

impl UdpResult {
    /// Received datagrams per second.
    pub(super) fn pps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.received as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Sent datagrams per second.
    pub(super) fn sent_pps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.sent as f64 / self.seconds
        } else {
            0.0
        }
    }
}

fn parse(json: &str) -> Result<Value> {
    let v: Value = serde_json::from_str(json).context("iperf3 printed no JSON")?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        bail!("iperf3: {e}");
    }
    Ok(v)
}

fn field<'a>(v: &'a Value, path: &[&str]) -> Result<&'a Value> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .ok_or_else(|| anyhow!("iperf3's JSON has no {}", path.join(".")))
}

fn f64_at(v: &Value, path: &[&str]) -> Result<f64> {
    field(v, path)?
        .as_f64()
        .ok_or_else(|| anyhow!("{} is not a number", path.join(".")))
}

fn u64_at(v: &Value, path: &[&str]) -> Result<u64> {
    field(v, path)?
        .as_u64()
        .ok_or_else(|| anyhow!("{} is not a count", path.join(".")))
}

/// Parses a TCP client's `-J` output.
pub(super) fn parse_tcp(json: &str) -> Result<TcpResult> {
    let v = parse(json)?;
    Ok(TcpResult {
        bits_per_second: f64_at(&v, &["end", "sum_received", "bits_per_second"])?,
        seconds: f64_at(&v, &["end", "sum_received", "seconds"])?,
        retransmits: u64_at(&v, &["end", "sum_sent", "retransmits"]).unwrap_or(0),
    })
}

/// Parses a UDP client's `-J` output (iperf3 3.12 and later put the
/// server's view in `end.sum_received`; older ones only have `end.sum`).
pub(super) fn parse_udp(json: &str) -> Result<UdpResult> {
    let v = parse(json)?;
    let rx = if field(&v, &["end", "sum_received"]).is_ok() {
        "sum_received"
    } else {
        "sum"
    };
    let seen = u64_at(&v, &["end", rx, "packets"])?;
    let lost = u64_at(&v, &["end", rx, "lost_packets"])?;
    let sent = u64_at(&v, &["end", "sum_sent", "packets"]).unwrap_or(seen);
    Ok(UdpResult {
        seconds: f64_at(&v, &["end", rx, "seconds"])?,
        sent,
        received: seen.saturating_sub(lost),
        lost_percent: f64_at(&v, &["end", rx, "lost_percent"]).unwrap_or(0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from a real `iperf3 -c 10.99.0.1 -t 2 -J` (3.12).
    const TCP: &str = r#"{
      "start": {"version": "iperf 3.12", "test_start": {"protocol": "TCP", "duration": 2}},
      "intervals": [],
      "end": {
        "streams": [],
        "sum_sent": {"start": 0, "end": 2.004173, "seconds": 2.004173, "bytes": 1930690560,
                     "bits_per_second": 7706682247.49061, "retransmits": 3, "sender": true},
        "sum_received": {"start": 0, "end": 2.008315, "seconds": 2.008315, "bytes": 1929379840,
                         "bits_per_second": 7685566616.790692, "sender": true},
        "cpu_utilization_percent": {"host_total": 19.68}
      }
    }"#;

    /// Trimmed from a real `iperf3 -c 10.99.0.1 -u -l 64 -b 0 -t 2 -J` (3.12).
    const UDP: &str = r#"{
      "start": {"version": "iperf 3.12"},
      "intervals": [],
      "end": {
        "streams": [],
        "sum": {"start": 0, "end": 2.026143, "seconds": 2.026143, "bytes": 8821760,
                "bits_per_second": 34884662.856284186, "jitter_ms": 0.0466,
                "lost_packets": 76044, "packets": 137840, "lost_percent": 55.16831108531631,
                "sender": true},
        "sum_sent": {"start": 0, "end": 2.023069, "seconds": 2.023069, "bytes": 8821760,
                     "bits_per_second": 34884662.856284186, "jitter_ms": 0,
                     "lost_packets": 0, "packets": 137840, "lost_percent": 0, "sender": true},
        "sum_received": {"start": 0, "end": 2.026143, "seconds": 2.026143, "bytes": 3906368,
                         "bits_per_second": 15423859.026732074, "jitter_ms": 0.0466,
                         "lost_packets": 76044, "packets": 137081,
                         "lost_percent": 55.16831108531631, "sender": false}
      }
    }"#;

    #[test]
    fn tcp_takes_the_receivers_rate() {
        let r = parse_tcp(TCP).unwrap();
        assert_eq!(r.bits_per_second, 7685566616.790692);
        assert_eq!(r.seconds, 2.008315);
        assert_eq!(r.retransmits, 3);
    }

    #[test]
    fn udp_counts_what_arrived() {
        let r = parse_udp(UDP).unwrap();
        assert_eq!((r.sent, r.received), (137840, 137081 - 76044));
        // 61037 datagrams of 64 bytes: exactly the bytes the server got.
        assert_eq!(r.received * 64, 3906368);
        assert!((r.pps() - 61037.0 / 2.026143).abs() < 1e-6);
        assert!((r.sent_pps() - 137840.0 / 2.026143).abs() < 1e-6);
        assert!((r.lost_percent - 55.168).abs() < 1e-3);
    }

    #[test]
    fn older_udp_output_has_only_the_sum() {
        let old = r#"{"end": {"sum": {"seconds": 5.0, "packets": 1000, "lost_packets": 10,
                     "lost_percent": 1.0}}}"#;
        let r = parse_udp(old).unwrap();
        assert_eq!((r.sent, r.received), (1000, 990));
        assert_eq!(r.pps(), 198.0);
    }

    #[test]
    fn errors_are_iperfs_own() {
        let e = parse_tcp(r#"{"start": {}, "end": {}, "error": "unable to connect to server: Connection refused"}"#)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "iperf3: unable to connect to server: Connection refused"
        );
        assert!(parse_tcp("iperf3: error").is_err());
        let e = parse_tcp(r#"{"end": {}}"#).unwrap_err();
        assert!(e.to_string().contains("end.sum_received"), "{e}");
    }
}
