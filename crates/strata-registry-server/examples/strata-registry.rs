//! A stand-alone front end for the registry server, for scripts and tests until the
//! `strata registry` subcommands are wired into the CLI. Same flags as `strata registry`.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "strata-registry", about = "OCI distribution-spec registry")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the registry
    Serve(strata_registry_server::ServeArgs),
    /// Delete blobs no manifest references
    Gc(strata_registry_server::GcArgs),
}

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().cmd {
        Cmd::Serve(a) => strata_registry_server::run_serve(a),
        Cmd::Gc(a) => strata_registry_server::run_gc(a).map(|r| println!("{r}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
