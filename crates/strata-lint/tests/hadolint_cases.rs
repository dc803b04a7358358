//! hadolint's rule cases (GPL-3.0 test data, read in place, never copied):
//! expected codes must be reported, excluded codes must not.

use std::collections::BTreeMap;
use std::path::PathBuf;

use strata_lint::{lint_unfiltered, Config, LabelType};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/hadolint")
}

fn config_of(case: &serde_json::Value) -> Config {
    let mut cfg = Config::default();
    let Some(c) = case.get("config") else { return cfg };
    if let Some(r) = c.get("allowedRegistries").and_then(|v| v.as_array()) {
        cfg.trusted_registries = r.iter().filter_map(|v| v.as_str().map(str::to_string)).collect();
    }
    if let Some(s) = c.get("labelSchema").and_then(|v| v.as_object()) {
        for (k, v) in s {
            let t: LabelType = v.as_str().unwrap_or("").parse().expect("label type in cases.json");
            cfg.label_schema.insert(k.clone(), t);
        }
    }
    if let Some(b) = c.get("strictLabels").and_then(|v| v.as_bool()) {
        cfg.strict_labels = b;
    }
    cfg
}

#[test]
fn hadolint_cases() {
    let path = data_dir().join("cases.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("SKIPPED: hadolint cases not found at {}", path.display());
        return;
    };
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).expect("cases.json is JSON");
    let mut failed = Vec::new();
    for case in &cases {
        let id = case["id"].as_str().unwrap_or("?");
        let mut src = case["dockerfile"].as_str().unwrap_or("").to_string();
        src.push('\n');
        let cfg = config_of(case);
        let found = lint_unfiltered("Dockerfile", &src, &cfg);
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &found {
            *counts.entry(f.code.as_str()).or_default() += 1;
        }
        let mut why = Vec::new();
        for c in case["expected_codes"].as_array().into_iter().flatten().filter_map(|v| v.as_str())
        {
            if !counts.contains_key(c) {
                why.push(format!("missing {c}"));
            }
        }
        for c in
            case["must_not_have_codes"].as_array().into_iter().flatten().filter_map(|v| v.as_str())
        {
            if counts.contains_key(c) {
                why.push(format!("unexpected {c}"));
            }
        }
        if let Some(m) = case.get("expected_counts").and_then(|v| v.as_object()) {
            for (c, n) in m {
                let got = counts.get(c.as_str()).copied().unwrap_or(0);
                if Some(got as u64) != n.as_u64() {
                    why.push(format!("{c} reported {got} times, expected {n}"));
                }
            }
        }
        if !why.is_empty() {
            failed.push(format!(
                "{id}: {} (got {:?})",
                why.join(", "),
                counts.keys().collect::<Vec<_>>()
            ));
        }
    }
    let passed = cases.len() - failed.len();
    let rate = passed as f64 * 100.0 / cases.len().max(1) as f64;
    println!("hadolint cases: {passed}/{} passed ({rate:.1}%)", cases.len());
    for f in &failed {
        println!("FAILED {f}");
    }
    assert!(rate >= 95.0, "pass rate {rate:.1}% is below 95%: {failed:#?}");
}
