//! `cargo xtask lab`: the test lab, by hand. It uses fixed namespace names
//! (prefix `fplab`) so `down`, `fault` and `traffic` find what `up` built.
use anyhow::Result;
use clap::Subcommand;
use flannel_probe_tests::lab::{Fault, Lab, LabSpec};

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
    },
    /// Ping every pod from every other pod.
    Traffic {
        #[arg(long, default_value_t = 10)]
        count: u32,
    },
}

pub(crate) fn run(cmd: LabCmd) -> Result<()> {
    crate::setup::packages()?;
    match cmd {
        LabCmd::Up {
            nodes,
            no_default_route,
        } => {
            let lab = Lab::up(LabSpec {
                nodes,
                prefix: Some(PREFIX.into()),
                default_route: !no_default_route,
                ..LabSpec::default()
            })?;
            for n in &lab.nodes {
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
            println!(
                "\nrun the probe on a node:  ip netns exec {} target/release/flannel-probe report",
                lab.nodes.last().map_or("", |n| n.ns.as_str())
            );
            lab.keep();
            Ok(())
        }
        LabCmd::Down => Lab::down(PREFIX),
        LabCmd::Fault { name, node, peer } => {
            let mut lab = Lab::attach(PREFIX)?;
            let fault = Fault::parse(&name, &node, peer.as_deref())?;
            lab.fault(&fault)?;
            println!("injected {name} on {node}");
            lab.keep();
            Ok(())
        }
        LabCmd::Traffic { count } => {
            let lab = Lab::attach(PREFIX)?;
            for (from, to, s) in lab.traffic(count, 0.2)? {
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
