//! Every alert carries a `runbook_url` that points at a page of
//! docs/runbooks/ in this repository: the page exists, is about a finding
//! code the probe raises, with that code's severity, and the runbooks'
//! index lists it. Checked for the rule file and for the Prometheus
//! Operator's copy of it.
use std::path::PathBuf;

use flannel_probe::report::FindingCode;
use serde_norway::Value as Yaml;

/// Where the repository's runbooks are published; `runbook_url` is this
/// and `<CODE>.md`. A fork that publishes elsewhere changes it here and in
/// the rule files together.
const BASE: &str = "https://github.com/flannel-probe/flannel-probe/blob/main/docs/runbooks/";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// (alert, runbook_url) of every alerting rule in `groups`.
fn alerts(groups: &Yaml) -> Vec<(String, Option<String>)> {
    groups
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|r| {
            let name = r["alert"].as_str()?.to_string();
            let url = r["annotations"]["runbook_url"].as_str().map(str::to_string);
            Some((name, url))
        })
        .collect()
}

fn yaml_docs(rel: &str) -> Vec<Yaml> {
    let text = read(rel);
    serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .filter(|v: &Yaml| !v.is_null())
        .collect()
}

#[test]
fn every_alert_has_a_runbook_url_that_resolves_to_a_page_here() {
    let rules = yaml_docs("deploy/prometheus/flannel-probe.rules.yml").remove(0);
    let cr = yaml_docs("deploy/kubernetes/components/prometheusrule/prometheusrule.yaml")
        .into_iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    let index = read("docs/runbooks/README.md");
    for (file, groups) in [
        ("flannel-probe.rules.yml", &rules["groups"]),
        ("prometheusrule.yaml", &cr["spec"]["groups"]),
    ] {
        let alerts = alerts(groups);
        assert!(alerts.len() >= 5, "{file}: {alerts:?}");
        for (alert, url) in alerts {
            let url = url.unwrap_or_else(|| panic!("{file}: {alert} has no runbook_url"));
            let page = url
                .strip_prefix(BASE)
                .unwrap_or_else(|| panic!("{file}: {alert}'s {url} is not under {BASE}"));
            let code = page
                .strip_suffix(".md")
                .unwrap_or_else(|| panic!("{file}: {alert}'s {url} is no .md page"));
            let c = FindingCode::from_name(code);
            assert!(
                c.raised(),
                "{file}: {alert} points at {code}, which the probe does not raise"
            );
            let path = repo().join("docs/runbooks").join(page);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{file}: {alert}'s runbook {} is missing: {e}",
                    path.display()
                )
            });
            let severity = c
                .severity()
                .map(flannel_probe::report::Severity::as_str)
                .expect("a raised code's severity");
            let title = format!("# {code} ({severity})");
            assert_eq!(
                text.lines().next(),
                Some(title.as_str()),
                "{}",
                path.display()
            );
            assert!(
                text.contains(&format!("`{alert}`")),
                "{page} names its alert {alert}"
            );
            for section in [
                "**What it means.**",
                "**Confirm.**",
                "**Fix.**",
                "**Resolved when**",
            ] {
                assert!(text.contains(section), "{page} lacks {section}");
            }
            assert!(
                index.contains(&format!("| `{alert}` | [{code}]({page})")),
                "docs/runbooks/README.md lists {alert} -> {page}"
            );
        }
    }
    // Every page is about a raised code and reachable from the index.
    let mut pages = 0;
    for e in std::fs::read_dir(repo().join("docs/runbooks"))
        .expect("docs/runbooks")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "README.md" {
            continue;
        }
        let code = name
            .strip_suffix(".md")
            .unwrap_or_else(|| panic!("{name}: not .md"));
        assert!(
            FindingCode::from_name(code).raised(),
            "{name}: no raised code"
        );
        assert!(
            index.contains(&format!("({name})")),
            "the index does not link {name}"
        );
        pages += 1;
    }
    assert!(pages >= 5, "{pages} runbooks");
}
