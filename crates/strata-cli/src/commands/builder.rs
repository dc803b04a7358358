//! `strata builder du` and `strata builder prune`: the build cache, as `docker builder`.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use miette::{miette, IntoDiagnostic, Result};
use strata_format::human_size;

#[derive(Subcommand, Debug)]
pub enum BuilderCommand {
    /// Remove build cache
    Prune(BuilderPruneArgs),
    /// Show the disk usage of the build cache
    Du(BuilderDuArgs),
}

#[derive(Args, Debug)]
pub struct BuilderPruneArgs {
    /// Remove all unused build cache, not just the entries no image shares
    #[arg(short, long)]
    pub all: bool,
    /// Provide filter values (until=DURATION|TIMESTAMP: only entries last used before)
    #[arg(long = "filter", value_name = "until=24h")]
    pub filters: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct BuilderDuArgs {
    /// Show every entry's full key and creation time
    #[arg(long)]
    pub verbose: bool,
    /// Provide filter values (until=DURATION|TIMESTAMP)
    #[arg(long = "filter", value_name = "until=24h")]
    pub filters: Vec<String>,
}

pub fn run(ctx: &super::Context, cmd: BuilderCommand) -> Result<ExitCode> {
    match cmd {
        BuilderCommand::Prune(a) => prune(ctx, a),
        BuilderCommand::Du(a) => du(ctx, a),
    }
}

/// The `until` filter as unix seconds: entries last used before it match.
fn until(filters: &[String]) -> Result<Option<i64>> {
    let mut out = None;
    for f in filters {
        let (k, v) = f.split_once('=').ok_or_else(|| {
            miette!("bad filter {f:?}: use KEY=VALUE (the build cache supports until=DURATION)")
        })?;
        if k != "until" {
            return Err(miette!("invalid filter {k:?}: the build cache supports until="));
        }
        out = Some(parse_until(v).ok_or_else(|| {
            miette!(
                "until={v:?}: give a duration (24h, 90m, 1h30m) or a timestamp (unix seconds \
                 or RFC 3339)"
            )
        })?);
    }
    Ok(out)
}

/// Docker's `until`: a Go duration before now, unix seconds, or an RFC 3339 time.
fn parse_until(v: &str) -> Option<i64> {
    let now = chrono::Utc::now().timestamp();
    if let Some(d) = strata_dockerfile::instructions::parse_go_duration(v) {
        return Some(now - d.as_secs() as i64);
    }
    if let Ok(n) = v.parse::<f64>() {
        return Some(n as i64);
    }
    chrono::DateTime::parse_from_rfc3339(v).ok().map(|t| t.timestamp())
}

fn prune(ctx: &super::Context, args: BuilderPruneArgs) -> Result<ExitCode> {
    let before = until(&args.filters)?;
    if !args.force {
        let what = if args.all { "all build cache" } else { "all dangling build cache" };
        eprint!("WARNING! This will remove {what}. Are you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).into_diagnostic()?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let store = ctx.store()?;
    let keys = store.cache_prune_matching(args.all, before).into_diagnostic()?;
    let freed = store.gc().into_diagnostic()?.bytes_freed;
    let mut out = std::io::stdout().lock();
    if !keys.is_empty() {
        writeln!(out, "Deleted build cache objects:").into_diagnostic()?;
        for k in &keys {
            writeln!(out, "{}", &k[..k.len().min(25)]).into_diagnostic()?;
        }
        writeln!(out).into_diagnostic()?;
    }
    writeln!(out, "Total reclaimed space: {}", human_size(freed as f64)).into_diagnostic()?;
    Ok(ExitCode::SUCCESS)
}

fn du(ctx: &super::Context, args: BuilderDuArgs) -> Result<ExitCode> {
    let before = until(&args.filters)?.unwrap_or(i64::MAX);
    let store = ctx.store()?;
    let entries: Vec<_> = store
        .cache_entries()
        .into_diagnostic()?
        .into_iter()
        .filter(|e| e.last_used < before)
        .collect();
    let now = chrono::Utc::now().timestamp();
    let mut out = std::io::stdout().lock();
    let (mut total, mut reclaimable, mut shared) = (0u64, 0u64, 0u64);
    let mut table = strata_format::TabWriter::docker();
    if !args.verbose {
        table.write_str("ID\tRECLAIMABLE\tSIZE\tLAST ACCESSED\n");
    }
    for e in &entries {
        total += e.size;
        if e.in_use {
            shared += e.size;
        } else {
            reclaimable += e.size;
        }
        let ago = strata_format::human_duration(std::time::Duration::from_secs(
            (now - e.last_used).max(0) as u64,
        ));
        if args.verbose {
            let layer = e.layer.as_ref().map(|d| d.to_string()).unwrap_or_else(|| "-".into());
            table.write_str(&format!("ID:\t{}\n", e.key));
            table.write_str(&format!("Layer:\t{layer}\n"));
            table.write_str(&format!("Created at:\t{}\n", e.created));
            table.write_str(&format!("Reclaimable:\t{}\n", !e.in_use));
            table.write_str(&format!("Size:\t{}\n", human_size(e.size as f64)));
            table.write_str(&format!("Last used:\t{ago} ago\n\n"));
        } else {
            table.write_str(&format!(
                "{}\t{}\t{}\t{} ago\n",
                &e.key[..e.key.len().min(25)],
                !e.in_use,
                human_size(e.size as f64),
                ago
            ));
        }
    }
    out.write_all(table.finish().as_bytes()).into_diagnostic()?;
    writeln!(out, "Shared:\t\t{}", human_size(shared as f64)).into_diagnostic()?;
    writeln!(out, "Private:\t{}", human_size(reclaimable as f64)).into_diagnostic()?;
    writeln!(out, "Reclaimable:\t{}", human_size(reclaimable as f64)).into_diagnostic()?;
    writeln!(out, "Total:\t\t{}", human_size(total as f64)).into_diagnostic()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_and_timestamps() {
        let ago = |v| parse_until(v).map(|t| chrono::Utc::now().timestamp() - t);
        assert!(ago("24h").is_some_and(|s| (86_399..=86_401).contains(&s)));
        assert!(ago("1h30m").is_some_and(|s| (5_399..=5_401).contains(&s)));
        assert!(parse_until("10d").is_none(), "Go has no day unit");
        assert_eq!(parse_until("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_until("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert!(until(&["label=x".into()]).is_err());
        assert!(until(&["until=soon".into()]).is_err());
    }
}
