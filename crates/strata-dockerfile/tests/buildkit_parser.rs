//! BuildKit's own parser test vectors (shared/testdata/buildkit-parser).

mod common;

use common::{read_json, report, testdata};
use strata_dockerfile::heredoc::{chomp_tabs, heredocs_from_line, parse_heredoc_word};
use strata_dockerfile::parser::{parse, parse_json_array_public, parse_words};
use strata_dockerfile::{detect_directive, detect_syntax};

#[test]
fn result_files_match_our_dump() {
    let Some(dir) = testdata("buildkit-parser/testfiles") else { return };
    let mut cases: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    let (mut passed, mut failures) = (0, Vec::new());
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let src = std::fs::read_to_string(case.join("Dockerfile")).unwrap();
        let expected = std::fs::read_to_string(case.join("result")).unwrap();
        match parse("Dockerfile", &src) {
            Ok(ast) if ast.dump() == expected => passed += 1,
            Ok(ast) => {
                failures.push(format!("{name}:\n--- got\n{}--- want\n{expected}", ast.dump()))
            }
            Err(e) => failures.push(format!("{name}: parse error {e}")),
        }
    }
    report("buildkit parser cases", passed, cases.len(), &failures);
}

#[test]
fn negative_files_fail() {
    let Some(dir) = testdata("buildkit-parser/testfiles-negative") else { return };
    let mut cases: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    let (mut passed, mut failures) = (0, Vec::new());
    for case in &cases {
        let src = std::fs::read_to_string(case.join("Dockerfile")).unwrap();
        match parse("Dockerfile", &src) {
            Err(e) => {
                // The error must say where it is.
                assert!(e.span.is_some(), "{}: error without a location", case.display());
                passed += 1
            }
            Ok(ast) => failures.push(format!("{}: parsed as {}", case.display(), ast.dump())),
        }
    }
    report("buildkit parser negative cases", passed, cases.len(), &failures);
}

#[test]
fn line_numbers() {
    let Some(dir) = testdata("buildkit-parser") else { return };
    let misc = read_json(&dir.join("transcribed/parser_misc.json"));
    let ln = &misc["line_numbers"];
    let src = std::fs::read_to_string(dir.join(ln["file"].as_str().unwrap())).unwrap();
    let ast = parse("Dockerfile", &src).unwrap();
    let (mut passed, mut total, mut failures) = (0, 1, Vec::new());
    let root = (ast.start_line as u64, ast.end_line as u64);
    if root
        == (ln["root"]["start_line"].as_u64().unwrap(), ln["root"]["end_line"].as_u64().unwrap())
    {
        passed += 1;
    } else {
        failures.push(format!("root lines {root:?}"));
    }
    let children = ln["children"].as_array().unwrap();
    assert_eq!(children.len(), ast.nodes.len());
    for (want, node) in children.iter().zip(&ast.nodes) {
        total += 1;
        let got = (node.start_line as u64, node.end_line as u64);
        if got == (want["start_line"].as_u64().unwrap(), want["end_line"].as_u64().unwrap()) {
            passed += 1;
        } else {
            failures.push(format!("{}: got {got:?} want {want}", node.original));
        }
        // The span starts at the keyword.
        assert_eq!(node.span.start.line, node.start_line);
        assert!(src[node.span.offset..].to_lowercase().starts_with(&node.keyword));
    }
    report("buildkit parser line numbers", passed, total, &failures);
}

#[test]
fn empty_continuation_warnings() {
    let Some(dir) = testdata("buildkit-parser") else { return };
    let misc = read_json(&dir.join("transcribed/parser_misc.json"));
    let case = &misc["empty_continuation_warnings"];
    let ast = parse("Dockerfile", case["dockerfile"].as_str().unwrap()).unwrap();
    assert_eq!(ast.warnings.len() as u64, case["expected_warning_count"].as_u64().unwrap());
    for (w, subs) in ast.warnings.iter().zip(case["warnings_contain"].as_array().unwrap()) {
        for s in subs.as_array().unwrap() {
            assert!(w.message.contains(s.as_str().unwrap()), "{} lacks {s}", w.message);
        }
    }
    let detail = case["first_warning_detail_contains"].as_str().unwrap();
    assert!(ast.warnings[0].help.as_deref().unwrap().contains(detail));
    report("buildkit empty continuation warnings", 1, 1, &[]);
}

#[test]
fn parse_words_and_name_val_and_long_lines() {
    let Some(dir) = testdata("buildkit-parser") else { return };
    let misc = read_json(&dir.join("transcribed/parser_misc.json"));
    let (mut passed, mut total, mut failures) = (0, 0, Vec::new());
    for c in misc["parse_words"]["cases"].as_array().unwrap() {
        total += 1;
        let got = parse_words(c["input"].as_str().unwrap(), '\\');
        let want: Vec<String> = serde_json::from_value(c["expected"].clone()).unwrap();
        if got == want {
            passed += 1
        } else {
            failures.push(format!("parse_words {c}: {got:?}"))
        }
    }
    for c in misc["name_val"]["cases"].as_array().unwrap() {
        total += 1;
        let src = format!(
            "FROM x\n{} {}\n",
            c["instruction"].as_str().unwrap(),
            c["args"].as_str().unwrap()
        );
        let res = parse("Dockerfile", &src);
        let ok = if c["error"].as_bool() == Some(true) {
            res.is_err()
        } else {
            let want: Vec<String> = serde_json::from_value(c["expected_chain"].clone()).unwrap();
            res.map(|a| a.nodes[1].args == want).unwrap_or(false)
        };
        if ok {
            passed += 1
        } else {
            failures.push(format!("name_val {c}"))
        }
    }
    total += 1;
    let long = format!("FROM x\nLABEL test={}\n", "a".repeat(65536));
    match parse("Dockerfile", &long) {
        Err(e) if e.message.contains(misc["line_too_long"]["expected_error"].as_str().unwrap()) => {
            passed += 1
        }
        other => failures.push(format!("line_too_long: {other:?}")),
    }
    report("buildkit parse_words/name_val/line_too_long", passed, total, &failures);
}

#[test]
fn json_arrays() {
    let Some(dir) = testdata("buildkit-parser") else { return };
    let j = read_json(&dir.join("transcribed/json_arrays.json"));
    let (mut passed, mut total, mut failures) = (0, 0, Vec::new());
    for c in j["valid"].as_array().unwrap() {
        total += 1;
        let want: Vec<String> = serde_json::from_value(c["expected"].clone()).unwrap();
        match parse_json_array_public(c["input"].as_str().unwrap().trim()) {
            Ok(Some(got)) if got == want => passed += 1,
            other => failures.push(format!("{c}: {other:?}")),
        }
    }
    for c in j["invalid_not_string_array"].as_array().unwrap() {
        total += 1;
        if parse_json_array_public(c.as_str().unwrap()).is_err() {
            passed += 1
        } else {
            failures.push(c.to_string())
        }
    }
    report("buildkit JSON array cases", passed, total, &failures);
}

#[test]
fn directives() {
    let Some(dir) = testdata("buildkit-parser") else { return };
    let j = read_json(&dir.join("transcribed/directives_cases.json"));
    let (mut passed, mut total, mut failures) = (0, 0, Vec::new());
    for c in j["parse_all"].as_array().unwrap() {
        total += 1;
        let src = format!("{}FROM x\n", c["input"].as_str().unwrap());
        let ast = parse("Dockerfile", &src).unwrap();
        let got: Vec<(String, String)> =
            ast.directives.iter().map(|d| (d.name.clone(), d.value.clone())).collect();
        let want: Vec<(String, String)> = c["expected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (d["name"].as_str().unwrap().to_string(), d["value"].as_str().unwrap().to_string())
            })
            .collect();
        if got == want {
            passed += 1
        } else {
            failures.push(format!("{c}: {got:?}"))
        }
    }
    for (key, field) in [("detect_syntax", "ref"), ("parse_directive_check", "value")] {
        for c in j[key].as_array().unwrap() {
            total += 1;
            let input = c["input"].as_str().unwrap();
            let got = if key == "detect_syntax" {
                detect_syntax(input)
            } else {
                detect_directive("check", input)
            };
            let mut ok = got.is_some() == c["ok"].as_bool().unwrap();
            if let Some(g) = &got {
                if let Some(r) = c[field].as_str() {
                    ok &= g.reference == r
                        || (key != "detect_syntax" && g.cmdline.split(' ').next() == Some(r));
                }
                if let Some(cl) = c["cmdline"].as_str() {
                    ok &= g.cmdline == cl;
                }
                if let Some(l) = c["line"].as_u64() {
                    ok &= g.line as u64 == l;
                }
            }
            if ok {
                passed += 1
            } else {
                failures.push(format!("{key} {c}: {got:?}"))
            }
        }
    }
    report("buildkit directive cases", passed, total, &failures);
}

#[test]
fn heredocs() {
    let Some(dir) = testdata("buildkit-parser") else { return };
    let j = read_json(&dir.join("transcribed/heredoc_cases.json"));
    let (mut passed, mut total, mut failures) = (0, 0, Vec::new());
    let ex = &j["extract_heredocs"];
    let ast = parse("Dockerfile", ex["dockerfile"].as_str().unwrap()).unwrap();
    for c in ex["expected_by_child"].as_array().unwrap() {
        total += 1;
        let node = &ast.nodes[c["child_index"].as_u64().unwrap() as usize];
        let got: Vec<serde_json::Value> = node
            .heredocs
            .iter()
            .map(|h| {
                serde_json::json!({
            "name": h.name, "file_descriptor": h.file_descriptor, "expand": h.expand,
            "chomp": h.chomp, "content": h.content})
            })
            .collect();
        let want = if c["heredocs"].is_null() {
            vec![]
        } else {
            c["heredocs"].as_array().unwrap().clone()
        };
        if got == want {
            passed += 1
        } else {
            failures.push(format!("child {}: {got:?} want {want:?}", c["child_index"]))
        }
    }
    let jh = &j["json_form_has_no_heredocs"];
    let ast = parse("Dockerfile", jh["dockerfile"].as_str().unwrap()).unwrap();
    for i in jh["children_without_heredocs"].as_array().unwrap() {
        total += 1;
        if ast.nodes[i.as_u64().unwrap() as usize].heredocs.is_empty() {
            passed += 1
        } else {
            failures.push(format!("json child {i}"))
        }
    }
    total += 1;
    if chomp_tabs(j["chomp"]["input"].as_str().unwrap()) == j["chomp"]["expected"].as_str().unwrap()
    {
        passed += 1
    } else {
        failures.push("chomp".into())
    }
    let pw = &j["parse_heredoc_word"];
    for w in pw["valid_name_EOF"].as_array().unwrap() {
        total += 1;
        match parse_heredoc_word(w.as_str().unwrap()) {
            Ok(Some(h)) if h.name == "EOF" => passed += 1,
            other => failures.push(format!("valid {w}: {other:?}")),
        }
    }
    for w in pw["invalid_error"].as_array().unwrap() {
        total += 1;
        if parse_heredoc_word(w.as_str().unwrap()).is_err() {
            passed += 1
        } else {
            failures.push(format!("invalid {w}"))
        }
    }
    for w in pw["not_heredoc"].as_array().unwrap() {
        total += 1;
        match parse_heredoc_word(w.as_str().unwrap()) {
            Ok(None) => passed += 1,
            other => failures.push(format!("not heredoc {w}: {other:?}")),
        }
    }
    for c in j["heredocs_from_line"]["cases"].as_array().unwrap() {
        total += 1;
        let got: Vec<String> = heredocs_from_line(c["line"].as_str().unwrap())
            .unwrap()
            .into_iter()
            .map(|h| h.name)
            .collect();
        let want: Vec<String> = serde_json::from_value(c["heredoc_names"].clone()).unwrap();
        if got == want {
            passed += 1
        } else {
            failures.push(format!("from_line {c}: {got:?}"))
        }
    }
    report("buildkit heredoc cases", passed, total, &failures);
}
