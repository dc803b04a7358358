//! Report formats: tty, json, sarif, checkstyle, codeclimate, gitlab
//! codeclimate and gnu, in hadolint's shapes.

use std::fmt::Write as _;

use serde_json::json;

use crate::{rules, Finding, Severity};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Tty,
    Json,
    Sarif,
    Checkstyle,
    Codeclimate,
    #[value(name = "gitlab_codeclimate", alias = "gitlab-codeclimate")]
    GitlabCodeclimate,
    Gnu,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        <Format as clap::ValueEnum>::from_str(s, true)
            .map_err(|_| format!("unknown format {s:?}: expected tty, json, sarif, checkstyle, codeclimate, gitlab_codeclimate or gnu"))
    }
}

/// One linted file: its name, text and findings.
pub struct FileReport<'a> {
    pub name: &'a str,
    pub source: &'a str,
    pub findings: &'a [Finding],
}

fn sev_color(s: Severity) -> &'static str {
    match s {
        Severity::Error => "\x1b[1;31m",
        Severity::Warning => "\x1b[1;33m",
        Severity::Info => "\x1b[1;32m",
        Severity::Style => "\x1b[1;36m",
        Severity::Ignore => "",
    }
}

/// Human-readable text: `file:line CODE severity: message`, then the source
/// line and a caret under the offending text.
pub fn tty(reports: &[FileReport<'_>], color: bool) -> String {
    let mut out = String::new();
    for r in reports {
        let lines: Vec<&str> = r.source.split('\n').collect();
        for f in r.findings {
            let (c, reset, bold) =
                if color { (sev_color(f.severity), "\x1b[0m", "\x1b[1m") } else { ("", "", "") };
            let _ = writeln!(
                out,
                "{bold}{}:{}:{}{reset} {bold}{}{reset} {c}{}{reset}: {}",
                f.file, f.line, f.column, f.code, f.severity, f.message
            );
            if let Some(text) = lines.get(f.line - 1) {
                let text = text.strip_suffix('\r').unwrap_or(text);
                let g = f.line.to_string().len();
                let _ = writeln!(out, "{:g$} |", "");
                let _ = writeln!(out, "{} | {}", f.line, text);
                let width = if f.end_line == f.line {
                    f.end_column.saturating_sub(f.column).max(1)
                } else {
                    text.chars().count().saturating_sub(f.column - 1).max(1)
                };
                let pad: String = text
                    .chars()
                    .take(f.column - 1)
                    .map(|ch| if ch == '\t' { '\t' } else { ' ' })
                    .collect();
                let _ = writeln!(out, "{:g$} | {pad}{c}{}{reset}", "", "^".repeat(width.min(200)));
            }
        }
    }
    out
}

/// hadolint's JSON: an array of `{code, column, file, level, line, message}`.
pub fn json(reports: &[FileReport<'_>]) -> String {
    let items: Vec<serde_json::Value> = reports
        .iter()
        .flat_map(|r| r.findings.iter())
        .map(|f| json!({"code": f.code, "column": f.column, "file": f.file, "level": f.severity.as_str(), "line": f.line, "message": f.message}))
        .collect();
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".into())
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => o.push(c),
        }
    }
    o
}

/// Checkstyle XML.
pub fn checkstyle(reports: &[FileReport<'_>]) -> String {
    let mut o = String::from("<?xml version='1.0' encoding='UTF-8'?><checkstyle version='4.3'>");
    for r in reports {
        let _ = write!(o, "<file name='{}'>", xml_escape(r.name));
        for f in r.findings {
            let sev = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                _ => "info",
            };
            let _ = write!(
                o,
                "<error line='{}' column='{}' severity='{}' message='{}' source='{}'/>",
                f.line,
                f.column,
                sev,
                xml_escape(&f.message),
                xml_escape(&f.code)
            );
        }
        o.push_str("</file>");
    }
    o.push_str("</checkstyle>\n");
    o
}

fn fingerprint(f: &Finding) -> String {
    // FNV-1a over the identifying fields: stable across runs.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in format!("{}\0{}\0{}\0{}", f.file, f.line, f.code, f.message).bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn cc_severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "blocker",
        Severity::Warning => "major",
        Severity::Info => "info",
        Severity::Style | Severity::Ignore => "minor",
    }
}

fn cc_issue(f: &Finding) -> serde_json::Value {
    json!({
        "type": "issue",
        "check_name": f.code,
        "description": f.message,
        "categories": ["Bug Risk"],
        "severity": cc_severity(f.severity),
        "fingerprint": fingerprint(f),
        "location": {"path": f.file, "lines": {"begin": f.line, "end": f.end_line}},
    })
}

/// Code Climate: one JSON issue per line, NUL-separated as the spec asks.
pub fn codeclimate(reports: &[FileReport<'_>]) -> String {
    let mut o = String::new();
    for f in reports.iter().flat_map(|r| r.findings.iter()) {
        o.push_str(&cc_issue(f).to_string());
        o.push('\0');
    }
    o
}

/// GitLab's Code Quality report: a JSON array of Code Climate issues.
pub fn gitlab_codeclimate(reports: &[FileReport<'_>]) -> String {
    let items: Vec<serde_json::Value> =
        reports.iter().flat_map(|r| r.findings.iter()).map(cc_issue).collect();
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".into())
}

/// SARIF 2.1.0.
pub fn sarif(reports: &[FileReport<'_>]) -> String {
    let used: std::collections::BTreeSet<&str> =
        reports.iter().flat_map(|r| r.findings.iter()).map(|f| f.code.as_str()).collect();
    let rules_json: Vec<serde_json::Value> = rules::RULES
        .iter()
        .filter(|r| used.contains(r.code))
        .map(|r| {
            let help = if r.code.starts_with("DL") {
                format!("https://github.com/hadolint/hadolint/wiki/{}", r.code)
            } else {
                String::new()
            };
            let mut v = json!({"id": r.code, "shortDescription": {"text": r.description}, "defaultConfiguration": {"level": sarif_level(r.severity)}});
            if !help.is_empty() {
                v["helpUri"] = json!(help);
            }
            v
        })
        .collect();
    let results: Vec<serde_json::Value> = reports
        .iter()
        .flat_map(|r| r.findings.iter())
        .map(|f| json!({
            "ruleId": f.code,
            "level": sarif_level(f.severity),
            "message": {"text": f.message},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": f.file},
                "region": {"startLine": f.line, "startColumn": f.column, "endLine": f.end_line, "endColumn": f.end_column.max(f.column)}
            }}],
        }))
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "strata-lint", "informationUri": "https://example.invalid/strata", "version": env!("CARGO_PKG_VERSION"), "rules": rules_json}},
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info | Severity::Style | Severity::Ignore => "note",
    }
}

/// `file:line:column: code severity: message`, as GNU tools print.
pub fn gnu(reports: &[FileReport<'_>]) -> String {
    let mut o = String::new();
    for f in reports.iter().flat_map(|r| r.findings.iter()) {
        let _ = writeln!(
            o,
            "{}:{}:{}: {} {}: {}",
            f.file, f.line, f.column, f.code, f.severity, f.message
        );
    }
    o
}

/// Render `reports` in `format`.
pub fn render(format: Format, reports: &[FileReport<'_>], color: bool) -> String {
    match format {
        Format::Tty => tty(reports, color),
        Format::Json => json(reports) + "\n",
        Format::Sarif => sarif(reports),
        Format::Checkstyle => checkstyle(reports),
        Format::Codeclimate => codeclimate(reports),
        Format::GitlabCodeclimate => gitlab_codeclimate(reports) + "\n",
        Format::Gnu => gnu(reports),
    }
}
