//! `strata build`: for now the frontend calls (`--call=outline|targets|check`), which read a
//! Dockerfile without building; the build engine comes with its own issue.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use miette::{miette, IntoDiagnostic, Result, WrapErr};
use strata_dockerfile::{call_check, call_outline, call_targets, parse_dockerfile, Dockerfile};

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
    /// Shorthand for --call=check
    #[arg(long)]
    pub check: bool,
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

pub fn run(args: BuildArgs) -> Result<ExitCode> {
    let call = if args.check { Call::Check } else { args.call };
    let df = read(&args)?;
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
        Call::Build => Err(miette!(
            "building images is not implemented yet (the build-engine issue); \
             --call=outline, --call=targets and --call=check read the Dockerfile without building"
        )),
    }
}
