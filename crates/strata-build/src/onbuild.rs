//! ONBUILD triggers. A stage built on an image (or on another stage) whose config lists
//! `OnBuild` triggers runs them first, right after its FROM, as if they were written there;
//! then they are cleared, so grandchildren do not run them again (Docker's rule, and
//! BuildKit's since v0.17 for stages too).
//!
//! The triggers are parsed as a Dockerfile of their own, so their instructions carry spans
//! into that text; an error in one is reported at the child's FROM line, naming the trigger.

use strata_dockerfile::{parse_dockerfile, Diag, Dockerfile, InstructionKind};
use strata_oci::config::ImageConfig;

use crate::{instruction_text, BuildError};

/// The `OnBuild` list of an image config.
pub(crate) fn image_triggers(config: &ImageConfig) -> Vec<String> {
    config
        .json()
        .get("config")
        .and_then(|c| c.get("OnBuild"))
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The triggers a stage's own ONBUILD instructions register (what its image's config will
/// list), for a later stage built `FROM` it.
pub(crate) fn stage_triggers(df: &Dockerfile, stage: usize) -> Vec<String> {
    df.stages[stage]
        .instructions
        .iter()
        .filter(|i| matches!(i.kind, InstructionKind::Onbuild(_)))
        .map(|i| {
            let text = instruction_text(df, i);
            text.split_once(char::is_whitespace)
                .map(|(_, t)| t.trim().to_string())
                .unwrap_or_default()
        })
        .collect()
}

/// The triggers as a Dockerfile (one stage, its instructions the triggers in order), or
/// `None` when there are none. `origin` names where they come from, for errors.
pub(crate) fn parse_triggers(
    triggers: &[String],
    origin: &str,
) -> Result<Option<Dockerfile>, Diag> {
    if triggers.is_empty() {
        return Ok(None);
    }
    let mut text = String::from("FROM scratch\n");
    for t in triggers {
        text.push_str(t);
        text.push('\n');
    }
    parse_dockerfile(&format!("ONBUILD triggers of {origin}"), &text).map(Some)
}

/// The (name, value as written) pairs the triggers' ENV instructions set, in order.
pub(crate) fn env_pairs(triggers: &Dockerfile) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for ins in &triggers.stages[0].instructions {
        if let InstructionKind::Env { vars, .. } = &ins.kind {
            out.extend(vars.iter().map(|kv| (kv.key.clone(), kv.value.clone())));
        }
    }
    out
}

/// A trigger's failure, re-pointed at the child's FROM line (the trigger's own span is in
/// the trigger text, not in the user's Dockerfile).
pub(crate) fn at_from(e: BuildError, trigger: &str, df: &Dockerfile, stage: usize) -> BuildError {
    let BuildError::Dockerfile(d) = e else { return e };
    let mut out = Diag::error(&d.code, format!("ONBUILD trigger `{trigger}`: {}", d.message))
        .at(df.stages[stage].span)
        .in_file(&df.source);
    if let Some(h) = &d.help {
        out = out.with_help(h.clone());
    }
    BuildError::Dockerfile(out)
}
