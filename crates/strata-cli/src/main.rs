//! `strata`: Docker-compatible image tooling without a daemon.

mod build_progress;
mod commands;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use commands::Command;

/// Build, store, move, analyse and run OCI container images without a daemon.
#[derive(Parser, Debug)]
#[command(name = "strata", version, about, propagate_version = true)]
struct Cli {
    /// Store location (default: $STRATA_ROOT, /var/lib/strata as root, else
    /// $XDG_DATA_HOME/strata).
    #[arg(long, global = true, env = "STRATA_ROOT", hide_env_values = true)]
    root: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = commands::Context { root: cli.root };
    match commands::run(&ctx, cli.command) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::FAILURE
        }
    }
}
