//! `strata analyze`: what each layer of an image adds, changes and removes, dive's image
//! efficiency score and wasted bytes, CI thresholds, and an interactive view.
//!
//! - [`source`]: images in the store, docker-archive / OCI-layout tarballs and OCI layout
//!   directories, each layer read once as a stream ([`scan`]).
//! - [`analysis`]: per-layer changes and dive's efficiency definitions.
//! - [`ci`]: dive's rules, `.dive-ci`, its CI report.
//! - [`report`]: the text report and the JSON document.
//! - [`tree`] and [`tui`]: the file tree of a layer and the terminal view.
//!
//! The CLI adds the command with [`AnalyzeArgs`] and [`run`].

pub mod analysis;
pub mod ci;
mod error;
pub mod report;
pub mod scan;
pub mod source;
pub mod tree;
pub mod tui;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use analysis::{analyze, Analysis, LayerReport, WastedPath};
pub use ci::{CiOutcome, CiRules};
pub use error::AnalyzeError;
pub use source::{Input, Loaded};

/// `strata analyze [OPTIONS] IMAGE`
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AnalyzeArgs {
    /// An image in the store (name or ID), a docker-archive or OCI-layout tarball, or an OCI
    /// layout directory (prefixes `docker-archive:`, `oci-archive:`, `oci:`, `store:` force a kind)
    pub image: String,

    /// Check the image against thresholds (dive's rules) and exit 1 when one fails
    #[arg(long)]
    pub ci: bool,

    /// CI: fail when the efficiency score (0-1) is below this, or "disabled" [default: 0.9]
    #[arg(long, alias = "lowestEfficiency", value_name = "RATIO")]
    pub lowest_efficiency: Option<String>,

    /// CI: fail when more bytes than this are wasted (e.g. 20MB), or "disabled" [default: disabled]
    #[arg(long, alias = "highestWastedBytes", value_name = "SIZE")]
    pub highest_wasted_bytes: Option<String>,

    /// CI: fail when wasted/user bytes (0-1) is above this, or "disabled" [default: 0.1]
    #[arg(long, alias = "highestUserWastedPercent", value_name = "RATIO")]
    pub highest_user_wasted_percent: Option<String>,

    /// CI: dive rules file (YAML `rules:`) [default: .dive-ci when it exists]
    #[arg(long, value_name = "FILE")]
    pub ci_config: Option<PathBuf>,

    /// Print the analysis as JSON (dive's `layer`/`image` shape)
    #[arg(long)]
    pub json: bool,

    /// Print the report even on a terminal
    #[arg(long)]
    pub no_tui: bool,

    /// How many of the largest wasted files to list
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,

    /// Do not truncate digests and commands
    #[arg(long)]
    pub no_trunc: bool,
}

impl AnalyzeArgs {
    /// The rules: dive's defaults, then the rules file, then the flags.
    pub fn ci_rules(&self) -> Result<CiRules, AnalyzeError> {
        let mut rules = CiRules::default();
        match &self.ci_config {
            Some(path) => rules.apply_file(path)?,
            None => {
                let default = Path::new(".dive-ci");
                if default.is_file() {
                    rules.apply_file(default)?;
                }
            }
        }
        let float = |flag: &'static str, v: &str| -> Result<String, AnalyzeError> {
            if v != "disabled" {
                ci::parse_go_float(v).map_err(|reason| AnalyzeError::BadFlag {
                    flag,
                    value: v.into(),
                    reason,
                })?;
            }
            Ok(v.to_string())
        };
        if let Some(v) = &self.lowest_efficiency {
            rules.lowest_efficiency = float("--lowest-efficiency", v)?;
        }
        if let Some(v) = &self.highest_user_wasted_percent {
            rules.highest_user_wasted_percent = float("--highest-user-wasted-percent", v)?;
        }
        if let Some(v) = &self.highest_wasted_bytes {
            if v != "disabled" {
                ci::parse_bytes(v).map_err(|reason| AnalyzeError::BadFlag {
                    flag: "--highest-wasted-bytes",
                    value: v.clone(),
                    reason,
                })?;
            }
            rules.highest_wasted_bytes = v.clone();
        }
        Ok(rules)
    }

    /// CI mode: `--ci`, or any threshold flag.
    pub fn ci_mode(&self) -> bool {
        self.ci
            || self.lowest_efficiency.is_some()
            || self.highest_wasted_bytes.is_some()
            || self.highest_user_wasted_percent.is_some()
            || self.ci_config.is_some()
    }
}

/// Loads and analyses the image `image` names (see [`Input::parse`]).
pub fn analyze_image(
    store_root: Option<&Path>,
    image: &str,
) -> Result<(Loaded, Analysis), AnalyzeError> {
    let input = Input::parse(image);
    let loaded = source::load(&input, store_root)?;
    let analysis = analyze(&loaded.meta, &loaded.scans);
    Ok((loaded, analysis))
}

/// Runs `strata analyze`: the interactive view on a terminal, else the report, the JSON
/// document or the CI report. Exit code 1 when a CI rule fails.
pub fn run(store_root: Option<PathBuf>, args: AnalyzeArgs) -> Result<ExitCode, AnalyzeError> {
    let ci_mode = args.ci_mode();
    // Check the thresholds before the (possibly long) analysis.
    let rules = if ci_mode { Some(args.ci_rules()?) } else { None };
    let tui = !ci_mode
        && !args.json
        && !args.no_tui
        && std::io::stdout().is_terminal()
        && std::io::stdin().is_terminal();
    if tui {
        // Reading a large image takes a while; say what is happening before the screen opens.
        eprintln!("Analyzing {}...", args.image);
    }
    let (loaded, analysis) = analyze_image(store_root.as_deref(), &args.image)?;
    let outcome = rules.as_ref().map(|r| ci::evaluate(&analysis, r));
    let code = match &outcome {
        Some(o) if !o.pass => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    };
    let stdout = std::io::stdout();
    if args.json {
        let doc = report::json(&analysis, outcome.as_ref());
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        writeln!(stdout.lock(), "{text}").map_err(AnalyzeError::Output)?;
        return Ok(code);
    }
    if let Some(outcome) = &outcome {
        let text = ci::report(&analysis, outcome);
        stdout.lock().write_all(text.as_bytes()).map_err(AnalyzeError::Output)?;
        return Ok(code);
    }
    if tui {
        tui::run(&loaded, &analysis)?;
        return Ok(code);
    }
    let text = report::text(&analysis, args.top, args.no_trunc);
    stdout.lock().write_all(text.as_bytes()).map_err(AnalyzeError::Output)?;
    Ok(code)
}
