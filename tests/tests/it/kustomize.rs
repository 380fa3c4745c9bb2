//! deploy/kubernetes as kustomize renders it: an overlay with every
//! component and `images:`, rendered by the pinned kubectl, every object
//! validated offline against the Kubernetes API schemas of a pinned release
//! (kubernetes-validate, strict); the two Prometheus Operator objects, which
//! it has no schema for, checked here and by promtool.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use flannel_probe_tests::{dist::k8s_venv, prometheus::promtool_bin, support::require_tool};
use serde_norway::Value as Yaml;

/// The API version the objects must be valid for (k3s/kubectl here: 1.32).
const KUBERNETES: &str = "1.32.0";
const IMAGE: &str = "registry.test.invalid/team/flannel-probe:9.9.9-test";

fn kubernetes_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

fn tool(name: &str) -> Option<PathBuf> {
    let p = k8s_venv().join("bin").join(name);
    require_tool(&p).then_some(p)
}

fn kustomize(kubectl: &Path, dir: &Path) -> String {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 YAML")
}

fn docs(yaml: &str) -> Vec<Yaml> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("rendered YAML parses"))
        .filter(|v: &Yaml| !v.is_null())
        .collect()
}

fn kind(docs: &[Yaml], kind: &str) -> Yaml {
    let found: Vec<&Yaml> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} rendered");
    found[0].clone()
}

fn names(v: &Yaml) -> BTreeSet<String> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect()
}

#[test]
fn kustomize_renders_every_component_with_the_image_and_valid_objects() {
    let (Some(kubectl), Some(validate)) = (tool("kubectl"), tool("kubernetes-validate")) else {
        return;
    };
    // An operator's overlay, outside the repository, as `kubectl kustomize`
    // has no `edit`.
    let tmp = tempfile::tempdir().expect("tempdir");
    // kustomize refuses absolute paths: reach the repository relatively.
    let k = kubernetes_dir().canonicalize().expect("deploy/kubernetes");
    let here = tmp.path().canonicalize().expect("tempdir");
    let up = "../".repeat(here.components().count() - 1);
    let k = PathBuf::from(format!(
        "{up}{}",
        k.display().to_string().trim_start_matches('/')
    ));
    let (name, tag) = IMAGE.rsplit_once(':').expect("image:tag");
    let overlay = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         resources:\n  - {k}/base\ncomponents:\n\
         \x20 - {k}/components/podmonitor\n  - {k}/components/prometheusrule\n\
         \x20 - {k}/components/grafana-dashboard\n  - {k}/components/node-problem-detector\n\
         images:\n  - name: flannel-probe\n    newName: {name}\n    newTag: {tag}\n",
        k = k.display()
    );
    std::fs::write(tmp.path().join("kustomization.yaml"), overlay).expect("write overlay");
    let rendered = kustomize(&kubectl, tmp.path());
    let objs = docs(&rendered);
    let mut kinds: Vec<String> = objs
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap/flannel-probe-dashboard",
            "ConfigMap/node-problem-detector-flannel-probe",
            "DaemonSet/flannel-probe",
            "Namespace/flannel-probe",
            "PodMonitor/flannel-probe",
            "PrometheusRule/flannel-probe",
            "Service/flannel-probe",
        ]
    );
    for o in &objs {
        let ns = o["metadata"]["namespace"].as_str();
        match o["metadata"]["name"].as_str() {
            _ if o["kind"] == "Namespace" => assert_eq!(ns, None),
            Some("node-problem-detector-flannel-probe") => assert_eq!(ns, Some("kube-system")),
            _ => assert_eq!(ns, Some("flannel-probe"), "{o:?}"),
        }
    }

    // The image comes from `images:`, in every container.
    let ds = kind(&objs, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    let images: Vec<&str> = ["initContainers", "containers"]
        .iter()
        .flat_map(|k| pod[*k].as_sequence().into_iter().flatten())
        .filter_map(|c| c["image"].as_str())
        .collect();
    assert_eq!(images, [IMAGE, IMAGE]);
    assert_eq!(pod["dnsPolicy"], "Default");
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    let dash = objs
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "flannel-probe-dashboard")
        .expect("dashboard ConfigMap");
    assert_eq!(dash["metadata"]["labels"]["grafana_dashboard"], "1");
    let json = dash["data"]["flannel-probe-dashboard.json"]
        .as_str()
        .expect("dashboard JSON in the ConfigMap");
    let _: serde_json::Value = serde_json::from_str(json).expect("the dashboard is JSON");

    // Every object against the pinned release's schemas, strictly (an unknown
    // field fails). Unknown kinds only WARN and pass: those two are checked
    // below, any other WARN is a failure.
    let file = tmp.path().join("rendered.yaml");
    std::fs::write(&file, &rendered).expect("write rendered");
    let out = Command::new(&validate)
        .args(["--strict", "-k", KUBERNETES])
        .arg(&file)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubernetes-validate: {text}");
    let mut passed = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with("INFO") && line.contains(" passed for resource ") {
            let what = line
                .split(" passed for resource ")
                .nth(1)
                .unwrap_or_default();
            passed.insert(
                what.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            );
        } else if line.starts_with("WARN") {
            assert!(
                ["kind PodMonitor ", "kind PrometheusRule "]
                    .iter()
                    .any(|k| line.contains(k)),
                "kubernetes-validate: {line}"
            );
        } else {
            panic!("kubernetes-validate: {line}");
        }
    }
    assert_eq!(
        passed,
        [
            "configmap/flannel-probe-dashboard",
            "configmap/node-problem-detector-flannel-probe",
            "daemonset/flannel-probe",
            "namespace/flannel-probe",
            "service/flannel-probe",
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        "{text}"
    );

    // PodMonitor: selects the DaemonSet's pods on a port the container has.
    let pm = kind(&objs, "PodMonitor");
    assert_eq!(pm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        pm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        pod_label(&ds)
    );
    let ports = names(&pod["containers"][0]["ports"]);
    for e in pm["spec"]["podMetricsEndpoints"]
        .as_sequence()
        .expect("endpoints")
    {
        let port = e["port"].as_str().expect("a named port");
        assert!(ports.contains(port), "{port} in {ports:?}");
        assert_eq!(e["path"], "/metrics");
        let keys: BTreeSet<&str> = e
            .as_mapping()
            .expect("map")
            .keys()
            .filter_map(|k| k.as_str())
            .collect();
        assert!(
            keys.is_subset(&["path", "port", "interval", "scrapeTimeout"].into()),
            "{keys:?}"
        );
    }
    // PrometheusRule: promtool accepts its groups as a rule file.
    let pr = kind(&objs, "PrometheusRule");
    assert_eq!(pr["apiVersion"], "monitoring.coreos.com/v1");
    if require_tool(&promtool_bin()) {
        let rules = tmp.path().join("rules.yml");
        std::fs::write(
            &rules,
            serde_norway::to_string(&pr["spec"]).expect("spec YAML"),
        )
        .expect("write rules");
        let out = Command::new(promtool_bin())
            .args(["check", "rules"])
            .arg(&rules)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool check rules: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The repository's example overlay renders as well, with its image.
    let example = kustomize(&kubectl, &kubernetes_dir().join("overlays/example"));
    let ex = kind(&docs(&example), "DaemonSet");
    assert_eq!(
        ex["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/flannel-probe:0.1.0"
    );
}

fn pod_label(ds: &Yaml) -> Yaml {
    ds["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"].clone()
}
