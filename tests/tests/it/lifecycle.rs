//! The probe is harmless: both attach paths count the same, a filter the
//! CNI added survives, every way of stopping leaves nothing of ours, and
//! missing privileges are named.
use std::{process::Command, time::Duration};

use flannel_probe_tests::{
    lab::{Lab, LabNode, LabSpec},
    support::{
        ProbeRun,
        attached::{add_cni_filter, probe_programs, tcx_programs},
        probe_bin,
        reports::{finish, peer, serious},
        scaled, time_scale,
    },
};

const PINGS: u32 = 10;

fn tc(lab: &Lab, node: &LabNode, args: &[&str]) -> String {
    let mut full = vec!["tc"];
    full.extend_from_slice(args);
    let out = lab.sh(&node.ns, &full).expect("tc");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything of ours on a node: tcx programs and clsact filters by name.
fn ours(lab: &Lab, node: &LabNode) -> Vec<String> {
    ["eth0", "flannel.1"]
        .into_iter()
        .flat_map(|dev| {
            probe_programs(lab, &node.ns, dev)
                .into_iter()
                .map(move |p| format!("{dev} {p}"))
        })
        .collect()
}

fn probe(lab: &Lab, node: &LabNode, args: &[&str]) -> ProbeRun {
    let mut cmd: Command = lab.node_command(node, &probe_bin());
    cmd.args(args);
    ProbeRun::spawn(cmd).expect("start flannel-probe")
}

#[test]
fn clsact_attachment_counts_the_same_and_cleans_up() {
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (g, e) = (lab.node("gladius"), lab.node("eq14-001"));
    // eq14-001 has the CNI's qdisc and filter; gladius has no qdisc at all.
    add_cni_filter(&lab, e);
    let window = format!("{}s", 4 * time_scale());
    let args = [
        "report",
        "--attach",
        "clsact",
        "--format",
        "json",
        "--duration",
        &window,
    ];
    let mut on_g = probe(&lab, g, &args);
    let mut on_e = probe(&lab, e, &args);
    for run in [&mut on_g, &mut on_e] {
        run.wait_for("observing", scaled(Duration::from_secs(60)))
            .expect("observing");
    }
    let filters = tc(&lab, e, &["filter", "show", "dev", "eth0", "ingress"]);
    assert!(
        filters.contains("uplink_ingress"),
        "our filter is on clsact: {filters}"
    );
    let stats = lab.ping(g, e.pod_ip, PINGS, 0.1).expect("ping");
    assert_eq!(stats.received, PINGS);
    let (code_g, rg) = finish(on_g, "gladius");
    let (code_e, re) = finish(on_e, "eq14-001");
    assert_eq!((code_g, code_e), (0, 0), "{rg:#} {re:#}");
    assert!(serious(&re).is_empty());
    assert_eq!(re["node"]["attached"]["eth0"], "clsact");
    let n = u64::from(PINGS);
    assert_eq!(peer(&rg, "192.0.2.13")["tx_encap_packets"], n);
    assert_eq!(peer(&rg, "192.0.2.13")["rx_encap_packets"], n);
    assert_eq!(peer(&re, "192.0.2.11")["rx_decap_packets"], n);
    assert_eq!(peer(&re, "192.0.2.11")["tx_inner_packets"], n);

    for node in [g, e] {
        assert!(
            ours(&lab, node).is_empty(),
            "{}: {:?}",
            node.name,
            ours(&lab, node)
        );
    }
    // The qdisc we added on gladius is gone; the CNI's on eq14-001 stays,
    // with its filter.
    assert!(!tc(&lab, g, &["qdisc", "show", "dev", "eth0"]).contains("clsact"));
    assert!(tc(&lab, e, &["qdisc", "show", "dev", "eth0"]).contains("clsact"));
    let left = tc(&lab, e, &["filter", "show", "dev", "eth0", "ingress"]);
    assert!(
        left.contains("u32") && left.contains("pref 7"),
        "the CNI's filter survives: {left}"
    );
}

/// tcx runs a chain's next program only when the one before returns
/// TCX_NEXT: a program attached after ours (on ingress, where ours go
/// first, and on egress, behind ours) must still see every packet.
#[test]
fn programs_after_ours_in_a_tcx_chain_still_run() {
    use aya::{
        Ebpf,
        programs::{LinkOrder, SchedClassifier, TcAttachType, tc::TcAttachOptions},
    };
    use flannel_probe::datapath::EBPF_OBJECT;
    use flannel_probe_tests::support::in_netns;
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (g, e) = (lab.node("gladius"), lab.node("eq14-001"));
    let mut on_e = probe(&lab, e, &["watch", "--plain", "--interval", "1s"]);
    on_e.wait_for("watching the overlay device", Duration::from_secs(60))
        .expect("watching");
    // Run counts need the kernel's statistics, on while this is held.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF statistics");
    // The eBPF object's do-nothing program, once per direction, behind ours.
    let after: Vec<Ebpf> = in_netns(&e.ns, || {
        [TcAttachType::Ingress, TcAttachType::Egress]
            .into_iter()
            .map(|t| {
                let mut ebpf = Ebpf::load(EBPF_OBJECT).expect("load the object");
                let p: &mut SchedClassifier = ebpf
                    .program_mut("reference_pass")
                    .expect("reference_pass")
                    .try_into()
                    .expect("classifier");
                p.load().expect("load reference_pass");
                p.attach_with_options("eth0", t, TcAttachOptions::TcxOrder(LinkOrder::last()))
                    .expect("attach behind ours");
                ebpf
            })
            .collect()
    })
    .expect("enter eq14-001");
    let chain = tcx_programs(&e.ns, "eth0");
    assert_eq!(
        chain,
        [
            "uplink_ingress",
            "reference_pass",
            "uplink_egress",
            "reference_pass"
        ],
        "ours, then the other program, in both directions"
    );
    let stats = lab.ping(g, e.pod_ip, PINGS, 0.1).expect("ping");
    assert_eq!(stats.received, PINGS);
    for (dir, ebpf) in ["ingress", "egress"].iter().zip(&after) {
        let runs = ebpf
            .program("reference_pass")
            .expect("reference_pass")
            .info()
            .expect("program info")
            .run_count();
        assert!(
            runs >= u64::from(PINGS),
            "the program after ours on eth0 {dir} ran {runs} times for {PINGS} pings each way"
        );
    }
    drop(after);
    flannel_probe_tests::support::terminate(on_e.pid());
    let (code, _) = on_e.finish(Duration::from_secs(30)).expect("probe exits");
    assert_eq!(code, 0, "SIGTERM ends watch cleanly");
}

#[test]
fn sigint_sigterm_and_sighup_detach_everything() {
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let e = lab.node("eq14-001");
    add_cni_filter(&lab, e);
    for (signal, name) in [
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGHUP, "SIGHUP"),
    ] {
        let mut run = probe(&lab, e, &["watch", "--plain"]);
        run.wait_for("watching the overlay device", Duration::from_secs(60))
            .expect("attached");
        assert_eq!(
            tcx_programs(&e.ns, "eth0").len(),
            2,
            "attached before {name}"
        );
        assert_eq!(tcx_programs(&e.ns, "flannel.1").len(), 2);
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(run.pid() as i32, signal) }, 0);
        let (code, _) = run.finish(Duration::from_secs(20)).expect("exits");
        assert_eq!(code, 0, "{name} is a clean stop");
        assert!(
            ours(&lab, e).is_empty(),
            "after {name}: {:?}",
            ours(&lab, e)
        );
    }
    let left = tc(&lab, e, &["filter", "show", "dev", "eth0", "ingress"]);
    assert!(left.contains("u32"), "the CNI's filter survives: {left}");
}

#[test]
fn sigkill_leaves_no_tcx_link_and_clsact_leftovers_are_reclaimed() {
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let e = lab.node("eq14-001");
    // tcx links are file descriptors: the kernel removes them with the process.
    let mut run = probe(&lab, e, &["watch", "--plain"]);
    run.wait_for("watching the overlay device", Duration::from_secs(60))
        .expect("attached");
    assert_eq!(tcx_programs(&e.ns, "eth0").len(), 2);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(run.pid() as i32, libc::SIGKILL) };
    let _ = run.finish(Duration::from_secs(20));
    assert!(
        ours(&lab, e).is_empty(),
        "after SIGKILL: {:?}",
        ours(&lab, e)
    );

    // clsact filters outlive a killed process; the next start removes them
    // once provably dead: no process holds the program and its heartbeat
    // is older than ten beats (datapath/reclaim.rs).
    let mut run = probe(&lab, e, &["watch", "--plain", "--attach", "clsact"]);
    run.wait_for("watching the overlay device", Duration::from_secs(60))
        .expect("attached");
    unsafe { libc::kill(run.pid() as i32, libc::SIGKILL) };
    let _ = run.finish(Duration::from_secs(20));
    assert!(
        !ours(&lab, e).is_empty(),
        "SIGKILL cannot remove clsact filters"
    );
    std::thread::sleep(Duration::from_secs(12));
    let mut again = probe(
        &lab,
        e,
        &["report", "--attach", "clsact", "--duration", "1s"],
    );
    again
        .wait_for("observing", Duration::from_secs(60))
        .expect("observing");
    let filters = tc(&lab, e, &["filter", "show", "dev", "eth0", "ingress"]);
    assert_eq!(
        filters.matches("name uplink_ingress").count(),
        1,
        "the leftover was replaced: {filters}"
    );
    let _ = again.finish(Duration::from_secs(20)).expect("exits");
    assert!(ours(&lab, e).is_empty(), "{:?}", ours(&lab, e));
    // The qdisc the killed run added cannot be told from one another tool
    // added, so it stays (empty): a qdisc we did not add is never removed.
    assert!(
        tc(&lab, e, &["filter", "show", "dev", "eth0", "ingress"])
            .trim()
            .is_empty()
    );
}

/// `report --duration 1s` on `node` with `caps` (setpriv's
/// `--bounding-set` syntax) dropped from the bounding set: they are gone
/// after exec even for root.
fn report_without(node: &LabNode, caps: &str) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", &node.ns, "setpriv"])
        .arg(format!("--bounding-set={caps}"))
        .arg("--")
        .arg(probe_bin())
        .args(["report", "--duration", "1s"])
        .output()
        .expect("run setpriv")
}

#[test]
fn missing_capabilities_exit_2_naming_them() {
    let Some(lab) = Lab::for_test(LabSpec::with_nodes(2)) else {
        return;
    };
    let g = lab.node("gladius");
    let out = report_without(g, "-bpf,-perfmon");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("CAP_BPF") && err.contains("CAP_PERFMON"),
        "{err}"
    );
    assert!(!err.contains("missing capabilities CAP_NET_ADMIN"), "{err}");
    let out = report_without(g, "-net_admin");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing capabilities CAP_NET_ADMIN"));
    assert!(ours(&lab, g).is_empty());
}
