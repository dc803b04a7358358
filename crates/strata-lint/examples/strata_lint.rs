//! A stand-alone `strata lint` for benchmarks and comparison with hadolint:
//! `cargo run --release -p strata-lint --example strata_lint -- Dockerfile`.

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "strata-lint")]
struct Cli {
    #[command(flatten)]
    args: strata_lint::LintArgs,
}

fn main() -> ExitCode {
    match strata_lint::run(Cli::parse().args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strata lint: {e}");
            ExitCode::from(2)
        }
    }
}
