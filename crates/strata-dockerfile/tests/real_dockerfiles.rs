//! Real multi-stage Dockerfiles of well-known projects, read from the
//! repository snapshots under /work/.mirror (fetched with the search tool).
//! They are not copied into this repository; the test skips loudly when the
//! snapshots are absent.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use strata_dockerfile::{
    call_check, call_outline, call_targets, outline, parse_dockerfile, stages_needed,
};

/// `(mirror, path in repo)`.
const FILES: &[(&str, &str)] = &[
    ("moby+moby", "Dockerfile"),
    ("docker+buildx", "Dockerfile"),
    ("moby+buildkit", "Dockerfile"),
    ("prometheus+prometheus", "Dockerfile"),
    ("docker-library+golang", "1.26/bookworm/Dockerfile"),
];

fn read(mirror: &str, path: &str) -> Option<String> {
    let git_dir = Path::new("/work/.mirror").join(mirror).join("repo");
    if !git_dir.is_dir() {
        eprintln!("\n!!!!! SKIPPED: snapshot {} not found !!!!!\n", git_dir.display());
        return None;
    }
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(&git_dir)
        .args(["show", &format!("HEAD:{path}")])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("\n!!!!! SKIPPED: {mirror}:{path} not readable !!!!!\n");
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn outlines_of_real_dockerfiles() {
    let mut seen = 0;
    for (mirror, path) in FILES {
        let Some(src) = read(mirror, path) else { continue };
        seen += 1;
        let name = format!("{mirror}/{path}");
        let df = parse_dockerfile(&name, &src).unwrap_or_else(|e| panic!("{}", e.render_plain()));
        let none = BTreeMap::new();
        let needed = stages_needed(&df, None).unwrap_or_else(|e| panic!("{}", e.render_plain()));
        // The default target is the last stage and comes last in build order.
        assert_eq!(*needed.last().unwrap(), df.stages.len() - 1, "{name}");
        let text =
            call_outline(&df, &none, None).unwrap_or_else(|e| panic!("{}", e.render_plain()));
        println!("===== {name}: {} stages, {} needed for the default target\n--- targets\n{}--- outline\n{text}", df.stages.len(), needed.len(), call_targets(&df));
        let check = call_check(&df, &none, None).unwrap_or_else(|e| panic!("{}", e.render_plain()));
        println!("--- check: {} warnings", check.warnings.len());
        for w in &check.warnings {
            println!("    {}: {}", w.location(), w);
        }
        // Facts read off these files by hand.
        match *mirror {
            "moby+moby" => {
                assert!(text.starts_with("TARGET: dev\n"), "{text}");
                // GO_VERSION is used only through GOLANG_IMAGE's default.
                assert!(
                    text.contains("\nGO_VERSION ") && text.contains("\nGOLANG_IMAGE "),
                    "{text}"
                );
            }
            "moby+buildkit" => assert!(
                text.starts_with(
                    "TARGET:      buildkit\nDESCRIPTION: builds the buildkit container image\n"
                ),
                "{text}"
            ),
            "prometheus+prometheus" => assert!(text.contains("\nARCH        amd64"), "{text}"),
            _ => {}
        }
        // Every ARG the outline lists is declared in the file.
        let o = outline(&df, &none, None).unwrap();
        for a in &o.args {
            assert!(src.contains(&format!("ARG {}", a.name)), "{name}: {} not declared", a.name);
        }
        // Every named stage is a target.
        for s in &df.stages {
            if let Some(n) = &s.name_as_written {
                assert!(
                    call_targets(&df).lines().any(|l| l.split_whitespace().next() == Some(n)),
                    "{name}: stage {n}"
                );
                stages_needed(&df, Some(n)).unwrap_or_else(|e| panic!("{}", e.render_plain()));
            }
        }
    }
    if seen == 0 {
        eprintln!("\n!!!!! SKIPPED: no real Dockerfiles available !!!!!\n");
    }
}
