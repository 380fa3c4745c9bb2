//! A Flannel VXLAN cluster in network namespaces (docs/LAB.md).
//!
//! One namespace is the underlay switch (bridge `br0`); each node is a
//! namespace with `eth0` plugged into the switch, a `cni0` bridge with one
//! pod namespace behind it, and the `flannel.<VNI>` VXLAN device with the
//! routes, neighbour and FDB entries Flannel's VXLAN backend installs.
//!
//! ```no_run
//! use flannel_probe_tests::lab::{Fault, Lab, LabSpec};
//! # fn main() -> anyhow::Result<()> {
//! let mut lab = Lab::up(LabSpec::default())?;
//! lab.fault(&Fault::DeleteOverlay { node: "eq14-001".into() })?;
//! let stats = lab.ping(lab.node("gladius"), lab.node("eq14-001").pod_ip, 3, 0.2)?;
//! assert_eq!(stats.received, 0);
//! # Ok(()) }
//! // Dropping `lab` removes its namespaces.
//! ```
//!
//! Test labs get unique namespace names `fpt-<pid>-<counter>-<role>` and
//! are removed on drop (also when a test panics). A lab with a fixed
//! prefix (`LabSpec::prefix`, e.g. "fplab") is meant to be driven by hand:
//! it stays up after the `Lab` value is dropped, `Lab::attach` describes
//! it again later and `Lab::down` removes it.

pub mod churn;
mod faults;
pub mod hostile;
pub mod netns;
mod topology;
mod traffic;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result, bail, ensure};

pub use faults::{FAULT_NAMES, Fault};
pub use netns::TEST_PREFIX;
pub use topology::{
    format_mac, node_index, node_ip, node_ip6, node_name, node_subnet, node_subnet6, parse_mac,
};
pub use traffic::{PingStats, parse_ping_summary};

/// Bytes VXLAN adds on IPv4: outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
pub const VXLAN_OVERHEAD: u32 = 50;

/// Bytes VXLAN adds on IPv6: outer IPv6 40 + UDP 8 + VXLAN 8 + inner
/// Ethernet 14 (the kernel's `VXLAN6_HEADROOM`).
pub const VXLAN6_OVERHEAD: u32 = 70;

/// Which overlays a lab has, as flannel's `--cluster-cidr` decides: IPv4
/// only (`flannel.<VNI>`), dual-stack (both devices) or IPv6 only
/// (`flannel-v6.<VNI>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    #[default]
    V4,
    Dual,
    V6,
}

impl Family {
    /// The lab has IPv4 underlay addresses, pod subnets and `flannel.<VNI>`.
    pub fn has_v4(self) -> bool {
        matches!(self, Family::V4 | Family::Dual)
    }

    /// The lab has IPv6 underlay addresses, pod subnets and `flannel-v6.<VNI>`.
    pub fn has_v6(self) -> bool {
        matches!(self, Family::Dual | Family::V6)
    }

    /// The overlays of this family, IPv4 first (flannel's order).
    pub fn ip_families(self) -> Vec<IpFamily> {
        let mut out = Vec::new();
        if self.has_v4() {
            out.push(IpFamily::V4);
        }
        if self.has_v6() {
            out.push(IpFamily::V6);
        }
        out
    }

    /// `v4`, `dual` or `v6` (what `cargo xtask lab up --family` takes).
    pub fn parse(text: &str) -> Result<Family> {
        match text {
            "v4" | "ipv4" => Ok(Family::V4),
            "dual" | "dual-stack" => Ok(Family::Dual),
            "v6" | "ipv6" => Ok(Family::V6),
            other => bail!("unknown lab family {other:?}: take v4, dual or v6"),
        }
    }
}

/// One of a node's overlays: `flannel.<VNI>` (IPv4 VTEPs) or
/// `flannel-v6.<VNI>` (IPv6 VTEPs). Faults name the one they hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

/// Upper bound on `LabSpec::nodes` (underlay addresses are 192.0.2.11 and up).
pub const MAX_NODES: usize = 200;

/// Labs with at least this many nodes get permanent underlay (node to
/// node) and pod/gateway neighbour entries instead of learning them by ARP.
/// The kernel's ARP table limit (`gc_thresh3`, 1024 entries) is shared by
/// all namespaces and can only be raised in the root namespace, which the
/// lab never touches; a full mesh of n nodes needs n * (n - 1) underlay
/// entries, so big labs would otherwise drop traffic ("neighbor table
/// overflow"). Permanent entries do not count against that limit. Smaller
/// labs keep dynamic ARP, like a real node.
pub const STATIC_NEIGH_MIN_NODES: usize = 10;

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    /// Number of nodes (gladius, momonoke, eq14-001, node4, ...).
    pub nodes: usize,
    /// MTU of every node's `eth0`; overlay and pods get 50 less.
    pub uplink_mtu: u32,
    /// VXLAN network identifier; the device is `flannel.<vni>`.
    pub vni: u32,
    /// VXLAN UDP destination port (Flannel's `Port`, 8472 by default).
    pub port: u16,
    /// `None`: unique test names, removed on drop. `Some(prefix)`: fixed
    /// names `<prefix>-<role>`, and the lab is kept when dropped.
    pub prefix: Option<String>,
    /// Every node gets a default route via the underlay (as most k3s nodes
    /// have); `false`: only its connected subnet (an air-gapped node).
    pub default_route: bool,
    /// IPv4 only (as before), dual-stack, or IPv6 only.
    pub family: Family,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            nodes: 3,
            uplink_mtu: 1500,
            vni: 1,
            port: 8472,
            prefix: None,
            default_route: true,
            family: Family::V4,
        }
    }
}

impl LabSpec {
    /// The default lab with `nodes` nodes.
    pub fn with_nodes(nodes: usize) -> Self {
        LabSpec {
            nodes,
            ..LabSpec::default()
        }
    }

    /// MTU of `flannel.<vni>` and of the pods.
    pub fn overlay_mtu(&self) -> u32 {
        self.uplink_mtu.saturating_sub(VXLAN_OVERHEAD)
    }

    /// `flannel.<vni>`.
    pub fn overlay_name(&self) -> String {
        format!("flannel.{}", self.vni)
    }

    /// `flannel-v6.<vni>`, flannel's name for the IPv6 VXLAN device.
    pub fn overlay6_name(&self) -> String {
        format!("flannel-v6.{}", self.vni)
    }

    /// MTU of `flannel-v6.<vni>`: the uplink's less the IPv6 headroom, as
    /// the kernel gives a VXLAN device over an IPv6 `dev`.
    pub fn overlay6_mtu(&self) -> u32 {
        self.uplink_mtu.saturating_sub(VXLAN6_OVERHEAD)
    }

    /// MTU of `cni0` and the pods: the IPv4 overlay's, or on an IPv6-only
    /// lab the IPv6 overlay's (flannel writes the MTU of its device).
    pub fn pod_mtu(&self) -> u32 {
        if self.family.has_v4() {
            self.overlay_mtu()
        } else {
            self.overlay6_mtu()
        }
    }

    fn validate(&self) -> Result<()> {
        ensure!(
            (1..=MAX_NODES).contains(&self.nodes),
            "a lab has 1 to {MAX_NODES} nodes, not {}",
            self.nodes
        );
        // The overlay needs at least IPv4's minimum MTU of 68.
        ensure!(
            (68 + VXLAN_OVERHEAD..=65535).contains(&self.uplink_mtu),
            "uplink MTU {} is out of range",
            self.uplink_mtu
        );
        ensure!(
            (1..=0xff_ffff).contains(&self.vni),
            "VNI {} is out of range",
            self.vni
        );
        ensure!(
            self.overlay_name().len() <= 15,
            "interface name {} is longer than 15 characters",
            self.overlay_name()
        );
        if self.family.has_v6() {
            ensure!(
                self.overlay6_name().len() <= 15,
                "interface name {} is longer than 15 characters",
                self.overlay6_name()
            );
            // IPv6 needs 1280 on every link, the IPv6 overlay included.
            ensure!(
                self.uplink_mtu >= 1280 + VXLAN6_OVERHEAD,
                "uplink MTU {} is too small for IPv6 VXLAN (at least {})",
                self.uplink_mtu,
                1280 + VXLAN6_OVERHEAD
            );
        }
        ensure!(self.port != 0, "VXLAN port 0 is not usable");
        if let Some(prefix) = &self.prefix {
            topology::validate_prefix(prefix)?;
        }
        Ok(())
    }
}

/// One node of the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNode {
    /// Node name, also the hostname `Lab::node_command` gives it.
    pub name: String,
    /// Position in `Lab::nodes`.
    pub index: usize,
    /// The node's network namespace.
    pub ns: String,
    /// Underlay address on `eth0`.
    pub ip: Ipv4Addr,
    /// Pod subnet's network address (the subnet is a /24).
    pub subnet: Ipv4Addr,
    /// Namespace of the node's one pod.
    pub pod_ns: String,
    /// The pod's address, `<subnet>.54`.
    pub pod_ip: Ipv4Addr,
    /// MAC of the node's VXLAN device (what Flannel publishes as `VtepMAC`).
    pub vtep_mac: [u8; 6],
    /// The switch-side end of the node's `eth0`, in `Lab::switch_ns`.
    pub switch_port: String,
    /// Name of the VXLAN device, `flannel.<vni>`. On an IPv6-only lab
    /// (`Family::V6`) this device is not created; nor are `ip`, `subnet`
    /// and `pod_ip` configured there (they stay the plan's values).
    pub overlay: String,
    /// IPv6 underlay address on `eth0` (dual-stack and IPv6-only labs).
    pub ip6: Option<Ipv6Addr>,
    /// IPv6 pod subnet's network address (a /64).
    pub subnet6: Option<Ipv6Addr>,
    /// The pod's IPv6 address, `<subnet6>::54`.
    pub pod_ip6: Option<Ipv6Addr>,
    /// MAC of `flannel-v6.<vni>` (flannel gives it its own `VtepMAC`).
    pub vtep_mac6: [u8; 6],
    /// `flannel-v6.<vni>`, when the lab has IPv6.
    pub overlay6: Option<String>,
    /// The node has IPv4 (addresses, pod subnet, `flannel.<vni>`): false
    /// only on an IPv6-only lab.
    pub has_v4: bool,
}

impl LabNode {
    /// The VTEP MAC as `aa:bb:cc:dd:ee:ff`.
    pub fn vtep_mac_string(&self) -> String {
        format_mac(&self.vtep_mac)
    }

    /// `<subnet>.0`, the overlay device's address and peers' next hop.
    pub fn vtep_ip(&self) -> Ipv4Addr {
        topology::host(self.subnet, 0)
    }

    /// `<subnet>.1`, the address of `cni0` and the pods' gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        topology::host(self.subnet, 1)
    }

    /// The overlay device of `family`, if the lab has that family.
    pub fn overlay_of(&self, family: IpFamily) -> Option<&str> {
        match family {
            IpFamily::V4 => self.has_v4.then_some(self.overlay.as_str()),
            IpFamily::V6 => self.overlay6.as_deref(),
        }
    }

    /// The VTEP MAC of the overlay of `family`.
    pub fn vtep_mac_of(&self, family: IpFamily) -> [u8; 6] {
        match family {
            IpFamily::V4 => self.vtep_mac,
            IpFamily::V6 => self.vtep_mac6,
        }
    }

    /// `<subnet6>::`, the IPv6 overlay's address and peers' next hop.
    pub fn vtep_ip6(&self) -> Option<Ipv6Addr> {
        self.subnet6
    }

    /// `<subnet6>::1`, `cni0`'s IPv6 address and the pods' gateway.
    pub fn gateway6(&self) -> Option<Ipv6Addr> {
        self.subnet6.map(|net| topology::host6(net, 1))
    }

    /// The underlay address of `family`, if the node has one.
    pub fn ip_of(&self, family: IpFamily) -> Option<IpAddr> {
        match family {
            IpFamily::V4 => self.has_v4.then_some(IpAddr::V4(self.ip)),
            IpFamily::V6 => self.ip6.map(IpAddr::V6),
        }
    }

    /// The pod's address of `family`, if the pod has one.
    pub fn pod_ip_of(&self, family: IpFamily) -> Option<IpAddr> {
        match family {
            IpFamily::V4 => self.has_v4.then_some(IpAddr::V4(self.pod_ip)),
            IpFamily::V6 => self.pod_ip6.map(IpAddr::V6),
        }
    }

    /// The pod address pings go to by default: IPv4, or IPv6 on an
    /// IPv6-only lab.
    pub fn pod_addr(&self) -> IpAddr {
        match self.pod_ip6 {
            Some(v6) if !self.has_v4 => IpAddr::V6(v6),
            _ => IpAddr::V4(self.pod_ip),
        }
    }

    /// Name of the pod's veth end in the node namespace (enslaved to cni0),
    /// `veth` + the pod address in hex, in the style of CNI's names.
    pub fn pod_veth(&self) -> String {
        let [a, b, c, d] = self.pod_ip.octets();
        format!("veth{a:02x}{b:02x}{c:02x}{d:02x}")
    }
}

/// A running lab. Its namespaces are removed when it is dropped, unless it
/// has a fixed prefix, came from `attach`, or `keep` was called.
#[derive(Debug)]
pub struct Lab {
    /// The underlay switch's namespace (bridge `br0`, ports `port<i>`).
    pub switch_ns: String,
    pub nodes: Vec<LabNode>,
    pub spec: LabSpec,
    /// Every namespace of the lab, in creation order.
    namespaces: Vec<String>,
    /// Leave the namespaces in place on drop.
    kept: bool,
}

impl Lab {
    /// Builds the lab. Stale test namespaces of dead processes are swept
    /// first. On error, whatever was built is removed again.
    pub fn up(spec: LabSpec) -> Result<Lab> {
        spec.validate()?;
        netns::sweep_stale();
        let prefix = match &spec.prefix {
            None => netns::unique_prefix(),
            Some(prefix) => {
                let taken: Vec<String> = netns::list_namespaces()?
                    .into_iter()
                    .filter(|name| name.starts_with(&format!("{prefix}-")))
                    .collect();
                if !taken.is_empty() {
                    bail!(
                        "a lab with prefix {prefix:?} already exists ({}); take it down first",
                        taken.join(", ")
                    );
                }
                prefix.clone()
            }
        };
        let mut lab = Lab {
            switch_ns: format!("{prefix}-sw"),
            nodes: Vec::with_capacity(spec.nodes),
            spec,
            namespaces: Vec::new(),
            kept: false,
        };
        // On error `lab` is dropped here, which removes what was built.
        lab.build(&prefix)
            .with_context(|| format!("building lab {prefix}"))?;
        lab.kept = lab.spec.prefix.is_some();
        Ok(lab)
    }

    /// The lab for one test: `None` (the test returns, skipped) when not
    /// root, except under `CI=true`, where that fails the test. The one root
    /// check of the lab tests; a lab that cannot be built fails the test.
    pub fn for_test(spec: LabSpec) -> Option<Lab> {
        if !crate::require_root() {
            return None;
        }
        Some(Lab::up(spec).unwrap_or_else(|err| panic!("lab up: {err:#}")))
    }

    /// The node called `name`. Panics if there is none (a test helper).
    pub fn node(&self, name: &str) -> &LabNode {
        match self.find_node(name) {
            Some(node) => node,
            None => panic!(
                "the lab has no node {name:?}; its nodes are {}",
                self.node_names().join(", ")
            ),
        }
    }

    /// The node called `name`, if any.
    pub fn find_node(&self, name: &str) -> Option<&LabNode> {
        self.nodes.iter().find(|node| node.name == name)
    }

    fn node_names(&self) -> Vec<&str> {
        self.nodes.iter().map(|node| node.name.as_str()).collect()
    }

    /// Index of the node called `name`, or an error naming the lab's nodes.
    fn node_index(&self, name: &str) -> Result<usize> {
        self.find_node(name)
            .map(|node| node.index)
            .with_context(|| {
                format!(
                    "the lab has no node {name:?}; its nodes are {}",
                    self.node_names().join(", ")
                )
            })
    }

    fn node_named(&self, name: &str) -> Result<&LabNode> {
        let index = self.node_index(name)?;
        Ok(&self.nodes[index])
    }

    /// Every namespace of the lab (switch, then each node and its pod).
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// `ip netns exec NS args...`; a non-zero exit is an error carrying stderr.
    pub fn sh(&self, ns: &str, args: &[&str]) -> Result<Output> {
        netns::exec(ns, args)
    }

    /// Feeds `ip -batch` and then `bridge -batch` the given scripts (one
    /// command per line) in namespace `ns`; an empty script is skipped.
    pub fn batch(&self, ns: &str, ip_script: &str, bridge_script: &str) -> Result<()> {
        if !ip_script.is_empty() {
            netns::ip_batch(ns, ip_script)?;
        }
        if !bridge_script.is_empty() {
            netns::bridge_batch(ns, bridge_script)?;
        }
        Ok(())
    }

    /// `ip netns exec NS args...`, whatever its exit status.
    pub fn try_sh(&self, ns: &str, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", ns];
        full.extend_from_slice(args);
        netns::try_run("ip", &full)
    }

    /// A command running `program` in the node's namespace and in a fresh
    /// UTS namespace whose hostname is the node's name (as on a real node);
    /// append the program's arguments with `.arg()`. Processes still
    /// running in the namespace are killed when the lab is torn down.
    pub fn node_command(&self, node: &LabNode, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            node.ns.as_str(),
            "unshare",
            "--uts",
            "sh",
            "-c",
        ])
        .arg(r#"hostname "$0" && exec "$@""#)
        .arg(&node.name)
        .arg(program);
        cmd
    }

    /// Reinstalls, on every other node, the route, neighbour and FDB entries
    /// for `node`'s current VTEP MAC and IP (after its overlay was recreated).
    pub fn reprogram_peers(&mut self, node: &str) -> Result<()> {
        let index = self.node_index(node)?;
        for family in self.spec.family.ip_families() {
            self.reprogram_peers_of(index, family)
                .with_context(|| format!("reprogramming the peers of {node}"))?;
        }
        Ok(())
    }

    /// Leaves the lab running when this value is dropped.
    pub fn keep(mut self) {
        self.kept = true;
    }

    /// Describes an existing fixed-prefix lab (namespace names are
    /// deterministic; VTEP MACs, VNI, port and MTU are read back). The
    /// returned value does not tear the lab down when dropped.
    pub fn attach(prefix: &str) -> Result<Lab> {
        topology::validate_prefix(prefix)?;
        Lab::read_back(prefix).with_context(|| format!("attaching to lab {prefix}"))
    }

    /// Removes every namespace whose name starts with `<prefix>-`, killing
    /// the processes inside first.
    pub fn down(prefix: &str) -> Result<()> {
        topology::validate_prefix(prefix)?;
        netns::remove_with_prefix(&format!("{prefix}-"))
            .with_context(|| format!("taking lab {prefix} down"))?;
        Ok(())
    }

    /// Kills the processes in, then deletes, every namespace; logs failures.
    fn teardown(&mut self) {
        for ns in self.namespaces.drain(..).rev() {
            if let Err(err) = netns::remove_namespace(&ns) {
                netns::log(format_args!("teardown: {err:#}"));
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.kept {
            self.teardown();
        }
    }
}
