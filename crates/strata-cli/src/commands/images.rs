//! `strata images`: Docker's `docker images` (columns, filters, formats).

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use miette::{miette, IntoDiagnostic, Result};
use serde_json::{json, Value};
use strata_oci::Reference;
use strata_store::{ImageRecord, Store};

use super::{now, parse_time, print_formatted, Context};

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only images whose name matches REPOSITORY[:TAG] (globs allowed)
    pub reference: Option<String>,
    /// Show all images (there are no intermediate images to hide yet)
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter output: dangling=true|false, reference=PATTERN, before=IMAGE, since=IMAGE,
    /// label=KEY[=VALUE]
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Format output with a Go template, `table`, `table TEMPLATE` or `json`
    #[arg(long)]
    pub format: Option<String>,
}

const TABLE: &str = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
const TABLE_DIGESTS: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
const HEADERS: &[(&str, &str)] = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("ID", "IMAGE ID"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("Containers", "CONTAINERS"),
];

/// Docker's `reference=` matching: path.Match globs on the familiar name, with or without
/// the tag.
fn reference_matches(pattern: &str, r: &Reference) -> bool {
    let options = glob::MatchOptions { require_literal_separator: true, ..Default::default() };
    let Ok(p) = glob::Pattern::new(pattern) else { return false };
    p.matches_with(&r.familiar(), options) || p.matches_with(&r.familiar_name(), options)
}

enum Filter {
    Dangling(bool),
    Reference(String),
    Before(i64),
    Since(i64),
    Label(String, Option<String>),
}

fn parse_filters(store: &Store, raw: &[String], images: &[ImageRecord]) -> Result<Vec<Filter>> {
    let created_of = |name: &str| -> Result<i64> {
        let i = strata_store::images::find(images, name)
            .into_diagnostic()?
            .ok_or_else(|| miette!("No such image: {name}"))?;
        Ok(parse_time(images[i].created.as_deref()).unwrap_or(0))
    };
    let _ = store;
    raw.iter()
        .map(|f| {
            let (key, value) = f.split_once('=').ok_or_else(|| {
                miette!("bad format of filter {f:?} (expected name=value)")
            })?;
            Ok(match key {
                "dangling" => match value {
                    "true" | "1" => Filter::Dangling(true),
                    "false" | "0" => Filter::Dangling(false),
                    _ => return Err(miette!("invalid filter 'dangling={value}': use true or false")),
                },
                "reference" => Filter::Reference(value.to_string()),
                "before" => Filter::Before(created_of(value)?),
                "since" => Filter::Since(created_of(value)?),
                "label" => match value.split_once('=') {
                    Some((k, v)) => Filter::Label(k.to_string(), Some(v.to_string())),
                    None => Filter::Label(value.to_string(), None),
                },
                other => {
                    return Err(miette!(
                        "invalid filter '{other}': supported filters are dangling, reference, before, since and label"
                    ))
                }
            })
        })
        .collect()
}

pub fn labels(store: &Store, image: &ImageRecord) -> BTreeMap<String, String> {
    store
        .blobs()
        .read(&image.id)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|c| c["config"]["Labels"].as_object().cloned())
        .map(|m| {
            m.into_iter().map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string())).collect()
        })
        .unwrap_or_default()
}

pub fn image_size(size: u64) -> String {
    strata_format::human_size_with_precision(size as f64, 3)
}

pub fn run(ctx: &Context, args: ImagesArgs) -> Result<ExitCode> {
    let store = ctx.store_with_sizes()?;
    let images = store.images().into_diagnostic()?;
    let mut filters = parse_filters(&store, &args.filters, &images)?;
    if let Some(r) = &args.reference {
        filters.push(Filter::Reference(r.clone()));
    }
    let now = now();
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    for image in &images {
        let created = parse_time(image.created.as_deref()).unwrap_or(0);
        let mut keep = true;
        let mut reference_patterns = Vec::new();
        for f in &filters {
            keep &= match f {
                Filter::Dangling(d) => image.tags.is_empty() == *d,
                Filter::Before(t) => created < *t,
                Filter::Since(t) => created > *t,
                Filter::Label(k, v) => {
                    let labels = labels(&store, image);
                    match v {
                        Some(v) => labels.get(k) == Some(v),
                        None => labels.contains_key(k),
                    }
                }
                Filter::Reference(p) => {
                    reference_patterns.push(p.as_str());
                    true
                }
            };
        }
        if !keep {
            continue;
        }
        let tags: Vec<&Reference> = image
            .tags
            .iter()
            .filter(|t| reference_patterns.iter().all(|p| reference_matches(p, t)))
            .collect();
        let digests: Vec<&Reference> = image
            .repo_digests
            .iter()
            .filter(|t| reference_patterns.iter().all(|p| reference_matches(p, t)))
            .collect();
        if !reference_patterns.is_empty() && tags.is_empty() && digests.is_empty() {
            continue;
        }
        let id = if args.no_trunc { image.id.to_string() } else { image.id.short().to_string() };
        if !ids.contains(&id) {
            ids.push(id.clone());
        }
        let size = image_size(image.size);
        let created_at = strata_format::go_time_string_unix(created).unwrap_or_default();
        let row = |repo: &str, tag: &str, digest: &str| {
            json!({
                "Containers": "N/A",
                "CreatedAt": created_at,
                "CreatedSince": strata_format::created_since(created, now),
                "Digest": digest,
                "ID": id,
                "Repository": repo,
                "SharedSize": "N/A",
                "Size": size,
                "Tag": tag,
                "UniqueSize": "N/A",
                "VirtualSize": size,
            })
        };
        if tags.is_empty() && digests.is_empty() {
            rows.push(row("<none>", "<none>", "<none>"));
            continue;
        }
        // One row per tag; a repository known only by digest gets a `<none>` tag row.
        let mut repos: BTreeMap<String, (Vec<&Reference>, Option<String>)> = BTreeMap::new();
        for t in &tags {
            repos.entry(t.familiar_name()).or_default().0.push(t);
        }
        for d in &digests {
            let e = repos.entry(d.familiar_name()).or_default();
            e.1.get_or_insert_with(|| d.digest().map(|d| d.to_string()).unwrap_or_default());
        }
        for (repo, (tags, digest)) in repos {
            let digest = digest.unwrap_or_else(|| "<none>".to_string());
            if tags.is_empty() {
                rows.push(row(&repo, "<none>", &digest));
            }
            for t in tags {
                rows.push(row(&repo, t.tag().unwrap_or("<none>"), &digest));
            }
        }
    }
    if args.quiet {
        for id in ids {
            println!("{id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let default = if args.digests { TABLE_DIGESTS } else { TABLE };
    print_formatted(args.format.as_deref(), default, HEADERS, &rows)?;
    Ok(ExitCode::SUCCESS)
}
