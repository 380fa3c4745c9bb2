//! The running probe: node state from netlink, the datapath attached where
//! that state says, and the diagnosis of a window. Every face drives one.
use std::collections::BTreeMap;

use anyhow::{Context as _, Result, anyhow};

use crate::{
    cli::{Common, check_privileges},
    datapath::{Datapath, DropMatch, Hook, LoadOptions, Matching, Snapshot, drops_netns_inum},
    diagnose::{Inputs, diagnose},
    node::{DiscoverOptions, NodeState, discover},
    report::Report,
};

pub struct Probe {
    handle: rtnetlink::Handle,
    opts: DiscoverOptions,
    dp: Datapath,
    node: NodeState,
    /// (name, ifindex) the uplink programs are attached to.
    uplink_at: Option<(String, u32)>,
    /// ifindex the overlay programs are attached to.
    overlay_at: Option<u32>,
    matching: Option<Matching>,
    drop_match: Option<DropMatch>,
    netns_inum: u32,
}

impl Probe {
    /// Checks privileges, discovers the node, loads and attaches the datapath.
    pub async fn start(common: &Common) -> Result<Self> {
        check_privileges()?;
        let (conn, handle, _) =
            rtnetlink::new_connection().context("opening a netlink socket failed")?;
        tokio::spawn(conn);
        let opts = common.discover_options();
        let node = discover(&handle, &opts).await?;
        let dp = Datapath::load(&LoadOptions {
            max_peers: common.max_peers,
            attach_mode: common.attach,
        })?;
        let mut probe = Self {
            handle,
            opts,
            dp,
            node,
            uplink_at: None,
            overlay_at: None,
            matching: None,
            drop_match: None,
            netns_inum: drops_netns_inum()?,
        };
        probe.sync()?;
        Ok(probe)
    }

    /// Makes the datapath follow the node: port and VNI, and attachments to
    /// devices that appeared or were recreated (new ifindex).
    fn sync(&mut self) -> Result<()> {
        let m = Matching {
            vxlan_port: self.node.vxlan_port,
            vni: self.node.vni,
        };
        if self.matching != Some(m) {
            self.dp.configure(m)?;
            self.matching = Some(m);
        }
        let uplink = self.node.uplink.as_ref().ok_or_else(|| {
            anyhow!(
                "no uplink found: {} names none and there is no default route; pass --uplink IFACE",
                self.node.overlay_name
            )
        })?;
        let at = Some((uplink.name.clone(), uplink.ifindex));
        if self.uplink_at != at {
            for hook in [Hook::UplinkIngress, Hook::UplinkEgress] {
                self.dp.attach(hook, &uplink.name)?;
            }
            tracing::info!(uplink = %uplink.name, "watching the uplink");
            self.uplink_at = at;
        }
        let dm = DropMatch {
            netns_inum: self.netns_inum,
            overlay_ifindex: self.node.overlay.as_ref().map(|o| o.ifindex),
            overlay_mac: self.node.overlay.as_ref().and_then(|o| o.mac),
            local_vtep: self.node.local_vtep,
            vxlan_port: self.node.vxlan_port,
        };
        if self.drop_match != Some(dm) {
            self.dp.configure_drops(&dm)?;
            self.drop_match = Some(dm);
        }
        match &self.node.overlay {
            Some(o) if self.overlay_at != Some(o.ifindex) => {
                let name = o.name.clone();
                let res: Result<()> = [Hook::OverlayIngress, Hook::OverlayEgress]
                    .into_iter()
                    .try_for_each(|h| self.dp.attach(h, &name));
                match res {
                    Ok(()) => {
                        tracing::info!(overlay = %name, ifindex = o.ifindex, "watching the overlay device");
                        self.overlay_at = Some(o.ifindex);
                    }
                    // It may vanish between discovery and attach: next refresh retries.
                    Err(e) => tracing::warn!("attaching to {name} failed: {e:#}"),
                }
            }
            None if self.overlay_at.is_some() => {
                tracing::warn!(overlay = %self.node.overlay_name, "the overlay device disappeared");
                self.dp.detach(Hook::OverlayIngress);
                self.dp.detach(Hook::OverlayEgress);
                self.overlay_at = None;
            }
            _ => {}
        }
        Ok(())
    }

    /// Re-reads the node and follows it.
    pub async fn refresh(&mut self) -> Result<()> {
        self.node = discover(&self.handle, &self.opts).await?;
        self.sync()
    }

    pub fn snapshot(&mut self) -> Result<Snapshot> {
        self.dp.snapshot()
    }

    pub fn node(&self) -> &NodeState {
        &self.node
    }

    /// The diagnosis of `window` (counters over `secs` seconds).
    pub fn report(&self, window: &Snapshot, secs: f64) -> Report {
        let attached: BTreeMap<String, String> = self
            .dp
            .attachments()
            .into_iter()
            .map(|(_, iface, mode)| (iface, format!("{mode:?}").to_lowercase()))
            .collect();
        diagnose(&Inputs {
            window,
            window_secs: secs,
            node: &self.node,
            drop_reason: &|n| self.dp.drop_reason(n),
            attached,
            drops_unavailable: self.dp.drops_unavailable(),
        })
    }
}

/// SIGINT, SIGTERM and SIGHUP, caught from the moment [`Shutdown::install`]
/// returns: a signal during start-up still ends in a clean detach.
pub struct Shutdown {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Shutdown {
    pub fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("installing a SIGINT handler failed")?,
            term: signal(SignalKind::terminate()).context("installing a SIGTERM handler failed")?,
            hup: signal(SignalKind::hangup()).context("installing a SIGHUP handler failed")?,
        })
    }

    /// Resolves on the next of the three.
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {},
            _ = self.term.recv() => {},
            _ = self.hup.recv() => {},
        }
    }
}

/// Resolves on SIGINT, SIGTERM or SIGHUP received after the first poll.
pub async fn shutdown_signal() -> Result<()> {
    Shutdown::install()?.wait().await;
    Ok(())
}
