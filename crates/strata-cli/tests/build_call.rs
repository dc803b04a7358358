//! `strata build --call=...`: the Dockerfile frontend from the command line.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

#[test]
fn outline_targets_and_check_of_the_example() {
    let env = Env::new();
    let example = repo_root().join("examples/hello");
    let dir = example.to_str().unwrap();
    let outline = env.ok(&["build", "--call=outline", "--build-arg", "CFLAGS=-O0", dir]);
    let lines: Vec<&str> = outline.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["BUILD", "ARG", "VALUE", "DESCRIPTION"]
    );
    assert!(lines.iter().any(|l| l.split_whitespace().eq(["DEBIAN_TAG", "bookworm"])), "{outline}");
    assert!(
        lines.iter().any(|l| l.split_whitespace().eq(["CFLAGS", "-O0"])),
        "--build-arg wins: {outline}"
    );
    let targets = env.ok(&["build", "--call=targets", dir]);
    assert!(targets.lines().any(|l| l.trim() == "build"), "{targets}");
    let check = env.ok(&["build", "--call=check", dir]);
    assert!(check.contains("Check complete, no warnings found."), "{check}");
}

fn strata_stdin(args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new(STRATA)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn errors_point_at_the_line_and_suggest_a_fix() {
    let out = strata_stdin(&["build", "--call=check", "-f", "-", "."], "FROM busybox\nCOPPY a b\n");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown instruction: COPPY") && err.contains("did you mean COPY?"),
        "{err}"
    );
    assert!(err.contains("Dockerfile:2:1"), "names file:line:column: {err}");

    let out = strata_stdin(
        &["build", "--call=check", "-f", "-", "."],
        "FROM busybox as base\nMAINTAINER me\nCMD echo hi\n",
    );
    assert_eq!(out.status.code(), Some(1), "warnings make --call=check fail");
    let text = String::from_utf8_lossy(&out.stdout);
    for rule in ["FromAsCasing", "MaintainerDeprecated", "JSONArgsRecommended"] {
        assert!(text.contains(rule), "{rule} missing from: {text}");
    }
}

#[test]
fn build_check_lints_first_and_does_not_build_when_the_lint_fails() {
    let env = Env::new();
    let ctx = env.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    // DL3006 (untagged FROM) is a warning; DL3020 (ADD for a local file) is an error.
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nADD a.txt /a.txt\n").unwrap();
    std::fs::write(ctx.join("a.txt"), "a").unwrap();
    let out = env.cmd().args(["build", "--check", ctx.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a failing lint stops the build: {err}");
    assert!(err.contains("DL3020"), "the lint's findings are shown: {err}");
    assert!(err.contains("lint failed"), "{err}");
    assert!(!err.contains("Successfully built"), "{err}");
    // The store was never touched: nothing was built.
    assert_eq!(env.ok(&["images", "-q"]).trim(), "");
}
