//! Naming, building and programming the cluster: the switch, the nodes,
//! their pods, and what Flannel's VXLAN backend installs on each node.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::netns::{self, bridge_batch, ip, ip_batch};
use super::{Family, IpFamily, Lab, LabNode, LabSpec, MAX_NODES, STATIC_NEIGH_MIN_NODES};

/// The nodes of INC-0001, in order; further nodes are `node<i>`.
const NAMED_NODES: [&str; 3] = ["gladius", "momonoke", "eq14-001"];

/// The underlay default gateway of every node. Nothing answers there: the
/// route only exists so discovery by default route works as on a real node.
const UNDERLAY_GATEWAY: &str = "192.0.2.1";

/// The IPv6 underlay default gateway (nothing answers there either).
const UNDERLAY_GATEWAY6: &str = "fd00:192:0:2::1";

/// A decimal number written with the same digits in an IPv6 group, so that
/// node 11's IPv6 address reads `fd00:192:0:2::11` beside `192.0.2.11`.
fn decimal_digits_as_hex(value: usize) -> u16 {
    u16::from_str_radix(&value.to_string(), 16).unwrap_or(u16::MAX)
}

/// Name of the node at `index` (0-based).
pub fn node_name(index: usize) -> String {
    match NAMED_NODES.get(index) {
        Some(name) => (*name).to_owned(),
        None => format!("node{}", index + 1),
    }
}

/// Index of the node called `name` in a big enough lab.
pub fn node_index(name: &str) -> Option<usize> {
    if let Some(index) = NAMED_NODES.iter().position(|named| *named == name) {
        return Some(index);
    }
    let number: usize = name.strip_prefix("node")?.parse().ok()?;
    // node1..node3 are the named nodes, and "node04" is not a name we make.
    (number > NAMED_NODES.len() && format!("node{number}") == name).then(|| number - 1)
}

/// Underlay address of the node at `index`: 192.0.2.(11 + index).
pub fn node_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, octet(11 + index))
}

/// Pod subnet (network address) of the node at `index`.
pub fn node_subnet(index: usize) -> Ipv4Addr {
    let third = match index {
        0 => 1,
        1 => 2,
        2 => 0,
        other => octet(other),
    };
    Ipv4Addr::new(10, 42, third, 0)
}

/// IPv6 underlay address of the node at `index`: fd00:192:0:2::(11 + index).
pub fn node_ip6(index: usize) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfd00,
        0x192,
        0,
        2,
        0,
        0,
        0,
        decimal_digits_as_hex(11 + index),
    )
}

/// IPv6 pod subnet (a /64) of the node at `index`: 2001:cafe:42:N:: with N
/// the third octet of its IPv4 subnet (as k3s carves a /56 per cluster).
pub fn node_subnet6(index: usize) -> Ipv6Addr {
    let third = node_subnet(index).octets()[2];
    Ipv6Addr::new(
        0x2001,
        0xcafe,
        0x42,
        decimal_digits_as_hex(usize::from(third)),
        0,
        0,
        0,
        0,
    )
}

/// `<net>::<last>` (last written with decimal digits) within the /64 of `net`.
pub(crate) fn host6(net: Ipv6Addr, last: u8) -> Ipv6Addr {
    let mut seg = net.segments();
    seg[4..].fill(0);
    seg[7] = decimal_digits_as_hex(usize::from(last));
    Ipv6Addr::from(seg)
}

fn octet(value: usize) -> u8 {
    // LabSpec::validate caps the node count well below this.
    u8::try_from(value).unwrap_or(u8::MAX)
}

/// `a.b.c.<last>` within the /24 of `net`.
pub(crate) fn host(net: Ipv4Addr, last: u8) -> Ipv4Addr {
    let [a, b, c, _] = net.octets();
    Ipv4Addr::new(a, b, c, last)
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts
            .next()
            .with_context(|| format!("MAC address {text:?} is too short"))?;
        *byte = u8::from_str_radix(part, 16)
            .with_context(|| format!("bad byte {part:?} in MAC address {text:?}"))?;
    }
    ensure!(parts.next().is_none(), "MAC address {text:?} is too long");
    Ok(mac)
}

/// A locally administered MAC made of a role byte and an IPv4 address, so
/// that the lab can name it without asking the kernel.
fn derived_mac(role: u8, ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, role, a, b, c, d]
}

/// MAC of the node's `eth0`.
fn uplink_mac(node: &LabNode) -> [u8; 6] {
    derived_mac(1, node.ip)
}

/// MAC of the node's `cni0`.
fn gateway_mac(node: &LabNode) -> [u8; 6] {
    derived_mac(2, node.gateway())
}

/// MAC of the pod's `eth0`.
fn pod_mac(node: &LabNode) -> [u8; 6] {
    derived_mac(3, node.pod_ip)
}

/// A random locally administered unicast MAC, as Flannel gives its VTEP.
pub(crate) fn random_mac() -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut mac))
        .context("reading /dev/urandom for a VTEP MAC")?;
    // Clear the multicast bit, set the locally-administered bit.
    mac[0] = (mac[0] & 0xfc) | 0x02;
    Ok(mac)
}

/// The description of node `index` in a lab whose namespaces start with `prefix`.
pub(crate) fn plan_node(
    prefix: &str,
    index: usize,
    spec: &LabSpec,
    vtep_mac: [u8; 6],
    vtep_mac6: [u8; 6],
) -> LabNode {
    let name = node_name(index);
    let subnet = node_subnet(index);
    let v6 = spec.family.has_v6();
    let subnet6 = v6.then(|| node_subnet6(index));
    LabNode {
        ip6: v6.then(|| node_ip6(index)),
        subnet6,
        pod_ip6: subnet6.map(|net| host6(net, 54)),
        vtep_mac6,
        overlay6: v6.then(|| spec.overlay6_name()),
        has_v4: spec.family.has_v4(),
        ns: format!("{prefix}-{name}"),
        pod_ns: format!("{prefix}-{name}-pod"),
        ip: node_ip(index),
        subnet,
        pod_ip: host(subnet, 54),
        vtep_mac,
        switch_port: format!("port{}", index + 1),
        overlay: spec.overlay_name(),
        name,
        index,
    }
}

/// Whether the FDB entries for peers are appended (fresh device, as the
/// brief for Flannel's first programming says) or replaced (idempotent
/// reprogramming, as Flannel's own netlink NeighSet does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FdbVerb {
    Append,
    Replace,
}

impl FdbVerb {
    fn as_str(self) -> &'static str {
        match self {
            FdbVerb::Append => "append",
            FdbVerb::Replace => "replace",
        }
    }
}

/// Whether the node namespace `ns` has an IPv4 default route.
fn has_default_route(ns: &str) -> bool {
    let out = netns::try_run("ip", &["-n", ns, "-4", "route", "show", "default"]);
    out.status.success() && !out.stdout.is_empty()
}

/// `ip` batch lines pinning `v4` and `v6` (those given) to `mac` on `dev`
/// (see `STATIC_NEIGH_MIN_NODES`).
fn permanent_neighbours(
    script: &mut String,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    mac: &[u8; 6],
    dev: &str,
) {
    let mac = format_mac(mac);
    let v4 = v4.map(std::net::IpAddr::V4);
    let v6 = v6.map(std::net::IpAddr::V6);
    for ip in v4.into_iter().chain(v6) {
        let _ = writeln!(
            script,
            "neigh replace {ip} lladdr {mac} dev {dev} nud permanent"
        );
    }
}

/// `ip` batch lines creating the node's VXLAN device the way Flannel does.
fn overlay_script(node: &LabNode, mtu: u32, vni: u32, port: u16) -> String {
    let dev = &node.overlay;
    format!(
        "link add {dev} address {mac} mtu {mtu} type vxlan id {vni} local {ip} dev eth0 \
         dstport {port} nolearning\n\
         addr add {vtep}/32 dev {dev}\n\
         link set {dev} up\n",
        mac = node.vtep_mac_string(),
        ip = node.ip,
        vtep = node.vtep_ip(),
    )
}

/// `ip` batch lines creating the node's `flannel-v6.<VNI>` as flannel's
/// v6 device: same VNI and port, `local` the node's public IPv6, its own
/// VTEP MAC, the subnet's network address as a /128 (`nodad`: flannel's
/// address is never duplicated, and a tentative one could not be used at
/// once). Empty on a lab without IPv6.
fn overlay6_script(node: &LabNode, mtu: u32, vni: u32, port: u16) -> String {
    let (Some(dev), Some(ip6), Some(vtep6)) = (&node.overlay6, node.ip6, node.vtep_ip6()) else {
        return String::new();
    };
    format!(
        "link add {dev} address {mac} mtu {mtu} type vxlan id {vni} local {ip6} dev eth0 \
         dstport {port} nolearning\n\
         addr add {vtep6}/128 dev {dev} nodad\n\
         link set {dev} up\n",
        mac = format_mac(&node.vtep_mac6),
    )
}

/// The VXLAN device script of `family` for `node`.
fn overlay_script_of(
    family: IpFamily,
    node: &LabNode,
    spec: &LabSpec,
    vni: u32,
    port: u16,
) -> String {
    match family {
        IpFamily::V4 => overlay_script(node, spec.overlay_mtu(), vni, port),
        IpFamily::V6 => overlay6_script(node, spec.overlay6_mtu(), vni, port),
    }
}

impl Lab {
    /// Creates the namespaces and wires everything up. Namespaces are
    /// recorded as they are created so that dropping a half-built lab
    /// removes them.
    pub(super) fn build(&mut self, prefix: &str) -> Result<()> {
        netns::add_namespace(&self.switch_ns)?;
        self.namespaces.push(self.switch_ns.clone());
        ip_batch(
            &self.switch_ns,
            "link set lo up\n\
             link add br0 type bridge stp_state 0 forward_delay 0\n\
             link set br0 up\n",
        )?;

        for index in 0..self.spec.nodes {
            let node = plan_node(prefix, index, &self.spec, random_mac()?, random_mac()?);
            for ns in [&node.ns, &node.pod_ns] {
                netns::add_namespace(ns)?;
                self.namespaces.push(ns.clone());
            }
            self.nodes.push(node);
        }

        // Nodes are independent of each other until peers are programmed,
        // so configure them in parallel (benchmarks use many nodes).
        let lab = &*self;
        let mut results = Vec::new();
        for chunk in lab.nodes.chunks(16) {
            std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|node| scope.spawn(move || lab.configure_node(node)))
                    .collect();
                for handle in handles {
                    results.push(
                        handle
                            .join()
                            .unwrap_or_else(|_| Err(anyhow::anyhow!("node setup thread panicked"))),
                    );
                }
            });
        }
        results.into_iter().collect::<Result<Vec<()>>>()?;

        let mut switch_script = String::new();
        for node in &self.nodes {
            let port = &node.switch_port;
            let _ = writeln!(switch_script, "link set {port} master br0");
            let _ = writeln!(switch_script, "link set {port} up");
        }
        ip_batch(&self.switch_ns, &switch_script).context("plugging nodes into the switch")?;

        for node in &self.nodes {
            let peers: Vec<&LabNode> = self
                .nodes
                .iter()
                .filter(|p| p.index != node.index)
                .collect();
            for family in self.spec.family.ip_families() {
                Self::program_peers_on(node, &peers, FdbVerb::Append, family)?;
            }
            if self.static_neighbours() {
                let mut script = String::new();
                for peer in &peers {
                    let v4 = node.has_v4.then_some(peer.ip);
                    permanent_neighbours(&mut script, v4, peer.ip6, &uplink_mac(peer), "eth0");
                }
                ip_batch(&node.ns, &script)
                    .with_context(|| format!("installing underlay neighbours on {}", node.name))?;
            }
        }
        Ok(())
    }

    /// Whether this lab pins its underlay and pod neighbour entries (see
    /// `STATIC_NEIGH_MIN_NODES`).
    fn static_neighbours(&self) -> bool {
        self.nodes.len() >= STATIC_NEIGH_MIN_NODES
    }

    /// Underlay uplink, cni0 with one pod, and the VXLAN device(s) of one node.
    fn configure_node(&self, node: &LabNode) -> Result<()> {
        let uplink_mtu = self.spec.uplink_mtu;
        let pod_mtu = self.spec.pod_mtu();
        let family = self.spec.family;
        netns::exec(&node.ns, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])?;
        if family.has_v6() {
            // What k3s sets on a dual-stack or IPv6-only node; `all` also
            // sets `default`, so the devices made below forward too.
            netns::exec(
                &node.ns,
                &["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"],
            )?;
        }

        // A default route via the underlay, as most k3s nodes have: Flannel
        // (and the probe) pick the uplink from it when nothing else says.
        // Without it (`default_route: false`) the node has only its
        // connected subnet, as on an air-gapped cluster.
        let mut underlay = String::new();
        if family.has_v4() {
            let _ = writeln!(underlay, "addr add {}/24 dev eth0", node.ip);
        }
        if let Some(ip6) = node.ip6 {
            // `nodad`: usable at once (a tentative address cannot be a
            // VXLAN source), as on a node whose address is long settled.
            let _ = writeln!(underlay, "addr add {ip6}/64 dev eth0 nodad");
        }
        underlay.push_str("link set eth0 up\n");
        if self.spec.default_route {
            if family.has_v4() {
                let _ = writeln!(
                    underlay,
                    "route add default via {UNDERLAY_GATEWAY} dev eth0"
                );
            }
            if family.has_v6() {
                let _ = writeln!(underlay, "route add ::/0 via {UNDERLAY_GATEWAY6} dev eth0");
            }
        }
        let mut cni0 = String::new();
        if family.has_v4() {
            let _ = writeln!(cni0, "addr add {}/24 dev cni0", node.gateway());
        }
        if let Some(gw6) = node.gateway6() {
            let _ = writeln!(cni0, "addr add {gw6}/64 dev cni0 nodad");
        }
        let mut script = format!(
            "link set lo up\n\
             link add eth0 address {eth0_mac} mtu {uplink_mtu} type veth \
             peer name {port} mtu {uplink_mtu} netns {switch}\n\
             {underlay}\
             link add cni0 address {cni0_mac} mtu {pod_mtu} type bridge\n\
             {cni0}\
             link set cni0 up\n\
             link add {veth} mtu {pod_mtu} type veth \
             peer name eth0 address {pod_mac} mtu {pod_mtu} netns {pod_ns}\n\
             link set {veth} master cni0\n\
             link set {veth} up\n",
            port = node.switch_port,
            switch = self.switch_ns,
            veth = node.pod_veth(),
            pod_ns = node.pod_ns,
            eth0_mac = format_mac(&uplink_mac(node)),
            cni0_mac = format_mac(&gateway_mac(node)),
            pod_mac = format_mac(&pod_mac(node)),
        );
        if self.static_neighbours() {
            let v4 = family.has_v4().then_some(node.pod_ip);
            permanent_neighbours(&mut script, v4, node.pod_ip6, &pod_mac(node), "cni0");
        }
        for ip_family in family.ip_families() {
            script.push_str(&overlay_script_of(
                ip_family,
                node,
                &self.spec,
                self.spec.vni,
                self.spec.port,
            ));
        }
        ip_batch(&node.ns, &script).with_context(|| format!("setting up node {}", node.name))?;

        let mut pod_script = String::from("link set lo up\n");
        if family.has_v4() {
            let _ = writeln!(pod_script, "addr add {}/24 dev eth0", node.pod_ip);
        }
        if let Some(pod6) = node.pod_ip6 {
            let _ = writeln!(pod_script, "addr add {pod6}/64 dev eth0 nodad");
        }
        pod_script.push_str("link set eth0 up\n");
        if family.has_v4() {
            let _ = writeln!(pod_script, "route add default via {}", node.gateway());
        }
        if let Some(gw6) = node.gateway6() {
            let _ = writeln!(pod_script, "route add ::/0 via {gw6}");
        }
        if self.static_neighbours() {
            let v4 = family.has_v4().then_some(node.gateway());
            permanent_neighbours(
                &mut pod_script,
                v4,
                node.gateway6(),
                &gateway_mac(node),
                "eth0",
            );
        }
        ip_batch(&node.pod_ns, &pod_script)
            .with_context(|| format!("setting up the pod of node {}", node.name))?;
        Ok(())
    }

    /// What Flannel installs on `on` for each of `peers` on the overlay of
    /// `family`: a route to the peer's subnet via its VTEP address
    /// (`onlink`), a permanent neighbour entry for that address, and an FDB
    /// entry sending the VTEP MAC to the peer's underlay IP. On IPv6 the
    /// same with the peer's IPv6 subnet, its v6 VTEP MAC and public IPv6
    /// (flannel's `AddV6ARP`, `AddV6FDB` and route in vxlan_network.go).
    pub(super) fn program_peers_on(
        on: &LabNode,
        peers: &[&LabNode],
        fdb: FdbVerb,
        family: IpFamily,
    ) -> Result<()> {
        let Some(dev) = on.overlay_of(family) else {
            return Ok(());
        };
        if peers.is_empty() {
            return Ok(());
        }
        let mut routes = String::new();
        let mut fdb_script = String::new();
        for peer in peers {
            let (subnet, len, vtep, ip) = match family {
                IpFamily::V4 => (
                    peer.subnet.to_string(),
                    24,
                    peer.vtep_ip().to_string(),
                    peer.ip.to_string(),
                ),
                IpFamily::V6 => {
                    let (Some(subnet6), Some(ip6)) = (peer.subnet6, peer.ip6) else {
                        continue;
                    };
                    (
                        subnet6.to_string(),
                        64,
                        subnet6.to_string(),
                        ip6.to_string(),
                    )
                }
            };
            let mac = format_mac(&peer.vtep_mac_of(family));
            let _ = writeln!(
                routes,
                "route replace {subnet}/{len} via {vtep} dev {dev} onlink"
            );
            let _ = writeln!(
                routes,
                "neigh replace {vtep} lladdr {mac} dev {dev} nud permanent"
            );
            let _ = writeln!(
                fdb_script,
                "fdb {} {mac} dev {dev} dst {ip} self permanent",
                fdb.as_str(),
            );
        }
        if routes.is_empty() {
            return Ok(());
        }
        ip_batch(&on.ns, &routes)
            .with_context(|| format!("installing peer routes on {} ({dev})", on.name))?;
        bridge_batch(&on.ns, &fdb_script)
            .with_context(|| format!("installing peer FDB entries on {} ({dev})", on.name))?;
        Ok(())
    }

    /// Whether the node's overlay device of `family` currently exists.
    pub(super) fn overlay_exists(node: &LabNode, family: IpFamily) -> bool {
        let Some(dev) = node.overlay_of(family) else {
            return false;
        };
        netns::try_run("ip", &["-n", &node.ns, "link", "show", "dev", dev])
            .status
            .success()
    }

    /// Deletes (if present) and recreates the node's VXLAN device of
    /// `family` with the given settings and the node's current VTEP MAC of
    /// that family, then reinstalls the node's own routes, neighbours and
    /// FDB entries for every peer (they vanished with the old device).
    pub(super) fn recreate_overlay(
        &self,
        index: usize,
        vni: u32,
        port: u16,
        family: IpFamily,
    ) -> Result<()> {
        let node = &self.nodes[index];
        let dev = node
            .overlay_of(family)
            .with_context(|| format!("node {} has no {family:?} overlay", node.name))?;
        if Self::overlay_exists(node, family) {
            ip(&node.ns, &["link", "del", "dev", dev])?;
        }
        ip_batch(
            &node.ns,
            &overlay_script_of(family, node, &self.spec, vni, port),
        )
        .with_context(|| format!("recreating {dev} on {}", node.name))?;
        let peers: Vec<&LabNode> = self.nodes.iter().filter(|p| p.index != index).collect();
        Self::program_peers_on(node, &peers, FdbVerb::Replace, family)
    }

    /// On every other node, points the route, neighbour and FDB entries of
    /// the `family` overlay for node `index` at its current VTEP MAC, and
    /// drops FDB entries for the node's IP under any other MAC (Flannel
    /// removes the old lease's).
    pub(super) fn reprogram_peers_of(&self, index: usize, family: IpFamily) -> Result<()> {
        let node = &self.nodes[index];
        let wanted = format_mac(&node.vtep_mac_of(family));
        let Some(node_ip) = node.ip_of(family).map(|ip| ip.to_string()) else {
            return Ok(());
        };
        for other in self.nodes.iter().filter(|p| p.index != index) {
            let Some(dev) = other.overlay_of(family) else {
                continue;
            };
            if !Self::overlay_exists(other, family) {
                // Nothing to program on a node whose overlay is gone (a fault).
                continue;
            }
            let mut stale = String::new();
            for (mac, dst) in fdb_entries(other, dev)? {
                if dst == node_ip && mac != wanted {
                    let _ = writeln!(stale, "fdb del {mac} dev {dev} self");
                }
            }
            if !stale.is_empty() {
                bridge_batch(&other.ns, &stale)
                    .with_context(|| format!("removing stale FDB entries on {}", other.name))?;
            }
            Self::program_peers_on(other, &[node], FdbVerb::Replace, family)?;
        }
        Ok(())
    }

    /// Describes an existing fixed-prefix lab by reading its namespaces.
    pub(super) fn read_back(prefix: &str) -> Result<Lab> {
        let existing = netns::list_namespaces()?;
        let switch_ns = format!("{prefix}-sw");
        ensure!(
            existing.contains(&switch_ns),
            "there is no lab with prefix {prefix:?}: namespace {switch_ns} does not exist"
        );
        let mut devices = Vec::new();
        for index in 0..MAX_NODES {
            let ns = format!("{prefix}-{}", node_name(index));
            if !existing.contains(&ns) {
                break;
            }
            devices.push(read_devices(&ns)?);
        }
        ensure!(
            !devices.is_empty(),
            "lab {prefix:?} has a switch but no nodes"
        );

        // Most nodes still have the VNI and port the lab was built with,
        // whatever faults were injected on a few.
        let vni = majority(
            devices
                .iter()
                .filter_map(|d| d.overlay.as_ref().or(d.overlay6.as_ref()))
                .map(|o| o.name_vni),
        )
        .unwrap_or(LabSpec::default().vni);
        let port = majority(
            devices
                .iter()
                .filter_map(|d| d.overlay.as_ref().or(d.overlay6.as_ref()))
                .map(|o| o.port),
        )
        .unwrap_or(LabSpec::default().port);
        let uplink_mtu = devices
            .iter()
            .find_map(|d| d.uplink_mtu)
            .unwrap_or(LabSpec::default().uplink_mtu);
        // The first node's underlay addresses tell the family (faults touch
        // overlays, never eth0's addresses).
        let family = match (devices[0].uplink_v4, devices[0].uplink_v6) {
            (false, true) => Family::V6,
            (true, true) => Family::Dual,
            _ => Family::V4,
        };
        let spec = LabSpec {
            nodes: devices.len(),
            uplink_mtu,
            vni,
            port,
            prefix: Some(prefix.to_owned()),
            default_route: has_default_route(&format!("{prefix}-{}", node_name(0))),
            family,
        };

        let mut nodes: Vec<LabNode> = devices
            .iter()
            .enumerate()
            .map(|(index, d)| {
                let mac = d.overlay.as_ref().map_or([0; 6], |o| o.mac);
                let mac6 = d.overlay6.as_ref().map_or([0; 6], |o| o.mac);
                plan_node(prefix, index, &spec, mac, mac6)
            })
            .collect();
        // A node whose overlay was deleted: its peers still know its MAC.
        for index in 0..nodes.len() {
            for ip_family in spec.family.ip_families() {
                let (present, vtep) = match ip_family {
                    IpFamily::V4 => (
                        devices[index].overlay.is_some(),
                        nodes[index].vtep_ip().to_string(),
                    ),
                    IpFamily::V6 => (
                        devices[index].overlay6.is_some(),
                        nodes[index]
                            .vtep_ip6()
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                    ),
                };
                if present {
                    continue;
                }
                let mut found = None;
                for other in nodes.iter().filter(|n| n.index != index) {
                    if let Some(mac) = neighbour_mac(other, ip_family, &vtep)? {
                        found = Some(mac);
                        break;
                    }
                }
                if let Some(mac) = found {
                    match ip_family {
                        IpFamily::V4 => nodes[index].vtep_mac = mac,
                        IpFamily::V6 => nodes[index].vtep_mac6 = mac,
                    }
                }
            }
        }

        let namespaces = std::iter::once(switch_ns.clone())
            .chain(nodes.iter().flat_map(|n| [n.ns.clone(), n.pod_ns.clone()]))
            .collect();
        Ok(Lab {
            switch_ns,
            nodes,
            spec,
            namespaces,
            kept: true,
        })
    }
}

/// FDB entries `(mac, dst)` of the node's overlay device `dev`.
fn fdb_entries(node: &LabNode, dev: &str) -> Result<Vec<(String, String)>> {
    let output = netns::run(
        "bridge",
        &["-netns", &node.ns, "-j", "fdb", "show", "dev", dev],
    )?;
    let entries = parse_json(&output.stdout, "bridge fdb show")?;
    Ok(entries
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|entry| {
            let mac = entry.get("mac")?.as_str()?;
            let dst = entry.get("dst")?.as_str()?;
            Some((mac.to_owned(), dst.to_owned()))
        })
        .collect())
}

/// The MAC in `node`'s neighbour entry for `ip` on its `family` overlay, if any.
fn neighbour_mac(node: &LabNode, family: IpFamily, ip: &str) -> Result<Option<[u8; 6]>> {
    let Some(dev) = node.overlay_of(family) else {
        return Ok(None);
    };
    let output = netns::try_run("ip", &["-n", &node.ns, "-j", "neigh", "show", "dev", dev]);
    if !output.status.success() {
        return Ok(None);
    }
    let entries = parse_json(&output.stdout, "ip neigh show")?;
    let found = entries
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .find(|entry| entry.get("dst").and_then(Value::as_str) == Some(ip))
        .and_then(|entry| entry.get("lladdr")?.as_str());
    found.map(parse_mac).transpose()
}

fn parse_json(bytes: &[u8], what: &str) -> Result<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_slice(bytes).with_context(|| format!("parsing the JSON output of `{what}`"))
}

fn majority<T: std::hash::Hash + Eq + Copy>(values: impl Iterator<Item = T>) -> Option<T> {
    let mut counts: HashMap<T, usize> = HashMap::new();
    let mut order = Vec::new();
    for value in values {
        let count = counts.entry(value).or_insert(0);
        if *count == 0 {
            order.push(value);
        }
        *count += 1;
    }
    // max_by_key keeps the last of equal maxima; reversing makes ties go to
    // the value seen first (the lowest node index).
    order.into_iter().rev().max_by_key(|value| counts[value])
}

struct OverlayInfo {
    /// The VNI in the device's name (`flannel.<VNI>`), which stays the
    /// lab's VNI even when a fault recreated the device with another id.
    name_vni: u32,
    port: u16,
    mac: [u8; 6],
}

struct NodeDevices {
    uplink_mtu: Option<u32>,
    overlay: Option<OverlayInfo>,
    /// `flannel-v6.*`.
    overlay6: Option<OverlayInfo>,
    /// `eth0` holds a global IPv4 / IPv6 address.
    uplink_v4: bool,
    uplink_v6: bool,
}

/// Reads the uplink MTU and addresses and the `flannel.*` and
/// `flannel-v6.*` VXLAN devices of a node namespace.
fn read_devices(ns: &str) -> Result<NodeDevices> {
    let output = netns::run("ip", &["-n", ns, "-d", "-j", "link", "show"])?;
    let links = parse_json(&output.stdout, &format!("ip -n {ns} -d -j link show"))?;
    let addrs = netns::run("ip", &["-n", ns, "-j", "addr", "show", "dev", "eth0"])?;
    let addrs = parse_json(&addrs.stdout, &format!("ip -n {ns} -j addr show dev eth0"))?;
    let global = |family: &str| {
        addrs
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|link| link.get("addr_info")?.as_array())
            .flatten()
            .any(|a| {
                a.get("family").and_then(Value::as_str) == Some(family)
                    && a.get("scope").and_then(Value::as_str) == Some("global")
            })
    };
    let mut devices = NodeDevices {
        uplink_mtu: None,
        overlay: None,
        overlay6: None,
        uplink_v4: global("inet"),
        uplink_v6: global("inet6"),
    };
    for link in links.as_array().map(Vec::as_slice).unwrap_or_default() {
        let name = link
            .get("ifname")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if name == "eth0" {
            devices.uplink_mtu = link
                .get("mtu")
                .and_then(Value::as_u64)
                .and_then(|mtu| u32::try_from(mtu).ok());
        }
        let (v6, vni_text) = match name.strip_prefix("flannel-v6.") {
            Some(vni) => (true, Some(vni)),
            None => (false, name.strip_prefix("flannel.")),
        };
        let Some(name_vni) = vni_text.and_then(|vni| vni.parse::<u32>().ok()) else {
            continue;
        };
        let info = link.get("linkinfo");
        if info
            .and_then(|i| i.get("info_kind"))
            .and_then(Value::as_str)
            != Some("vxlan")
        {
            continue;
        }
        let port = info
            .and_then(|i| i.get("info_data"))
            .and_then(|d| d.get("port"))
            .and_then(Value::as_u64)
            .and_then(|port| u16::try_from(port).ok())
            .with_context(|| format!("no dstport on {name} in {ns}"))?;
        let mac = link
            .get("address")
            .and_then(Value::as_str)
            .with_context(|| format!("no MAC address on {name} in {ns}"))?;
        let info = Some(OverlayInfo {
            name_vni,
            port,
            mac: parse_mac(mac)?,
        });
        if v6 {
            devices.overlay6 = info;
        } else {
            devices.overlay = info;
        }
    }
    Ok(devices)
}

/// Checks a fixed lab prefix: it becomes part of namespace names.
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty()
        || prefix.len() > 24
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("lab prefix {prefix:?} must be 1-24 characters of [A-Za-z0-9_-]");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        assert_eq!(node_name(0), "gladius");
        assert_eq!(node_name(2), "eq14-001");
        assert_eq!(node_name(3), "node4");
        for index in 0..10 {
            assert_eq!(node_index(&node_name(index)), Some(index));
        }
        assert_eq!(node_index("node3"), None);
        assert_eq!(node_index("node04"), None);
        assert_eq!(node_index("nope"), None);
        assert_eq!(node_ip(2), Ipv4Addr::new(192, 0, 2, 13));
        assert_eq!(node_subnet(0), Ipv4Addr::new(10, 42, 1, 0));
        assert_eq!(node_subnet(2), Ipv4Addr::new(10, 42, 0, 0));
        assert_eq!(node_subnet(3), Ipv4Addr::new(10, 42, 3, 0));
    }

    #[test]
    fn ipv6_addresses_read_like_the_ipv4_ones() {
        assert_eq!(node_ip6(0).to_string(), "fd00:192:0:2::11");
        assert_eq!(node_ip6(2).to_string(), "fd00:192:0:2::13");
        assert_eq!(node_ip6(9).to_string(), "fd00:192:0:2::20");
        assert_eq!(node_subnet6(0).to_string(), "2001:cafe:42:1::");
        assert_eq!(node_subnet6(2).to_string(), "2001:cafe:42::");
        assert_eq!(node_subnet6(3).to_string(), "2001:cafe:42:3::");
        assert_eq!(host6(node_subnet6(0), 54).to_string(), "2001:cafe:42:1::54");
        assert_eq!(host6(node_subnet6(2), 1).to_string(), "2001:cafe:42::1");
        let spec = LabSpec {
            family: Family::Dual,
            ..LabSpec::default()
        };
        let node = plan_node("p", 0, &spec, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        assert_eq!(node.overlay6.as_deref(), Some("flannel-v6.1"));
        assert_eq!(node.overlay_of(IpFamily::V4), Some("flannel.1"));
        assert_eq!(node.pod_addr().to_string(), "10.42.1.54");
        assert_eq!(spec.overlay6_mtu(), 1430);
        assert_eq!(spec.pod_mtu(), 1450);
        let v6 = LabSpec {
            family: Family::V6,
            ..LabSpec::default()
        };
        let node = plan_node("p", 0, &v6, [0; 6], [2, 0, 0, 0, 0, 2]);
        assert_eq!(node.overlay_of(IpFamily::V4), None);
        assert_eq!(node.pod_addr().to_string(), "2001:cafe:42:1::54");
        assert_eq!(node.ip_of(IpFamily::V4), None);
        assert_eq!(v6.pod_mtu(), 1430);
        let v4 = plan_node("p", 0, &LabSpec::default(), [0; 6], [0; 6]);
        assert_eq!((v4.ip6, v4.overlay6.clone()), (None, None));
        assert_eq!(v4.overlay_of(IpFamily::V6), None);
    }

    #[test]
    fn macs() {
        let mac = random_mac().expect("urandom");
        assert_eq!(mac[0] & 0x03, 0x02, "locally administered unicast");
        assert_eq!(parse_mac(&format_mac(&mac)).expect("round trip"), mac);
        assert_eq!(
            format_mac(&[0x0e, 0, 0xab, 1, 2, 0xff]),
            "0e:00:ab:01:02:ff"
        );
        assert!(parse_mac("0e:00").is_err());
        assert!(parse_mac("0e:00:ab:01:02:ff:00").is_err());
    }

    #[test]
    fn majority_prefers_most_common_then_first() {
        assert_eq!(majority([1, 2, 2].into_iter()), Some(2));
        assert_eq!(majority([3, 1].into_iter()), Some(3));
        assert_eq!(majority(std::iter::empty::<u32>()), None);
    }
}
