//! `mesh --from-prometheus` on a lab of ten nodes: agents on every node, a
//! real Prometheus (Debian's) scraping all ten every second, every pod
//! pinging every other pod, and the switch dropping 30% of the VXLAN from
//! gladius to eq14-001 only. `mesh --agents` and `mesh --from-prometheus`
//! over the same seconds must both name exactly that link, agree with each
//! other and with the injected loss; and a Prometheus that cannot be
//! asked, or an answer that is not Prometheus', exits 2 with one line.
use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
    time::{Duration, Instant},
};

use flannel_probe_tests::{
    lab::{Fault, Lab, LabNode, LabSpec},
    prometheus::{LISTEN, Prometheus, prometheus_bin},
    support::{ProbeRun, in_netns, probe_bin, require_tool, start_agent},
};
use serde_json::Value;

use crate::mesh::{agents, link};

/// The share of gladius's VXLAN to eq14-001 the switch drops.
const INJECTED_PCT: f64 = 30.0;
/// How far either mode's loss may be from the injected share: 30% of about
/// 200 packets is binomial with a standard deviation of 6.5 packets (3.2
/// points); this is more than four of them.
const VS_INJECTED_PTS: f64 = 15.0;
/// The two modes count the same packets, up to the few hundred
/// milliseconds between their windows and Prometheus' extrapolation to the
/// window's edges: on every link their `sent` and their `lost` may be apart
/// by no more than the Prometheus mode's own `in_flight_allowance` (what it
/// says it cannot tell from loss).
fn agree(x: &Value, y: &Value) -> bool {
    let allowed = num(y, "in_flight_allowance");
    (num(x, "sent") - num(y, "sent")).abs() <= allowed
        && (num(x, "lost") - num(y, "lost")).abs() <= allowed
}

/// `mesh ARGS` run inside `node` (mesh needs no privileges).
fn mesh(lab: &Lab, node: &LabNode, args: &[&str]) -> (i32, String) {
    let mut cmd = lab.node_command(node, &probe_bin());
    cmd.arg("mesh").args(args);
    let run = ProbeRun::spawn(cmd).expect("start mesh");
    run.finish(Duration::from_secs(60)).expect("mesh exits")
}

fn config(targets: &[String]) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: flannel-probe\n    static_configs:\n      - targets: [{}]\n",
        list.join(", ")
    )
}

/// The `UNDERLAY_LOSS` links of a mesh JSON report.
fn lossy(m: &Value) -> Vec<(String, String)> {
    m["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["code"] == "UNDERLAY_LOSS")
        .map(|f| {
            (
                f["from"].as_str().unwrap_or_default().to_string(),
                f["to"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// A mesh's exit code and JSON report.
fn parse((code, out): &(i32, String)) -> (i32, Value) {
    let v: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("mesh JSON ({e}): {out}"));
    (*code, v)
}

fn num(l: &Value, k: &str) -> f64 {
    l[k].as_f64().unwrap_or_else(|| panic!("no {k} in {l}"))
}

/// A server in `ns` on loopback that answers every request with 200 and
/// `body`; its port.
fn fake_server(ns: &str, content_type: &str, body: &str) -> u16 {
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let l = in_netns(ns, || TcpListener::bind("127.0.0.1:0"))
        .expect("enter the node")
        .expect("bind a loopback port in the node");
    let port = l.local_addr().expect("local address").port();
    // The socket stays in the node's namespace; it lives until the test
    // process ends.
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.read(&mut buf);
            let _ = s.write_all(answer.as_bytes());
        }
    });
    port
}

#[test]
fn both_meshes_name_the_one_lossy_link_and_agree() {
    if !require_tool(&prometheus_bin()) {
        return;
    }
    let t0 = Instant::now();
    let Some(mut lab) = Lab::for_test(LabSpec::with_nodes(10)) else {
        return;
    };
    assert_eq!(lab.nodes.len(), 10);
    // Every agent at once: each loads its eBPF while the others do.
    let runs: Vec<ProbeRun> = std::thread::scope(|s| {
        let lab = &lab;
        let started: Vec<_> = lab
            .nodes
            .iter()
            .map(|n| s.spawn(move || start_agent(lab, n, &["--interval", "1s"])))
            .collect();
        started
            .into_iter()
            .map(|h| h.join().expect("agent started"))
            .collect()
    });
    lab.fault(&Fault::LinkLoss {
        node: "eq14-001".into(),
        peer: "gladius".into(),
        percent: INJECTED_PCT as u32,
    })
    .expect("inject loss on one link");
    let (g, e) = (lab.node("gladius").clone(), lab.node("eq14-001").clone());
    let (g, e) = (&g, &e);
    let targets: Vec<String> = lab.nodes.iter().map(|n| format!("{}:9465", n.ip)).collect();
    // Prometheus lives in gladius's namespace and scrapes over the underlay.
    let prom = Prometheus::start(&g.ns, &config(&targets), &[], Duration::from_secs(240))
        .expect("prometheus starts");
    prom.wait_for("all ten agents scraped", Duration::from_secs(30), |p| {
        Ok((p.query("up == 1")?.len() == 10).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let ready = t0.elapsed();

    // 20 scrape intervals: Prometheus' extrapolation errs by about one
    // interval's traffic per node (see the README), a tenth of the window.
    let window = "20s";
    let url = format!("http://{LISTEN}");
    {
        let lab = &lab;
        let (direct, from_prom, text, text_code) = std::thread::scope(|s| {
            // Every pod pings every other pod, 5 per second, from before the
            // window opens until after the second mesh is asked: steady traffic.
            let pings: Vec<_> = lab
                .nodes
                .iter()
                .flat_map(|from| {
                    lab.nodes
                        .iter()
                        .filter(move |to| to.index != from.index)
                        .map(move |to| s.spawn(move || lab.ping(from, to.pod_ip, 135, 0.2)))
                })
                .collect();
            std::thread::sleep(Duration::from_secs(3));
            let all = agents(lab);
            let direct = mesh(
                lab,
                g,
                &["--agents", &all, "--duration", window, "--format", "json"],
            );
            // Right after: the same seconds, as Prometheus scraped them; as
            // text at the same time.
            let as_text =
                s.spawn(|| mesh(lab, g, &["--from-prometheus", &url, "--window", window]));
            let from_prom = mesh(
                lab,
                g,
                &[
                    "--from-prometheus",
                    &url,
                    "--window",
                    window,
                    "--format",
                    "json",
                ],
            );
            let (text_code, text) = as_text.join().expect("text mesh");
            for p in pings {
                let stats = p.join().expect("ping thread").expect("ping");
                assert!(stats.transmitted >= 130, "{stats:?}");
            }
            (direct, from_prom, text, text_code)
        });
        let observed = t0.elapsed();
        let (a_code, a) = parse(&direct);
        let (p_code, p) = parse(&from_prom);
        eprintln!("{text}");
        assert_eq!(p["source"], "prometheus", "{p:#}");
        assert_eq!(a["source"], "agents");
        assert_eq!(
            p["prometheus"]["queries"].as_array().map(Vec::len),
            Some(10)
        );
        for m in [&a, &p] {
            assert_eq!(m["nodes"].as_array().map(Vec::len), Some(10), "{m:#}");
            assert!(
                m["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|n| n["reachable"] == true),
                "{m:#}"
            );
            assert_eq!(m["links"].as_array().map(Vec::len), Some(90), "{m:#}");
            assert_eq!(
                lossy(m),
                vec![(g.ip.to_string(), e.ip.to_string())],
                "{m:#}"
            );
            let others: Vec<&Value> = m["findings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| f["code"] != "UNDERLAY_LOSS")
                .collect();
            assert!(others.is_empty(), "nothing else is wrong: {others:#?}");
        }
        assert_eq!((a_code, p_code), (1, 1), "a warning exits 1, in both modes");
        assert_eq!(text_code, 1, "{text}");
        assert!(
            text.contains(&format!("UNDERLAY_LOSS [{} -> {}]", g.ip, e.ip)),
            "{text}"
        );
        assert_eq!(text.matches("UNDERLAY_LOSS").count(), 1, "{text}");
        assert!(
            text.contains("FROM \\ TO") && text.contains("node10"),
            "{text}"
        );
        assert!(text.contains("not checked: AGENT_RESTARTED"), "{text}");

        // The lossy link: both near the injected share, and near each other.
        let (la, lp) = (link(&a, g.ip, e.ip), link(&p, g.ip, e.ip));
        let (pa, pp) = (num(la, "loss_pct"), num(lp, "loss_pct"));
        eprintln!("gladius -> eq14-001: agents {la}\nprometheus {lp}");
        for (mode, pct) in [("agents", pa), ("prometheus", pp)] {
            assert!(
                (pct - INJECTED_PCT).abs() <= VS_INJECTED_PTS,
                "{mode}: {pct}% against {INJECTED_PCT}% injected"
            );
        }
        assert!(agree(la, lp), "agents {la} against prometheus {lp}");

        // Every link: the same traffic seen both ways; healthy ones healthy.
        let mut worst_sent = 0.0f64;
        // Worst healthy loss (agents, prometheus) and worst loss apart.
        let mut worst_healthy = (0.0f64, 0.0f64);
        let mut worst_apart = 0.0f64;
        for from in &lab.nodes {
            for to in lab.nodes.iter().filter(|t| t.index != from.index) {
                let (x, y) = (link(&a, from.ip, to.ip), link(&p, from.ip, to.ip));
                let (sa, sp) = (num(x, "sent"), num(y, "sent"));
                assert!(
                    sa >= 150.0 && sp >= 150.0,
                    "{} -> {}: {x} {y}",
                    from.ip,
                    to.ip
                );
                let apart = (sa - sp).abs() * 100.0 / sa;
                worst_sent = worst_sent.max(apart);
                assert!(
                    agree(x, y),
                    "{} -> {}: agents {x}, prometheus {y}",
                    from.ip,
                    to.ip
                );
                if (from.ip, to.ip) == (g.ip, e.ip) {
                    continue;
                }
                for l in [x, y] {
                    assert!(
                        num(l, "lost") <= num(l, "in_flight_allowance"),
                        "healthy: {l}"
                    );
                }
                let (lx, ly) = (num(x, "loss_pct"), num(y, "loss_pct"));
                worst_healthy = (worst_healthy.0.max(lx), worst_healthy.1.max(ly));
                worst_apart = worst_apart.max((lx - ly).abs());
            }
        }
        eprintln!(
            "meshprom: lab and agents and prometheus ready after {ready:?}, both meshes done after {observed:?}; \
         lossy link agents {pa}% prometheus {pp}% (injected {INJECTED_PCT}%); worst sent apart {worst_sent:.1}%; \
         worst healthy loss agents {:.1}% prometheus {:.1}%, worst healthy loss apart {worst_apart:.1} points",
            worst_healthy.0, worst_healthy.1
        );
    }

    // A node's overlay takes a new MAC while its peers keep the old one in
    // their FDB: both modes name the nine links that use the old one, the
    // Prometheus mode from flannel_probe_overlay_mac_info and
    // flannel_probe_fdb_entry.
    let old = lab.node("node5").vtep_mac_string();
    lab.fault(&Fault::OverlayMacChange {
        node: "node5".into(),
    })
    .expect("a new MAC on node5");
    let n5 = lab.node("node5").clone();
    let new = n5.vtep_mac_string();
    assert_ne!(old, new);
    let scraped = format!(
        "flannel_probe_overlay_mac_info{{instance='{}:9465'}}",
        n5.ip
    );
    prom.wait_for("node5's new MAC scraped", Duration::from_secs(20), |p| {
        let r = p.query(&scraped)?;
        Ok(r.iter()
            .any(|s| s["metric"]["mac"].as_str() == Some(new.as_str()))
            .then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let stale = |m: &Value| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = m["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["code"] == "VTEP_MAC_STALE")
            .map(|f| {
                assert_eq!(f["severity"], "critical", "{f}");
                let evidence = f["evidence"].to_string();
                assert!(evidence.contains(&old) && evidence.contains(&new), "{f}");
                (
                    f["from"].as_str().unwrap_or_default().to_string(),
                    f["to"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let mut want: Vec<(String, String)> = lab
        .nodes
        .iter()
        .filter(|n| n.index != n5.index)
        .map(|n| (n.ip.to_string(), n5.ip.to_string()))
        .collect();
    want.sort();
    let all = agents(&lab);
    let direct = mesh(
        &lab,
        g,
        &["--agents", &all, "--duration", "1s", "--format", "json"],
    );
    let from_prom = mesh(
        &lab,
        g,
        &[
            "--from-prometheus",
            &url,
            "--window",
            "10s",
            "--format",
            "json",
        ],
    );
    let (a_code, a) = parse(&direct);
    let (p_code, p) = parse(&from_prom);
    assert_eq!(stale(&a), want, "{a:#}");
    assert_eq!(stale(&p), want, "{p:#}");
    assert_eq!((a_code, p_code), (1, 1), "critical exits 1, in both modes");

    // A Prometheus that cannot be asked, or answers what is not Prometheus'.
    let garbage = fake_server(&g.ns, "text/html", "<html></html>");
    let vector = |result: &str| {
        format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{result}]}}}}"#)
    };
    let json = "application/json";
    let empty = fake_server(&g.ns, json, &vector(""));
    // One agent, one sample to every query: a single scrape in the window,
    // so no agent is usable.
    let one = fake_server(
        &g.ns,
        json,
        &vector(
            r#"{"metric":{"job":"j","instance":"192.0.2.99:9465","hostname":"h","local_vtep":"192.0.2.99"},"value":[1764657000,"1"]}"#,
        ),
    );
    let agent = format!("http://{}:9465", e.ip);
    for (url, want) in [
        ("http://127.0.0.1:9091".to_string(), "cannot connect"),
        (format!("http://{LISTEN}/nothing"), "HTTP 404"),
        (agent, "HTTP 404"),
        (
            format!("http://127.0.0.1:{garbage}"),
            "not a Prometheus API answer",
        ),
        (
            format!("http://127.0.0.1:{empty}"),
            "no flannel_probe_node_info",
        ),
        (format!("http://127.0.0.1:{one}"), "widen --window"),
    ] {
        let mut cmd = lab.node_command(g, &probe_bin());
        cmd.args([
            "mesh",
            "--from-prometheus",
            &url,
            "--window",
            "10s",
            "--timeout",
            "3s",
        ]);
        let out = cmd.output().expect("run mesh");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(out.stdout.is_empty(), "{url}");
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("flannel-probe: "))
            .collect();
        assert_eq!(lines.len(), 1, "{url}: one line: {err}");
        assert!(lines[0].contains(want), "{url}: {want}: {err}");
    }
    drop(prom);
    drop(runs);
}
