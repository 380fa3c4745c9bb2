//! deploy/Containerfile built here with podman from the dist binary (FROM
//! scratch, offline), then run as a runtime would: podman cannot run
//! containers in this sandbox (crun's setrlimit is refused), so the test
//! exports the image's filesystem and starts the image's entrypoint with
//! the DaemonSet's arguments from it, chrooted, inside a lab node.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use flannel_probe_tests::{
    dist::{CHROOT_SH, ImageLabels, podman_build, require_dist_bin},
    lab::{Fault, Lab, LabSpec},
    support::{ProbeRun, http_get_in, require_tool, terminate},
};
use serde_json::Value;
use serde_norway::Value as Yaml;

const TAG: &str = "localhost/flannel-probe:image-test";

/// podman with storage in `dir` (vfs: no overlay-on-overlay), so the test
/// never touches the machine's image store and cleans up with the dir.
fn podman(dir: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs"]);
    c
}

fn out(mut c: Command) -> String {
    let o = c.stderr(Stdio::piped()).output().expect("run podman");
    assert!(
        o.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn inspect(dir: &Path, format: &str) -> Value {
    let mut c = podman(dir);
    c.args(["image", "inspect", "--format", format, TAG]);
    serde_json::from_str(&out(c)).expect("inspect JSON")
}

/// The agent container's args in the base DaemonSet.
fn daemonset_args() -> Vec<String> {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/base/daemonset.yaml");
    let text = std::fs::read_to_string(&p).expect("read the DaemonSet");
    let ds: Yaml = serde_norway::from_str(&text).expect("DaemonSet YAML");
    ds["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str().map(String::from))
        .collect()
}

fn files_under(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).expect("read rootfs") {
        let p = e.expect("entry").path();
        out.push(
            p.strip_prefix(root)
                .expect("under root")
                .display()
                .to_string(),
        );
        if p.is_dir() && !p.is_symlink() {
            files_under(root, &p, out);
        }
    }
}

/// GETs `path` until `ok` holds or `timeout` passes; the last body.
fn poll(
    ns: &str,
    addr: &str,
    path: &str,
    timeout: Duration,
    ok: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let end = Instant::now() + timeout;
    loop {
        let got = http_get_in(ns, addr, path, Duration::from_secs(5));
        if let Ok((code, body)) = &got
            && (ok(*code, body) || Instant::now() > end)
        {
            return (*code, body.clone());
        }
        assert!(Instant::now() <= end, "GET {addr}{path}: {got:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn codes(report: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(report).unwrap_or(Value::Null);
    v["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["severity"] != "info")
        .filter_map(|f| f["code"].as_str().map(String::from))
        .collect()
}

#[test]
fn the_scratch_image_builds_offline_and_its_entrypoint_serves_the_incident() {
    let Some(bin) = require_dist_bin() else {
        return;
    };
    if !require_tool(Path::new("podman")) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let ctx = tmp.path().join("context");
    std::fs::create_dir(&ctx).expect("context dir");
    std::fs::copy(&bin, ctx.join("flannel-probe")).expect("copy the binary");
    let labels = ImageLabels::of(&bin).expect("labels from --version");
    out(podman_build(podman(tmp.path()), &ctx, TAG, &labels));

    assert_eq!(
        inspect(tmp.path(), "{{json .Config.Entrypoint}}"),
        serde_json::json!(["/flannel-probe"])
    );
    assert_eq!(
        inspect(tmp.path(), "{{json .Config.Cmd}}"),
        serde_json::json!(["serve", "--listen", "0.0.0.0:9465"])
    );
    let l = inspect(tmp.path(), "{{json .Labels}}");
    assert_eq!(l["org.opencontainers.image.title"], "flannel-probe");
    assert_eq!(
        l["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        l["org.opencontainers.image.revision"],
        labels.revision.as_str()
    );
    assert_eq!(
        l["org.opencontainers.image.created"],
        labels.created.as_str()
    );
    assert_eq!(
        inspect(tmp.path(), "{{json .RootFS.Layers}}")
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // The image's filesystem: the binary and nothing else (no shell).
    let mut c = podman(tmp.path());
    c.args(["create", TAG]);
    let cid = out(c);
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir(&rootfs).expect("rootfs dir");
    let tarball = tmp.path().join("rootfs.tar");
    let mut export = podman(tmp.path());
    export.args(["export", "-o"]).arg(&tarball).arg(&cid);
    out(export);
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-xf")
        .arg(&tarball)
        .output()
        .expect("tar");
    assert!(
        tar.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let mut c = podman(tmp.path());
    c.args(["rm", &cid]);
    out(c);
    let mut files = Vec::new();
    files_under(&rootfs, &rootfs, &mut files);
    files.sort();
    assert_eq!(files, ["flannel-probe"], "the image holds only the binary");

    let Some(mut lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    for d in ["proc", "sys"] {
        std::fs::create_dir(rootfs.join(d)).expect("mount point");
    }
    let e = lab.node("eq14-001").clone();
    let g = lab.node("gladius").clone();
    // kubelet substitutes $(NODE_IP) from status.hostIP.
    let args: Vec<String> = daemonset_args()
        .into_iter()
        .map(|a| a.replace("$(NODE_IP)", &e.ip.to_string()))
        .collect();
    let entry = inspect(tmp.path(), "{{json .Config.Entrypoint}}");
    let entry = entry[0].as_str().expect("entrypoint").to_owned();
    let mut cmd = lab.node_command(&e, Path::new("unshare"));
    cmd.args(["-m", "--propagation", "private", "sh", "-c", CHROOT_SH])
        .arg(&rootfs)
        .arg(&entry)
        .args(&args);
    let mut agent = ProbeRun::spawn(cmd).expect("start the entrypoint");
    agent
        .wait_for("serving on", Duration::from_secs(60))
        .expect("the image's entrypoint serves");
    let addr = format!("{}:9465", e.ip);
    let (code, body) = poll(&g.ns, &addr, "/healthz", Duration::from_secs(10), |c, _| {
        c == 200
    });
    assert_eq!((code, body.trim()), (200, "ok"));
    lab.ping(&g, e.pod_ip, 5, 0.2).expect("ping");
    let (code, report) = poll(&g.ns, &addr, "/report", Duration::from_secs(10), |c, _| {
        c == 200
    });
    assert_eq!(code, 200);
    assert_eq!(codes(&report), Vec::<String>::new(), "healthy: {report}");

    lab.fault(&Fault::DeleteOverlay {
        node: e.name.clone(),
    })
    .expect("the incident");
    let (_, report) = poll(&g.ns, &addr, "/report", Duration::from_secs(60), |_, b| {
        codes(b).iter().any(|c| c == "OVERLAY_DEVICE_MISSING")
    });
    assert!(
        codes(&report).iter().any(|c| c == "OVERLAY_DEVICE_MISSING"),
        "{report}"
    );
    let (_, metrics) =
        http_get_in(&g.ns, &addr, "/metrics", Duration::from_secs(5)).expect("GET /metrics");
    assert!(
        metrics.contains(r#"flannel_probe_finding{code="OVERLAY_DEVICE_MISSING""#),
        "{metrics}"
    );
    terminate(agent.pid());
    let (status, _) = agent.finish(Duration::from_secs(20)).expect("agent exits");
    assert_eq!(status, 0, "SIGTERM stops it cleanly");
}
