//! `cargo xtask lab`: the test lab, by hand. It uses fixed namespace names
//! (prefix `fplab`) so `down`, `fault` and `traffic` find what `up` built.
use anyhow::Result;
use clap::Subcommand;
use flannel_probe_tests::lab::{Family, Fault, IpFamily, Lab, LabSpec};

const PREFIX: &str = "fplab";

#[derive(Subcommand)]
pub(crate) enum LabCmd {
    /// Build the lab (default three nodes: gladius, momonoke, eq14-001).
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Nodes get only their connected subnet (an air-gapped node).
        #[arg(long)]
        no_default_route: bool,
        /// v4 (flannel.1 only), dual (flannel.1 and flannel-v6.1, IPv6
        /// underlay and pod addresses beside the IPv4 ones) or v6
        /// (flannel-v6.1 only, no IPv4 on the nodes).
        #[arg(long, default_value = "v4", value_parser = Family::parse)]
        family: Family,
    },
    /// Remove every namespace of the lab.
    Down,
    /// Inject a fault: incident, overlay-down, other-vni, recreate-overlay,
    /// firewall, missing-fdb, missing-neigh, stale-fdb, forwarding-off, mtu,
    /// underlay-loss, link-loss[=PERCENT] (from --peer to the node only),
    /// other-port, forward-drop, bad-checksum[=N] (N VXLAN
    /// datagrams with a wrong UDP checksum from --peer, default the first
    /// other node), mac-change.
    Fault {
        name: String,
        #[arg(default_value = "eq14-001")]
        node: String,
        /// The peer node, for faults about one peer.
        #[arg(long)]
        peer: Option<String>,
        /// Hit the IPv6 overlay (flannel-v6.1) of a dual-stack lab; an
        /// IPv6-only lab's faults always do.
        #[arg(long)]
        v6: bool,
    },
    /// Ping every pod from every other pod.
    Traffic {
        #[arg(long, default_value_t = 10)]
        count: u32,
        /// Ping the pods' IPv6 addresses (over flannel-v6.1).
        #[arg(long)]
        v6: bool,
    },
}

pub(crate) fn run(cmd: LabCmd) -> Result<()> {
    crate::setup::packages()?;
    match cmd {
        LabCmd::Up {
            nodes,
            no_default_route,
            family,
        } => {
            let lab = Lab::up(LabSpec {
                nodes,
                prefix: Some(PREFIX.into()),
                default_route: !no_default_route,
                family,
                ..LabSpec::default()
            })?;
            for n in &lab.nodes {
                if n.has_v4 {
                    println!(
                        "{:<10} netns {:<22} underlay {:<12} pod {} ({})  VTEP MAC {}",
                        n.name,
                        n.ns,
                        n.ip,
                        n.pod_ip,
                        n.pod_ns,
                        n.vtep_mac_string()
                    );
                }
                if let (Some(ip6), Some(pod6)) = (n.ip6, n.pod_ip6) {
                    println!(
                        "{:<10} netns {:<22} underlay {ip6} pod {pod6} ({})  v6 VTEP MAC {}",
                        n.name,
                        n.ns,
                        n.pod_ns,
                        flannel_probe_tests::lab::format_mac(&n.vtep_mac6)
                    );
                }
            }
            println!(
                "\nrun the probe on a node:  ip netns exec {} target/release/flannel-probe report",
                lab.nodes.last().map_or("", |n| n.ns.as_str())
            );
            lab.keep();
            Ok(())
        }
        LabCmd::Down => Lab::down(PREFIX),
        LabCmd::Fault {
            name,
            node,
            peer,
            v6,
        } => {
            let mut lab = Lab::attach(PREFIX)?;
            let fault = Fault::parse(&name, &node, peer.as_deref())?;
            if v6 {
                lab.fault_on(IpFamily::V6, &fault)?;
            } else {
                lab.fault(&fault)?;
            }
            println!("injected {name} on {node}");
            lab.keep();
            Ok(())
        }
        LabCmd::Traffic { count, v6 } => {
            let lab = Lab::attach(PREFIX)?;
            let pings = if v6 {
                lab.traffic_on(IpFamily::V6, count, 0.2)?
            } else {
                lab.traffic(count, 0.2)?
            };
            for (from, to, s) in pings {
                println!(
                    "{from:>10} -> {to:<10} {}/{} replies",
                    s.received, s.transmitted
                );
            }
            lab.keep();
            Ok(())
        }
    }
}
