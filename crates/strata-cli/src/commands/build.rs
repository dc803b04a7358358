//! `strata build`: builds an image with `strata-build` (the default), or runs a frontend call
//! (`--call=outline|targets|check`) that reads the Dockerfile without building.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
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
    /// Always attempt to pull a newer version of the base images
    #[arg(long)]
    pub pull: bool,
    /// Do not cache the named stages (repeat or separate with commas)
    #[arg(long = "no-cache-filter", value_delimiter = ',', value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Set the target platform (os/arch[/variant]); only the host's, until emulation exists
    #[arg(long)]
    pub platform: Option<String>,
    /// Also write the result: type=oci|docker,dest=FILE (image archives),
    /// type=local,dest=DIR or type=tar,dest=FILE (its filesystem); a bare DIR is local
    #[arg(short = 'o', long = "output", value_name = "type=TYPE,dest=PATH")]
    pub outputs: Vec<String>,
    /// Layer compression
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: LayerCompression,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LayerCompression {
    Gzip,
    Zstd,
    /// No compression (uncompressed tar layers)
    Uncompressed,
}

/// Where `--output` writes, besides the store.
#[derive(Debug, PartialEq, Eq)]
enum Output {
    /// An image archive: `docker save` (docker) or OCI layout (oci) format.
    Archive { format: strata_store::archive::SaveFormat, dest: PathBuf },
    /// The image's filesystem as a directory.
    Local(PathBuf),
    /// The image's filesystem as a tar.
    Tar(PathBuf),
}

/// `--output` values, Docker's CSV form (`type=local,dest=out`) or a bare directory.
fn parse_output(raw: &str) -> Result<Output> {
    if !raw.contains('=') {
        return Ok(Output::Local(PathBuf::from(raw)));
    }
    let (mut kind, mut dest) = (None, None);
    for field in raw.split(',') {
        match field.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_string()),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            _ => {
                return Err(miette!(
                    "--output {raw:?}: unknown field {field:?}; use type=TYPE,dest=PATH"
                ))
            }
        }
    }
    let dest = dest.ok_or_else(|| miette!("--output {raw:?} has no dest=PATH"))?;
    use strata_store::archive::SaveFormat;
    match kind.as_deref() {
        Some("docker") => Ok(Output::Archive { format: SaveFormat::Docker, dest }),
        Some("oci") => Ok(Output::Archive { format: SaveFormat::Oci, dest }),
        Some("local") | None => Ok(Output::Local(dest)),
        Some("tar") => Ok(Output::Tar(dest)),
        Some(other) => Err(miette!(
            "--output type={other} is not supported: use docker, oci, local or tar (the image \
             is always stored; push it with `strata push`)"
        )),
    }
}

/// `--platform`: the host's is the only one there is until emulation exists.
fn check_platform(raw: Option<&str>) -> Result<()> {
    let Some(raw) = raw else { return Ok(()) };
    let host = strata_oci::Platform::host();
    for p in raw.split(',') {
        let want =
            strata_oci::Platform::parse(p).map_err(|e| miette!("invalid --platform {p:?}: {e}"))?;
        let same = want.os == host.os
            && want.architecture == host.architecture
            && (want.variant.is_none() || want.variant == host.variant);
        if !same {
            return Err(miette!(
                "--platform {p}: this machine builds only for {}/{} (no emulation yet); build \
                 on a {}/{} machine, or leave --platform out",
                host.os,
                host.architecture,
                want.os,
                want.architecture
            ));
        }
    }
    Ok(())
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

/// The build context and where its Dockerfile came from.
struct Input {
    df: Dockerfile,
    context: PathBuf,
    /// The Dockerfile's path when it is a file (its `.dockerignore` sits beside it).
    dockerfile_path: Option<PathBuf>,
    /// A context made for this build (a tar read from stdin, or none at all), removed after.
    _scratch: Option<tempfile::TempDir>,
}

/// Docker's rules: `PATH` is a directory; `-` is a tar context on stdin (plain or
/// compressed), or else a Dockerfile on stdin and no context; `-f -` reads the Dockerfile
/// from stdin with a directory context.
fn read(args: &BuildArgs) -> Result<Input> {
    let stdin_file = args.file.as_ref().is_some_and(|f| f.as_os_str() == "-");
    if args.context == "-" {
        if stdin_file {
            return Err(miette!(
                "cannot read both the context and the Dockerfile (-f -) from stdin"
            ));
        }
        // The first tar header is enough to tell an archive from a Dockerfile; an archive
        // is then streamed to a file, not held in memory.
        let mut stdin = std::io::stdin().lock();
        let mut head = Vec::new();
        (&mut stdin)
            .take(512)
            .read_to_end(&mut head)
            .into_diagnostic()
            .wrap_err("reading stdin")?;
        let scratch = tempfile::tempdir().into_diagnostic()?;
        if !looks_like_archive(&head) {
            stdin.read_to_end(&mut head).into_diagnostic().wrap_err("reading stdin")?;
            let text = String::from_utf8(head)
                .map_err(|_| miette!("stdin is neither a tar archive nor a UTF-8 Dockerfile"))?;
            let df = parse_dockerfile("Dockerfile", &text).map_err(miette::Report::new)?;
            let context = scratch.path().to_path_buf();
            return Ok(Input { df, context, dockerfile_path: None, _scratch: Some(scratch) });
        }
        let mut archive = tempfile::NamedTempFile::new().into_diagnostic()?;
        archive
            .write_all(&head)
            .and_then(|()| std::io::copy(&mut stdin, &mut archive).map(drop))
            .into_diagnostic()
            .wrap_err("saving the context from stdin")?;
        strata_build::extract_context_archive(archive.path(), scratch.path())
            .map_err(|e| miette!("extracting the build context from stdin: {e}"))?;
        let name = args.file.clone().unwrap_or_else(|| PathBuf::from("Dockerfile"));
        let path = scratch.path().join(&name);
        let text = std::fs::read_to_string(&path).into_diagnostic().wrap_err_with(|| {
            format!(
                "the context on stdin has no {} (use -f to name the Dockerfile)",
                name.display()
            )
        })?;
        let df =
            parse_dockerfile(&name.display().to_string(), &text).map_err(miette::Report::new)?;
        let context = scratch.path().to_path_buf();
        return Ok(Input { df, context, dockerfile_path: Some(path), _scratch: Some(scratch) });
    }
    let context = PathBuf::from(&args.context);
    if !context.is_dir() {
        return Err(miette!(
            "the build context {} is not a directory (use - to read a tar from stdin)",
            context.display()
        ));
    }
    let (name, src, dockerfile_path) = match &args.file {
        Some(_) if stdin_file => ("Dockerfile".to_string(), stdin_text()?, None),
        Some(f) => (f.display().to_string(), file_text(f)?, Some(f.clone())),
        None => {
            let f = context.join("Dockerfile");
            (f.display().to_string(), file_text(&f)?, Some(f))
        }
    };
    let df = parse_dockerfile(&name, &src).map_err(miette::Report::new)?;
    Ok(Input { df, context, dockerfile_path, _scratch: None })
}

/// Whether stdin holds an archive (gzip, bzip2, xz, zstd or a plain tar), as Docker checks:
/// a compression format's magic number, else a tar header.
fn looks_like_archive(b: &[u8]) -> bool {
    match strata_layer::compression::detect(b) {
        Ok(strata_layer::Compression::None) => b.get(257..262) == Some(b"ustar"),
        _ => true,
    }
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
    let input = read(&args)?;
    let df = &input.df;
    if args.check && matches!(call, Call::Build) && !lint_passes(&args, df)? {
        return Ok(ExitCode::FAILURE);
    }
    let build_args = build_args(&args.build_args);
    let target = args.target.as_deref();
    match call {
        Call::Outline => {
            print!("{}", call_outline(df, &build_args, target).map_err(miette::Report::new)?);
            Ok(ExitCode::SUCCESS)
        }
        Call::Targets => {
            print!("{}", call_targets(df));
            Ok(ExitCode::SUCCESS)
        }
        Call::Check => {
            let report = call_check(df, &build_args, target).map_err(miette::Report::new)?;
            print!("{}", report.text);
            Ok(ExitCode::from(report.exit_code().clamp(0, 255) as u8))
        }
        Call::Build => build_image(ctx, &args, &input, build_args),
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
    input: &Input,
    build_args: BTreeMap<String, String>,
) -> Result<ExitCode> {
    let df = &input.df;
    let network = match args.network.as_str() {
        "host" | "default" => strata_build::Network::Host,
        "none" => strata_build::Network::None,
        other => return Err(miette!("unknown --network {other:?}: use host or none")),
    };
    check_platform(args.platform.as_deref())?;
    let outputs = args.outputs.iter().map(|o| parse_output(o)).collect::<Result<Vec<_>>>()?;
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
    let mut opts = strata_build::BuildOptions::new(&input.context);
    opts.dockerfile_path = input.dockerfile_path.clone();
    opts.target = args.target.clone();
    opts.build_args = build_args;
    opts.network = network;
    opts.labels = labels;
    opts.tags = tags;
    opts.secrets = secrets(&args.secrets)?;
    opts.no_cache = args.no_cache;
    opts.no_cache_filter = args.no_cache_filter.clone();
    opts.pull = args.pull;
    opts.compression = match args.compression {
        LayerCompression::Gzip => strata_layer::Compression::Gzip,
        LayerCompression::Zstd => strata_layer::Compression::Zstd,
        LayerCompression::Uncompressed => strata_layer::Compression::None,
    };
    // Missing base images are pulled as Docker does, with the user's credentials.
    opts.puller = Some(std::sync::Arc::new(super::registry_client::BuildPuller::default()));
    let cancel = strata_build::CancelHandle::new().map_err(|e| miette!("{e}"))?;
    opts.cancel = Some(cancel.clone());
    let interrupts = cancel_on_interrupt(cancel.clone())?;
    let store = ctx.store()?;
    let quiet = args.quiet || args.progress == ProgressMode::Quiet;
    let mut progress = build_progress::start(args.progress, args.quiet, df)?;
    let mut on_event = |e: strata_build::Event| progress.event(&e);
    let built = strata_build::build(&store, df, &opts, &mut on_event).map_err(|e| match e {
        // Ctrl-C: whichever step noticed first, the user stopped the build.
        _ if interrupts.fired() => miette!("the build was cancelled (interrupted)"),
        strata_build::BuildError::Dockerfile(d) => miette::Report::new(d),
        other => miette!("{other}"),
    });
    if interrupts.fired() {
        progress.finish(built.as_ref());
        eprintln!("ERROR: the build was cancelled (interrupted)");
        return Ok(ExitCode::from(130));
    }
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
    for o in &outputs {
        write_output(&store, &result, o)?;
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

/// Writes one `--output` from the committed image.
fn write_output(
    store: &strata_store::Store,
    result: &strata_build::BuildResult,
    output: &Output,
) -> Result<()> {
    let image = store.resolve(&result.id.to_string()).into_diagnostic()?;
    match output {
        Output::Archive { format, dest } => {
            let items = [strata_store::archive::SaveItem { names: result.tags.clone(), image }];
            write_file(dest, |w| {
                strata_store::archive::save(store, &items, *format, w).map_err(|e| miette!("{e}"))
            })
        }
        Output::Tar(dest) => write_file(dest, |w| {
            strata_build::export_rootfs_tar(store, &image, w).map_err(|e| miette!("{e}"))
        }),
        Output::Local(dest) => strata_build::export_rootfs(store, &image, dest)
            .map_err(|e| miette!("{e}"))
            .wrap_err_with(|| format!("--output type=local,dest={}", dest.display())),
    }
}

/// `dest` written as `save -o` writes (see [`super::write_file_replacing`]); `-` is stdout.
fn write_file(
    dest: &Path,
    write: impl FnOnce(&mut (dyn std::io::Write + Send)) -> Result<()>,
) -> Result<()> {
    if dest.as_os_str() == "-" {
        let mut out = std::io::BufWriter::new(std::io::stdout());
        write(&mut out)?;
        return std::io::Write::flush(&mut out).into_diagnostic();
    }
    super::write_file_replacing(dest, |file| {
        let mut w = std::io::BufWriter::new(file);
        write(&mut w)?;
        std::io::Write::flush(&mut w).into_diagnostic()
    })
}

/// Ctrl-C (and SIGTERM) cancel the build: running RUNs are killed, the build's scratch
/// directories removed, and what was written stays cached. A second Ctrl-C is handled the
/// same way; the build ends within moments of the first.
fn cancel_on_interrupt(cancel: strata_build::CancelHandle) -> Result<InterruptGuard> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).into_diagnostic()?;
    let handle = signals.handle();
    let fired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = fired.clone();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            cancel.cancel();
        }
    });
    Ok(InterruptGuard { handle, fired })
}

/// Listens for Ctrl-C while the build runs (the engine also cancels on its own failures:
/// `fired` says the user did).
struct InterruptGuard {
    handle: signal_hook::iterator::Handle,
    fired: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl InterruptGuard {
    fn fired(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for InterruptGuard {
    fn drop(&mut self) {
        self.handle.close();
    }
}
