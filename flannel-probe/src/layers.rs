//! The layering as a test: every `crate::` path a source file names must be
//! at its own layer or below (kernel -> snapshot/report -> diagnosis ->
//! probe -> fleet -> faces).
use std::{fs, path::Path};

/// The layer of a source file (path relative to `src/`), by its module.
fn layer(file: &str) -> Option<u8> {
    // The agent's HTTP server serves rendered text: it is a face.
    if file == "fleet/server.rs" {
        return Some(6);
    }
    let top = file.split(['/', '.']).next()?;
    module_layer(top)
}

fn module_layer(top: &str) -> Option<u8> {
    Some(match top {
        "datapath" | "node" | "logcapture" => 0,
        "report" => 1,
        "diagnose" => 2,
        "probe" => 3,
        "fleet" => 4,
        "render" => 5,
        "cli" => 6,
        _ => return None,
    })
}

/// The first path segments after `crate::` (each member of a `{...}` group).
fn crate_paths(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in src.match_indices("crate::") {
        let rest = &src[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            let mut at_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => at_start = true,
                    c if depth == 1 && at_start && (c.is_alphanumeric() || c == '_') => {
                        item.push(c);
                    }
                    _ if !item.is_empty() => {
                        out.push(std::mem::take(&mut item));
                        at_start = false;
                    }
                    _ => {}
                }
            }
            if !item.is_empty() {
                out.push(item);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

fn files(dir: &Path, base: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).expect("src/ is readable").flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, base, out);
        } else if p.extension().is_some_and(|x| x == "rs")
            && let Ok(rel) = p.strip_prefix(base)
        {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

#[test]
fn no_module_imports_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &src, &mut all);
    let mut wrong = Vec::new();
    let mut seen = 0;
    for file in &all {
        let Some(own) = layer(file) else { continue };
        let text = fs::read_to_string(src.join(file)).expect("source is readable");
        for path in crate_paths(&text) {
            seen += 1;
            if let Some(l) = module_layer(&path)
                && l > own
            {
                wrong.push(format!("{file} uses crate::{path}"));
            }
        }
    }
    assert!(seen > 50, "the scan found only {seen} crate:: paths");
    assert!(
        wrong.is_empty(),
        "imports running up the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scan_reads_groups() {
    let paths = crate_paths("use crate::{a::b, c::{d, e}, f};\nlet x = crate::g::h;");
    assert_eq!(paths, ["a", "c", "f", "g"]);
}
