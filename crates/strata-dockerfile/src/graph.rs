//! The stage graph: which stages a target needs, in an order where every
//! stage comes after the stages it depends on.

use crate::diagnostics::Diag;
use crate::model::Dockerfile;
use crate::scope::{analyze, BuildOptions, Scope};

/// Resolve `--target` to a stage index: the last stage when `None`.
pub fn target_index(df: &Dockerfile, target: Option<&str>) -> Result<usize, Diag> {
    let Some(t) = target else {
        return Ok(df.stages.len() - 1);
    };
    let lower = t.to_lowercase();
    if let Some(s) = df.stages.iter().find(|s| s.name.as_deref() == Some(lower.as_str())) {
        return Ok(s.index);
    }
    let mut e =
        Diag::error("dockerfile::unknown-target", format!("target stage {t:?} could not be found"))
            .in_file(&df.source);
    e = match df.suggest_stage(t) {
        Some(s) => e.with_help(format!("did you mean {s:?}?")),
        None => {
            let names: Vec<&str> = df.stages.iter().filter_map(|s| s.name.as_deref()).collect();
            if names.is_empty() {
                e.with_help(
                    "this Dockerfile has no named stages (name one with FROM <image> AS <name>)",
                )
            } else {
                e.with_help(format!("the named stages are: {}", names.join(", ")))
            }
        }
    };
    Err(e)
}

/// The stages needed to build `target` (default: the last stage), in
/// dependency order, using default ARG values.
pub fn stages_needed(df: &Dockerfile, target: Option<&str>) -> Result<Vec<usize>, Diag> {
    let scope = analyze(df, &BuildOptions::default());
    stages_needed_in(df, &scope, target)
}

/// Name of a stage in messages, as BuildKit names it (`stage-N` when
/// unnamed).
fn stage_label(df: &Dockerfile, i: usize) -> String {
    df.stages[i].name_as_written.clone().unwrap_or_else(|| format!("stage-{i}"))
}

/// BuildKit's `validateCircularDependency`: depth-first from every stage
/// in order; the first root whose walk comes back to its own path is
/// reported, with the chain that closes the loop.
pub fn find_cycle(df: &Dockerfile, scope: &Scope) -> Option<(usize, Vec<usize>)> {
    let n = df.stages.len();
    let mut visited = vec![false; n];
    for root in 0..n {
        if visited[root] {
            continue;
        }
        // Explicit stack of (stage, next dependency position).
        let mut on_path = vec![false; n];
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        visited[root] = true;
        on_path[root] = true;
        while let Some(&(stage, pos)) = stack.last() {
            let deps = &scope.stages[stage].deps;
            if pos < deps.len() {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                let dep = deps[pos];
                if on_path[dep] {
                    let mut path: Vec<usize> = stack.iter().map(|(s, _)| *s).collect();
                    path.push(dep);
                    return Some((root, path));
                }
                if !visited[dep] {
                    visited[dep] = true;
                    on_path[dep] = true;
                    stack.push((dep, 0));
                }
            } else {
                on_path[stage] = false;
                stack.pop();
            }
        }
    }
    None
}

/// [`stages_needed`] with a precomputed scope (for given build args).
pub fn stages_needed_in(
    df: &Dockerfile,
    scope: &Scope,
    target: Option<&str>,
) -> Result<Vec<usize>, Diag> {
    if let Some((root, path)) = find_cycle(df, scope) {
        let chain: Vec<String> = path.iter().map(|i| stage_label(df, *i)).collect();
        return Err(Diag::error(
            "dockerfile::cycle",
            format!("circular dependency detected on stage: {}", stage_label(df, root)),
        )
        .at(df.stages[root].span)
        .in_file(&df.source)
        .with_label("this stage depends on itself through others")
        .with_help(format!("dependency chain: {}", chain.join(" -> "))));
    }
    let root = target_index(df, target)?;
    // Post-order depth-first walk: every stage after its dependencies.
    let mut done = vec![false; df.stages.len()];
    let mut order = Vec::new();
    let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
    done[root] = true;
    while let Some(&(stage, pos)) = stack.last() {
        let deps = &scope.stages[stage].deps;
        if pos < deps.len() {
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            let dep = deps[pos];
            if !done[dep] {
                done[dep] = true;
                stack.push((dep, 0));
            }
        } else {
            order.push(stage);
            stack.pop();
        }
    }
    Ok(order)
}
