//! The faults the lab can inject (docs/LAB.md, "Faults the lab can inject").

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, Result, bail, ensure};

use super::LabNode;
use super::netns::{self, ip, nft};
use super::topology::{FdbVerb, format_mac, node_index, node_ip, node_name, random_mac};
use super::{Family, IpFamily, Lab};

/// One fault on one node of the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The incident: `ip link del flannel.1`.
    DeleteOverlay { node: String },
    /// `ip link set flannel.1 down`.
    OverlayDown { node: String },
    /// `flannel.1` recreated with another VNI (same MAC, address, routes);
    /// peers keep sending the old VNI.
    OtherVni { node: String, vni: u32 },
    /// `flannel.1` recreated with a new random MAC and peers reprogrammed,
    /// as a CNI restart does.
    RecreateOverlay { node: String },
    /// nftables in the node drops inbound UDP to the VXLAN port.
    FirewallVxlan { node: String },
    /// The node's FDB entry for the peer's VTEP MAC is missing.
    MissingFdb { node: String, peer: String },
    /// The node's neighbour entry for the peer's VTEP address is missing.
    MissingNeigh { node: String, peer: String },
    /// The node's FDB entry for the peer's VTEP MAC points at `wrong_ip`.
    StaleFdb {
        node: String,
        peer: String,
        wrong_ip: Ipv4Addr,
    },
    /// IPv4 forwarding switched off on the node's `flannel.1` (on IPv6:
    /// `net.ipv6.conf.all.forwarding=0`, the switch IPv6 forwards by).
    ForwardingOff { node: String },
    /// `flannel.1`'s MTU equals the uplink's, so full-size encapsulated
    /// frames (+50) no longer fit the uplink. The kernel will not raise a
    /// VXLAN MTU past its lower device's, so the node's `eth0` is lowered
    /// to the overlay MTU instead: full-size pod packets to and from the
    /// node are lost, small ones still pass.
    MtuTooLarge { node: String },
    /// The switch drops `percent`% of the VXLAN packets going to the node.
    UnderlayLoss { node: String, percent: u32 },
    /// The switch drops `percent`% of the VXLAN packets from `peer` to the
    /// node only: loss on exactly one link of the matrix.
    LinkLoss {
        node: String,
        peer: String,
        percent: u32,
    },
    /// `flannel.1` recreated with another destination port (same MAC, VNI).
    OtherPort { node: String, port: u16 },
    /// nftables in the node: a `forward` chain with `policy drop` (what
    /// Docker's `iptables -P FORWARD DROP` does): VXLAN still decapsulates,
    /// the pod traffic inside dies in the forward path.
    ForwardDrop { node: String },
    /// `count` VXLAN datagrams with a wrong outer UDP checksum, sent from
    /// `peer`'s node namespace (a raw socket, so with `peer`'s underlay
    /// address) to the node's VXLAN port, 20 ms apart: a sender with the
    /// checksum offload bug. Injecting it sends them and returns.
    BadChecksum {
        node: String,
        peer: String,
        count: u32,
    },
    /// `flannel.1` takes a new random MAC in place (`ip link set address`);
    /// the node's own neighbours, which the kernel flushes on an address
    /// change, are reinstalled as its flannel would at start, while the
    /// peers keep the old MAC in their FDB and neighbour entries.
    OverlayMacChange { node: String },
    /// The switch's port towards the node gets MTU `mtu`: the underlay path
    /// narrows (a tunnel underlay, a jumbo/overlay misconfiguration) and
    /// larger frames are dropped silently, both ways (the bridge will not
    /// forward them out of that port, the port's veth will not take them
    /// from the node), while small ones pass.
    UnderlayMtu { node: String, mtu: u32 },
}

/// The names `Fault::parse` accepts (aliases included), for help texts.
pub const FAULT_NAMES: &[&str] = &[
    "incident",
    "delete-overlay",
    "overlay-down",
    "other-vni",
    "recreate-overlay",
    "firewall",
    "missing-fdb",
    "missing-neigh",
    "stale-fdb",
    "forwarding-off",
    "mtu",
    "underlay-loss",
    "link-loss",
    "other-port",
    "forward-drop",
    "bad-checksum",
    "mac-change",
    "underlay-mtu",
];

const DEFAULT_OTHER_VNI: u32 = 2;
const DEFAULT_LOSS_PERCENT: u32 = 30;
const DEFAULT_OTHER_PORT: u16 = 4789;
const DEFAULT_BAD_CHECKSUMS: u32 = 40;
const DEFAULT_UNDERLAY_MTU: u32 = 1400;

impl Fault {
    /// Parses a fault by name for `node`. A few faults take a value after
    /// `=`: `other-vni=VNI` (default 2), `underlay-loss=PERCENT` (30),
    /// `other-port=PORT` (4789) and `stale-fdb=IP` (default: the IP of the
    /// first node that is neither `node` nor the peer). `peer` defaults to
    /// the first node other than `node`. Node names follow the lab's naming
    /// (gladius, momonoke, eq14-001, node4, ...); whether the node exists
    /// in a given lab is checked when the fault is injected.
    pub fn parse(name: &str, node: &str, peer: Option<&str>) -> Result<Fault> {
        let (name, value) = match name.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (name, None),
        };
        let node_idx = node_index(node).with_context(|| format!("unknown node {node:?}"))?;
        let peer_idx = match peer {
            Some(peer) => {
                let index = node_index(peer).with_context(|| format!("unknown peer {peer:?}"))?;
                ensure!(
                    index != node_idx,
                    "the peer must be another node than {node}"
                );
                index
            }
            None => usize::from(node_idx == 0),
        };
        let node = node.to_owned();
        let peer = node_name(peer_idx);
        let takes_value = matches!(
            name,
            "other-vni"
                | "underlay-loss"
                | "link-loss"
                | "other-port"
                | "stale-fdb"
                | "bad-checksum"
                | "underlay-mtu"
        );
        if let (Some(value), false) = (value, takes_value) {
            bail!("fault {name} takes no value (got {value:?})");
        }
        let fault = match name {
            "incident" | "delete-overlay" => Fault::DeleteOverlay { node },
            "overlay-down" => Fault::OverlayDown { node },
            "other-vni" => {
                let vni = match value {
                    Some(v) => v.parse().with_context(|| format!("bad VNI {v:?}"))?,
                    None => DEFAULT_OTHER_VNI,
                };
                ensure!((1..=0xff_ffff).contains(&vni), "VNI {vni} is out of range");
                Fault::OtherVni { node, vni }
            }
            "recreate-overlay" => Fault::RecreateOverlay { node },
            "firewall" => Fault::FirewallVxlan { node },
            "missing-fdb" => Fault::MissingFdb { node, peer },
            "missing-neigh" => Fault::MissingNeigh { node, peer },
            "stale-fdb" => {
                let wrong_ip = match value {
                    Some(v) => v
                        .parse()
                        .with_context(|| format!("bad IPv4 address {v:?}"))?,
                    None => {
                        let third = (0..)
                            .find(|i| *i != node_idx && *i != peer_idx)
                            .unwrap_or_default();
                        node_ip(third)
                    }
                };
                Fault::StaleFdb {
                    node,
                    peer,
                    wrong_ip,
                }
            }
            "forwarding-off" => Fault::ForwardingOff { node },
            "mtu" => Fault::MtuTooLarge { node },
            "underlay-loss" => {
                let percent = match value {
                    Some(v) => v.parse().with_context(|| format!("bad percentage {v:?}"))?,
                    None => DEFAULT_LOSS_PERCENT,
                };
                ensure!(percent <= 100, "loss of {percent}% is more than 100%");
                Fault::UnderlayLoss { node, percent }
            }
            "link-loss" => {
                let percent = match value {
                    Some(v) => v.parse().with_context(|| format!("bad percentage {v:?}"))?,
                    None => DEFAULT_LOSS_PERCENT,
                };
                ensure!(percent <= 100, "loss of {percent}% is more than 100%");
                Fault::LinkLoss {
                    node,
                    peer,
                    percent,
                }
            }
            "other-port" => {
                let port = match value {
                    Some(v) => v.parse().with_context(|| format!("bad port {v:?}"))?,
                    None => DEFAULT_OTHER_PORT,
                };
                ensure!(port != 0, "port 0 is not a VXLAN port");
                Fault::OtherPort { node, port }
            }
            "forward-drop" => Fault::ForwardDrop { node },
            "bad-checksum" => {
                let count = match value {
                    Some(v) => v.parse().with_context(|| format!("bad count {v:?}"))?,
                    None => DEFAULT_BAD_CHECKSUMS,
                };
                ensure!(count > 0, "bad-checksum sends at least one datagram");
                Fault::BadChecksum { node, peer, count }
            }
            "mac-change" => Fault::OverlayMacChange { node },
            "underlay-mtu" => {
                let mtu = match value {
                    Some(v) => v.parse().with_context(|| format!("bad MTU {v:?}"))?,
                    None => DEFAULT_UNDERLAY_MTU,
                };
                // IPv4 needs 68; a veth takes at most 65535.
                ensure!((68..=65535).contains(&mtu), "MTU {mtu} is out of range");
                Fault::UnderlayMtu { node, mtu }
            }
            other => bail!(
                "unknown fault {other:?}; known faults: {}",
                FAULT_NAMES.join(", ")
            ),
        };
        Ok(fault)
    }

    /// The node the fault is injected on.
    pub fn node(&self) -> &str {
        match self {
            Fault::DeleteOverlay { node }
            | Fault::OverlayDown { node }
            | Fault::OtherVni { node, .. }
            | Fault::RecreateOverlay { node }
            | Fault::FirewallVxlan { node }
            | Fault::MissingFdb { node, .. }
            | Fault::MissingNeigh { node, .. }
            | Fault::StaleFdb { node, .. }
            | Fault::ForwardingOff { node }
            | Fault::MtuTooLarge { node }
            | Fault::UnderlayLoss { node, .. }
            | Fault::LinkLoss { node, .. }
            | Fault::OtherPort { node, .. }
            | Fault::ForwardDrop { node }
            | Fault::BadChecksum { node, .. }
            | Fault::OverlayMacChange { node }
            | Fault::UnderlayMtu { node, .. } => node,
        }
    }

    /// The canonical name `parse` accepts for this fault.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::DeleteOverlay { .. } => "delete-overlay",
            Fault::OverlayDown { .. } => "overlay-down",
            Fault::OtherVni { .. } => "other-vni",
            Fault::RecreateOverlay { .. } => "recreate-overlay",
            Fault::FirewallVxlan { .. } => "firewall",
            Fault::MissingFdb { .. } => "missing-fdb",
            Fault::MissingNeigh { .. } => "missing-neigh",
            Fault::StaleFdb { .. } => "stale-fdb",
            Fault::ForwardingOff { .. } => "forwarding-off",
            Fault::MtuTooLarge { .. } => "mtu",
            Fault::UnderlayLoss { .. } => "underlay-loss",
            Fault::LinkLoss { .. } => "link-loss",
            Fault::OtherPort { .. } => "other-port",
            Fault::ForwardDrop { .. } => "forward-drop",
            Fault::BadChecksum { .. } => "bad-checksum",
            Fault::OverlayMacChange { .. } => "mac-change",
            Fault::UnderlayMtu { .. } => "underlay-mtu",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.name(), self.node())?;
        match self {
            Fault::OtherVni { vni, .. } => write!(f, " (VNI {vni})"),
            Fault::MissingFdb { peer, .. } | Fault::MissingNeigh { peer, .. } => {
                write!(f, " (peer {peer})")
            }
            Fault::StaleFdb { peer, wrong_ip, .. } => write!(f, " (peer {peer} -> {wrong_ip})"),
            Fault::UnderlayLoss { percent, .. } => write!(f, " ({percent}%)"),
            Fault::LinkLoss { peer, percent, .. } => write!(f, " ({percent}% from {peer})"),
            Fault::OtherPort { port, .. } => write!(f, " (port {port})"),
            Fault::BadChecksum { peer, count, .. } => write!(f, " ({count} from {peer})"),
            Fault::UnderlayMtu { mtu, .. } => write!(f, " (MTU {mtu})"),
            _ => Ok(()),
        }
    }
}

impl Lab {
    /// Injects `fault` on the node's IPv4 overlay (`flannel.<VNI>`), or on
    /// an IPv6-only lab on its `flannel-v6.<VNI>`. Faults are not undone
    /// individually: build a new lab (or `RecreateOverlay` the node, which
    /// restores its overlay).
    pub fn fault(&mut self, fault: &Fault) -> Result<()> {
        let family = if self.spec.family.has_v4() {
            IpFamily::V4
        } else {
            IpFamily::V6
        };
        self.fault_on(family, fault)
    }

    /// Injects `fault` on the overlay of `family` (`IpFamily::V6`:
    /// `flannel-v6.<VNI>`, its FDB, neighbours, forwarding sysctl, and
    /// IPv6-only nftables rules), leaving the other family's overlay as it
    /// is.
    pub fn fault_on(&mut self, family: IpFamily, fault: &Fault) -> Result<()> {
        self.inject(family, fault).with_context(|| {
            let on = match family {
                IpFamily::V4 => "",
                IpFamily::V6 => " (IPv6 overlay)",
            };
            format!("injecting fault {fault}{on}")
        })
    }

    fn inject(&mut self, family: IpFamily, fault: &Fault) -> Result<()> {
        let index = self.node_index(fault.node())?;
        let node = &self.nodes[index];
        let ns = node.ns.as_str();
        let dev = node.overlay_of(family).with_context(|| {
            format!(
                "node {} has no {} overlay in this lab",
                node.name,
                match family {
                    IpFamily::V4 => "IPv4",
                    IpFamily::V6 => "IPv6",
                }
            )
        })?;
        let port = self.spec.port;
        // nftables: a V4 lab keeps the rules it always had (`inet`); on a lab
        // with both families a fault hits only its own (`ip` or `ip6`).
        let nft_family = match (self.spec.family, family) {
            (Family::V4, _) => "inet",
            (_, IpFamily::V4) => "ip",
            (_, IpFamily::V6) => "ip6",
        };
        // The ethertype a bridge-family rule adds on a lab with IPv6.
        let ether = match (self.spec.family, family) {
            (Family::V4, _) => "",
            (_, IpFamily::V4) => "meta protocol ip ",
            (_, IpFamily::V6) => "meta protocol ip6 ",
        };
        let table_suffix = match family {
            IpFamily::V4 => "",
            IpFamily::V6 => "6",
        };
        match fault {
            Fault::DeleteOverlay { .. } => {
                ip(ns, &["link", "del", "dev", dev])?;
            }
            Fault::OverlayDown { .. } => {
                ip(ns, &["link", "set", "dev", dev, "down"])?;
            }
            Fault::OtherVni { vni, .. } => {
                self.recreate_overlay(index, *vni, port, family)?;
            }
            Fault::OtherPort { port: other, .. } => {
                self.recreate_overlay(index, self.spec.vni, *other, family)?;
            }
            Fault::RecreateOverlay { .. } => {
                let mac = random_mac()?;
                match family {
                    IpFamily::V4 => self.nodes[index].vtep_mac = mac,
                    IpFamily::V6 => self.nodes[index].vtep_mac6 = mac,
                }
                self.recreate_overlay(index, self.spec.vni, port, family)?;
                self.reprogram_peers_of(index, family)?;
            }
            Fault::FirewallVxlan { .. } => {
                // `add` (not `create`) so injecting it twice is harmless.
                let script = format!(
                    "add table {nft_family} fpfw{table_suffix}\n\
                     add chain {nft_family} fpfw{table_suffix} input {{ type filter hook input priority 0; policy accept; }}\n\
                     add rule {nft_family} fpfw{table_suffix} input udp dport {port} drop\n"
                );
                nft(ns, &script)?;
            }
            Fault::MissingFdb { peer, .. } => {
                let mac = format_mac(&self.node_named(peer)?.vtep_mac_of(family));
                netns::run(
                    "bridge",
                    &["-netns", ns, "fdb", "del", &mac, "dev", dev, "self"],
                )?;
            }
            Fault::MissingNeigh { peer, .. } => {
                let peer = self.node_named(peer)?;
                let vtep = match family {
                    IpFamily::V4 => peer.vtep_ip().to_string(),
                    IpFamily::V6 => peer
                        .vtep_ip6()
                        .map(|v| v.to_string())
                        .context("the peer has no IPv6 subnet")?,
                };
                ip(ns, &["neigh", "del", &vtep, "dev", dev])?;
            }
            Fault::StaleFdb { peer, wrong_ip, .. } => {
                let mac = format_mac(&self.node_named(peer)?.vtep_mac_of(family));
                // On IPv6, `wrong_ip` names a lab node by its IPv4 plan
                // address and that node's IPv6 address is used.
                let wrong_ip: IpAddr = match family {
                    IpFamily::V4 => IpAddr::V4(*wrong_ip),
                    IpFamily::V6 => self
                        .nodes
                        .iter()
                        .find(|n| n.ip == *wrong_ip)
                        .and_then(|n| n.ip6)
                        .map(IpAddr::V6)
                        .with_context(|| {
                            format!(
                                "on IPv6, stale-fdb's address must be a lab node's IPv4 \
                                 address (its IPv6 address is used), not {wrong_ip}"
                            )
                        })?,
                };
                // Replace rewrites the entry's (only) remote in place.
                netns::run(
                    "bridge",
                    &[
                        "-netns",
                        ns,
                        "fdb",
                        "replace",
                        &mac,
                        "dev",
                        dev,
                        "dst",
                        &wrong_ip.to_string(),
                        "self",
                        "permanent",
                    ],
                )?;
            }
            Fault::ForwardingOff { .. } => {
                // The ifname's dot would be a separator in sysctl's dotted
                // syntax, so write the /proc file directly.
                // IPv6 forwards by `all` alone: the per-device value does
                // not stop it (measured in the lab), so the IPv6 fault is
                // `net.ipv6.conf.all.forwarding=0`.
                let path = match family {
                    IpFamily::V4 => format!("/proc/sys/net/ipv4/conf/{dev}/forwarding"),
                    IpFamily::V6 => "/proc/sys/net/ipv6/conf/all/forwarding".to_owned(),
                };
                netns::exec(ns, &["sh", "-c", r#"echo 0 > "$0""#, &path])?;
            }
            Fault::MtuTooLarge { .. } => {
                // The kernel refuses (EINVAL) a VXLAN MTU above its lower
                // device's MTU minus 50, so the mismatch is made from the
                // other side: the uplink shrinks to the overlay's MTU.
                let mtu = match family {
                    IpFamily::V4 => self.spec.overlay_mtu(),
                    IpFamily::V6 => self.spec.overlay6_mtu(),
                }
                .to_string();
                ip(ns, &["link", "set", "dev", "eth0", "mtu", &mtu])?;
            }
            Fault::UnderlayLoss { percent, .. } | Fault::LinkLoss { percent, .. } => {
                ensure!(*percent <= 100, "loss of {percent}% is more than 100%");
                // nft rejects `< 100` (numgen mod 100 never reaches it), and
                // 0% needs no rule at all.
                let sample = match percent {
                    0 => return Ok(()),
                    100 => String::new(),
                    share => format!("numgen random mod 100 < {share} "),
                };
                // One link: only the peer's VXLAN (the bridge family reads
                // the IPv4 header too); its own table, so both can be set.
                let (table, from) = match fault {
                    Fault::LinkLoss { peer, .. } => {
                        let p = &self.nodes[self.node_index(peer)?];
                        let from = match family {
                            IpFamily::V4 => format!("ip saddr {} ", p.ip),
                            IpFamily::V6 => {
                                let ip6 = p.ip6.with_context(|| {
                                    format!("{peer} has no IPv6 address on this lab")
                                })?;
                                format!("ip6 saddr {ip6} ")
                            }
                        };
                        ("fplinkloss", from)
                    }
                    _ => ("fploss", String::new()),
                };
                let script = format!(
                    "add table bridge {table}{table_suffix}\n\
                     add chain bridge {table}{table_suffix} forward {{ type filter hook forward priority 0; policy accept; }}\n\
                     add rule bridge {table}{table_suffix} forward oifname \"{switch_port}\" {ether}{from}udp dport {port} {sample}drop\n",
                    switch_port = node.switch_port,
                );
                nft(&self.switch_ns, &script)?;
            }
            Fault::ForwardDrop { .. } => {
                // `add` (not `create`) so injecting it twice is harmless.
                nft(
                    ns,
                    &format!(
                        "add table {nft_family} fpfwd{table_suffix}\n\
                         add chain {nft_family} fpfwd{table_suffix} forward \
                         {{ type filter hook forward priority 0; policy drop; }}\n"
                    ),
                )?;
            }
            Fault::BadChecksum { peer, count, .. } => {
                let to = node.name.clone();
                self.send_bad_checksums_on(family, peer, &to, *count)?;
            }
            Fault::OverlayMacChange { .. } => {
                let mac = random_mac()?;
                ip(
                    ns,
                    &["link", "set", "dev", dev, "address", &format_mac(&mac)],
                )?;
                match family {
                    IpFamily::V4 => self.nodes[index].vtep_mac = mac,
                    IpFamily::V6 => self.nodes[index].vtep_mac6 = mac,
                }
                let peers: Vec<&LabNode> = self.nodes.iter().filter(|p| p.index != index).collect();
                Self::program_peers_on(&self.nodes[index], &peers, FdbVerb::Replace, family)?;
            }
            Fault::UnderlayMtu { mtu, .. } => {
                // With br_netfilter loaded, the bridge refragments IPv4
                // without DF (Flannel's VXLAN) to the port's MTU where a
                // switch drops it: off in the lab's switch namespace only
                // (the setting is per namespace), so it drops as switches do.
                netns::exec(
                    &self.switch_ns,
                    &[
                        "sh",
                        "-c",
                        r#"[ ! -e "$0" ] || echo 0 > "$0""#,
                        "/proc/sys/net/bridge/bridge-nf-call-iptables",
                    ],
                )?;
                let mtu = mtu.to_string();
                ip(
                    &self.switch_ns,
                    &["link", "set", "dev", &node.switch_port, "mtu", &mtu],
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_name() {
        for name in FAULT_NAMES {
            let fault = Fault::parse(name, "eq14-001", None).expect(name);
            assert_eq!(fault.node(), "eq14-001");
            let canonical = if *name == "incident" {
                "delete-overlay"
            } else {
                name
            };
            assert_eq!(fault.name(), canonical);
        }
    }

    #[test]
    fn defaults() {
        assert_eq!(
            Fault::parse("missing-fdb", "gladius", None).expect("parse"),
            Fault::MissingFdb {
                node: "gladius".into(),
                peer: "momonoke".into()
            }
        );
        assert_eq!(
            Fault::parse("stale-fdb", "gladius", Some("eq14-001")).expect("parse"),
            Fault::StaleFdb {
                node: "gladius".into(),
                peer: "eq14-001".into(),
                wrong_ip: Ipv4Addr::new(192, 0, 2, 12),
            }
        );
        assert_eq!(
            Fault::parse("stale-fdb", "eq14-001", None).expect("parse"),
            Fault::StaleFdb {
                node: "eq14-001".into(),
                peer: "gladius".into(),
                wrong_ip: Ipv4Addr::new(192, 0, 2, 12),
            }
        );
        assert_eq!(
            Fault::parse("other-vni", "gladius", None).expect("parse"),
            Fault::OtherVni {
                node: "gladius".into(),
                vni: 2
            }
        );
        assert_eq!(
            Fault::parse("underlay-loss=55", "node4", None).expect("parse"),
            Fault::UnderlayLoss {
                node: "node4".into(),
                percent: 55
            }
        );
        assert_eq!(
            Fault::parse("bad-checksum", "eq14-001", None).expect("parse"),
            Fault::BadChecksum {
                node: "eq14-001".into(),
                peer: "gladius".into(),
                count: 40
            }
        );
        assert_eq!(
            Fault::parse("bad-checksum=7", "eq14-001", Some("momonoke")).expect("parse"),
            Fault::BadChecksum {
                node: "eq14-001".into(),
                peer: "momonoke".into(),
                count: 7
            }
        );
        assert_eq!(
            Fault::parse("other-port", "gladius", None).expect("parse"),
            Fault::OtherPort {
                node: "gladius".into(),
                port: 4789
            }
        );
    }

    #[test]
    fn rejects_nonsense() {
        assert!(Fault::parse("nope", "gladius", None).is_err());
        assert!(Fault::parse("incident", "nobody", None).is_err());
        assert!(Fault::parse("missing-fdb", "gladius", Some("gladius")).is_err());
        assert!(Fault::parse("incident=3", "gladius", None).is_err());
        assert!(Fault::parse("underlay-loss=101", "gladius", None).is_err());
        assert!(Fault::parse("other-vni=0", "gladius", None).is_err());
        assert!(Fault::parse("bad-checksum=0", "gladius", None).is_err());
        assert!(Fault::parse("forward-drop=1", "gladius", None).is_err());
    }

    #[test]
    fn underlay_mtu_defaults_to_1400_and_checks_its_value() {
        assert_eq!(
            Fault::parse("underlay-mtu", "eq14-001", None).expect("parse"),
            Fault::UnderlayMtu {
                node: "eq14-001".into(),
                mtu: 1400
            }
        );
        assert_eq!(
            Fault::parse("underlay-mtu=1280", "gladius", None)
                .expect("parse")
                .to_string(),
            "underlay-mtu on gladius (MTU 1280)"
        );
        assert!(Fault::parse("underlay-mtu=20", "gladius", None).is_err());
        assert!(Fault::parse("underlay-mtu=big", "gladius", None).is_err());
    }
}
