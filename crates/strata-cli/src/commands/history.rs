//! `strata history`: the image config's history, newest first, with layer sizes.

use std::process::ExitCode;

use clap::Args;
use miette::{IntoDiagnostic, Result};
use serde_json::{json, Value};

use super::{now, parse_time, print_formatted, Context};

#[derive(Args, Debug)]
pub struct HistoryArgs {
    pub image: String,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub human: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Format output with a Go template
    #[arg(long)]
    pub format: Option<String>,
}

const TABLE: &str = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";
const HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

pub fn run(ctx: &Context, args: HistoryArgs) -> Result<ExitCode> {
    let store = ctx.store_with_sizes()?;
    let image = store.resolve(&args.image).into_diagnostic()?;
    let config: Value = serde_json::from_slice(&store.blobs().read(&image.id).into_diagnostic()?)
        .into_diagnostic()?;
    let history = config["history"].as_array().cloned().unwrap_or_default();
    let now = now();
    // Non-empty history entries pair with layers in order.
    let mut layers = image.layers.iter();
    let mut rows: Vec<Value> = history
        .iter()
        .map(|h| {
            let empty = h["empty_layer"].as_bool().unwrap_or(false);
            let size = if empty { 0 } else { layers.next().map(|l| l.content_size).unwrap_or(0) };
            let created = parse_time(h["created"].as_str());
            let created_by = h["created_by"].as_str().unwrap_or("");
            json!({
                "ID": "<missing>",
                "CreatedSince": match created {
                    Some(t) if args.human => strata_format::created_since(t, now),
                    Some(t) => strata_format::rfc3339_unix(t).unwrap_or_default(),
                    None => "N/A".into(),
                },
                "CreatedAt": created.and_then(|t| strata_format::rfc3339_unix(t).ok()).unwrap_or_default(),
                "CreatedBy": strata_format::history_created_by(created_by, args.no_trunc),
                "Size": if args.human { super::images::image_size(size) } else { size.to_string() },
                "Comment": h["comment"].as_str().unwrap_or(""),
            })
        })
        .collect();
    rows.reverse();
    if let Some(first) = rows.first_mut() {
        first["ID"] =
            json!(if args.no_trunc { image.id.to_string() } else { image.id.short().to_string() });
    }
    if args.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or_default());
        }
        return Ok(ExitCode::SUCCESS);
    }
    print_formatted(args.format.as_deref(), TABLE, HEADERS, &rows)?;
    Ok(ExitCode::SUCCESS)
}
