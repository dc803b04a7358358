//! Behaviour of the linter beyond single rules: pragmas, configuration,
//! severities, Strata rules and report formats.

use std::path::Path;

use strata_lint::output::{render, FileReport, Format};
use strata_lint::{fails, lint_source, lint_unfiltered, Config, Severity};

fn codes(src: &str, cfg: &Config) -> Vec<String> {
    lint_source("Dockerfile", src, cfg).into_iter().map(|f| f.code).collect()
}

#[test]
fn inline_pragmas_apply_to_the_next_instruction_only() {
    let src = "FROM debian:12\n# hadolint ignore=DL3003,DL3059\nRUN cd /tmp\nRUN cd /var\n";
    let f = lint_source("Dockerfile", src, &Config::default());
    let dl3003: Vec<usize> = f.iter().filter(|f| f.code == "DL3003").map(|f| f.line).collect();
    assert_eq!(dl3003, [4]);
    // `# strata ignore=` works the same way, and `global ignore=` for the file.
    let src = "FROM debian:12\n# strata ignore=DL3003\nRUN cd /tmp\n";
    assert!(!codes(src, &Config::default()).contains(&"DL3003".to_string()));
    let src = "# hadolint global ignore=DL3003\nFROM debian:12\nRUN cd /tmp\nRUN cd /x\n";
    assert!(!codes(src, &Config::default()).contains(&"DL3003".to_string()));
    // DL1001 is off by default but is reported before filtering.
    let raw = lint_unfiltered("Dockerfile", src, &Config::default());
    assert!(raw.iter().any(|f| f.code == "DL1001"));
    let cfg = Config { disable_ignore_pragma: true, ..Config::default() };
    assert!(codes(src, &cfg).contains(&"DL3003".to_string()));
}

#[test]
fn hadolint_yaml_is_understood() {
    let yaml = "ignored:\n  - DL3006\ntrustedRegistries:\n  - docker.io\n  - \"*.corp.example\"\n\
                failure-threshold: error\noverride:\n  error:\n    - DL3003\n  info:\n    - DL3007\n\
                label-schema:\n  maintainer: email\n  org.opencontainers.image.created: rfc3339\n\
                strict-labels: true\n";
    let mut cfg = Config::default();
    cfg.merge_yaml(yaml, Path::new(".hadolint.yaml")).unwrap();
    assert!(cfg.ignored.contains("DL3006"));
    assert_eq!(cfg.failure_threshold, Severity::Error);
    let src = "FROM quay.io/x/y:1\nLABEL maintainer=nobody other=x\nRUN cd /tmp\n";
    let f = lint_source("Dockerfile", src, &cfg);
    let get = |c: &str| f.iter().find(|x| x.code == c).map(|x| x.severity);
    assert_eq!(get("DL3026"), Some(Severity::Error));
    assert_eq!(get("DL3003"), Some(Severity::Error));
    assert!(get("DL3058").is_some() && get("DL3050").is_some() && get("DL3049").is_some());
    assert!(fails(&f, &cfg));
    let ok = "FROM registry.corp.example/base:1\nUSER 1000\n";
    let f = lint_source("Dockerfile", ok, &cfg);
    assert!(!f.iter().any(|x| x.code == "DL3026"), "{f:?}");

    let err = Config::default().merge_yaml("failure-threshold: loud\n", Path::new("c.yaml"));
    assert!(err.unwrap_err().to_string().contains("unknown severity"));
    let err = Config::default().merge_yaml("ignord: [DL3000]\n", Path::new("c.yaml"));
    assert!(err.unwrap_err().to_string().contains("unknown key `ignord`"));
    let err = Config::default().merge_yaml("ignored: [\n", Path::new("c.yaml"));
    assert!(err.unwrap_err().to_string().contains("invalid YAML"));
}

#[test]
fn threshold_and_no_fail() {
    let f = lint_source("Dockerfile", "FROM debian:12\nRUN apt-get update\n", &Config::default());
    // DL3009 is info: the default threshold (info) fails, a warning threshold does not.
    assert!(f.iter().any(|x| x.code == "DL3009"));
    let cfg = Config { failure_threshold: Severity::Error, ..Config::default() };
    assert!(!fails(&f, &cfg));
    let cfg = Config { no_fail: true, ..Config::default() };
    assert!(!fails(&f, &cfg));
}

#[test]
fn strata_rules() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config { context_dir: Some(dir.path().to_path_buf()), ..Config::default() };
    let src = "FROM node:20\nWORKDIR /app\nCOPY . .\nRUN npm ci\nENV API_TOKEN=ghp_0123456789abcdefghijklmnopqrstuvwxyzAB\n\
               RUN apt-get update && apt-get install -y --no-install-recommends gcc=4 && rm -rf /var/lib/apt/lists/*\n";
    let c = codes(src, &cfg);
    for want in ["ST1001", "ST1002", "ST1003", "ST1004", "ST1005", "ST1006", "DL3064"] {
        assert!(c.contains(&want.to_string()), "{want} missing from {c:?}");
    }
    std::fs::write(dir.path().join(".dockerignore"), ".git\n").unwrap();
    let good = "FROM node:20 AS build\nWORKDIR /app\nCOPY package.json package-lock.json ./\n\
                RUN npm ci && npm cache clean --force\nCOPY . .\nRUN npm run build\n\
                FROM node:20-slim\nCOPY --from=build /app/dist /srv\nUSER 1000\nCMD [\"node\", \"/srv/main.js\"]\n";
    let c = codes(good, &cfg);
    assert!(!c.iter().any(|x| x.starts_with("ST")), "{c:?}");
}

#[test]
fn parse_errors_are_findings_not_panics() {
    let f = lint_source("Dockerfile", "FROM alpine\nRUN [\"a\", 1]\n", &Config::default());
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].code, "DL1000");
    assert_eq!(f[0].severity, Severity::Error);
    // Odd inputs do not panic.
    for src in [
        "",
        "\n\n",
        "FROM",
        "RUN \\\n",
        "ONBUILD",
        "COPY",
        "EXPOSE 80-x",
        "USER :",
        "LABEL =",
        "RUN <<EOF\n",
    ] {
        let _ = lint_source("Dockerfile", src, &Config::default());
    }
}

#[test]
fn report_formats() {
    let src = "FROM debian\nWORKDIR tmp\n";
    let f = lint_source("Dockerfile", src, &Config::default());
    let reports = [FileReport { name: "Dockerfile", source: src, findings: &f }];
    let tty = render(Format::Tty, &reports, false);
    assert!(tty.contains("Dockerfile:2:1 DL3000 error:"), "{tty}");
    assert!(tty.contains("2 | WORKDIR tmp") && tty.contains("  | ^^^^^^^^^^^"), "{tty}");
    let json: serde_json::Value =
        serde_json::from_str(&render(Format::Json, &reports, false)).unwrap();
    assert!(json
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["code"] == "DL3000" && x["level"] == "error" && x["line"] == 2));
    let sarif: serde_json::Value =
        serde_json::from_str(&render(Format::Sarif, &reports, false)).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    assert!(sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["ruleId"] == "DL3000"));
    let cs = render(Format::Checkstyle, &reports, false);
    assert!(cs.contains("<file name='Dockerfile'>") && cs.contains("source='DL3000'"));
    let gl: serde_json::Value =
        serde_json::from_str(&render(Format::GitlabCodeclimate, &reports, false)).unwrap();
    assert!(gl
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["check_name"] == "DL3000" && x["severity"] == "blocker"));
    let cc = render(Format::Codeclimate, &reports, false);
    assert!(cc
        .split('\0')
        .filter(|s| !s.is_empty())
        .all(|s| serde_json::from_str::<serde_json::Value>(s).is_ok()));
    assert!(render(Format::Gnu, &reports, false).contains("Dockerfile:2:1: DL3000 error:"));
}

/// Random Dockerfile-ish text never panics the linter.
#[test]
fn random_input_does_not_panic() {
    let pieces = [
        "FROM ",
        "RUN ",
        "COPY ",
        "ADD ",
        "ENV ",
        "ARG ",
        "LABEL ",
        "USER ",
        "WORKDIR ",
        "EXPOSE ",
        "ONBUILD ",
        "HEALTHCHECK ",
        "SHELL ",
        "CMD ",
        "AS ",
        "--from=",
        "--platform=",
        "--mount=type=cache,target=/x ",
        "apt-get install ",
        "apk add ",
        "pip install ",
        "npm i ",
        "yum install ",
        "zypper in ",
        "go install ",
        "&&",
        "||",
        "|",
        ";",
        "\\\n",
        "\n",
        "'",
        "\"",
        "$(",
        ")",
        "`",
        "#",
        "# hadolint ignore=DL3003\n",
        "=",
        "a=b ",
        "x:1",
        "@sha256:ab",
        " / ",
        ".",
        "<<EOF\n",
        "EOF\n",
        "[\"a\"]",
        "é",
        "\t",
        "{",
        "}",
        "-y ",
        "-u 1234567 ",
        "65536",
        "$VAR",
        "${A:-b}",
        "\r\n",
    ];
    let mut seed: u64 = 0x2545F4914F6CDD1D;
    let cfg = Config { strict_labels: true, ..Config::default() };
    for _ in 0..3000 {
        let mut src = String::new();
        let n = (seed % 40) as usize;
        for _ in 0..n {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            src.push_str(pieces[(seed % pieces.len() as u64) as usize]);
        }
        let f = lint_source("Dockerfile", &src, &cfg);
        let reports = [FileReport { name: "Dockerfile", source: &src, findings: &f }];
        for fmt in [Format::Tty, Format::Sarif, Format::Checkstyle] {
            let _ = render(fmt, &reports, true);
        }
    }
}
