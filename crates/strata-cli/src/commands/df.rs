//! `strata system df`: disk usage as Docker reports it.

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Args;
use miette::{IntoDiagnostic, Result};
use serde_json::json;

use super::images::image_size;
use super::{now, parse_time, print_formatted, Context};

#[derive(Args, Debug)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    pub verbose: bool,
    /// Format output with a Go template
    #[arg(long)]
    pub format: Option<String>,
}

const SUMMARY: &str = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";
const SUMMARY_HEADERS: &[(&str, &str)] = &[
    ("Type", "TYPE"),
    ("TotalCount", "TOTAL"),
    ("Active", "ACTIVE"),
    ("Size", "SIZE"),
    ("Reclaimable", "RECLAIMABLE"),
];
const CACHE: &str = "table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}";
const CACHE_HEADERS: &[(&str, &str)] = &[
    ("ID", "CACHE ID"),
    ("CacheType", "CACHE TYPE"),
    ("Size", "SIZE"),
    ("CreatedSince", "CREATED"),
    ("LastUsedSince", "LAST USED"),
    ("UsageCount", "USAGE"),
    ("Shared", "SHARED"),
];
const VERBOSE: &str = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}";
const VERBOSE_HEADERS: &[(&str, &str)] = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("CreatedSince", "CREATED"),
    ("Size", "SIZE"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("Containers", "CONTAINERS"),
];

pub fn run(ctx: &Context, args: DfArgs) -> Result<ExitCode> {
    let store = ctx.store_with_sizes()?;
    let images = store.images().into_diagnostic()?;
    // A layer is shared when more than one image uses it.
    let mut users: HashMap<&strata_oci::Digest, (usize, u64)> = HashMap::new();
    for image in &images {
        for l in &image.layers {
            let e = users.entry(&l.digest).or_insert((0, l.content_size));
            e.0 += 1;
        }
    }
    let total: u64 = users.values().map(|(_, size)| size).sum();
    // The build cache: an entry whose layer an image has too is shared, not reclaimable.
    let cache = store.cache_entries().into_diagnostic()?;
    let cache_size: u64 = cache.iter().map(|e| e.size).sum();
    let cache_free: u64 = cache.iter().filter(|e| !e.in_use).map(|e| e.size).sum();
    if !args.verbose {
        let pct = if total == 0 { 0 } else { 100 };
        let rows = vec![
            json!({"Type": "Images", "TotalCount": images.len(), "Active": 0, "Size": image_size(total),
                   "Reclaimable": format!("{} ({pct}%)", image_size(total))}),
            json!({"Type": "Containers", "TotalCount": 0, "Active": 0, "Size": "0B", "Reclaimable": "0B"}),
            json!({"Type": "Local Volumes", "TotalCount": 0, "Active": 0, "Size": "0B", "Reclaimable": "0B"}),
            json!({"Type": "Build Cache", "TotalCount": cache.len(), "Active": 0,
                "Size": image_size(cache_size), "Reclaimable": image_size(cache_free)}),
        ];
        print_formatted(args.format.as_deref(), SUMMARY, SUMMARY_HEADERS, &rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = now();
    let mut rows = Vec::new();
    for image in &images {
        let shared: u64 =
            image.layers.iter().filter(|l| users[&l.digest].0 > 1).map(|l| l.content_size).sum();
        let created = parse_time(image.created.as_deref()).unwrap_or(0);
        let names: Vec<(String, String)> = if image.tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            image
                .tags
                .iter()
                .map(|t| (t.familiar_name(), t.tag().unwrap_or("<none>").to_string()))
                .collect()
        };
        for (repo, tag) in names {
            rows.push(json!({
                "Repository": repo, "Tag": tag, "ID": image.id.short(),
                "CreatedSince": strata_format::created_since(created, now),
                "Size": image_size(image.size), "SharedSize": image_size(shared),
                "UniqueSize": image_size(image.size - shared.min(image.size)), "Containers": 0,
            }));
        }
    }
    println!("Images space usage:\n");
    print_formatted(None, VERBOSE, VERBOSE_HEADERS, &rows)?;
    println!("\nContainers space usage:\n");
    println!(
        "CONTAINER ID   IMAGE     COMMAND   LOCAL VOLUMES   SIZE      CREATED   STATUS    NAMES"
    );
    println!("\nLocal Volumes space usage:\n");
    println!("VOLUME NAME   LINKS     SIZE");
    println!("\nBuild cache usage: {}\n", image_size(cache_size));
    let rows: Vec<serde_json::Value> = cache
        .iter()
        .map(|e| {
            let created = parse_time(Some(&e.created)).unwrap_or(0);
            json!({
                "ID": &e.key[..e.key.len().min(25)], "CacheType": "regular",
                "Size": image_size(e.size),
                "CreatedSince": strata_format::created_since(created, now),
                "LastUsedSince": strata_format::created_since(e.last_used, now),
                "UsageCount": 1, "Shared": e.in_use,
            })
        })
        .collect();
    print_formatted(None, CACHE, CACHE_HEADERS, &rows)?;
    Ok(ExitCode::SUCCESS)
}
