//! `strata tag`, `strata rmi` and `strata image prune`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::Args;
use miette::{miette, IntoDiagnostic, Result};
use strata_oci::Reference;
use strata_store::RemovalEvent;

use super::Context;

#[derive(Args, Debug)]
pub struct TagArgs {
    /// SOURCE_IMAGE[:TAG] or image ID
    pub source: String,
    /// TARGET_IMAGE[:TAG]
    pub target: String,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Force removal of the image (untag it from every repository)
    #[arg(short, long)]
    pub force: bool,
    /// Do not delete untagged parents (accepted for Docker compatibility)
    #[arg(long)]
    pub no_prune: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

pub fn tag(ctx: &Context, args: TagArgs) -> Result<ExitCode> {
    let target = Reference::parse(&args.target)
        .map_err(|e| miette!("invalid reference format {:?}: {e}", args.target))?;
    ctx.store()?.tag(&args.source, &target).into_diagnostic()?;
    Ok(ExitCode::SUCCESS)
}

fn print_events(events: &[RemovalEvent], lower: bool) {
    for e in events {
        match (e, lower) {
            (RemovalEvent::Untagged(n), false) => println!("Untagged: {n}"),
            (RemovalEvent::Deleted(d), false) => println!("Deleted: {d}"),
            (RemovalEvent::Untagged(n), true) => println!("untagged: {n}"),
            (RemovalEvent::Deleted(d), true) => println!("deleted: {d}"),
        }
    }
}

pub fn rmi(ctx: &Context, args: RmiArgs) -> Result<ExitCode> {
    let store = ctx.store()?;
    let mut failed = false;
    // Like Docker, go on past a failure and report every one.
    for name in &args.images {
        match store.remove(name, args.force) {
            Ok(events) => print_events(&events, false),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn confirm(message: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(miette!("{message}\nrefusing to prompt without a terminal: pass -f/--force"));
    }
    eprint!("{message}\nAre you sure you want to continue? [y/N] ");
    std::io::stderr().flush().into_diagnostic()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).into_diagnostic()?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

pub fn prune(ctx: &Context, args: PruneArgs) -> Result<ExitCode> {
    let warning = if args.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !args.force && !confirm(warning)? {
        return Ok(ExitCode::SUCCESS);
    }
    let store = ctx.store()?;
    let (events, mut freed) = store.prune(args.all).into_diagnostic()?;
    // Also clear what interrupted writers left behind.
    freed += store.gc().into_diagnostic()?.bytes_freed;
    if !events.is_empty() {
        println!("Deleted Images:");
        print_events(&events, true);
        println!();
    }
    println!("Total reclaimed space: {}", strata_format::human_size(freed as f64));
    Ok(ExitCode::SUCCESS)
}
