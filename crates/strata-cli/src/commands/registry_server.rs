//! `strata registry serve|gc`: the OCI registry server (crate strata-registry-server).

use std::process::ExitCode;

use clap::Subcommand;
use miette::{miette, Result};

#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Serve an OCI distribution-spec registry
    Serve(strata_registry_server::ServeArgs),
    /// Delete blobs no manifest references (safe while the registry serves)
    Gc(strata_registry_server::GcArgs),
}

pub fn run(command: RegistryCommand) -> Result<ExitCode> {
    match command {
        RegistryCommand::Serve(a) => {
            strata_registry_server::run_serve(a).map_err(|e| miette!("{e:#}"))?
        }
        RegistryCommand::Gc(a) => {
            println!("{}", strata_registry_server::run_gc(a).map_err(|e| miette!("{e:#}"))?)
        }
    }
    Ok(ExitCode::SUCCESS)
}
