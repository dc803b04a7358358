//! One module per command; each takes its clap arguments and an open store.

mod archive;
mod build;
mod builder;
mod df;
mod fsck;
mod history;
mod images;
mod inspect;
mod registry_client;
mod registry_server;
mod remove;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use miette::{IntoDiagnostic, Result, WrapErr};
use strata_store::Store;

pub struct Context {
    pub root: Option<PathBuf>,
}

impl Context {
    pub fn store(&self) -> Result<Store> {
        let root = self.root.clone().unwrap_or_else(strata_store::root::default_root);
        Store::open(&root)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot open the image store at {}", root.display()))
    }

    /// The store, with the sizes of layers that `pull` recorded unread measured first
    /// (for commands that show sizes). A layer that fails its check is reported and left
    /// pending; the command goes on.
    pub fn store_with_sizes(&self) -> Result<Store> {
        let store = self.store()?;
        let problems = store
            .measure_pending_layers(strata_store::layer_info::Limits::default())
            .into_diagnostic()?;
        for p in problems {
            eprintln!("WARNING: layer {}: {}", p.digest, p.message);
        }
        Ok(store)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List images
    Images(images::ImagesArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Display detailed information on one or more images
    Inspect(inspect::InspectArgs),
    /// Show the history of an image
    History(history::HistoryArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(remove::TagArgs),
    /// Remove one or more images
    Rmi(remove::RmiArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(archive::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(archive::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(archive::ImportArgs),
    /// Manage the store
    #[command(subcommand)]
    System(SystemCommand),
    /// Re-hash every blob and check every reference in the store
    Fsck(fsck::FsckArgs),
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// Manage the build cache
    #[command(subcommand)]
    Builder(builder::BuilderCommand),
    /// Show each layer's changes and the wasted space of an image (like dive)
    Analyze(strata_analyze::AnalyzeArgs),
    /// Run an OCI registry
    #[command(subcommand)]
    Registry(registry_server::RegistryCommand),
    /// Lint Dockerfiles (hadolint's rules and more)
    Lint(strata_lint::LintArgs),
    /// Download an image from a registry
    Pull(registry_client::PullArgs),
    /// Upload an image to a registry
    Push(registry_client::PushArgs),
    /// Log in to a registry
    Login(registry_client::LoginArgs),
    /// Log out from a registry
    Logout(registry_client::LogoutArgs),
    /// Copy an image between registries and the local store (skopeo's transport names)
    Copy(registry_client::CopyArgs),
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// List images
    #[command(visible_alias = "list")]
    Ls(images::ImagesArgs),
    /// Display detailed information on one or more images
    Inspect(inspect::InspectArgs),
    /// Show the history of an image
    History(history::HistoryArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(remove::TagArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(remove::RmiArgs),
    /// Remove unused images
    Prune(remove::PruneArgs),
    /// Save one or more images to a tar archive
    Save(archive::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(archive::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(archive::ImportArgs),
}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Show disk usage
    Df(df::DfArgs),
    /// Remove what nothing references: dangling images, abandoned writes
    Prune(remove::PruneArgs),
}

pub fn run(ctx: &Context, command: Command) -> Result<ExitCode> {
    match command {
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images::run(ctx, a),
        Command::Inspect(a) | Command::Image(ImageCommand::Inspect(a)) => inspect::run(ctx, a),
        Command::History(a) | Command::Image(ImageCommand::History(a)) => history::run(ctx, a),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => remove::tag(ctx, a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => remove::rmi(ctx, a),
        Command::Image(ImageCommand::Prune(a)) | Command::System(SystemCommand::Prune(a)) => {
            remove::prune(ctx, a)
        }
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => archive::save(ctx, a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => archive::load(ctx, a),
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => archive::import(ctx, a),
        Command::System(SystemCommand::Df(a)) => df::run(ctx, a),
        Command::Fsck(a) => fsck::run(ctx, a),
        Command::Build(a) => build::run(ctx, a),
        Command::Builder(c) => builder::run(ctx, c),
        Command::Analyze(a) => strata_analyze::run(ctx.root.clone(), a).into_diagnostic(),
        Command::Registry(c) => registry_server::run(c),
        Command::Lint(a) => strata_lint::run(a).map_err(miette::Report::new),
        Command::Pull(a) => registry_client::pull(ctx, a),
        Command::Push(a) => registry_client::push(ctx, a),
        Command::Login(a) => registry_client::login(ctx, a),
        Command::Logout(a) => registry_client::logout(ctx, a),
        Command::Copy(a) => registry_client::copy(ctx, a),
    }
}

/// Prints a list of items with a user `--format` or the command's default table.
pub fn print_formatted(
    format: Option<&str>,
    default_table: &str,
    headers: &[(&str, &str)],
    items: &[serde_json::Value],
) -> Result<()> {
    let format = strata_format::resolve_format(format, default_table);
    let formatter = strata_format::Formatter::new(format).into_diagnostic()?;
    let out = formatter.render(items, headers).into_diagnostic()?;
    print!("{out}");
    Ok(())
}

/// Seconds since the epoch of an RFC 3339 time, as images record `created`.
pub fn parse_time(s: Option<&str>) -> Option<i64> {
    s.and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()).map(|t| t.timestamp())
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Writes the file `path` (`save -o`, `build --output`) beside it and renames it into place,
/// so an interrupted write never leaves a truncated file under the requested name. It gets
/// what `docker save -o` gives: mode 0644, synced before the rename.
pub fn write_file_replacing(
    path: &std::path::Path,
    write: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<()> {
    use miette::WrapErr;
    use std::os::unix::fs::PermissionsExt;
    let dir =
        path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".strata-out-")
        .tempfile_in(dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot create a file in {}", dir.display()))?;
    write(temp.as_file_mut())?;
    // Temporary files are private (0600).
    temp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).into_diagnostic()?;
    temp.as_file().sync_all().into_diagnostic()?;
    temp.persist(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
