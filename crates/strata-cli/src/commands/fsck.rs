//! `strata fsck`: verify the store; exit 1 when anything is wrong.

use std::process::ExitCode;

use clap::Args;
use miette::{IntoDiagnostic, Result};

use super::Context;

#[derive(Args, Debug)]
pub struct FsckArgs {
    /// Print only problems
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(ctx: &Context, args: FsckArgs) -> Result<ExitCode> {
    let store = ctx.store()?;
    let report = store.fsck().into_diagnostic()?;
    for p in &report.problems {
        println!("problem: {p}");
    }
    if !args.quiet {
        println!(
            "checked {} blobs ({}), {} images, {} tags; {} unreferenced blobs, {} interrupted writes pending clean-up",
            report.blobs_checked,
            strata_format::human_size(report.bytes_checked as f64),
            report.images_checked,
            report.tags_checked,
            report.unreferenced_blobs,
            report.ingest_leftovers,
        );
    }
    if report.problems.is_empty() {
        if !args.quiet {
            println!("store {} is consistent", store.root().display());
        }
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} problems found in {}", report.problems.len(), store.root().display());
        Ok(ExitCode::FAILURE)
    }
}
