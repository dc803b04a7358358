//! The `strata lint` command: arguments, config discovery, reporting, exit
//! code.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::config::{default_config_paths, Config, LabelType, Severity};
use crate::output::{render, FileReport, Format};
use crate::{fails, lint_source, LintError};

/// Lint Dockerfiles (hadolint-compatible rules, codes and config).
#[derive(Debug, Clone, Args)]
pub struct LintArgs {
    /// Dockerfiles to lint (`-` reads standard input). Default: ./Dockerfile.
    #[arg(value_name = "DOCKERFILE")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'f', long, value_name = "FORMAT")]
    pub format: Option<Format>,
    /// Config file (default: ./.hadolint.yaml, then ~/.config/hadolint.yaml, ...).
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Ignore a rule (repeatable).
    #[arg(long = "ignore", value_name = "CODE")]
    pub ignore: Vec<String>,
    /// Only allow FROM images from this registry (repeatable; `*.corp.com` allowed).
    #[arg(long = "trusted-registry", value_name = "REGISTRY")]
    pub trusted_registry: Vec<String>,
    /// Exit 1 only for findings at or above this severity.
    #[arg(short = 't', long, value_name = "SEVERITY")]
    pub failure_threshold: Option<Severity>,
    /// Always exit 0 when the files could be linted.
    #[arg(long)]
    pub no_fail: bool,
    /// Make these rules errors (repeatable).
    #[arg(long = "error", value_name = "CODE")]
    pub error: Vec<String>,
    /// Make these rules warnings (repeatable).
    #[arg(long = "warning", value_name = "CODE")]
    pub warning: Vec<String>,
    /// Make these rules info (repeatable).
    #[arg(long = "info", value_name = "CODE")]
    pub info: Vec<String>,
    /// Make these rules style (repeatable).
    #[arg(long = "style", value_name = "CODE")]
    pub style: Vec<String>,
    /// Require a label of a type: `name:text|url|rfc3339|spdx|hash|semver|email`.
    #[arg(long = "require-label", value_name = "LABEL:TYPE")]
    pub require_label: Vec<String>,
    /// Report labels that are not in the label schema.
    #[arg(long)]
    pub strict_labels: bool,
    /// Do not honour `# hadolint ignore=` / `# strata ignore=` comments.
    #[arg(long)]
    pub disable_ignore_pragma: bool,
    /// No colours in tty output.
    #[arg(long)]
    pub no_color: bool,
    /// Name to use for standard input in reports.
    #[arg(long, value_name = "NAME", default_value = "-")]
    pub file_path_in_report: String,
}

impl LintArgs {
    /// Build the effective configuration: config file, then flags.
    pub fn config(&self) -> Result<(Config, Option<Format>, bool), LintError> {
        let mut cfg = Config::default();
        let mut format = None;
        let mut no_color = false;
        let file = match &self.config {
            Some(p) => Some(p.clone()),
            None => default_config_paths().into_iter().find(|p| p.is_file()),
        };
        if let Some(p) = file {
            let s = cfg.merge_file(&p)?;
            if let Some(f) = s.format {
                format =
                    Some(f.parse().map_err(|e| LintError::Config { path: p.clone(), message: e })?);
            }
            no_color = s.no_color.unwrap_or(false);
        }
        cfg.ignored.extend(self.ignore.iter().cloned());
        cfg.trusted_registries.extend(self.trusted_registry.iter().cloned());
        if let Some(t) = self.failure_threshold {
            cfg.failure_threshold = t;
        }
        cfg.no_fail |= self.no_fail;
        cfg.strict_labels |= self.strict_labels;
        cfg.disable_ignore_pragma |= self.disable_ignore_pragma;
        for (codes, sev) in [
            (&self.error, Severity::Error),
            (&self.warning, Severity::Warning),
            (&self.info, Severity::Info),
            (&self.style, Severity::Style),
        ] {
            for c in codes {
                cfg.overrides.insert(c.clone(), sev);
            }
        }
        for l in &self.require_label {
            let (name, ty) = l.split_once(':').ok_or_else(|| {
                LintError::Usage(format!(
                    "--require-label {l:?}: expected LABEL:TYPE, e.g. maintainer:email"
                ))
            })?;
            let t: LabelType =
                ty.parse().map_err(|e| LintError::Usage(format!("--require-label {l:?}: {e}")))?;
            cfg.label_schema.insert(name.to_string(), t);
        }
        Ok((cfg, self.format.or(format), no_color || self.no_color))
    }
}

/// Run `strata lint`: exit 0 when clean (or below the failure threshold),
/// 1 when findings fail it, as hadolint does. Unreadable files and bad
/// configuration are errors.
pub fn run(args: LintArgs) -> Result<ExitCode, LintError> {
    let (mut cfg, format, no_color) = args.config()?;
    let format = format.unwrap_or(Format::Tty);
    let files =
        if args.files.is_empty() { vec![PathBuf::from("Dockerfile")] } else { args.files.clone() };
    let mut texts: Vec<(String, String, Option<PathBuf>)> = Vec::new();
    for f in &files {
        if f == Path::new("-") {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| LintError::Io { path: f.clone(), source: e })?;
            texts.push((args.file_path_in_report.clone(), s, None));
        } else {
            let bytes =
                std::fs::read(f).map_err(|e| LintError::Io { path: f.clone(), source: e })?;
            let dir = f.parent().map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            });
            texts.push((
                f.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
                dir,
            ));
        }
    }
    let mut all = Vec::new();
    for (name, text, dir) in &texts {
        cfg.context_dir = dir.clone();
        all.push(lint_source(name, text, &cfg));
    }
    let reports: Vec<FileReport<'_>> = texts
        .iter()
        .zip(&all)
        .map(|((name, text, _), f)| FileReport { name, source: text, findings: f })
        .collect();
    let color =
        !no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal();
    let out = render(format, &reports, color);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).map_err(LintError::Output)?;
    stdout.flush().map_err(LintError::Output)?;
    let failed = all.iter().any(|f| fails(f, &cfg));
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
