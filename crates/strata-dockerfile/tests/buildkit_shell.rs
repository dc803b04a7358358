//! BuildKit's shell-word expander vectors (shared/testdata/buildkit-shell).

mod common;

use std::collections::BTreeSet;

use common::{read_json, report, testdata};
use strata_dockerfile::ShellLex;

fn envvar_env() -> Vec<(String, String)> {
    [("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어"), ("NULL", "")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn env_var_test() {
    let Some(dir) = testdata("buildkit-shell") else { return };
    let text = std::fs::read_to_string(dir.join("envVarTest")).unwrap();
    let lex = ShellLex::default();
    let env = envvar_env();
    let (mut passed, mut total, mut failures) = (0, 0, Vec::new());
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.trim().split('|').map(str::trim).collect();
        assert_eq!(parts.len(), 3, "line {}: {line}", n + 1);
        if parts[0] == "W" {
            continue;
        }
        total += 1;
        let got = lex.process_word(parts[1], &env);
        let ok = match (&got, parts[2]) {
            (Err(_), "error") => true,
            (Ok(v), want) if want != "error" => v == want,
            _ => false,
        };
        if ok {
            passed += 1
        } else {
            failures.push(format!("line {}: {:?} -> {got:?}, want {:?}", n + 1, parts[1], parts[2]))
        }
    }
    report("buildkit envVarTest (Unix)", passed, total, &failures);
}

#[test]
fn words_test() {
    let Some(dir) = testdata("buildkit-shell") else { return };
    let text = std::fs::read_to_string(dir.join("wordsTest")).unwrap();
    let lex = ShellLex::default();
    let mut env: Vec<(String, String)> = Vec::new();
    let (mut passed, mut total, mut failures) = (0, 0, Vec::new());
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let (k, v) = rest.trim_start().split_once('=').unwrap();
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let (input, expected) = line.split_once('|').unwrap();
        let expected = expected.trim_start();
        total += 1;
        let got = lex.process_words(input.trim(), &env);
        let ok = match &got {
            Err(_) => expected == "error",
            Ok(words) => expected != "error" && *words == expected.split(',').collect::<Vec<_>>(),
        };
        if ok {
            passed += 1
        } else {
            failures.push(format!("line {}: {input:?} -> {got:?}, want {expected:?}", n + 1))
        }
    }
    report("buildkit wordsTest", passed, total, &failures);
}

#[test]
fn process_word_with_matches() {
    let Some(dir) = testdata("buildkit-shell") else { return };
    let cases = read_json(&dir.join("process_word_cases.json"));
    let lex = ShellLex::default();
    let (mut passed, mut failures) = (0, Vec::new());
    let cases = cases.as_array().unwrap();
    for c in cases {
        let env: std::collections::BTreeMap<String, String> =
            serde_json::from_value(c["env"].clone()).unwrap();
        let got = lex.process_word_with_matches(c["input"].as_str().unwrap(), &env);
        let ok = match &got {
            Err(e) => {
                c["error"].as_bool().unwrap()
                    && c["error_contains"].as_str().is_none_or(|s| e.message.contains(s))
            }
            Ok(x) => {
                let set = |k: &str| -> Option<BTreeSet<String>> {
                    serde_json::from_value(c[k].clone()).unwrap()
                };
                !c["error"].as_bool().unwrap()
                    && x.result == c["expected"].as_str().unwrap()
                    && set("matched").is_none_or(|m| m == x.matched)
                    && set("unmatched").is_none_or(|m| m == x.unmatched)
            }
        };
        if ok {
            passed += 1
        } else {
            failures.push(format!("{c} -> {got:?}"))
        }
    }
    report("buildkit process_word cases", passed, cases.len(), &failures);
}
