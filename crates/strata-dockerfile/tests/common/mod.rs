//! Shared helpers for the data-driven tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `shared/testdata/<sub>` beside the repository, or `None` (after a loud
/// message) when the checkout has no test vectors.
pub fn testdata(sub: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata").join(sub);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "\n!!!!! SKIPPED: test vectors {} not found; these data-driven tests did not run !!!!!\n",
            dir.display()
        );
        None
    }
}

pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON in {}: {e}", path.display()))
}

/// Print and assert a pass count.
pub fn report(what: &str, passed: usize, total: usize, failures: &[String]) {
    println!("{what}: {passed}/{total} passed");
    for f in failures {
        eprintln!("  FAILED {f}");
    }
    assert!(total > 0, "{what}: no cases found");
    assert_eq!(passed, total, "{what}: {} failures", failures.len());
}
