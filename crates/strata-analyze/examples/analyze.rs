//! A stand-alone `analyze` command (what `strata analyze` runs), for the tmux test and
//! manual use: `cargo run -p strata-analyze --example analyze -- IMAGE`.
//! The store root comes from `$STRATA_ROOT`, else the default root.

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "analyze")]
struct Cli {
    #[command(flatten)]
    args: strata_analyze::AnalyzeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = std::env::var_os("STRATA_ROOT").map(std::path::PathBuf::from);
    match strata_analyze::run(root, cli.args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(125)
        }
    }
}
