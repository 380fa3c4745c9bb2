//! Every file in deploy/ is checked: it parses, it says what the binary
//! does (flags, metric names, exit codes), and promtool accepts the rules,
//! their unit tests, the dashboard's queries and what the agent serves.
use std::{
    collections::BTreeSet,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
};

use clap::Parser as _;
use flannel_probe::{
    agent::{AgentFinding, AgentNode, Counters, DropCumulative, PeerCumulative},
    cli::Cli,
    metrics::{self, METRIC_NAMES},
};
use flannel_probe_tests::{prometheus::promtool_bin, support::require_tool};
use serde_json::Value as Json;
use serde_norway::Value as Yaml;

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(rel: &str) -> String {
    let p = deploy().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every YAML document in a file.
fn yaml_docs(rel: &str) -> Vec<Yaml> {
    let text = read(rel);
    serde_norway::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
        })
        .filter(|v: &Yaml| !v.is_null())
        .collect()
}

fn json(rel: &str) -> Json {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"))
}

fn files(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("read deploy/") {
        let p = entry.expect("entry").path();
        if p.is_dir() {
            files(&p, base, out);
        } else {
            let rel = p.strip_prefix(base).expect("under deploy/");
            out.insert(rel.to_string_lossy().into_owned());
        }
    }
}

/// The files this test knows how to check: a new one must be added here.
const CHECKED: &[&str] = &[
    "Containerfile",
    "kubernetes/base/daemonset.yaml",
    "kubernetes/base/kustomization.yaml",
    "kubernetes/base/namespace.yaml",
    "kubernetes/base/service.yaml",
    "kubernetes/components/grafana-dashboard/flannel-probe-dashboard.json",
    "kubernetes/components/grafana-dashboard/kustomization.yaml",
    "kubernetes/components/node-problem-detector/configmap.yaml",
    "kubernetes/components/node-problem-detector/kustomization.yaml",
    "kubernetes/components/podmonitor/kustomization.yaml",
    "kubernetes/components/podmonitor/podmonitor.yaml",
    "kubernetes/components/prometheusrule/kustomization.yaml",
    "kubernetes/components/prometheusrule/prometheusrule.yaml",
    "kubernetes/overlays/example/kustomization.yaml",
    "node-problem-detector/flannel-probe-plugin.json",
    "prometheus/flannel-probe.rules.test.yml",
    "prometheus/flannel-probe.rules.yml",
    "prometheus/scrape-config.yml",
];

#[test]
fn every_file_in_deploy_is_checked_and_parses() {
    let mut found = BTreeSet::new();
    files(&deploy(), &deploy(), &mut found);
    let known: BTreeSet<String> = CHECKED.iter().map(ToString::to_string).collect();
    assert_eq!(found, known, "deploy/ and this test's list differ");
    for f in CHECKED {
        if f.ends_with(".yaml") || f.ends_with(".yml") {
            assert!(!yaml_docs(f).is_empty(), "{f} is empty");
        } else if f.ends_with(".json") {
            json(f);
        }
    }
}

fn find_kind<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn strings(v: &Yaml) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_daemonset_runs_serve_on_every_node_with_just_the_capabilities() {
    let docs: Vec<Yaml> = ["daemonset", "namespace", "service"]
        .iter()
        .flat_map(|f| yaml_docs(&format!("kubernetes/base/{f}.yaml")))
        .collect();
    let ds = find_kind(&docs, "DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    // The node's resolver, not the overlay's CoreDNS it diagnoses.
    assert_eq!(spec["dnsPolicy"], "Default");
    assert_eq!(spec["nodeSelector"]["kubernetes.io/os"], "linux");
    // The init container copies the binary without a shell (scratch image).
    let init = &spec["initContainers"][0];
    let init_args = strings(&init["args"]);
    assert!(init.get("command").is_none(), "no shell command: {init:?}");
    let cli =
        Cli::try_parse_from(std::iter::once("flannel-probe".to_string()).chain(init_args.clone()))
            .unwrap_or_else(|e| panic!("{init_args:?}: {e}"));
    let flannel_probe::cli::Command::InstallBinary(install) = cli.command else {
        panic!("the init container runs install-binary: {init_args:?}")
    };
    assert_eq!(
        install.dir.to_str(),
        init["volumeMounts"][0]["mountPath"].as_str(),
        "it installs into the host-bin mount"
    );
    let tolerations = spec["tolerations"].as_sequence().expect("tolerations");
    assert!(
        tolerations
            .iter()
            .any(|t| t["operator"] == "Exists" && t.get("key").is_none()),
        "tolerates every taint"
    );
    let c = &spec["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    let mut add = strings(&sc["capabilities"]["add"]);
    add.sort();
    assert_eq!(add, ["BPF", "NET_ADMIN", "PERFMON"]);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    assert!(
        mounts.contains(&"/sys/kernel/btf"),
        "BTF mounted: {mounts:?}"
    );
    // Nothing is pinned, so no bpffs; the runtime's syscall filter applies.
    assert!(!mounts.contains(&"/sys/fs/bpf"), "no bpffs: {mounts:?}");
    assert_eq!(
        spec["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    // The node IP from the downward API, and flags the binary accepts.
    let env = c["env"].as_sequence().expect("env");
    assert!(
        env.iter().any(|e| e["name"] == "NODE_IP"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP")
    );
    let args: Vec<String> = strings(&c["args"])
        .into_iter()
        .map(|a| a.replace("$(NODE_IP)", "192.0.2.11"))
        .collect();
    assert_eq!(args[0], "serve");
    let cli = Cli::try_parse_from(std::iter::once("flannel-probe".to_string()).chain(args.clone()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let flannel_probe::cli::Command::Serve(serve) = cli.command else {
        panic!("serve expected")
    };
    assert_eq!(serve.listen.to_string(), "192.0.2.11:9465");
    assert_eq!(c["ports"][0]["containerPort"], 9465);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    // The binary lands where the node-problem-detector plugin runs it.
    let host_bin = spec["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "host-bin")
        .expect("host-bin volume");
    let plugin = json("node-problem-detector/flannel-probe-plugin.json");
    let path = plugin["rules"][0]["path"].as_str().expect("path");
    assert_eq!(
        format!(
            "{}/flannel-probe",
            host_bin["hostPath"]["path"].as_str().unwrap_or("")
        ),
        path
    );
    let containerfile = read("Containerfile");
    for want in [
        "FROM scratch",
        "COPY flannel-probe /flannel-probe",
        r#"ENTRYPOINT ["/flannel-probe"]"#,
        "EXPOSE 9465",
    ] {
        assert!(containerfile.contains(want), "Containerfile: {want}");
    }
    let svc = find_kind(&docs, "Service");
    assert_eq!(svc["spec"]["ports"][0]["port"], 9465);
    let pm = find_kind(
        &yaml_docs("kubernetes/components/podmonitor/podmonitor.yaml"),
        "PodMonitor",
    )
    .clone();
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["port"], "metrics");
}

#[test]
fn the_node_problem_detector_plugin_runs_report_with_its_exit_codes() {
    let plugin = json("node-problem-detector/flannel-probe-plugin.json");
    assert_eq!(plugin["plugin"], "custom");
    let rule = &plugin["rules"][0];
    assert_eq!(rule["type"], "permanent");
    assert_eq!(rule["condition"], plugin["conditions"][0]["type"]);
    let args: Vec<String> = rule["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    let cli = Cli::try_parse_from(std::iter::once("flannel-probe".to_string()).chain(args.clone()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let flannel_probe::cli::Command::Report(r) = cli.command else {
        panic!("the plugin must run `report` (exit 0 healthy, 1 problem, 2 unknown)")
    };
    // It reads the node's agent (no privileges, no eBPF in NPD) where the
    // DaemonSet makes it listen, and prints NPD's one line.
    let from = r.from.as_deref().expect("report --from the agent");
    assert_eq!(from, "http://$(NODE_IP):9465", "{args:?}");
    let ds = find_kind(&yaml_docs("kubernetes/base/daemonset.yaml"), "DaemonSet").clone();
    let serve_args = strings(&ds["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(
        serve_args.iter().any(|a| a == "$(NODE_IP):9465"),
        "the agent listens on $(NODE_IP):9465: {serve_args:?}"
    );
    assert_eq!(format!("{:?}", cli.common.format), "Npd", "{args:?}");
    // The observation fits in the plugin's timeout, with room to load.
    let timeout = humantime_secs(rule["timeout"].as_str().expect("timeout"));
    assert!(
        r.duration.as_secs_f64() + 5.0 <= timeout,
        "{args:?} vs {timeout}s"
    );
    // The ConfigMap carries the same JSON.
    let cm = find_kind(
        &yaml_docs("kubernetes/components/node-problem-detector/configmap.yaml"),
        "ConfigMap",
    )
    .clone();
    let embedded: Json = serde_json::from_str(
        cm["data"]["flannel-probe-plugin.json"]
            .as_str()
            .expect("embedded plugin config"),
    )
    .expect("embedded JSON");
    assert_eq!(embedded, plugin);
}

fn humantime_secs(s: &str) -> f64 {
    s.strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{s}: seconds expected"))
}

fn rules_yaml() -> Yaml {
    yaml_docs("prometheus/flannel-probe.rules.yml").remove(0)
}

/// Names the rule file records.
fn recorded() -> BTreeSet<String> {
    rules_yaml()["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|r| r["record"].as_str().map(String::from))
        .collect()
}

#[test]
fn the_prometheus_rule_resource_carries_the_rule_file() {
    let cr = find_kind(
        &yaml_docs("kubernetes/components/prometheusrule/prometheusrule.yaml"),
        "PrometheusRule",
    )
    .clone();
    assert_eq!(cr["spec"]["groups"], rules_yaml()["groups"]);
    let alerts: BTreeSet<String> = rules_yaml()["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|r| {
            let expr = r["expr"].as_str().unwrap_or_default().to_string();
            r["alert"].as_str().map(|a| format!("{a}: {expr}"))
        })
        .collect();
    for code in ["VXLAN_NOT_DECAPSULATED", "PEER_PORT_UNREACHABLE"] {
        assert!(
            alerts
                .iter()
                .any(|a| a.contains(&format!("code=\"{code}\""))),
            "an alert on {code}: {alerts:#?}"
        );
    }
    assert!(recorded().contains("flannel_probe:vxlan_loss:ratio_rate5m"));
}

#[test]
fn the_scrape_config_matches_the_rules() {
    let cfg = yaml_docs("prometheus/scrape-config.yml").remove(0);
    let job = &cfg["scrape_configs"][0];
    // FlannelProbeAgentDown matches up{job=~"(.*/)?flannel-probe"}.
    assert_eq!(job["job_name"], "flannel-probe");
    assert_eq!(job["kubernetes_sd_configs"][0]["role"], "pod");
    let relabel = job["relabel_configs"]
        .as_sequence()
        .expect("relabel_configs");
    assert!(
        relabel
            .iter()
            .any(|r| r["action"] == "keep" && r["regex"] == "flannel-probe")
    );
    assert!(
        relabel
            .iter()
            .any(|r| r["action"] == "keep" && r["regex"] == "metrics")
    );
    assert_eq!(strings(&cfg["rule_files"]), ["flannel-probe.rules.yml"]);
    let down = serde_norway::to_string(&rules_yaml()).expect("encode");
    assert!(down.contains("up{job=~\"(.*/)?flannel-probe\"}"), "{down}");
}

/// Identifiers in a PromQL expression that look like our metrics.
fn our_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cur = String::new();
    let mut in_string = None;
    for ch in expr.chars().chain(std::iter::once(' ')) {
        if let Some(q) = in_string {
            if ch == q {
                in_string = None;
            }
            continue;
        }
        if ch.is_ascii_alphanumeric() || ch == '_' || ch == ':' {
            cur.push(ch);
            continue;
        }
        if cur.starts_with("flannel_probe") {
            out.insert(std::mem::take(&mut cur));
        }
        cur.clear();
        if ch == '"' || ch == '\'' {
            in_string = Some(ch);
        }
    }
    out
}

fn exprs(v: &Json, out: &mut Vec<String>) {
    match v {
        Json::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr" | "definition", Json::String(s)) => out.push(s.clone()),
                    ("query", Json::String(s)) if s.contains('(') => out.push(s.clone()),
                    _ => exprs(x, out),
                }
            }
        }
        Json::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

fn dashboard_exprs() -> Vec<String> {
    let mut out = Vec::new();
    exprs(
        &json("kubernetes/components/grafana-dashboard/flannel-probe-dashboard.json"),
        &mut out,
    );
    out
}

#[test]
fn the_dashboard_uses_only_metrics_that_exist() {
    let d = json("kubernetes/components/grafana-dashboard/flannel-probe-dashboard.json");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["panels"].as_array().is_some_and(|p| p.len() >= 6));
    let mut known: BTreeSet<String> = METRIC_NAMES.iter().map(ToString::to_string).collect();
    known.extend(recorded());
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 8, "{exprs:?}");
    let mut used = BTreeSet::new();
    for e in &exprs {
        for name in our_names(e) {
            assert!(
                known.contains(&name),
                "{name} in {e:?} is neither served nor recorded"
            );
            used.insert(name);
        }
    }
    // Each contract metric is on the dashboard.
    for m in METRIC_NAMES {
        assert!(used.contains(*m), "{m} is not on the dashboard");
    }
}

fn promtool(args: &[&str], dir: &Path, stdin: Option<&str>) {
    let mut child = Command::new(promtool_bin())
        .args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_rules_their_tests_and_the_dashboard_queries() {
    if !require_tool(&promtool_bin()) {
        return;
    }
    let dir = deploy().join("prometheus");
    promtool(&["check", "rules", "flannel-probe.rules.yml"], &dir, None);
    promtool(
        &["test", "rules", "flannel-probe.rules.test.yml"],
        &dir,
        None,
    );
    // (Debian's promtool is built without Kubernetes service discovery, so
    // the scrape config is checked by `the_scrape_config_matches_the_rules`.)

    // Every dashboard query is valid PromQL once Grafana's variables are
    // filled in: promtool checks it as a recording rule.
    let tmp = tempfile::Builder::new()
        .prefix("flannel-probe-dashboard-rules-")
        .tempdir()
        .expect("tmp dir");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in dashboard_exprs().iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "1m")
            .replace("$node", ".*")
            .replace("${datasource}", "x");
        if e.starts_with("label_values(") {
            continue;
        }
        rules.push_str(&format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::to_string(&e).expect("quote")
        ));
    }
    std::fs::write(tmp.path().join("dashboard.rules.yml"), rules).expect("write");
    promtool(&["check", "rules", "dashboard.rules.yml"], tmp.path(), None);
}

#[test]
fn promtool_accepts_the_served_metrics() {
    if !require_tool(&promtool_bin()) {
        return;
    }
    let c = Counters {
        schema: 1,
        node: AgentNode {
            hostname: "eq14-001".into(),
            overlay: "flannel.1".into(),
            overlay_state: "missing".into(),
            uplink: Some("eth0".into()),
            local_vtep: Some("192.0.2.13".into()),
            vxlan_port: 8472,
            vni: None,
            port_bound: false,
            kernel: "6.18.0".into(),
            attach_gaps: 0,
            other_vteps: Vec::new(),
            overlays: Vec::new(),
        },
        peers: vec![PeerCumulative {
            peer: "192.0.2.11".into(),
            traffic: flannel_probe::report::Traffic {
                rx_encap_packets: 40,
                rx_encap_bytes: 5920,
                ..Default::default()
            },
        }],
        drops: vec![DropCumulative {
            reason: "NO_SOCKET".into(),
            direction: "rx".into(),
            packets: 40,
        }],
        findings: vec![AgentFinding {
            code: "VXLAN_NOT_DECAPSULATED".into(),
            severity: flannel_probe::report::Severity::Critical,
            peer: None,
            summary: String::new(),
            evidence: vec![],
            remediation: String::new(),
        }],
        ..Default::default()
    };
    let text = metrics::encode(Arc::new(c)).expect("encode");
    promtool(&["check", "metrics"], &deploy(), Some(&text));
}
