//! `strata build`: builds an image with `strata-build` (the default), or runs a frontend call
//! (`--call=outline|targets|check`) that reads the Dockerfile without building.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use miette::{miette, IntoDiagnostic, Result, WrapErr};
use strata_dockerfile::{call_check, call_outline, call_targets, parse_dockerfile, Dockerfile};

use crate::build_progress::{self, ProgressMode};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Call {
    /// Build the image (the default)
    Build,
    /// Show the stages and build arguments the target uses
    Outline,
    /// List the stages (targets) of the Dockerfile
    Targets,
    /// Run the build checks; exit non-zero when any warning is found
    Check,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Build context: a directory, or - to read the Dockerfile from STDIN
    pub context: String,
    /// Name of the Dockerfile (default: PATH/Dockerfile); - reads it from STDIN
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Set the target build stage
    #[arg(long)]
    pub target: Option<String>,
    /// Set build-time variables (NAME=VALUE, or NAME to take it from the environment)
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_args: Vec<String>,
    /// Set what the build does: build, outline, targets or check
    #[arg(long, value_enum, default_value = "build")]
    pub call: Call,
    /// Lint the Dockerfile (strata lint's rules, .hadolint.yaml) and run the build checks
    /// first; build only when nothing reaches the failure threshold
    #[arg(long)]
    pub check: bool,
    /// Name and optionally a tag (NAME[:TAG]); may be repeated
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Networking mode for the RUN instructions: host (default) or none
    #[arg(long, default_value = "host")]
    pub network: String,
    /// Do not use cache when building the image (steps still record their results)
    #[arg(long)]
    pub no_cache: bool,
    /// Secret to expose to RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    pub secrets: Vec<String>,
    /// Write the image ID to the file
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Set metadata for an image (KEY=VALUE)
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Type of progress output
    #[arg(long, value_enum, env = "BUILDKIT_PROGRESS", default_value = "auto")]
    pub progress: ProgressMode,
    /// Suppress the build output and print the image ID on success (--progress quiet)
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum BuilderCommand {
    /// Remove the build cache (cached steps and RUN --mount=type=cache directories)
    Prune(BuilderPruneArgs),
}

#[derive(Args, Debug)]
pub struct BuilderPruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

/// `strata builder prune`: drops every cache entry, then a GC frees the layers and
/// snapshots only the cache kept.
pub fn prune(ctx: &super::Context, args: BuilderPruneArgs) -> Result<ExitCode> {
    if !args.force {
        eprint!(
            "WARNING! This will remove all build cache. Are you sure you want to continue? [y/N] "
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).into_diagnostic()?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let store = ctx.store()?;
    let entries = store.cache_prune().into_diagnostic()?;
    let freed = store.gc().into_diagnostic()?.bytes_freed;
    println!("Deleted build cache entries: {entries}");
    println!("Total:\t{}", strata_format::human_size(freed as f64));
    Ok(ExitCode::SUCCESS)
}

fn build_args(raw: &[String]) -> BTreeMap<String, String> {
    raw.iter()
        .filter_map(|a| match a.split_once('=') {
            Some((k, v)) => Some((k.to_string(), v.to_string())),
            // Docker takes a bare NAME from the environment, and skips it when unset.
            None => std::env::var(a).ok().map(|v| (a.clone(), v)),
        })
        .collect()
}

/// `--secret id=X,src=FILE` / `id=X,env=VAR` (also `source=`, `type=file|env`, and a bare
/// `id=X`, which reads the environment variable X as Docker does).
fn secrets(raw: &[String]) -> Result<BTreeMap<String, strata_build::SecretSource>> {
    let mut out = BTreeMap::new();
    for s in raw {
        let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
        for field in s.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(v.to_string()),
                Some(("env", v)) => env = Some(v.to_string()),
                Some(("type", v)) => kind = Some(v.to_string()),
                _ => {
                    return Err(miette!(
                    "--secret {s:?}: unknown field {field:?}; use id=ID,src=FILE or id=ID,env=VAR"
                ))
                }
            }
        }
        let id = id.ok_or_else(|| miette!("--secret {s:?} has no id=; use id=ID,src=FILE"))?;
        let source = match (kind.as_deref(), src, env) {
            (Some("env"), Some(v), None) | (_, None, Some(v)) => strata_build::SecretSource::Env(v),
            (None | Some("file"), Some(f), None) => {
                let f = PathBuf::from(f);
                if !f.is_file() {
                    return Err(miette!("--secret {s:?}: {} is not a file", f.display()));
                }
                strata_build::SecretSource::File(f)
            }
            (None, None, None) => strata_build::SecretSource::Env(id.clone()),
            _ => {
                return Err(miette!(
                    "--secret {s:?}: give exactly one of src=FILE or env=VAR (type=file|env)"
                ))
            }
        };
        out.insert(id, source);
    }
    Ok(out)
}

fn read(args: &BuildArgs) -> Result<Dockerfile> {
    let (name, src) = match (&args.file, args.context.as_str()) {
        (Some(f), _) if f.as_os_str() == "-" => ("Dockerfile".to_string(), stdin_text()?),
        (None, "-") => ("Dockerfile".to_string(), stdin_text()?),
        (Some(f), _) => (f.display().to_string(), file_text(f)?),
        (None, dir) => {
            let f = Path::new(dir).join("Dockerfile");
            (f.display().to_string(), file_text(&f)?)
        }
    };
    parse_dockerfile(&name, &src).map_err(miette::Report::new)
}

fn file_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the Dockerfile {}", path.display()))
}

fn stdin_text() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .into_diagnostic()
        .wrap_err("reading the Dockerfile from stdin")?;
    Ok(s)
}

pub fn run(ctx: &super::Context, args: BuildArgs) -> Result<ExitCode> {
    let call = args.call;
    let df = read(&args)?;
    if args.check && matches!(call, Call::Build) && !lint_passes(&args, &df)? {
        return Ok(ExitCode::FAILURE);
    }
    let build_args = build_args(&args.build_args);
    let target = args.target.as_deref();
    match call {
        Call::Outline => {
            print!("{}", call_outline(&df, &build_args, target).map_err(miette::Report::new)?);
            Ok(ExitCode::SUCCESS)
        }
        Call::Targets => {
            print!("{}", call_targets(&df));
            Ok(ExitCode::SUCCESS)
        }
        Call::Check => {
            let report = call_check(&df, &build_args, target).map_err(miette::Report::new)?;
            print!("{}", report.text);
            Ok(ExitCode::from(report.exit_code().clamp(0, 255) as u8))
        }
        Call::Build => build_image(ctx, &args, &df, build_args),
    }
}

/// `build --check`: strata lint's findings (with the project's .hadolint.yaml) and
/// BuildKit's build checks, printed to stderr; false when the lint fails its threshold.
fn lint_passes(args: &BuildArgs, df: &Dockerfile) -> Result<bool> {
    let mut cfg = strata_lint::load_config(None).map_err(miette::Report::new)?;
    if args.context != "-" {
        cfg.context_dir = Some(PathBuf::from(&args.context));
    }
    let findings = strata_lint::lint_source(&df.source.name, &df.source.text, &cfg);
    let report = strata_lint::output::FileReport {
        name: &df.source.name,
        source: &df.source.text,
        findings: &findings,
    };
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr());
    eprint!("{}", strata_lint::output::render(strata_lint::output::Format::Tty, &[report], color));
    let build_args = build_args(&args.build_args);
    let checks =
        call_check(df, &build_args, args.target.as_deref()).map_err(miette::Report::new)?;
    if !checks.warnings.is_empty() {
        eprint!("{}", checks.text);
    }
    if strata_lint::fails(&findings, &cfg) {
        eprintln!(
            "lint failed: {} finding(s) at or above the failure threshold; fix them, or set \
             failure-threshold / ignored in .hadolint.yaml",
            findings.len()
        );
        return Ok(false);
    }
    Ok(true)
}

fn build_image(
    ctx: &super::Context,
    args: &BuildArgs,
    df: &Dockerfile,
    build_args: BTreeMap<String, String>,
) -> Result<ExitCode> {
    let network = match args.network.as_str() {
        "host" | "default" => strata_build::Network::Host,
        "none" => strata_build::Network::None,
        other => return Err(miette!("unknown --network {other:?}: use host or none")),
    };
    let mut tags = Vec::new();
    for t in &args.tags {
        let r = strata_oci::Reference::parse(t)
            .map_err(|e| miette!("invalid tag {t:?}: {e}"))?
            .with_default_tag();
        tags.push(r);
    }
    let mut labels = Vec::new();
    for l in &args.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.push((k.to_string(), v.to_string()));
    }
    let empty_context;
    let context = if args.context == "-" {
        empty_context = tempfile::tempdir().into_diagnostic()?;
        empty_context.path().to_path_buf()
    } else {
        let c = PathBuf::from(&args.context);
        if !c.is_dir() {
            return Err(miette!("the build context {} is not a directory", c.display()));
        }
        c
    };
    let dockerfile_path = match &args.file {
        Some(f) if f.as_os_str() != "-" => Some(f.clone()),
        Some(_) => None,
        None => Some(context.join("Dockerfile")),
    };
    let mut opts = strata_build::BuildOptions::new(&context);
    opts.dockerfile_path = dockerfile_path;
    opts.target = args.target.clone();
    opts.build_args = build_args;
    opts.network = network;
    opts.labels = labels;
    opts.tags = tags;
    opts.secrets = secrets(&args.secrets)?;
    opts.no_cache = args.no_cache;
    let store = ctx.store()?;
    let quiet = args.quiet || args.progress == ProgressMode::Quiet;
    let mut progress = build_progress::start(args.progress, args.quiet, df)?;
    let mut on_event = |e: strata_build::Event| progress.event(&e);
    let built = strata_build::build(&store, df, &opts, &mut on_event).map_err(|e| match e {
        strata_build::BuildError::Dockerfile(d) => miette::Report::new(d),
        other => miette!("{other}"),
    });
    if progress.finish(built.as_ref()) {
        // The progress display reported the error itself (json: as its last line).
        return Ok(ExitCode::FAILURE);
    }
    let result = built?;
    if let Some(f) = &args.iidfile {
        std::fs::write(f, result.id.to_string())
            .into_diagnostic()
            .wrap_err_with(|| format!("writing --iidfile {}", f.display()))?;
    }
    if quiet {
        println!("{}", result.id);
    } else {
        println!("Successfully built {}", &result.id.hex()[..12]);
        for t in &result.tags {
            println!("Successfully tagged {}", t.familiar());
        }
    }
    Ok(ExitCode::SUCCESS)
}
