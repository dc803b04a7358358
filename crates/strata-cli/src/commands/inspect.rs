//! `strata inspect`: Docker's image inspect JSON, and `--format` over it.

use std::process::ExitCode;

use clap::Args;
use miette::{IntoDiagnostic, Result};
use serde_json::{json, Map, Value};
use strata_store::{ImageRecord, Store, StoreError};

use super::Context;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Images to inspect (name, name:tag, name@digest or ID)
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Format the output using the given Go template
    #[arg(short, long)]
    pub format: Option<String>,
}

/// The keys of Docker's container config, in Docker's order, with its defaults: Docker
/// prints all of them, so we do too, whatever subset the image config holds.
type DefaultValue = fn() -> Value;
const CONFIG_KEYS: &[(&str, DefaultValue)] = &[
    ("Hostname", || json!("")),
    ("Domainname", || json!("")),
    ("User", || json!("")),
    ("AttachStdin", || json!(false)),
    ("AttachStdout", || json!(false)),
    ("AttachStderr", || json!(false)),
    ("ExposedPorts", || Value::Null),
    ("Tty", || json!(false)),
    ("OpenStdin", || json!(false)),
    ("StdinOnce", || json!(false)),
    ("Env", || Value::Null),
    ("Cmd", || Value::Null),
    ("Healthcheck", || Value::Null),
    ("ArgsEscaped", || Value::Null),
    ("Image", || json!("")),
    ("Volumes", || Value::Null),
    ("WorkingDir", || json!("")),
    ("Entrypoint", || Value::Null),
    ("OnBuild", || Value::Null),
    ("Labels", || Value::Null),
    ("StopSignal", || Value::Null),
    ("Shell", || Value::Null),
];
/// Keys Docker omits when empty.
const OMIT_EMPTY: &[&str] = &["ExposedPorts", "Healthcheck", "ArgsEscaped", "StopSignal", "Shell"];

fn container_config(config: &Value) -> Value {
    let src = config.as_object().cloned().unwrap_or_default();
    let mut out = Map::new();
    for (key, default) in CONFIG_KEYS {
        match src.get(*key) {
            Some(v) if !v.is_null() => {
                out.insert(key.to_string(), v.clone());
            }
            _ if OMIT_EMPTY.contains(key) => {}
            _ => {
                out.insert(key.to_string(), default());
            }
        }
    }
    for (k, v) in src {
        out.entry(k).or_insert(v);
    }
    Value::Object(out)
}

/// The `docker image inspect` object for an image.
pub fn inspect_json(store: &Store, image: &ImageRecord) -> Result<Value> {
    let config: Value = serde_json::from_slice(&store.blobs().read(&image.id).into_diagnostic()?)
        .into_diagnostic()?;
    let mut out = json!({
        "Id": image.id.to_string(),
        "RepoTags": image.tags.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
        "RepoDigests": image.repo_digests.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
        "Parent": "",
        "Comment": config["comment"].as_str().unwrap_or(""),
        "Created": config["created"].as_str().unwrap_or(""),
        "DockerVersion": config["docker_version"].as_str().unwrap_or(""),
        "Author": config["author"].as_str().unwrap_or(""),
        "Config": container_config(&config["config"]),
        "Architecture": config["architecture"].as_str().unwrap_or(""),
    });
    let obj = out.as_object_mut().expect("built as an object");
    if let Some(v) = config["variant"].as_str() {
        obj.insert("Variant".into(), json!(v));
    }
    obj.insert("Os".into(), json!(config["os"].as_str().unwrap_or("")));
    if let Some(v) = config["os.version"].as_str() {
        obj.insert("OsVersion".into(), json!(v));
    }
    obj.insert("Size".into(), json!(image.size));
    obj.insert("VirtualSize".into(), json!(image.size));
    obj.insert(
        "RootFS".into(),
        json!({"Type": "layers", "Layers": image.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()}),
    );
    obj.insert(
        "Metadata".into(),
        json!({"LastTagTime": strata_format::rfc3339_unix(image.added_at).unwrap_or_default()}),
    );
    obj.insert(
        "Descriptor".into(),
        json!({
            "mediaType": image.manifest_media_type,
            "digest": image.manifest_digest.to_string(),
            "size": store.blobs().size(&image.manifest_digest).unwrap_or(0),
        }),
    );
    Ok(out)
}

pub fn run(ctx: &Context, args: InspectArgs) -> Result<ExitCode> {
    let store = ctx.store_with_sizes()?;
    let mut found = Vec::new();
    let mut failed = false;
    for name in &args.images {
        match store.resolve(name) {
            Ok(image) => found.push(inspect_json(&store, &image)?),
            Err(StoreError::ImageNotFound(n)) => {
                eprintln!("Error: No such image: {n}");
                failed = true;
            }
            Err(e) => return Err(e).into_diagnostic(),
        }
    }
    match args.format.as_deref() {
        None | Some("") => {
            let text = serde_json::to_string_pretty(&Value::Array(found)).into_diagnostic()?;
            // Docker indents with four spaces.
            println!("{}", reindent(&text));
        }
        Some(format) => {
            let f = strata_format::Formatter::new(format).into_diagnostic()?;
            for item in &found {
                println!("{}", f.render_item(item).into_diagnostic()?);
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn reindent(two_space: &str) -> String {
    two_space
        .lines()
        .map(|l| {
            let spaces = l.len() - l.trim_start_matches(' ').len();
            format!("{}{}", " ".repeat(spaces * 2), &l[spaces..])
        })
        .collect::<Vec<_>>()
        .join("\n")
}
