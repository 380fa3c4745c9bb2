//! The kernel side seen from userspace: load the eBPF object, attach its
//! programs to the uplink and the overlay device, read the maps.
//!
//! Everything attached here is owned by [`Datapath`]; dropping it detaches
//! all of it (tcx links are file descriptors, so even SIGKILL removes them).
mod attach;
mod batch;
pub(crate) mod btf;
mod clsact;
mod collect;
mod drops;
pub(crate) mod memory;
mod reclaim;

use std::{collections::BTreeMap, net::IpAddr};

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData},
};
use flannel_probe_common::{
    abi::{
        CONFIG_VNI_KNOWN, Config, DEFAULT_MAX_PEERS, DropConfig, FamilyConfig, MAP_CONFIG,
        MAP_DROP_CONFIG, MAP_STATS, index_slots,
    },
    parse::Addr,
};

pub use attach::{AttachMode, Hook};
#[cfg(test)]
pub(crate) use collect::DropWhere;
pub use collect::Snapshot;
pub(crate) use collect::{NotOurs, Overflow};
pub(crate) use drops::{DropMatch, DropReasons, OverlayDev, netns_inum as drops_netns_inum};
pub use memory::{MapMemory, map_memory};

/// The eBPF object built by build.rs.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flannel-probe-ebpf"));

/// How to load the datapath.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Capacity of the per-peer and per-MAC maps.
    pub max_peers: u32,
    pub attach_mode: AttachMode,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_peers: DEFAULT_MAX_PEERS,
            attach_mode: AttachMode::Auto,
        }
    }
}

/// What the datapath must match for one underlay family: the VXLAN port
/// and VNI of that family's overlay device (`flannel.1` over IPv4,
/// `flannel-v6.1` over IPv6), its local VTEP and MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FamilyMatch {
    pub vxlan_port: u16,
    pub vni: Option<u32>,
    /// This node's VTEP address of this family: inbound VXLAN counts for a
    /// peer only when addressed to it (`None`: any address). An address of
    /// the other family is ignored.
    pub local_vtep: Option<IpAddr>,
    /// The overlay's MAC: inbound VXLAN addressed to another unicast MAC
    /// is counted as stale (`None`: nothing is).
    pub overlay_mac: Option<[u8; 6]>,
}

/// What the datapath must match, per underlay family; `None`: that
/// family's VXLAN is not counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Matching {
    pub v4: Option<FamilyMatch>,
    pub v6: Option<FamilyMatch>,
}

impl Matching {
    /// One family only: IPv6 when `m.local_vtep` is IPv6, else IPv4.
    pub fn one(m: FamilyMatch) -> Self {
        match m.local_vtep {
            Some(IpAddr::V6(_)) => Matching {
                v4: None,
                v6: Some(m),
            },
            _ => Matching {
                v4: Some(m),
                v6: None,
            },
        }
    }
}

/// `a` as the datapath's address (IPv4 as `::ffff:a.b.c.d`).
pub(crate) fn to_addr(a: IpAddr) -> Addr {
    match a {
        IpAddr::V4(v4) => Addr::v4(v4.octets()),
        IpAddr::V6(v6) => Addr::v6(v6.octets()),
    }
}

/// The datapath's address back as an [`IpAddr`]: IPv4-mapped ones are
/// IPv4, as they were written.
pub(crate) fn from_addr(a: Addr) -> IpAddr {
    match a.to_v4() {
        Some(v4) => IpAddr::from(v4),
        None => IpAddr::from(a.octets()),
    }
}

/// One family's [`FamilyConfig`]; `v6` says which family, so a local VTEP
/// of the other one is left out (zeros: any).
fn family_config(m: Option<FamilyMatch>, v6: bool) -> FamilyConfig {
    let Some(m) = m else {
        return FamilyConfig::default();
    };
    let local = m.local_vtep.filter(|a| a.is_ipv6() == v6);
    FamilyConfig {
        vxlan_port: m.vxlan_port,
        flags: if m.vni.is_some() { CONFIG_VNI_KNOWN } else { 0 },
        vni: m.vni.unwrap_or(0),
        local_vtep: local.map_or([0; 16], |a| to_addr(a).octets()),
        overlay_mac: m.overlay_mac.unwrap_or_default(),
        ..FamilyConfig::default()
    }
}

/// The loaded eBPF object and whatever of it is attached.
pub struct Datapath {
    ebpf: Ebpf,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// By hook and device: the overlay hooks may sit on several overlay
    /// devices (`flannel.1` and `flannel-v6.1`), sharing the `INNER` table.
    attached: BTreeMap<(Hook, String), attach::Attached>,
    mode: AttachMode,
    /// clsact qdiscs we added (ifindex), removed on exit when empty.
    created_qdiscs: Vec<u32>,
    /// The drop tracer's offsets and reason names, or why it is not running.
    drops: std::result::Result<(DropConfig, DropReasons), String>,
    /// `PEERS` plus `INNER` entries at the last read.
    last_entries: usize,
    /// Whose each CPU's `PEERS` slots are, kept between reads.
    slot_keys: collect::SlotKeys,
    /// The rows of the last read, their memory kept for the next.
    read_buffers: collect::ReadBuffers,
    /// Slots of each index minus one.
    index_mask: u32,
    /// Tells other instances this one is alive (see `reclaim`).
    _heartbeat: reclaim::Heartbeat,
}

impl Datapath {
    /// Loads the object and every program into the kernel (running the
    /// verifier), without attaching anything.
    pub fn load(opts: &LoadOptions) -> Result<Self> {
        // No CO-RE relocations in our programs (the drop tracer's offsets
        // come from our own BTF reader), so the loader needs no kernel BTF:
        // parsing it would only raise the agent's peak memory.
        let mut loader = EbpfLoader::new();
        loader.btf(None);
        // The sizes `memory` computes the kernel memory from.
        for (name, entries) in memory::max_entries(opts.max_peers) {
            loader.map_max_entries(name, entries);
        }
        let mut ebpf = loader
            .load(EBPF_OBJECT)
            .context("loading the eBPF object failed: the kernel needs BTF and eBPF support, and the probe CAP_BPF")?;
        // Rare events only (a new peer): a missing log map is not fatal.
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::debug!("eBPF log records unavailable: {e}");
                None
            }
        };
        for hook in Hook::ALL {
            let prog = attach::classifier(&mut ebpf, hook)?;
            // The verifier's time is most of a `report`'s start-up.
            let t0 = std::time::Instant::now();
            prog.load().with_context(|| {
                format!(
                    "the kernel's verifier rejected {}: this kernel is not supported",
                    hook.program()
                )
            })?;
            tracing::debug!(hook = hook.program(), elapsed = ?t0.elapsed(), "verified");
        }
        // Drop reasons are a bonus: without BTF or the tracepoint the
        // counters still work, and the report says what is missing.
        let drops = drops::start(&mut ebpf).map_err(|e| {
            tracing::warn!("kernel drop reasons unavailable: {e:#}");
            format!("{e:#}")
        });
        let heartbeat = reclaim::Heartbeat::start(
            ebpf.map(MAP_STATS)
                .and_then(|m| match m {
                    aya::maps::Map::PerCpuArray(d) => Some(d),
                    _ => None,
                })
                .ok_or_else(|| {
                    anyhow!("the eBPF object has no per-CPU {MAP_STATS} map: rebuild flannel-probe")
                })?,
        )?;
        let mut dp = Self {
            ebpf,
            logger,
            attached: BTreeMap::new(),
            mode: opts.attach_mode,
            created_qdiscs: Vec::new(),
            drops,
            last_entries: 0,
            slot_keys: collect::SlotKeys::default(),
            read_buffers: collect::ReadBuffers::default(),
            index_mask: index_slots(opts.max_peers) - 1,
            _heartbeat: heartbeat,
        };
        // The tables work from the start; VXLAN is matched once configured.
        dp.write_config(Config::default())?;
        release_freed_memory();
        Ok(dp)
    }

    /// Tells the drop tracer what to match (no-op when it is not running).
    pub fn configure_drops(&mut self, m: &DropMatch) -> Result<()> {
        let Ok((template, _)) = &self.drops else {
            return Ok(());
        };
        let value = drops::config(template, m);
        let mut map: Array<&mut MapData, DropConfig> = Array::try_from(
            self.ebpf
                .map_mut(MAP_DROP_CONFIG)
                .ok_or_else(|| anyhow!("the eBPF object has no {MAP_DROP_CONFIG} map"))?,
        )?;
        map.set(0, value, 0)
            .context("writing the drop tracer's configuration failed")?;
        Ok(())
    }

    /// Why drop reasons are not being counted, if they are not.
    pub fn drops_unavailable(&self) -> Option<&str> {
        self.drops.as_ref().err().map(String::as_str)
    }

    /// Names a kernel drop reason number.
    pub fn drop_reason(&self, n: u32) -> String {
        match &self.drops {
            Ok((_, r)) => r.name(n),
            Err(_) => format!("REASON_{n}"),
        }
    }

    /// Sets the port and VNI the programs match, per family.
    pub fn configure(&mut self, m: Matching) -> Result<()> {
        self.write_config(Config {
            v4: family_config(m.v4, false),
            v6: family_config(m.v6, true),
            ..Config::default()
        })
    }

    /// Writes `value` with this datapath's index size.
    fn write_config(&mut self, value: Config) -> Result<()> {
        let mut config: Array<&mut MapData, Config> = Array::try_from(
            self.ebpf
                .map_mut(MAP_CONFIG)
                .ok_or_else(|| anyhow!("the eBPF object has no {MAP_CONFIG} map"))?,
        )?;
        let value = Config {
            index_mask: self.index_mask,
            ..value
        };
        config
            .set(0, value, 0)
            .context("writing the datapath configuration failed")?;
        Ok(())
    }

    /// Attaches `hook` to `iface` (replacing every earlier attachment of it).
    pub fn attach(&mut self, hook: Hook, iface: &str) -> Result<()> {
        self.detach(hook);
        self.attach_also(hook, iface)
    }

    /// Attaches `hook` to `iface` as well, keeping its attachments to other
    /// devices (the overlay hooks on each overlay device); an earlier
    /// attachment to `iface` is replaced.
    pub fn attach_also(&mut self, hook: Hook, iface: &str) -> Result<()> {
        self.detach_from(hook, iface);
        let a = attach::attach(&mut self.ebpf, hook, iface, self.mode)?;
        tracing::debug!(hook = hook.program(), iface, mode = ?a.mode, "attached");
        self.created_qdiscs.extend(a.created_qdisc);
        self.attached.insert((hook, iface.to_string()), a);
        Ok(())
    }

    /// Detaches `hook` from `iface` if it is attached there.
    pub fn detach_from(&mut self, hook: Hook, iface: &str) {
        if let Some(a) = self.attached.remove(&(hook, iface.to_string())) {
            attach::detach(&mut self.ebpf, hook, a);
        }
    }

    /// Hooks whose attachment vanished from the kernel (a `tc qdisc del`,
    /// a CNI reinstall); forgotten here, to be attached again.
    pub fn vanished(&mut self) -> Vec<(Hook, String)> {
        let mut gone = Vec::new();
        let keys: Vec<(Hook, String)> = self.attached.keys().cloned().collect();
        for key in keys {
            let hook = key.0;
            let Some(a) = self.attached.get(&key) else {
                continue;
            };
            let present = attach::present(&mut self.ebpf, hook, a).unwrap_or_else(|e| {
                tracing::debug!("checking {}: {e:#}", hook.program());
                false
            });
            if !present && let Some(a) = self.attached.remove(&key) {
                gone.push((hook, a.iface.clone()));
                // The qdisc we added may be gone with it, and one there now
                // is someone else's: never remove it on exit.
                if a.mode == AttachMode::Clsact
                    && let Ok(i) = attach::ifindex(&a.iface)
                {
                    self.created_qdiscs.retain(|c| *c != i);
                }
                attach::forget(&mut self.ebpf, hook, a);
            }
        }
        gone
    }

    /// Detaches `hook` from every device it is attached to. A device that
    /// disappeared took the attachment with it, which is fine.
    pub fn detach(&mut self, hook: Hook) {
        let keys: Vec<(Hook, String)> = self
            .attached
            .keys()
            .filter(|(h, _)| *h == hook)
            .cloned()
            .collect();
        for key in keys {
            if let Some(a) = self.attached.remove(&key) {
                attach::detach(&mut self.ebpf, hook, a);
            }
        }
    }

    /// Detaches everything, and removes the clsact qdiscs we added if
    /// nothing else is on them.
    pub fn detach_all(&mut self) {
        for hook in Hook::ALL {
            self.detach(hook);
        }
        attach::remove_created_qdiscs(std::mem::take(&mut self.created_qdiscs));
    }

    /// Where each attached hook is, for logs and tests.
    pub fn attachments(&self) -> Vec<(Hook, String, AttachMode)> {
        self.attached
            .iter()
            .map(|((h, _), a)| (*h, a.iface.clone(), a.mode))
            .collect()
    }

    /// How often `PEER_INDEX` was read whole: once per read that found a
    /// slot it did not know the key of (a new peer), not once per read.
    pub fn index_reads(&self) -> u64 {
        self.slot_keys.index_reads
    }

    /// Reads and sums every map now.
    pub fn snapshot(&mut self) -> Result<Snapshot> {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
        let parallel = self.last_entries > collect::PARALLEL_ABOVE;
        let snap = collect::read(
            &self.ebpf,
            &mut self.slot_keys,
            &mut self.read_buffers,
            parallel,
        )?;
        self.last_entries = snap.peers.len() + snap.inner.len();
        Ok(snap)
    }

    /// The underlying object, for `BPF_PROG_TEST_RUN` tests and statistics.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

/// Loading parses the kernel's BTF (several MB, twice: aya's loader and
/// the drop tracer's offsets) and frees it again; glibc keeps freed pages
/// resident unless asked. Handing them back keeps the agent's RSS at what
/// it uses (measured in BENCHMARKS.md).
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        self.detach_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fam(local: Option<&str>) -> FamilyMatch {
        FamilyMatch {
            vxlan_port: 8472,
            vni: Some(7),
            local_vtep: local.map(|a| a.parse().expect("an address")),
            overlay_mac: Some([0x0e, 0, 0, 0, 0, 1]),
        }
    }

    #[test]
    fn each_family_gets_its_own_local_vtep_and_none_of_the_others() {
        let c = family_config(Some(fam(Some("192.0.2.13"))), false);
        assert_eq!((c.vxlan_port, c.flags, c.vni), (8472, CONFIG_VNI_KNOWN, 7));
        assert_eq!(c.local_vtep, Addr::v4([192, 0, 2, 13]).octets());
        assert_eq!(c.overlay_mac, [0x0e, 0, 0, 0, 0, 1]);
        // An IPv4 address is not IPv6's local VTEP (zeros: any).
        let c = family_config(Some(fam(Some("192.0.2.13"))), true);
        assert_eq!(c.local_vtep, [0; 16]);
        let c = family_config(Some(fam(Some("fd00::2"))), true);
        assert_eq!(
            c.local_vtep,
            "fd00::2"
                .parse::<std::net::Ipv6Addr>()
                .expect("v6")
                .octets()
        );
        // Not watched: port 0.
        assert_eq!(family_config(None, false), FamilyConfig::default());
        let none = FamilyMatch {
            vni: None,
            ..fam(None)
        };
        assert_eq!(family_config(Some(none), false).flags, 0);
    }

    #[test]
    fn one_overlay_is_matched_in_its_local_vteps_family() {
        let m = Matching::one(fam(Some("fd00::2")));
        assert!(m.v4.is_none() && m.v6.is_some());
        let m = Matching::one(fam(Some("192.0.2.13")));
        assert!(m.v4.is_some() && m.v6.is_none());
        assert!(Matching::one(fam(None)).v4.is_some());
    }

    #[test]
    fn addresses_convert_both_ways() {
        for a in ["192.0.2.13", "fd00::2", "::1", "2001:db8::ffff:1"] {
            let ip: IpAddr = a.parse().expect("an address");
            assert_eq!(from_addr(to_addr(ip)), ip, "{a}");
        }
        // An IPv4-mapped IPv6 address reads back as the IPv4 address.
        let mapped: IpAddr = "::ffff:192.0.2.13".parse().expect("an address");
        assert_eq!(
            from_addr(to_addr(mapped)),
            "192.0.2.13".parse::<IpAddr>().expect("v4")
        );
    }
}
