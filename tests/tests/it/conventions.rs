//! The command line's conventions and the agent's self-metrics on a real
//! lab node: an agent configured by `FLANNEL_PROBE_*` variables (a flag
//! beating its variable), `flannel_probe_build_info`, the reading cost and
//! the attached hooks by kind, exact counts of real packets; `report`
//! through the `-o`/`--iface` aliases, colour only when asked for, and the
//! completion script and man page of the binary itself.
use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use flannel_probe_tests::{
    lab::{Lab, LabNode, LabSpec},
    support::{ProbeRun, agent_get, probe_bin, scaled, terminate},
};
use serde_json::Value;

const GLADIUS: &str = "192.0.2.11";

/// Every `name{labels} value` sample of `/metrics` whose series starts with `prefix`.
fn samples(body: &str, prefix: &str) -> Vec<(String, f64)> {
    body.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn one(body: &str, series: &str) -> f64 {
    let found = samples(body, series);
    match found.as_slice() {
        [(s, v)] if s == series => *v,
        _ => panic!("{series}: {found:?} in\n{body}"),
    }
}

/// `--version`: "flannel-probe 0.1.0 (git REV, built DATE)".
fn version_stamp() -> (String, String, String) {
    let out = Command::new(probe_bin())
        .arg("--version")
        .output()
        .expect("flannel-probe --version");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let parse = || {
        let rest = text.strip_prefix("flannel-probe ")?;
        let (version, rest) = rest.split_once(" (git ")?;
        let (commit, rest) = rest.split_once(", built ")?;
        let built = rest.strip_suffix(')')?;
        Some((version.to_string(), commit.to_string(), built.to_string()))
    };
    parse().unwrap_or_else(|| panic!("unexpected --version: {text:?}"))
}

/// Waits (polling) until `cond` holds, up to `limit`.
fn until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    false
}

fn metrics(node: &LabNode) -> String {
    let (code, body) = agent_get(node, "/metrics");
    assert_eq!(code, 200);
    body
}

#[test]
fn an_agent_from_variables_reports_its_build_cost_and_hooks() {
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let (g, e) = (lab.node("gladius").clone(), lab.node("eq14-001").clone());
    let mut cmd = lab.node_command(&e, &probe_bin());
    // Everything from variables but the overlay, whose flag must win over
    // a variable naming a device that does not exist.
    cmd.arg("serve")
        .args(["--overlay", "flannel.1"])
        .env("FLANNEL_PROBE_OVERLAY", "nosuch0")
        .env("FLANNEL_PROBE_LISTEN", "0.0.0.0:9465")
        .env("FLANNEL_PROBE_INTERVAL", "1s")
        .env("FLANNEL_PROBE_WINDOW", "10s")
        .env("FLANNEL_PROBE_UPLINK", "eth0");
    let mut agent = ProbeRun::spawn(cmd).expect("start serve");
    agent
        .wait_for("serving on", scaled(Duration::from_secs(60)))
        .expect("serving");

    // Real packets, counted exactly by the agent the variables configured.
    let rx_inner = format!(
        "flannel_probe_peer_packets_total{{peer=\"{GLADIUS}\",direction=\"rx\",layer=\"inner\"}}"
    );
    let before = samples(&metrics(&e), &rx_inner)
        .first()
        .map_or(0.0, |s| s.1);
    let s = lab.ping(&g, e.pod_ip, 10, 0.1).expect("ping");
    assert_eq!(s.received, 10);
    assert!(
        until(scaled(Duration::from_secs(5)), || {
            samples(&metrics(&e), &rx_inner).first().map(|s| s.1) == Some(before + 10.0)
        }),
        "10 decapsulated pings from gladius:\n{}",
        metrics(&e)
    );

    let body = metrics(&e);
    let (code, report) = agent_get(&e, "/report");
    assert_eq!(code, 200);
    let report: Value = serde_json::from_str(&report).expect("report JSON");
    assert_eq!(report["node"]["overlay"], "flannel.1", "the flag won");
    assert_eq!(
        report["node"]["uplink"], "eth0",
        "from FLANNEL_PROBE_UPLINK"
    );

    // The build stamp is the binary's --version and the node's kernel.
    let (version, commit, built) = version_stamp();
    let kernel = report["node"]["kernel"].as_str().expect("kernel");
    assert!(!kernel.is_empty());
    let build = format!(
        "flannel_probe_build_info{{version=\"{version}\",commit=\"{commit}\",built=\"{built}\",kernel=\"{kernel}\"}}"
    );
    assert_eq!(one(&body, &build), 1.0);

    // Four classifiers, all of one kind; the drop tracer where the report
    // does not say drop reasons are unavailable.
    let hooks = |kind: &str| {
        one(
            &body,
            &format!("flannel_probe_attached_hooks{{kind=\"{kind}\"}}"),
        )
    };
    let (tcx, clsact) = (hooks("tcx"), hooks("clsact"));
    assert_eq!(tcx + clsact, 4.0, "tcx {tcx}, clsact {clsact}");
    assert!(
        tcx == 0.0 || clsact == 0.0,
        "one mode: tcx {tcx}, clsact {clsact}"
    );
    let attached = report["node"]["attached"].as_object().expect("attached");
    let mode = if tcx == 4.0 { "tcx" } else { "clsact" };
    assert!(
        attached.values().all(|m| m == mode),
        "{attached:?} against {mode}"
    );
    let no_drops = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .any(|f| f["code"] == "DROP_REASONS_UNAVAILABLE");
    assert_eq!(hooks("btf_tracepoint"), if no_drops { 0.0 } else { 1.0 });
    assert_eq!(samples(&body, "flannel_probe_attached_hooks{").len(), 3);

    // The cost of the last reading: positive, the map read a part of it,
    // and far below the interval on a lab node.
    let sample = one(&body, "flannel_probe_sample_duration_seconds");
    let read = one(&body, "flannel_probe_map_read_duration_seconds");
    eprintln!("last reading: {sample:.6} s, of it the map read {read:.6} s");
    assert!(sample > 0.0 && read > 0.0, "{sample} {read}");
    assert!(
        read <= sample,
        "map read {read} s within the sample {sample} s"
    );
    assert!(
        sample < scaled(Duration::from_secs(1)).as_secs_f64(),
        "{sample} s"
    );

    terminate(agent.pid());
    let (code, _) = agent
        .finish(scaled(Duration::from_secs(20)))
        .expect("serve exits");
    assert_eq!(code, 0);
}

/// `report ARGS` in `node` with `env`, stdout piped; (exit code, stdout).
fn report(lab: &Lab, node: &LabNode, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = lab.node_command(node, &probe_bin());
    // NO_COLOR only when the test gives it (the last setting of a key wins).
    cmd.arg("report")
        .args(args)
        .env_remove("NO_COLOR")
        .envs(env.iter().copied());
    let run = ProbeRun::spawn(cmd).expect("start report");
    run.finish(scaled(Duration::from_secs(60)))
        .expect("report exits")
}

#[test]
fn report_takes_the_aliases_and_colours_only_when_asked() {
    let Some(lab) = Lab::for_test(LabSpec::default()) else {
        return;
    };
    let e = lab.node("eq14-001").clone();
    // -o and --iface are --format and --uplink.
    let (code, out) = report(
        &lab,
        &e,
        &["-o", "json", "--iface", "eth0", "--duration", "1s"],
        &[],
    );
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|err| panic!("{err}: {out}"));
    assert_eq!(v["node"]["uplink"], "eth0");
    assert_eq!(v["node"]["uplink_source"], "flag", "{}", v["node"]);
    assert!((0..=1).contains(&code), "{code}");
    // An unknown device from the alias is the same exit 2 as from --uplink.
    let (code, _) = report(&lab, &e, &["--iface", "nosuch0", "--duration", "1s"], &[]);
    assert_eq!(code, 2);

    let painted = |s: &str| s.contains("\x1b[");
    let short = [("FLANNEL_PROBE_DURATION", "1s")];
    // auto into a pipe: plain.
    let (_, plain) = report(&lab, &e, &[], &short);
    assert!(plain.starts_with("flannel-probe on eq14-001: "), "{plain}");
    assert!(!painted(&plain), "{plain:?}");
    // always: the verdict painted, even under NO_COLOR; also from the variable.
    for (args, env) in [
        (&["--color", "always"][..], ("NO_COLOR", "1")),
        (&[][..], ("FLANNEL_PROBE_COLOR", "always")),
    ] {
        let (_, out) = report(&lab, &e, args, &[short[0], env]);
        assert!(painted(&out), "{args:?} {env:?}: {out:?}");
        assert!(
            out.starts_with("flannel-probe on eq14-001: \x1b["),
            "{out:?}"
        );
    }
    // auto under NO_COLOR, and never: plain.
    for (args, env) in [
        (&[][..], ("NO_COLOR", "1")),
        (&["--color", "never"][..], ("FLANNEL_PROBE_COLOR", "always")),
    ] {
        let (_, out) = report(&lab, &e, args, &[short[0], env]);
        assert!(!painted(&out), "{args:?} {env:?}: {out:?}");
    }
    // Never in JSON, whatever --color says.
    let (_, json) = report(&lab, &e, &["-o", "json", "--color", "always"], &short);
    assert!(!painted(&json), "{json:?}");
    assert!(serde_json::from_str::<Value>(&json).is_ok());

    // The binary's own completion script and man page.
    let bash = Command::new(probe_bin())
        .args(["completions", "bash"])
        .output()
        .expect("completions");
    assert!(bash.status.success());
    let bash = String::from_utf8_lossy(&bash.stdout);
    assert!(bash.contains("complete -F _flannel__probe") && bash.contains("--iface"));
    let man = Command::new(probe_bin())
        .args(["man", "serve"])
        .output()
        .expect("man");
    assert!(man.status.success());
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(man.contains(".TH flannel-probe-serve 1") && man.contains("FLANNEL_PROBE_LISTEN"));
}
