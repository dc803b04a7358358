//! `strata lint`: a Dockerfile linter.
//!
//! It implements hadolint's DL rules that need no ShellCheck (same codes,
//! default severities and meanings), plus Strata's own `ST` rules for what
//! the best-practice guides ask and hadolint misses. `.hadolint.yaml`
//! files, `# hadolint ignore=` / `# strata ignore=` pragmas and hadolint's
//! output formats and exit codes are supported.
//!
//! ```
//! use strata_lint::{lint_source, Config};
//! let findings = lint_source("Dockerfile", "FROM debian\nRUN cd /tmp\n", &Config::default());
//! let codes: Vec<&str> = findings.iter().map(|f| f.code.as_str()).collect();
//! assert!(codes.contains(&"DL3006") && codes.contains(&"DL3003"));
//! ```

pub mod cli;
pub mod config;
pub mod labels;
pub mod output;
pub mod rules;
pub mod shell;

use std::path::PathBuf;

pub use cli::{run, LintArgs};
pub use config::{Config, LabelType, Severity};
pub use output::Format;
pub use rules::{rule, Rule, RULES};
use strata_dockerfile::Span;

/// Errors of the lint command (not findings: those are values).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LintError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration in {}: {message}", path.display())]
    #[diagnostic(help("see the .hadolint.yaml keys: ignored, trustedRegistries, failure-threshold, override, label-schema, strict-labels"))]
    Config { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("cannot write the report: {0}")]
    Output(#[source] std::io::Error),
}

/// One thing the linter reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub code: String,
    pub severity: Severity,
    pub message: String,
    pub file: String,
    /// 1-based line and column of the start of the offending text.
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    /// Byte range in the source.
    #[serde(skip)]
    pub offset: usize,
    #[serde(skip)]
    pub len: usize,
}

impl Finding {
    pub(crate) fn new(code: &str, message: String, file: &str, span: Span) -> Finding {
        let severity = rule(code).map(|r| r.severity).unwrap_or(Severity::Warning);
        let line = span.start.line.max(1);
        Finding {
            code: code.to_string(),
            severity,
            message,
            file: file.to_string(),
            line,
            column: span.start.column.max(1),
            end_line: span.end.line.max(line),
            end_column: span.end.column.max(1),
            offset: span.offset,
            len: span.len,
        }
    }
}

/// Every finding the rules produce, with pragmas honoured but before
/// severity overrides, `ignored` and the removal of `ignore`-severity
/// findings. This is what hadolint's rule tests look at.
pub fn lint_unfiltered(name: &str, src: &str, cfg: &Config) -> Vec<Finding> {
    rules::check_all(name, src, cfg)
}

/// Lint one Dockerfile as `strata lint` reports it: overrides applied,
/// ignored rules and `ignore`-severity findings removed.
pub fn lint_source(name: &str, src: &str, cfg: &Config) -> Vec<Finding> {
    let mut out = lint_unfiltered(name, src, cfg);
    for f in &mut out {
        if let Some(s) = cfg.overrides.get(&f.code) {
            f.severity = *s;
        }
    }
    out.retain(|f| f.severity != Severity::Ignore && !cfg.ignored.contains(&f.code));
    out
}

/// Would these findings fail the build under `cfg` (hadolint's exit-code
/// rule: any finding at or above the failure threshold, unless no-fail)?
pub fn fails(findings: &[Finding], cfg: &Config) -> bool {
    !cfg.no_fail && findings.iter().any(|f| f.severity.at_least(cfg.failure_threshold))
}

/// The configuration `strata lint` would use with no flags: the given file,
/// else the first `.hadolint.yaml` found in the usual places, else defaults.
/// For `strata build --check`.
pub fn load_config(path: Option<&std::path::Path>) -> Result<Config, LintError> {
    let mut cfg = Config::default();
    let file = match path {
        Some(p) => Some(p.to_path_buf()),
        None => config::default_config_paths().into_iter().find(|p| p.is_file()),
    };
    if let Some(p) = file {
        cfg.merge_file(&p)?;
    }
    Ok(cfg)
}

/// Read and lint the Dockerfile at `path`, with `context_dir` (if any) as
/// the build context for the rules that look at it.
pub fn lint_file(
    path: &std::path::Path,
    context_dir: Option<&std::path::Path>,
    cfg: &Config,
) -> Result<Vec<Finding>, LintError> {
    let bytes =
        std::fs::read(path).map_err(|e| LintError::Io { path: path.to_path_buf(), source: e })?;
    let mut cfg = cfg.clone();
    cfg.context_dir = context_dir.map(std::path::Path::to_path_buf);
    Ok(lint_source(&path.display().to_string(), &String::from_utf8_lossy(&bytes), &cfg))
}
