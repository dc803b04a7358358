//! Large inputs stay fast: parsing and analysis are linear in the file size.

use std::collections::BTreeMap;
use std::time::Instant;

use strata_dockerfile::{call_check, call_outline, parse_dockerfile};

fn big_dockerfile(stages: usize, per_stage: usize) -> String {
    let mut s = String::from("ARG BASE=alpine\n");
    for i in 0..stages {
        if i == 0 {
            s.push_str("FROM ${BASE} AS s0\n");
        } else {
            s.push_str(&format!("FROM s{} AS s{i}\n", i - 1));
        }
        s.push_str(&format!("ARG V{i}=x\n"));
        for j in 0..per_stage {
            s.push_str(&format!(
                "RUN --mount=type=cache,target=/c echo {i} {j} \\\n    && true\nENV K{j}=$V{i}\nCOPY a{j} /b/\n"
            ));
        }
    }
    s
}

#[test]
fn twenty_thousand_instructions() {
    let src = big_dockerfile(50, 134);
    let lines = src.lines().count();
    let t = Instant::now();
    let df = parse_dockerfile("Dockerfile", &src).unwrap();
    let parsed = t.elapsed();
    let instructions: usize = df.stages.iter().map(|s| s.instructions.len() + 1).sum();
    let outline = call_outline(&df, &BTreeMap::new(), None).unwrap();
    let check = call_check(&df, &BTreeMap::new(), None).unwrap();
    let total = t.elapsed();
    println!(
        "{lines} lines, {instructions} instructions, {} bytes: parse+type {parsed:?}, +outline+check {total:?} ({} warnings)",
        src.len(),
        check.warnings.len()
    );
    assert!(instructions > 20_000);
    assert_eq!(outline.lines().filter(|l| l.starts_with('V')).count(), 50);
    // Generous bound for unoptimised CI builds on a shared machine; a
    // quadratic algorithm took 280 s here before per-instruction environment
    // copies were replaced by a change log.
    assert!(total.as_secs() < 10, "too slow: {total:?}");
}
