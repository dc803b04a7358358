//! Build checks: the warnings BuildKit's linter gives (same rule names,
//! wording and documentation links), computed from the typed model.

use crate::diagnostics::{Diag, Span};
use crate::instructions::{InstructionKind, ShellOrExec};
use crate::model::Dockerfile;
use crate::scope::{BuildOptions, Scope};

/// The `# check=skip=...;error=true` directive (or the
/// `BUILDKIT_DOCKERFILE_CHECK` build arg), as BuildKit reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    pub skip_all: bool,
    pub skip: Vec<String>,
    /// Warnings fail the build.
    pub error: bool,
}

impl CheckConfig {
    pub fn parse(value: &str) -> Result<CheckConfig, String> {
        let value = value.trim();
        let mut cfg = CheckConfig::default();
        if value.is_empty() {
            return Ok(cfg);
        }
        for part in value.splitn(3, ';') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!("invalid check option {part:?}"));
            };
            let v = v.trim();
            match k.trim() {
                "skip" if v == "all" => cfg.skip_all = true,
                "skip" => cfg.skip = v.split(',').map(|r| r.trim().to_string()).collect(),
                // Experimental rules are not implemented; accepting the key
                // keeps such files working.
                "experimental" => {}
                "error" => {
                    cfg.error = match v.to_ascii_lowercase().as_str() {
                        "1" | "t" | "true" => true,
                        "0" | "f" | "false" => false,
                        _ => {
                            return Err(format!(
                                "failed to parse check option {part:?}: use true or false"
                            ))
                        }
                    }
                }
                other => return Err(format!("invalid check option {other:?}")),
            }
        }
        Ok(cfg)
    }

    pub fn skips(&self, rule: &str) -> bool {
        self.skip_all || self.skip.iter().any(|r| r == rule)
    }
}

fn url(rule: &str) -> String {
    let slug: String = rule
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let mut v = Vec::new();
            if c.is_ascii_uppercase() && i > 0 {
                v.push('-');
            }
            v.push(c.to_ascii_lowercase());
            v
        })
        .collect();
    // BuildKit's slug for JSONArgsRecommended is json-args-recommended.
    let slug = slug.replace("j-s-o-n", "json");
    format!("https://docs.docker.com/go/dockerfile/rule/{slug}/")
}

fn warn(df: &Dockerfile, rule: &str, msg: String, span: Span, label: &str) -> Diag {
    Diag::warning(rule, msg).with_url(url(rule)).with_label(label).at(span).in_file(&df.source)
}

fn word_span(df: &Dockerfile, span: Span, needle: &str) -> Span {
    let text = &df.source.text[span.offset..span.offset + span.len];
    match text.find(needle).filter(|_| !needle.is_empty()) {
        Some(i) => span.sub(span.offset + i, needle.len(), &df.source.text),
        None => span,
    }
}

fn is_secret_name(name: &str) -> bool {
    // BuildKit: (?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pass|pword|passwd|secret|token)(?:_|$)
    // with an allow-list for public keys and similar.
    let lower = name.to_ascii_lowercase();
    if ["public", "file", "path", "dir", "url", "id", "length", "version"]
        .iter()
        .any(|a| lower.split('_').any(|p| p == *a))
    {
        return false;
    }
    lower.split('_').any(|p| {
        matches!(
            p,
            "apikey"
                | "auth"
                | "credential"
                | "credentials"
                | "key"
                | "password"
                | "pass"
                | "pword"
                | "passwd"
                | "secret"
                | "token"
        )
    })
}

/// All build checks for `df`, sorted by line. `scope` supplies the
/// variable-related warnings.
pub fn run_checks(
    df: &Dockerfile,
    scope: &Scope,
    opts: &BuildOptions,
    needed: &[usize],
) -> Vec<Diag> {
    let mut out: Vec<Diag> = df.parse_warnings.clone();
    out.extend(scope.warnings.iter().filter(|w| w.severity == crate::Severity::Warning).cloned());

    // ConsistentInstructionCasing: compare with the majority.
    let mut upper = 0usize;
    let mut lower = 0usize;
    let mut keywords: Vec<(String, Span)> =
        df.stages.iter().map(|s| (s.from_keyword.clone(), s.span)).collect();
    for s in &df.stages {
        keywords.extend(s.instructions.iter().map(|i| (i.keyword.clone(), i.span)));
    }
    for (k, _) in &keywords {
        if *k == k.to_uppercase() {
            upper += 1;
        } else if *k == k.to_lowercase() {
            lower += 1;
        }
    }
    let majority_upper = upper >= lower;
    for (k, span) in &keywords {
        let ok = if majority_upper { *k == k.to_uppercase() } else { *k == k.to_lowercase() };
        if !ok {
            let casing = if majority_upper { "uppercase" } else { "lowercase" };
            out.push(warn(
                df,
                "ConsistentInstructionCasing",
                format!("Command '{k}' should match the case of the command majority ({casing})"),
                word_span(df, *span, k),
                "casing differs from the other instructions",
            ));
        }
    }

    let mut seen_names: Vec<&str> = Vec::new();
    for stage in &df.stages {
        // FromAsCasing
        if let Some(as_kw) = &stage.as_keyword {
            let from = &stage.from_keyword;
            let from_upper = *from == from.to_uppercase();
            let as_upper = *as_kw == as_kw.to_uppercase();
            let as_lower = *as_kw == as_kw.to_lowercase();
            if (from_upper && !as_upper)
                || (!from_upper && *from == from.to_lowercase() && !as_lower)
            {
                out.push(warn(
                    df,
                    "FromAsCasing",
                    format!("'{as_kw}' and '{from}' keywords' casing do not match"),
                    word_span(df, stage.span, &format!(" {as_kw} ")),
                    "write AS in the same case as FROM",
                ));
            }
        }
        if let (Some(name), Some(written)) = (&stage.name, &stage.name_as_written) {
            if written != name {
                out.push(warn(
                    df,
                    "StageNameCasing",
                    format!("Stage name '{written}' should be lowercase"),
                    word_span(df, stage.span, written),
                    "stage names are lowercase",
                ));
            }
            if seen_names.contains(&name.as_str()) {
                out.push(warn(
                    df,
                    "DuplicateStageName",
                    format!("Duplicate stage name {name:?}, stage names should be unique"),
                    word_span(df, stage.span, written),
                    "already used by an earlier stage",
                ));
            }
            if matches!(name.as_str(), "scratch" | "context") {
                out.push(warn(
                    df,
                    "ReservedStageName",
                    format!("Stage name should not use the same name as reserved stage {name:?}"),
                    word_span(df, stage.span, written),
                    "reserved name",
                ));
            }
            seen_names.push(name);
        }
        if let Some(p) = &stage.platform {
            if p == "$TARGETPLATFORM" || p == "${TARGETPLATFORM}" {
                out.push(warn(
                    df,
                    "RedundantTargetPlatform",
                    format!("Setting platform to predefined {p} in FROM is redundant as this is the default behavior"),
                    word_span(df, stage.span, p),
                    "redundant",
                ));
            } else if !p.contains('$') {
                out.push(warn(
                    df,
                    "FromPlatformFlagConstDisallowed",
                    format!("FROM --platform flag should not use constant value {p:?}"),
                    word_span(df, stage.span, p),
                    "constant platform",
                ));
            }
        }

        let mut absolute_workdir = false;
        let mut counts: [(usize, &str, Option<Span>); 3] =
            [(0, "CMD", None), (0, "ENTRYPOINT", None), (0, "HEALTHCHECK", None)];
        for instr in &stage.instructions {
            match &instr.kind {
                InstructionKind::Cmd(c) | InstructionKind::Entrypoint(c) => {
                    let idx = if matches!(instr.kind, InstructionKind::Cmd(_)) { 0 } else { 1 };
                    counts[idx].0 += 1;
                    if counts[idx].0 > 1 {
                        counts[idx].2 = counts[idx].2.or(Some(instr.span));
                    }
                    if let ShellOrExec::Shell(_) = c {
                        let name = instr.name();
                        out.push(
                            warn(
                                df,
                                "JSONArgsRecommended",
                                format!("JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"),
                                instr.span,
                                "shell form",
                            )
                            .with_help(format!("write {name} [\"executable\", \"arg\"...]")),
                        );
                    }
                }
                InstructionKind::Healthcheck { .. } => {
                    counts[2].0 += 1;
                    if counts[2].0 > 1 {
                        counts[2].2 = counts[2].2.or(Some(instr.span));
                    }
                }
                InstructionKind::Maintainer(_) => out.push(
                    warn(
                        df,
                        "MaintainerDeprecated",
                        "Maintainer instruction is deprecated in favor of using label".to_string(),
                        instr.span,
                        "deprecated",
                    )
                    .with_help("use LABEL org.opencontainers.image.authors=\"...\""),
                ),
                InstructionKind::Workdir(w) => {
                    if w.starts_with('/') || w.starts_with('$') {
                        absolute_workdir = true;
                    } else if !absolute_workdir {
                        out.push(warn(
                            df,
                            "WorkdirRelativePath",
                            format!("Relative workdir {w:?} can have unexpected results if the base image changes"),
                            word_span(df, instr.span, w),
                            "relative path",
                        ));
                    }
                }
                InstructionKind::Env { vars, legacy } => {
                    if *legacy {
                        out.push(warn(
                            df,
                            "LegacyKeyValueFormat",
                            "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format".to_string(),
                            instr.span,
                            "legacy format",
                        ));
                    }
                    for kv in vars {
                        if is_secret_name(&kv.key) {
                            out.push(warn(
                                df,
                                "SecretsUsedInArgOrEnv",
                                format!("Do not use ARG or ENV instructions for sensitive data (ENV {:?})", kv.key),
                                word_span(df, instr.span, &kv.key),
                                "looks like a secret",
                            ).with_help("use RUN --mount=type=secret instead"));
                        }
                    }
                }
                InstructionKind::Label { legacy: true, .. } => out.push(warn(
                    df,
                    "LegacyKeyValueFormat",
                    "\"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format".to_string(),
                    instr.span,
                    "legacy format",
                )),
                InstructionKind::Arg(decls) => {
                    for d in decls {
                        if is_secret_name(&d.name) {
                            out.push(warn(
                                df,
                                "SecretsUsedInArgOrEnv",
                                format!("Do not use ARG or ENV instructions for sensitive data (ARG {:?})", d.name),
                                word_span(df, instr.span, &d.name),
                                "looks like a secret",
                            ).with_help("use RUN --mount=type=secret instead"));
                        }
                    }
                }
                InstructionKind::Expose(ports) => {
                    for p in ports {
                        if let Some((_, proto)) = p.split_once('/') {
                            if proto != proto.to_lowercase() {
                                out.push(warn(
                                    df,
                                    "ExposeProtoCasing",
                                    format!("Defined protocol '{p}' in EXPOSE instruction should be lowercase"),
                                    word_span(df, instr.span, p),
                                    "uppercase protocol",
                                ));
                            }
                        }
                        if p.contains(':') {
                            out.push(warn(
                                df,
                                "ExposeInvalidFormat",
                                format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{p}'"),
                                word_span(df, instr.span, p),
                                "host mapping",
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        for (n, name, span) in counts {
            if n > 1 {
                if let Some(span) = span {
                    out.push(warn(
                        df,
                        "MultipleInstructionsDisallowed",
                        format!("Multiple {name} instructions should not be used in the same stage because only the last one will be used"),
                        span,
                        "overrides an earlier one",
                    ));
                }
            }
        }
    }
    for g in &df.global_args {
        if is_secret_name(&g.decl.name) {
            out.push(warn(
                df,
                "SecretsUsedInArgOrEnv",
                format!(
                    "Do not use ARG or ENV instructions for sensitive data (ARG {:?})",
                    g.decl.name
                ),
                word_span(df, g.span, &g.decl.name),
                "looks like a secret",
            ));
        }
    }
    let unused = scope.unused_build_args(opts, needed);
    if !unused.is_empty() {
        out.push(
            Diag::warning(
                "UnusedBuildArgs",
                format!("One or more build-args [{}] were not consumed", unused.join(" ")),
            )
            .in_file(&df.source)
            .with_help(
                "declare them with ARG in a stage the target needs, or drop the --build-arg",
            ),
        );
    }
    out.sort_by_key(|d| d.span.map(|s| s.offset).unwrap_or(usize::MAX));
    out
}
