//! Diagnostics render through miette's graphical handler (what the CLI
//! uses) with the file name, the source line and a label under the error.

use strata_dockerfile::parse_dockerfile;

fn render(d: &dyn miette::Diagnostic) -> String {
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .render_report(&mut out, d)
        .unwrap();
    out
}

#[test]
fn typo_in_instruction_renders_with_source_and_suggestion() {
    let src = "FROM alpine\nRUN true\nCOPPY . /app\n";
    let e = parse_dockerfile("web/Dockerfile", src).unwrap_err();
    let text = render(&e);
    println!("{text}");
    assert!(text.contains("unknown instruction: COPPY"), "{text}");
    assert!(text.contains("[web/Dockerfile:3:1]"), "{text}");
    assert!(text.contains("3 │ COPPY . /app"), "{text}");
    assert!(text.contains("not a Dockerfile instruction"), "{text}");
    assert!(text.contains("help: did you mean COPY?"), "{text}");
}

#[test]
fn warning_renders_with_rule_and_link() {
    let src = "FROM alpine\nCMD echo hi\n";
    let df = parse_dockerfile("Dockerfile", src).unwrap();
    let r = strata_dockerfile::call_check(&df, &Default::default(), None).unwrap();
    let text = render(&r.warnings[0]);
    println!("{text}");
    assert!(text.contains("JSONArgsRecommended"), "{text}");
    assert!(text.contains("2 │ CMD echo hi"), "{text}");
    assert!(text.contains("⚠"), "{text}");
}

#[test]
fn reading_a_missing_file_names_it() {
    let e = strata_dockerfile::read_dockerfile(std::path::Path::new("/nonexistent/Dockerfile"))
        .unwrap_err();
    assert!(
        e.message.starts_with("cannot read Dockerfile /nonexistent/Dockerfile:"),
        "{}",
        e.message
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("Dockerfile");
    std::fs::write(&p, b"FROM alpine\nLABEL x=\xff\n").unwrap();
    let df = strata_dockerfile::read_dockerfile(&p).unwrap();
    assert_eq!(df.stages[0].instructions.len(), 1);
    assert_eq!(df.source.name, p.display().to_string());
}

#[test]
fn diag_converts_into_a_miette_report() {
    // What the CLI does with an error: wrap it in a Report and print it.
    let e = parse_dockerfile("Dockerfile", "FROM alpine\nRUN --networ=none true\n").unwrap_err();
    let report = miette::Report::new(e);
    let text = format!("{report:?}");
    assert!(text.contains("unknown flag: --networ for RUN"), "{text}");
    assert!(text.contains("did you mean --network?"), "{text}");
}
