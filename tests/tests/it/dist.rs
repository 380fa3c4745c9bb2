//! `cargo xtask dist`'s binary: static, stamped, and complete on its own: it
//! runs from a directory holding nothing else (a chroot in a lab node) and
//! finds the incident.
use std::{path::Path, process::Command, thread, time::Duration};

use flannel_probe_tests::{
    dist::{CHROOT_SH, dynamic_needs, require_dist_bin},
    lab::{Fault, Lab, LabNode, LabSpec},
    support::{
        ProbeRun,
        reports::{self, serious},
    },
};

/// `flannel-probe 0.1.0 (git 0123456789ab[-dirty], built 2026-12-01)`.
fn check_version(line: &str) {
    let rest = line
        .trim()
        .strip_prefix(concat!(
            "flannel-probe ",
            env!("CARGO_PKG_VERSION"),
            " (git "
        ))
        .unwrap_or_else(|| panic!("--version: {line:?}"));
    let (rev, rest) = rest
        .split_once(", built ")
        .unwrap_or_else(|| panic!("{line:?}"));
    let hex = rev.strip_suffix("-dirty").unwrap_or(rev);
    assert!(
        hex.len() == 12 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "revision in {line:?}"
    );
    let date = rest.strip_suffix(')').unwrap_or_else(|| panic!("{line:?}"));
    let parts: Vec<&str> = date.split('-').collect();
    assert!(
        parts.len() == 3
            && [4, 2, 2].iter().zip(&parts).all(|(n, p)| p.len() == *n)
            && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())),
        "build date in {line:?}"
    );
}

/// `report --format json` from the chroot `root` inside `node`.
fn report_in_chroot(lab: &Lab, node: &LabNode, root: &Path, secs: u32) -> ProbeRun {
    let mut cmd: Command = lab.node_command(node, Path::new("unshare"));
    cmd.args(["-m", "--propagation", "private", "sh", "-c", CHROOT_SH])
        .arg(root)
        .args(["/flannel-probe", "report", "--format", "json"])
        .arg(format!("--duration={secs}s"));
    let mut run = ProbeRun::spawn(cmd).expect("start the dist binary");
    run.wait_for("observing", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("dist binary in a chroot on {}: {e:#}", node.name));
    run
}

#[test]
fn dist_binary_is_static_and_finds_the_incident_from_an_empty_chroot() {
    let Some(bin) = require_dist_bin() else {
        return;
    };
    assert_eq!(
        dynamic_needs(&bin).expect("read the ELF"),
        None,
        "{}",
        bin.display()
    );
    let file = Command::new("file")
        .arg(&bin)
        .output()
        .expect("run file(1)");
    let file = String::from_utf8_lossy(&file.stdout);
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "file(1): {file}"
    );
    let sha = bin.with_file_name(format!(
        "flannel-probe-{}-x86_64-linux-musl.sha256",
        env!("CARGO_PKG_VERSION")
    ));
    let check = Command::new("sha256sum")
        .arg("-c")
        .arg(&sha)
        .current_dir(bin.parent().expect("dist dir"))
        .output()
        .expect("run sha256sum");
    assert!(
        check.status.success(),
        "sha256sum -c {}: {check:?}",
        sha.display()
    );
    let v = Command::new(&bin)
        .arg("--version")
        .output()
        .expect("--version");
    assert!(v.status.success());
    check_version(&String::from_utf8_lossy(&v.stdout));

    let Some(mut lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    // Nothing but the binary and the two mount points a runtime provides.
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::copy(&bin, root.path().join("flannel-probe")).expect("copy the binary");
    for d in ["proc", "sys"] {
        std::fs::create_dir(root.path().join(d)).expect("mount point");
    }
    let (g, e) = (lab.node("gladius"), lab.node("eq14-001"));
    let run = report_in_chroot(&lab, e, root.path(), 4);
    thread::scope(|s| {
        s.spawn(|| lab.ping(g, e.pod_ip, 10, 0.2));
        s.spawn(|| lab.ping(e, g.pod_ip, 10, 0.2));
    });
    let (code, healthy) = reports::finish(run, "eq14-001");
    assert_eq!((code, serious(&healthy)), (0, Vec::new()), "{healthy:#}");
    let peer = reports::peer(&healthy, &g.ip.to_string());
    assert_eq!(
        peer["rx_decap_packets"], 20,
        "requests and replies: {peer:#}"
    );

    lab.fault(&Fault::DeleteOverlay {
        node: "eq14-001".into(),
    })
    .expect("inject the incident");
    let (g, e) = (lab.node("gladius"), lab.node("eq14-001"));
    let run = report_in_chroot(&lab, e, root.path(), 4);
    let _ = lab.ping(g, e.pod_ip, 10, 0.2);
    let (code, broken) = reports::finish(run, "eq14-001");
    let codes: Vec<String> = serious(&broken).into_iter().map(|(c, _)| c).collect();
    assert_eq!(code, 1, "{broken:#}");
    for want in ["OVERLAY_DEVICE_MISSING", "VXLAN_NOT_DECAPSULATED"] {
        assert!(codes.iter().any(|c| c == want), "{want} in {codes:?}");
    }
    // The chroot's mounts lived in a private mount namespace: nothing left.
    let proc_left = std::fs::read_dir(root.path().join("proc"))
        .expect("read proc")
        .count();
    assert_eq!(proc_left, 0, "/proc stayed mounted in the chroot");
}
