//! Attaching the classifiers: tcx links where the kernel has them (6.6+),
//! clsact filters otherwise.
//!
//! Ordering: on ingress we go first, so we see every packet that arrives
//! even if a CNI program later drops or redirects it; on egress we go last,
//! so we count what really leaves. We return TCX_NEXT (TC_ACT_UNSPEC) either
//! way, so every program after ours still runs and the verdict is theirs.
use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType,
        tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions},
    },
};

/// One of the four classifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    UplinkIngress,
    UplinkEgress,
    OverlayIngress,
    OverlayEgress,
}

impl Hook {
    pub const ALL: [Hook; 4] = [
        Hook::UplinkIngress,
        Hook::UplinkEgress,
        Hook::OverlayIngress,
        Hook::OverlayEgress,
    ];

    /// The program's name in the eBPF object.
    pub fn program(self) -> &'static str {
        match self {
            Hook::UplinkIngress => "uplink_ingress",
            Hook::UplinkEgress => "uplink_egress",
            Hook::OverlayIngress => "overlay_ingress",
            Hook::OverlayEgress => "overlay_egress",
        }
    }

    fn tc_type(self) -> TcAttachType {
        match self {
            Hook::UplinkIngress | Hook::OverlayIngress => TcAttachType::Ingress,
            Hook::UplinkEgress | Hook::OverlayEgress => TcAttachType::Egress,
        }
    }

    fn order(self) -> LinkOrder {
        match self.tc_type() {
            TcAttachType::Ingress => LinkOrder::first(),
            _ => LinkOrder::last(),
        }
    }
}

/// How programs are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// tcx if the kernel has it, else clsact.
    Auto,
    /// tcx links (Linux 6.6+): removed by the kernel when the probe exits.
    Tcx,
    /// Filters on a clsact qdisc, at a priority of our own.
    Clsact,
}

/// Our clsact filter priority: high enough to stay out of the way of the
/// small priorities CNIs use.
pub(super) const CLSACT_PRIORITY: u16 = 0xf1a0;

pub(super) struct Attached {
    pub iface: String,
    pub mode: AttachMode,
    link: SchedClassifierLinkId,
    /// We added the clsact qdisc this filter sits on (ifindex).
    pub created_qdisc: Option<u32>,
}

pub(super) fn ifindex(iface: &str) -> Result<u32> {
    let name =
        std::ffi::CString::new(iface).with_context(|| format!("bad interface name {iface:?}"))?;
    // SAFETY: a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(anyhow!("no interface {iface}")),
        i => Ok(i),
    }
}

pub(super) fn classifier(ebpf: &mut Ebpf, hook: Hook) -> Result<&mut SchedClassifier> {
    let name = hook.program();
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("the eBPF object has no program {name}: rebuild flannel-probe"))?;
    Ok(prog.try_into()?)
}

pub(super) fn attach(
    ebpf: &mut Ebpf,
    hook: Hook,
    iface: &str,
    mode: AttachMode,
) -> Result<Attached> {
    let own = own_program_ids(ebpf);
    let prog = classifier(ebpf, hook)?;
    let try_tcx = matches!(mode, AttachMode::Auto | AttachMode::Tcx);
    if try_tcx {
        match prog.attach_with_options(
            iface,
            hook.tc_type(),
            TcAttachOptions::TcxOrder(hook.order()),
        ) {
            Ok(link) => {
                return Ok(Attached {
                    iface: iface.to_string(),
                    mode: AttachMode::Tcx,
                    link,
                    created_qdisc: None,
                });
            }
            Err(e) if mode == AttachMode::Tcx => {
                return Err(e).with_context(|| {
                    format!(
                        "attaching {} to {iface} with tcx failed: try --attach clsact",
                        hook.program()
                    )
                });
            }
            Err(e) => tracing::debug!(
                "tcx attach of {} to {iface} failed ({e}); using clsact",
                hook.program()
            ),
        }
    }
    let created_qdisc = match tc::qdisc_add_clsact(iface) {
        Ok(()) => {
            tracing::debug!(iface, "added a clsact qdisc");
            Some(ifindex(iface)?)
        }
        // Someone (a CNI, an earlier run) has one already: use it, never remove it.
        Err(tc::TcError::AlreadyAttached) => None,
        Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => None,
        Err(e) => {
            return Err(e).with_context(|| format!("adding a clsact qdisc to {iface} failed"));
        }
    };
    // A qdisc we found may carry filters of other instances, live or
    // killed: only provably dead ones go (never by name alone).
    if created_qdisc.is_none() {
        let egress = hook.tc_type() == TcAttachType::Egress;
        if let Err(e) = super::reclaim::reclaim_dead(ifindex(iface)?, egress, own) {
            tracing::debug!(iface, "looking for killed instances' filters: {e:#}");
        }
    }
    let opts = NlOptions {
        priority: CLSACT_PRIORITY,
        ..Default::default()
    };
    let link = prog
        .attach_with_options(iface, hook.tc_type(), TcAttachOptions::Netlink(opts))
        .with_context(|| format!("attaching {} to {iface} with clsact failed", hook.program()))?;
    Ok(Attached {
        iface: iface.to_string(),
        mode: AttachMode::Clsact,
        link,
        created_qdisc,
    })
}

/// Ids of our own loaded programs (never reclaimed, whatever they say).
fn own_program_ids(ebpf: &mut Ebpf) -> Vec<u32> {
    Hook::ALL
        .into_iter()
        .filter_map(|h| classifier(ebpf, h).ok()?.info().ok().map(|i| i.id()))
        .collect()
}

/// The attachment is still in the kernel: our tcx link's program on the
/// device's chain, or a filter running our program at our priority.
pub(super) fn present(ebpf: &mut Ebpf, hook: Hook, a: &Attached) -> Result<bool> {
    let id = classifier(ebpf, hook)?.info()?.id();
    match a.mode {
        AttachMode::Clsact => super::reclaim::filter_present(
            ifindex(&a.iface)?,
            hook.tc_type() == TcAttachType::Egress,
            id,
        ),
        _ => Ok(tcx_program_ids(ifindex(&a.iface)?, hook.tc_type())?.contains(&id)),
    }
}

/// `BPF_PROG_QUERY`'s part of `union bpf_attr` (Linux 6.6+ layout).
#[repr(C)]
#[derive(Default)]
struct ProgQuery {
    target_ifindex: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

/// Program ids on a device's tcx chain. By hand rather than aya's
/// `query_tcx`, which opens each program by id and so needs
/// CAP_SYS_ADMIN; the query itself needs only CAP_NET_ADMIN, which the
/// agent keeps.
fn tcx_program_ids(ifindex: u32, t: TcAttachType) -> Result<Vec<u32>> {
    const BPF_PROG_QUERY: libc::c_long = 16;
    const BPF_TCX_INGRESS: u32 = 46;
    const BPF_TCX_EGRESS: u32 = 47;
    let attach_type = match t {
        TcAttachType::Egress => BPF_TCX_EGRESS,
        _ => BPF_TCX_INGRESS,
    };
    let mut ids = vec![0u32; 256];
    let mut q = ProgQuery {
        target_ifindex: ifindex,
        attach_type,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: 256,
        ..ProgQuery::default()
    };
    // SAFETY: `q` is a valid bpf_attr prefix of the size passed, and
    // `prog_ids` points at `prog_cnt` writable u32s that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            &raw mut q,
            size_of::<ProgQuery>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("querying the tcx chain of ifindex {ifindex} failed"));
    }
    ids.truncate((q.prog_cnt as usize).min(256));
    Ok(ids)
}

/// Drops our record of an attachment that vanished, without a detach: a
/// clsact filter's priority and handle may by now be another instance's.
pub(super) fn forget(ebpf: &mut Ebpf, hook: Hook, a: Attached) {
    let Ok(prog) = classifier(ebpf, hook) else {
        return;
    };
    if let Ok(link) = prog.take_link(a.link) {
        match a.mode {
            // Dropping it would delete by priority and handle.
            AttachMode::Clsact => std::mem::forget(link),
            // A tcx link is our descriptor: closing it touches nobody else.
            _ => drop(link),
        }
    }
}

pub(super) fn detach(ebpf: &mut Ebpf, hook: Hook, a: Attached) {
    let Ok(prog) = classifier(ebpf, hook) else {
        return;
    };
    if let Err(e) = prog.detach(a.link) {
        // The device is gone, and our filter or link with it.
        tracing::debug!("detaching {} from {}: {e}", hook.program(), a.iface);
    }
}

/// Removes clsact qdiscs we added once nothing is left on them.
pub(super) fn remove_created_qdiscs(ifindexes: impl IntoIterator<Item = u32>) {
    let mut seen = std::collections::BTreeSet::new();
    for ifindex in ifindexes {
        if !seen.insert(ifindex) {
            continue;
        }
        match super::clsact::remove_if_empty(ifindex) {
            Ok(true) => tracing::debug!(ifindex, "removed the clsact qdisc we added"),
            Ok(false) => tracing::info!(
                ifindex,
                "left the clsact qdisc we added: others' filters are on it"
            ),
            // The device is gone, and the qdisc with it.
            Err(e) => tracing::debug!(ifindex, "clsact cleanup: {e:#}"),
        }
    }
}
