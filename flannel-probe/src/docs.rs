//! The finding codes the documents name agree with [`FindingCode::ALL`]:
//! README's tables, the contract's, and the deployment files (alert rules,
//! dashboard, node-problem-detector).
use std::{fs, path::Path};

use crate::report::{FindingCode, Severity};

fn is_code_name(s: &str) -> bool {
    s.contains('_') && s.chars().all(|c| c.is_ascii_uppercase() || c == '_')
}

/// `| `CODE` | severity | ...` rows of a Markdown document.
fn table_codes(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut cells = l.strip_prefix('|')?.split('|').map(str::trim);
            let code = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
            let severity = cells.next()?;
            is_code_name(code).then(|| (code.to_string(), severity.to_string()))
        })
        .collect()
}

fn known(code: &str) -> Option<FindingCode> {
    let c = FindingCode::from_name(code);
    (!matches!(c, FindingCode::Other(_))).then_some(c)
}

fn check_table(doc: &str, rows: &[(String, String)]) {
    assert!(
        rows.len() >= 10,
        "{doc}: only {} code rows found",
        rows.len()
    );
    for (code, severity) in rows {
        let c =
            known(code).unwrap_or_else(|| panic!("{doc} names {code}, which is no FindingCode"));
        let sev = c.severity().map(Severity::as_str);
        assert!(
            sev.is_some_and(|s| severity.starts_with(s)),
            "{doc}: {code} is {severity}, the code says {sev:?}"
        );
    }
}

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn readme_documents_every_raised_code_and_no_other() {
    let path = manifest().join("../README.md");
    let text = fs::read_to_string(&path).expect("README.md is readable");
    let rows = table_codes(&text);
    check_table("README.md", &rows);
    for c in FindingCode::ALL {
        let listed = rows.iter().any(|(n, _)| c == n.as_str());
        assert_eq!(
            listed,
            c.raised(),
            "README.md's tables must list exactly the raised codes: {c}"
        );
    }
}

#[test]
fn the_contract_names_only_known_codes() {
    let path = manifest().join("../../shared/CONTRACT.md");
    let Ok(text) = fs::read_to_string(&path) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{} is missing: CI must check the codes against the contract",
            path.display()
        );
        eprintln!("skipped: {} is not here", path.display());
        return;
    };
    check_table("CONTRACT.md", &table_codes(&text));
}

fn deploy_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).expect("deploy/ is readable").flatten() {
        let p = e.path();
        if p.is_dir() {
            deploy_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Codes after `code="`, `code=~"` (alternatives split on `|`) or `code: `.
fn deploy_codes(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["code=\"", "code=~\"", "code: ", "code=\\\""] {
        for (i, _) in text.match_indices(key) {
            let rest = &text[i + key.len()..];
            let value: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_' || *c == '|')
                .collect();
            out.extend(
                value
                    .split('|')
                    .filter(|v| !v.is_empty())
                    .map(str::to_string),
            );
        }
    }
    out
}

#[test]
fn deploy_files_name_only_raised_codes() {
    let mut files = Vec::new();
    deploy_files(&manifest().join("../deploy"), &mut files);
    let mut named = 0;
    for f in files {
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        for code in deploy_codes(&text) {
            named += 1;
            let c = known(&code)
                .unwrap_or_else(|| panic!("{} names {code}, which is no FindingCode", f.display()));
            assert!(
                c.raised(),
                "{} alerts on {code}, which nothing raises",
                f.display()
            );
        }
    }
    assert!(named >= 2, "the deployment files name only {named} codes");
}

#[test]
fn codes_round_trip_and_unknown_ones_are_kept() {
    for c in FindingCode::ALL {
        let json = serde_json::to_string(c).expect("encode");
        assert_eq!(json, format!("\"{}\"", c.as_str()));
        let back: FindingCode = serde_json::from_str(&json).expect("decode");
        assert_eq!(&back, c);
        assert!(is_code_name(c.as_str()), "{c}");
    }
    let newer: FindingCode = serde_json::from_str("\"FROM_A_NEWER_AGENT\"").expect("decode");
    assert_eq!(newer, FindingCode::Other("FROM_A_NEWER_AGENT".into()));
    assert_eq!(
        serde_json::to_string(&newer).ok().as_deref(),
        Some("\"FROM_A_NEWER_AGENT\"")
    );
    assert_eq!(
        serde_json::to_string(&Severity::Critical).ok().as_deref(),
        Some("\"critical\"")
    );
}
