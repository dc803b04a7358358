//! `strata save`, `strata load` and `strata import`.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use miette::{miette, IntoDiagnostic, Result, WrapErr};
use serde_json::{json, Map, Value};
use strata_oci::Reference;
use strata_store::archive::{self, LoadEvent, SaveFormat, SaveItem};
use strata_store::import::{self, ImportOptions};
use strata_store::layer_info::Limits;

use super::Context;
use crate::progress::{Progress, ProgressWriter};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// docker save's layout (also an OCI layout): loads with docker, podman and skopeo
    Docker,
    /// an OCI image layout
    Oci,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Archive layout
    #[arg(long, value_enum, default_value = "docker")]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// A root filesystem tarball (tar, tar.gz or tar.zst), or - for STDIN
    pub file: String,
    /// REPOSITORY[:TAG] for the new image
    pub reference: Option<String>,
    /// Apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
    /// USER, VOLUME, WORKDIR, STOPSIGNAL)
    #[arg(short, long = "change")]
    pub changes: Vec<String>,
    /// Set a commit message for the imported image
    #[arg(short, long)]
    pub message: Option<String>,
}

/// Resolves `save` arguments as Docker does: `repo` alone means every tag of it.
fn save_items(store: &strata_store::Store, names: &[String]) -> Result<Vec<SaveItem>> {
    let images = store.images().into_diagnostic()?;
    let mut items: Vec<SaveItem> = Vec::new();
    for name in names {
        let parsed = Reference::parse(name).ok();
        let whole_repo = parsed
            .as_ref()
            .filter(|r| r.tag().is_none() && r.digest().is_none() && !name.ends_with(":latest"));
        let mut found: Vec<(usize, Option<Reference>)> = Vec::new();
        if let Some(repo) = whole_repo {
            for (i, image) in images.iter().enumerate() {
                for t in image.tags.iter().filter(|t| t.name() == repo.name()) {
                    found.push((i, Some(t.clone())));
                }
            }
        }
        if found.is_empty() {
            let i = strata_store::images::find(&images, name)
                .into_diagnostic()?
                .ok_or_else(|| miette!("No such image: {name}"))?;
            let named = parsed.map(|r| r.with_default_tag()).filter(|r| images[i].tags.contains(r));
            found.push((i, named));
        }
        for (i, named) in found {
            match items.iter_mut().find(|it| it.image.id == images[i].id) {
                Some(item) => item.names.extend(named.filter(|n| !item.names.contains(n))),
                None => items.push(SaveItem {
                    image: images[i].clone(),
                    names: named.into_iter().collect(),
                }),
            }
        }
    }
    Ok(items)
}

pub fn save(ctx: &Context, args: SaveArgs) -> Result<ExitCode> {
    let store = ctx.store()?;
    let items = save_items(&store, &args.images)?;
    let format = match args.format {
        Format::Docker => SaveFormat::Docker,
        Format::Oci => SaveFormat::Oci,
    };
    match &args.output {
        Some(path) => super::write_file_replacing(path, |file| {
            let progress = Progress::bytes("Saving", false);
            let out = ProgressWriter { inner: file, progress: &progress };
            let saved = archive::save(&store, &items, format, out);
            progress.finish();
            saved.into_diagnostic()
        })?,
        None => {
            if io::stdout().is_terminal() {
                return Err(miette!(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect"
                ));
            }
            let stdout = io::stdout();
            archive::save(&store, &items, format, stdout.lock()).into_diagnostic()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn open_input(path: Option<&PathBuf>) -> Result<(String, Box<dyn Read>)> {
    match path {
        Some(p) if p.as_os_str() != "-" => {
            let f = File::open(p)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot open {}", p.display()))?;
            Ok((p.display().to_string(), Box::new(f)))
        }
        _ => {
            if io::stdin().is_terminal() {
                return Err(miette!(
                    "requested load from stdin, but stdin is empty: use -i FILE or redirect an archive"
                ));
            }
            Ok(("stdin".to_string(), Box::new(io::stdin().lock())))
        }
    }
}

pub fn load(ctx: &Context, args: LoadArgs) -> Result<ExitCode> {
    let store = ctx.store()?;
    let (name, input) = open_input(args.input.as_ref())?;
    let progress = Progress::bytes("Loading", args.quiet);
    let mut on_event = |e: LoadEvent| {
        if let LoadEvent::Entry { bytes, .. } = e {
            progress.add(bytes);
        }
    };
    let loaded = archive::load(&store, &name, input, Limits::default(), &mut on_event);
    progress.finish();
    let loaded = loaded.into_diagnostic()?;
    if !args.quiet {
        for image in &loaded {
            for moved in &image.retagged {
                println!(
                    "The image {} already exists, renaming the old one with ID {} to empty string",
                    moved.tag.familiar(),
                    moved.previous_image
                );
            }
            if image.tags.is_empty() {
                println!("Loaded image ID: {}", image.id);
            }
            for t in &image.tags {
                println!("Loaded image: {}", t.familiar());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Splits `INSTRUCTION args` and applies it to a container config, as `docker import
/// --change` does.
fn apply_change(config: &mut Map<String, Value>, change: &str) -> Result<()> {
    let (keyword, rest) =
        change.trim().split_once(char::is_whitespace).unwrap_or((change.trim(), ""));
    let rest = rest.trim();
    let exec_or_shell = || -> Value {
        match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) => json!(v),
            Err(_) => json!(["/bin/sh", "-c", rest]),
        }
    };
    let pairs = || -> Vec<(String, String)> {
        if rest.contains('=') {
            rest.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect()
        } else {
            let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            vec![(k.to_string(), v.trim().to_string())]
        }
    };
    match keyword.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.insert("Cmd".into(), exec_or_shell());
        }
        "ENTRYPOINT" => {
            config.insert("Entrypoint".into(), exec_or_shell());
        }
        "ENV" => {
            let env = config.entry("Env").or_insert_with(|| json!([]));
            for (k, v) in pairs() {
                if let Some(list) = env.as_array_mut() {
                    list.retain(|e| e.as_str().and_then(|e| e.split_once('=')).map(|(n, _)| n) != Some(k.as_str()));
                    list.push(json!(format!("{k}={v}")));
                }
            }
        }
        "LABEL" => {
            let labels = config.entry("Labels").or_insert_with(|| json!({}));
            for (k, v) in pairs() {
                labels[k] = json!(v);
            }
        }
        "EXPOSE" => {
            let ports = config.entry("ExposedPorts").or_insert_with(|| json!({}));
            for p in rest.split_whitespace() {
                let p = if p.contains('/') { p.to_string() } else { format!("{p}/tcp") };
                ports[p] = json!({});
            }
        }
        "VOLUME" => {
            let vols = config.entry("Volumes").or_insert_with(|| json!({}));
            let list: Vec<String> = serde_json::from_str(rest)
                .unwrap_or_else(|_| rest.split_whitespace().map(str::to_string).collect());
            for v in list {
                vols[v] = json!({});
            }
        }
        "USER" => {
            config.insert("User".into(), json!(rest));
        }
        "WORKDIR" => {
            config.insert("WorkingDir".into(), json!(rest));
        }
        "STOPSIGNAL" => {
            config.insert("StopSignal".into(), json!(rest));
        }
        other => {
            return Err(miette!(
                "--change {change:?}: {other} is not supported; use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR or STOPSIGNAL"
            ))
        }
    }
    Ok(())
}

pub fn import(ctx: &Context, args: ImportArgs) -> Result<ExitCode> {
    let reference = args
        .reference
        .as_deref()
        .map(|r| Reference::parse(r).map_err(|e| miette!("invalid reference format {r:?}: {e}")))
        .transpose()?;
    let mut config = Map::new();
    for c in &args.changes {
        apply_change(&mut config, c)?;
    }
    let store = ctx.store()?;
    let path = (args.file != "-").then(|| PathBuf::from(&args.file));
    let (name, input) = open_input(path.as_ref())?;
    let comment = args.message.unwrap_or_else(|| format!("Imported from {}", args.file));
    let options = ImportOptions {
        reference,
        config,
        comment,
        created: strata_format::rfc3339_nano(&chrono::Utc::now()),
        limits: Limits::default(),
    };
    let id = import::import(&store, &name, input, options).into_diagnostic()?;
    println!("{id}");
    io::stdout().flush().into_diagnostic()?;
    Ok(ExitCode::SUCCESS)
}
