//! Runs one process in a container: mount, PID, IPC and UTS namespaces (and a network
//! namespace for `Network::None`), an overlayfs root over image snapshots, `pivot_root`, the
//! image's user, capabilities, a read-only root and extra mounts. Used by `RUN` in builds and
//! by `strata run`.
//!
//! The runtime is our own code (see ARCHITECTURE-section.md for the measurements against
//! crun and runc); [`Sandbox::spec`] still describes every run as an OCI runtime-spec
//! `Spec`, so the same container can be handed to an external runtime.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use strata_sandbox::{Config, Mount, Network, Process, RunOptions, Rootfs, Sandbox};
//! # let (lowers, upper, work) = (vec![], "/u".into(), "/w".into());
//! let mut process = Process::new(["sh", "-c", "apt-get update"]);
//! process.user = "nobody".into();
//! let mut config = Config::new(Rootfs::Overlay { lowers, upper, work }, process);
//! config.network = Network::None;
//! config.mounts.push(Mount::Secret { source: "/run/secret".into(), target: "/run/secrets/token".into() });
//! let sandbox = Sandbox::new(config)?;
//! let status = sandbox.run(&mut std::io::stdout(), &mut std::io::stderr(), &RunOptions::default())?;
//! assert!(status.success());
//! # Ok(()) }
//! ```

mod caps;
mod child;
mod layers;
mod run;
mod spec;
mod user;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use caps::{docker_default_capabilities, Capability};
pub use run::{CancelHandle, ExitStatus, RunOptions};
pub use user::{resolve_user, ResolvedUser};

/// Errors from preparing or running a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    #[error("{0}")]
    User(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Sys {
        context: String,
        #[source]
        source: nix::Error,
    },
    /// The container could not be set up; nothing of the user's command ran.
    #[error("container setup failed at {step}: {source}")]
    Setup {
        step: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("command not found in the container: {0}")]
    NotFound(String),
    #[error("the process was killed after the {0:?} timeout")]
    TimedOut(Duration),
    #[error("the run was cancelled")]
    Cancelled,
    #[error("writing the process output: {0}")]
    Output(#[source] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

pub(crate) fn sys_err(context: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let context = context.into();
    move |source| Error::Sys { context, source }
}

/// The container's root filesystem.
#[derive(Debug, Clone)]
pub enum Rootfs {
    /// Overlayfs: `lowers` bottom first (as `Store::snapshots` returns them), changes go to
    /// `upper` (the new layer, with overlay whiteouts and opaque xattrs). `work` must be an
    /// empty directory on the same filesystem as `upper`.
    Overlay { lowers: Vec<PathBuf>, upper: PathBuf, work: PathBuf },
    /// Overlayfs with no upper dir (a read-only bind for a single layer): read-only by
    /// construction. Mount points for extra mounts must already exist in the image.
    Lowers(Vec<PathBuf>),
    /// A plain directory, bind-mounted (changes land in the directory itself).
    Dir(PathBuf),
}

/// An extra mount inside the container.
#[derive(Debug, Clone)]
pub enum Mount {
    /// A host file or directory.
    Bind { source: PathBuf, target: String, read_only: bool },
    /// A fresh tmpfs; `size` in bytes (unlimited: half of RAM, the kernel default).
    Tmpfs { target: String, size: Option<u64> },
    /// A host file bind-mounted read-only (`RUN --mount=type=secret`). Its mount point is
    /// removed from the upper dir after the run, so it never reaches a layer.
    Secret { source: PathBuf, target: String },
    /// A persistent read-write host directory (`RUN --mount=type=cache`), created if missing.
    Cache { source: PathBuf, target: String },
}

impl Mount {
    pub fn target(&self) -> &str {
        match self {
            Mount::Bind { target, .. }
            | Mount::Tmpfs { target, .. }
            | Mount::Secret { target, .. }
            | Mount::Cache { target, .. } => target,
        }
    }
}

/// Network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// Share the host's network namespace.
    #[default]
    Host,
    /// A new network namespace with only `lo`, up.
    None,
}

/// Which capabilities the process keeps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Capabilities {
    /// Docker's default set.
    #[default]
    Default,
    /// None at all (also removed from the bounding set).
    None,
    /// Exactly these.
    Set(Vec<Capability>),
}

impl Capabilities {
    pub(crate) fn list(&self) -> Vec<Capability> {
        match self {
            Capabilities::Default => docker_default_capabilities(),
            Capabilities::None => Vec::new(),
            Capabilities::Set(v) => v.clone(),
        }
    }
}

/// The process to run.
#[derive(Debug, Clone)]
pub struct Process {
    /// argv; `args[0]` is looked up in the container's `PATH` when it has no `/`.
    pub args: Vec<String>,
    /// `KEY=value` entries. `PATH` defaults to Docker's, `HOME` to the user's home.
    pub env: Vec<String>,
    /// Absolute working directory inside the container, created if missing ("" = `/`).
    pub cwd: String,
    /// Docker's `USER` syntax: `""` (root), `name`, `uid`, `name:group`, `uid:gid`...,
    /// resolved against the container's `/etc/passwd` and `/etc/group`.
    pub user: String,
}

impl Process {
    pub fn new<S: Into<String>>(args: impl IntoIterator<Item = S>) -> Self {
        Process {
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: "/".into(),
            user: String::new(),
        }
    }
}

/// Everything that defines one container run.
#[derive(Debug, Clone)]
pub struct Config {
    pub rootfs: Rootfs,
    pub process: Process,
    pub mounts: Vec<Mount>,
    pub network: Network,
    pub capabilities: Capabilities,
    /// Remount the root read-only once the mount points exist (`strata run --read-only`).
    pub read_only_root: bool,
    /// Set `no_new_privs` so setuid binaries cannot regain privileges.
    pub no_new_privileges: bool,
    pub hostname: String,
    /// Mount the overlay with `volatile`: no sync of the upper dir when the container ends.
    /// Only for throwaway upper dirs (a build step's, which is fsynced as a layer blob
    /// afterwards); it measured slower than the default on our test host (see
    /// ARCHITECTURE-section.md), so it is off by default.
    pub volatile: bool,
}

impl Config {
    pub fn new(rootfs: Rootfs, process: Process) -> Self {
        Config {
            rootfs,
            process,
            mounts: Vec::new(),
            network: Network::Host,
            capabilities: Capabilities::Default,
            read_only_root: false,
            no_new_privileges: false,
            hostname: "strata".into(),
            volatile: false,
        }
    }
}

/// A validated container configuration, ready to run any number of times.
#[derive(Debug, Clone)]
pub struct Sandbox {
    config: Config,
    user: ResolvedUser,
    env: Vec<String>,
}

impl Sandbox {
    /// Validates `config` and resolves its user against the root filesystem.
    pub fn new(config: Config) -> Result<Sandbox> {
        validate(&config)?;
        let user = resolve_user(&config.rootfs, &config.process.user)?;
        let env = default_env(&config.process.env, &user);
        Ok(Sandbox { config, user, env })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The user the process runs as.
    pub fn user(&self) -> &ResolvedUser {
        &self.user
    }

    /// The final environment (with `PATH` and `HOME` filled in).
    pub fn env(&self) -> &[String] {
        &self.env
    }

    /// An OCI runtime-spec description of this container, with `root.path` = `rootfs_path`
    /// (for an overlay, the caller mounts it there first).
    pub fn spec(&self, rootfs_path: &Path) -> Result<oci_spec::runtime::Spec> {
        spec::build(self, rootfs_path)
    }

    /// Runs the process to completion, streaming its stdout and stderr to the writers.
    /// Every mount lives in the container's own mount namespace, so all of them vanish with
    /// it, whatever happens.
    pub fn run(
        &self,
        stdout: &mut dyn std::io::Write,
        stderr: &mut dyn std::io::Write,
        options: &RunOptions,
    ) -> Result<ExitStatus> {
        run::run(self, stdout, stderr, options)
    }
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn default_env(env: &[String], user: &ResolvedUser) -> Vec<String> {
    let mut out = env.to_vec();
    let has = |k: &str| env.iter().any(|e| e.split_once('=').map(|(n, _)| n) == Some(k));
    if !has("PATH") {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has("HOME") {
        out.push(format!("HOME={}", user.home));
    }
    out
}

fn validate(config: &Config) -> Result<()> {
    let bad = |m: String| Err(Error::Config(m));
    match &config.rootfs {
        Rootfs::Overlay { lowers, upper, work } => {
            if lowers.is_empty() {
                return bad("an overlay root needs at least one lower directory".into());
            }
            for d in lowers.iter().chain([upper, work]) {
                check_dir(d)?;
            }
        }
        Rootfs::Lowers(lowers) => {
            if lowers.is_empty() {
                return bad("a read-only overlay root needs at least one lower directory".into());
            }
            for d in lowers {
                check_dir(d)?;
            }
        }
        Rootfs::Dir(d) => check_dir(d)?,
    }
    let p = &config.process;
    if p.args.is_empty() || p.args[0].is_empty() {
        return bad("the process has no command".into());
    }
    for a in p.args.iter().chain(&p.env) {
        if a.contains('\0') {
            return bad(format!("NUL byte in argument or environment entry {a:?}"));
        }
    }
    for e in &p.env {
        if !e.contains('=') || e.starts_with('=') {
            return bad(format!("environment entry {e:?} is not KEY=value"));
        }
    }
    if !p.cwd.is_empty() && !p.cwd.starts_with('/') {
        return bad(format!("working directory {:?} is not absolute", p.cwd));
    }
    if config.hostname.len() > 64 || config.hostname.contains('\0') {
        return bad(format!("invalid hostname {:?}", config.hostname));
    }
    for m in &config.mounts {
        let t = m.target();
        if !t.starts_with('/') || t.contains('\0') || clean_path(t).is_empty() {
            return bad(format!("mount target {t:?} must be an absolute path below /"));
        }
        match m {
            Mount::Bind { source, .. } | Mount::Secret { source, .. } => {
                if let Err(e) = std::fs::metadata(source) {
                    return Err(Error::Io {
                        context: format!("mount source {}", source.display()),
                        source: e,
                    });
                }
            }
            Mount::Cache { source, .. } => {
                std::fs::create_dir_all(source)
                    .map_err(io_err(format!("creating cache dir {}", source.display())))?;
            }
            Mount::Tmpfs { .. } => {}
        }
    }
    Ok(())
}

fn check_dir(d: &Path) -> Result<()> {
    match std::fs::metadata(d) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::Config(format!("{} is not a directory", d.display()))),
        Err(e) => Err(Error::Io { context: format!("{}", d.display()), source: e }),
    }
}

/// Lexically cleans an absolute container path into its components ("" parts, "." dropped,
/// ".." pops, never above the root).
pub(crate) fn clean_path(p: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}
