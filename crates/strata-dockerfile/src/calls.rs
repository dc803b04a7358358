//! `strata build --call=outline|targets|check`: the reports
//! `docker buildx build --call=...` prints, computed without building.
//! Layouts follow BuildKit's printers (text/tabwriter tables, the lint
//! source excerpt with `>>>` markers, buildx's "Check complete" line).

use std::collections::BTreeMap;

use crate::checks::{run_checks, CheckConfig};
use crate::diagnostics::{Diag, Severity};
use crate::graph::{stages_needed_in, target_index};
use crate::model::Dockerfile;
use crate::scope::{analyze, BuildOptions, PLATFORM_ARGS};

/// Go's `text/tabwriter` with padding `pad` and space padding: every
/// tab-terminated cell is padded to its column's width plus `pad`.
fn tabwrite(rows: &[Vec<String>], pad: usize) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            let w = c.chars().count();
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(w);
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            out.push_str(c);
            if i + 1 < r.len() {
                let fill = widths[i] + pad - c.chars().count();
                out.push_str(&" ".repeat(fill));
            }
        }
        out.push('\n');
    }
    out
}

/// One build arg in the outline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineArg {
    pub name: String,
    pub value: String,
    pub description: String,
}

/// A secret or ssh socket the target uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineMount {
    pub name: String,
    pub required: bool,
}

/// What `--call=outline` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outline {
    /// Target stage name (empty for an unnamed default stage).
    pub name: String,
    pub description: String,
    pub args: Vec<OutlineArg>,
    pub secrets: Vec<OutlineMount>,
    pub ssh: Vec<OutlineMount>,
}

impl Outline {
    /// BuildKit's `PrintOutline` layout.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.name.is_empty() || !self.description.is_empty() {
            let name = if self.name.is_empty() { "(default)" } else { &self.name };
            let mut rows = vec![vec!["TARGET:".to_string(), name.to_string()]];
            if !self.description.is_empty() {
                rows.push(vec!["DESCRIPTION:".to_string(), self.description.clone()]);
            }
            out.push_str(&tabwrite(&rows, 1));
            out.push('\n');
        }
        if !self.args.is_empty() {
            let mut rows = vec![vec!["BUILD ARG".into(), "VALUE".into(), "DESCRIPTION".into()]];
            rows.extend(
                self.args
                    .iter()
                    .map(|a| vec![a.name.clone(), a.value.clone(), a.description.clone()]),
            );
            out.push_str(&tabwrite(&rows, 3));
            out.push('\n');
        }
        for (title, list) in [("SECRET", &self.secrets), ("SSH", &self.ssh)] {
            if list.is_empty() {
                continue;
            }
            let mut rows = vec![vec![title.to_string(), "REQUIRED".to_string()]];
            rows.extend(list.iter().map(|m| {
                vec![m.name.clone(), if m.required { "true".into() } else { String::new() }]
            }));
            out.push_str(&tabwrite(&rows, 3));
            out.push('\n');
        }
        out
    }
}

/// Compute the outline of `target` (default: the last stage).
pub fn outline(
    df: &Dockerfile,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
) -> Result<Outline, Diag> {
    let opts = BuildOptions::with_build_args(build_args);
    let scope = analyze(df, &opts);
    if let Some(e) = scope.warnings.iter().find(|w| w.severity == Severity::Error) {
        return Err(e.clone());
    }
    let needed = stages_needed_in(df, &scope, target)?;
    let root = target_index(df, target)?;
    let stage = &df.stages[root];

    // Args in source order: global ones the needed FROM lines use, then each
    // needed stage's ARGs; a stage ARG re-declaring a global keeps one row.
    let mut rows: Vec<(usize, OutlineArg)> = Vec::new();
    let add = |offset: usize,
               name: &str,
               value: Option<&String>,
               desc: Option<&String>,
               rows: &mut Vec<(usize, OutlineArg)>| {
        if let Some((_, existing)) = rows.iter_mut().find(|(_, a)| a.name == name) {
            if existing.description.is_empty() {
                existing.description = desc.cloned().unwrap_or_default();
            }
            return;
        }
        rows.push((
            offset,
            OutlineArg {
                name: name.to_string(),
                value: value.cloned().unwrap_or_default(),
                description: desc.cloned().unwrap_or_default(),
            },
        ));
    };
    let mut used_globals: Vec<&str> = Vec::new();
    for i in &needed {
        used_globals.extend(scope.stages[*i].global_args_used.iter().map(String::as_str));
        for a in &scope.stages[*i].args {
            if scope.global_args.iter().any(|g| g.name == a.name) {
                used_globals.push(&a.name);
            }
        }
    }
    // Using a global ARG also uses the ones its default refers to.
    let mut i = 0;
    while i < used_globals.len() {
        let name = used_globals[i];
        if let Some(g) = scope.global_args.iter().find(|g| g.name == name) {
            for d in &g.deps {
                if !used_globals.contains(&d.as_str()) {
                    used_globals.push(d);
                }
            }
        }
        i += 1;
    }
    for g in &scope.global_args {
        if used_globals.contains(&g.name.as_str()) {
            add(g.span.offset, &g.name, g.value.as_ref(), g.description.as_ref(), &mut rows);
        }
    }
    for i in &needed {
        for a in &scope.stages[*i].args {
            let auto_platform = PLATFORM_ARGS.contains(&a.name.as_str())
                && df.stages[*i]
                    .instructions
                    .iter()
                    .all(|ins| !matches!(&ins.kind, crate::InstructionKind::Arg(d) if d.iter().any(|d| d.name == a.name && d.default.is_some())));
            if auto_platform {
                continue;
            }
            add(a.span.offset, &a.name, a.value.as_ref(), a.description.as_ref(), &mut rows);
        }
    }
    rows.sort_by_key(|(o, _)| *o);

    let mut secrets: Vec<OutlineMount> = Vec::new();
    let mut ssh: Vec<OutlineMount> = Vec::new();
    for i in &needed {
        for (src, dst) in
            [(&scope.stages[*i].secrets, &mut secrets), (&scope.stages[*i].ssh, &mut ssh)]
        {
            for m in src {
                match dst.iter_mut().find(|x| x.name == m.name) {
                    Some(x) => x.required |= m.required,
                    None => dst.push(OutlineMount { name: m.name.clone(), required: m.required }),
                }
            }
        }
    }
    Ok(Outline {
        name: stage.name.clone().unwrap_or_default(),
        description: stage.description.clone().unwrap_or_default(),
        args: rows.into_iter().map(|(_, a)| a).collect(),
        secrets,
        ssh,
    })
}

/// `--call=outline` as text.
pub fn call_outline(
    df: &Dockerfile,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
) -> Result<String, Diag> {
    Ok(outline(df, build_args, target)?.render())
}

/// One row of `--call=targets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    pub name: String,
    pub default: bool,
    pub description: String,
    /// The FROM argument as written.
    pub base: String,
    pub platform: Option<String>,
    pub line: usize,
}

/// Every stage, as BuildKit's `ListTargets` gives them: lowercase name
/// (empty when unnamed), the last one marked default.
pub fn targets(df: &Dockerfile) -> Vec<TargetInfo> {
    let last = df.stages.len() - 1;
    df.stages
        .iter()
        .map(|s| TargetInfo {
            name: s.name.clone().unwrap_or_default(),
            default: s.index == last,
            description: s.description.clone().unwrap_or_default(),
            base: s.base.clone(),
            platform: s.platform.clone(),
            line: s.span.start.line,
        })
        .collect()
}

/// `--call=targets` as text (BuildKit's `PrintTargets`).
pub fn call_targets(df: &Dockerfile) -> String {
    let mut rows = vec![vec!["TARGET".to_string(), "DESCRIPTION".to_string()]];
    for t in targets(df) {
        let name = match (t.name.is_empty(), t.default) {
            (true, true) => "(default)".to_string(),
            (false, true) => format!("{} (default)", t.name),
            _ => t.name,
        };
        rows.push(vec![name, t.description]);
    }
    tabwrite(&rows, 1)
}

/// What `--call=check` found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub warnings: Vec<Diag>,
    /// The report in buildx's layout.
    pub text: String,
    /// `# check=error=true`: a normal build must fail on these warnings.
    pub warnings_are_errors: bool,
}

impl CheckReport {
    /// `--call=check` exits non-zero when there is any warning.
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.warnings.is_empty())
    }
}

/// BuildKit's lint source excerpt: `file:line`, a rule, numbered lines with
/// `>>>` on the offending ones, two lines of context.
fn print_source(d: &Diag) -> String {
    let (Some(span), Some(src)) = (d.span, &d.source) else {
        return String::new();
    };
    let lines: Vec<&str> = src.text.split('\n').collect();
    let (first, last) = (span.start.line, span.end.line.max(span.start.line));
    if first < 1 || first > lines.len() {
        return String::new();
    }
    let (mut start, mut end) = (first, last.min(lines.len()));
    let pad = if start == end { 4 } else { 2 };
    let mut p = 0;
    while p < pad {
        if start > 1 {
            start -= 1;
            p += 1;
        }
        if end != lines.len() {
            end += 1;
            p += 1;
        }
        p += 1;
    }
    let mut out = format!("{}:{first}\n--------------------\n", src.name);
    for i in start..=end {
        let marker = if (first..=last).contains(&i) { ">>>" } else { "   " };
        out.push_str(&format!(" {i:>3} | {marker} {}\n", lines[i - 1]));
    }
    out.push_str("--------------------\n");
    out
}

/// `--call=check`: every build check, in buildx's output layout. Errors in
/// the Dockerfile itself (it does not parse, the target is unknown, a
/// cycle) are returned as `Err`.
pub fn call_check(
    df: &Dockerfile,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
) -> Result<CheckReport, Diag> {
    let opts = BuildOptions::with_build_args(build_args);
    let scope = analyze(df, &opts);
    if let Some(e) = scope.warnings.iter().find(|w| w.severity == Severity::Error) {
        return Err(e.clone());
    }
    let needed = stages_needed_in(df, &scope, target)?;
    let config = check_config(df, build_args)?;
    let mut warnings = run_checks(df, &scope, &opts, &needed);
    warnings.retain(|w| !config.skips(&w.code));
    let mut text = String::new();
    match warnings.len() {
        0 => {}
        1 => text.push_str("Check complete, 1 warning has been found!\n"),
        n => text.push_str(&format!("Check complete, {n} warnings have been found!\n")),
    }
    for w in &warnings {
        text.push_str(&format!("\nWARNING: {}", w.code));
        if let Some(u) = &w.url {
            text.push_str(&format!(" - {u}"));
        }
        text.push_str(&format!("\n{}\n", w.message));
        text.push_str(&print_source(w));
    }
    if warnings.is_empty() {
        text.push_str("Check complete, no warnings found.\n");
    }
    Ok(CheckReport { warnings, text, warnings_are_errors: config.error })
}

/// The check configuration: the `BUILDKIT_DOCKERFILE_CHECK` build arg wins
/// over the `# check=` directive.
pub fn check_config(
    df: &Dockerfile,
    build_args: &BTreeMap<String, String>,
) -> Result<CheckConfig, Diag> {
    if let Some(v) = build_args.get("BUILDKIT_DOCKERFILE_CHECK") {
        return CheckConfig::parse(v).map_err(|m| {
            Diag::error("dockerfile::check-config", format!("BUILDKIT_DOCKERFILE_CHECK: {m}"))
                .with_help("use e.g. skip=JSONArgsRecommended,StageNameCasing;error=true")
        });
    }
    let Some(d) = df.directives.iter().find(|d| d.name == "check") else {
        return Ok(CheckConfig::default());
    };
    CheckConfig::parse(&d.value).map_err(|m| {
        let line_start: usize =
            df.source.text.split_inclusive('\n').take(d.line - 1).map(str::len).sum();
        let line_len = df.source.line(d.line).map(str::len).unwrap_or(0);
        Diag::error("dockerfile::check-config", m)
            .at(crate::Span::from_offsets(&df.source.text, line_start, line_start + line_len))
            .in_file(&df.source)
            .with_label("in this check directive")
            .with_help("use e.g. # check=skip=JSONArgsRecommended,StageNameCasing;error=true")
    })
}
