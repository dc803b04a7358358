//! moby/patternmatcher and fsutil vectors (shared/testdata/dockerignore).

mod common;

use common::{read_json, report, testdata};
use strata_dockerfile::dockerignore::{
    compile_patterns, filter_walk, read_dockerignore, IgnoreMatcher, TreeEntry,
};

fn strings(v: &serde_json::Value) -> Vec<String> {
    if v.is_null() {
        return vec![];
    }
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn pattern_cases() {
    let Some(dir) = testdata("dockerignore") else { return };
    let cases = read_json(&dir.join("cases.json"));
    let cases = cases.as_array().unwrap();
    let (mut passed, mut failures) = (0, Vec::new());
    for c in cases {
        let patterns = strings(&c["patterns"]);
        let got = IgnoreMatcher::new(&patterns).map(|m| m.matches(c["path"].as_str().unwrap()));
        let ok = match &got {
            Err(_) => c["error"].as_bool() == Some(true),
            Ok(v) => c["error"].as_bool() != Some(true) && *v == c["expected"].as_bool().unwrap(),
        };
        if ok {
            passed += 1
        } else {
            failures.push(format!("{c} -> {got:?}"))
        }
    }
    report("dockerignore match cases", passed, cases.len(), &failures);
}

#[test]
fn ignorefile_cases() {
    let Some(dir) = testdata("dockerignore") else { return };
    let cases = read_json(&dir.join("ignorefile_cases.json"));
    let cases = cases.as_array().unwrap();
    let (mut passed, mut failures) = (0, Vec::new());
    for c in cases {
        let got = c["dockerignore"].as_str().map(read_dockerignore).unwrap_or_default();
        if got == strings(&c["expected_patterns"]) {
            passed += 1
        } else {
            failures.push(format!("{c} -> {got:?}"))
        }
    }
    report("dockerignore file-reading cases", passed, cases.len(), &failures);
}

#[test]
fn walk_cases() {
    let Some(dir) = testdata("dockerignore") else { return };
    let cases = read_json(&dir.join("walk_cases.json"));
    let cases = cases.as_array().unwrap();
    let (mut passed, mut failures) = (0, Vec::new());
    for c in cases {
        let tree: Vec<TreeEntry> = c["tree"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| TreeEntry {
                path: e["path"].as_str().unwrap().to_string(),
                is_dir: e["type"] == "dir",
            })
            .collect();
        let include = compile_patterns(&strings(&c["include_patterns"])).unwrap();
        let mut layers: Vec<Vec<String>> = c["exclude_layers"]
            .as_array()
            .map(|l| l.iter().map(strings).collect())
            .unwrap_or_default();
        if layers.is_empty() {
            layers.push(strings(&c["exclude_patterns"]))
        }
        let mut result: Result<Vec<TreeEntry>, strata_dockerfile::dockerignore::PatternError> =
            Ok(tree.clone());
        for (i, layer) in layers.iter().enumerate() {
            result = result.and_then(|t| {
                let m = IgnoreMatcher::new(layer)?;
                Ok(filter_walk(&t, &m, if i == 0 { &include } else { &[] }))
            });
        }
        let ok = match &result {
            Err(_) => c["error"].as_bool() == Some(true),
            Ok(entries) => {
                let walked: Vec<String> = entries
                    .iter()
                    .map(|e| format!("{} {}", if e.is_dir { "dir" } else { "file" }, e.path))
                    .collect();
                let mut ok = c["error"].as_bool() != Some(true);
                if !c["expected_walk"].is_null() {
                    ok &= walked == strings(&c["expected_walk"]);
                }
                // Opening through the filtered view: a file is there if the walk sent it.
                for p in strings(&c["open_ok"]) {
                    ok &= entries.iter().any(|e| e.path == p);
                }
                for p in strings(&c["open_not_exist"]) {
                    ok &= !entries.iter().any(|e| e.path == p);
                }
                ok
            }
        };
        if ok {
            passed += 1
        } else {
            failures.push(format!("{} {:?} -> {result:?}", c["source"], c["expected_walk"]))
        }
    }
    report("dockerignore walk cases", passed, cases.len(), &failures);
}

#[test]
fn dockerfile_specific_ignore_file_wins() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("build")).unwrap();
    let df = root.join("build/app.Dockerfile");
    std::fs::write(&df, "FROM scratch\n").unwrap();
    assert_eq!(strata_dockerfile::find_ignore_file(&df, root), None);
    std::fs::write(root.join(".dockerignore"), "*.log\n").unwrap();
    assert_eq!(strata_dockerfile::find_ignore_file(&df, root), Some(root.join(".dockerignore")));
    std::fs::write(root.join("build/app.Dockerfile.dockerignore"), "secret\n").unwrap();
    let found = strata_dockerfile::find_ignore_file(&df, root).unwrap();
    assert_eq!(found, root.join("build/app.Dockerfile.dockerignore"));
    let m =
        IgnoreMatcher::new(&read_dockerignore(&std::fs::read_to_string(found).unwrap())).unwrap();
    assert!(m.matches("secret") && m.matches("secret/key.pem") && !m.matches("x.log"));
}

#[test]
fn walk_decisions_for_a_context_walker() {
    use strata_dockerfile::WalkDecision;
    let m = IgnoreMatcher::new(&["node_modules", "docs", "!docs/README.md", "**/*.tmp"]).unwrap();
    assert_eq!(m.walk_decision("node_modules", true), WalkDecision::Skip);
    assert_eq!(m.walk_decision("docs", true), WalkDecision::DescendOnly);
    assert_eq!(m.walk_decision("docs/README.md", false), WalkDecision::Include);
    assert_eq!(m.walk_decision("docs/other.md", false), WalkDecision::Skip);
    assert_eq!(m.walk_decision("src/a/b.tmp", false), WalkDecision::Skip);
    assert_eq!(m.walk_decision("src", true), WalkDecision::Include);
    // A bad pattern is an error naming it, not a panic.
    let e = IgnoreMatcher::new(&["ok", "a[b"]).unwrap_err();
    assert_eq!(e.pattern, "a[b");
}
