//! The build engine: runs the stages of a parsed Dockerfile and commits the target stage as
//! an image in the store.
//!
//! Every filesystem step leaves a directory in overlay form (a RUN's upper dir, a COPY's
//! fresh tree) that is written as a layer blob (`strata_layer::write_layer`) and then moved
//! into the store's snapshots under its chain ID, where it serves as the next step's lower
//! dir and as a later build's, so nothing is unpacked again. Each step has a content-based
//! cache key (see [`Builder::key_inputs`]); a hit reuses the recorded layer without running
//! the step or unpacking anything until a later step needs the files. Independent stages
//! run on their own threads. Nothing here prints: progress goes to the caller through
//! [`Event`]s.

mod commit;
mod context;
mod copy;
mod export;
mod filecopy;
mod fsview;
mod history;
mod instructions;
mod layers;
mod mounts;
mod onbuild;
mod run_step;
mod solver;

use std::collections::BTreeMap;
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use sha2::{Digest as _, Sha256};
use strata_dockerfile::{
    find_ignore_file, read_dockerignore, CopySpec, Diag, Dockerfile, Env, IgnoreMatcher,
    Instruction, InstructionKind, MountType, ShellLex, Span, WalkDecision,
};
use strata_layer::Compression;
use strata_oci::config::{ImageConfig, ImageConfigBuilder};
use strata_oci::{Digest, Reference};
use strata_store::{CacheEntry, CopySource, ImageRecord, Lease, PooledCopy, Store, StoreError};

use context::ContextHasher;
use filecopy::CopyBatch;
use fsview::CopyAttrs;
use layers::{LayerQueue, LayerSlot, NewLayer};
use run_step::write_private;

pub use export::{export_rootfs, export_rootfs_tar};
pub use strata_sandbox::{CancelHandle, Network};

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A problem with a place in the Dockerfile (render it with miette for the snippet).
    #[error("{0}")]
    Dockerfile(Diag),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Other(String),
    /// [`BuildOptions::cancel`] was triggered (Ctrl-C).
    #[error("the build was cancelled")]
    Cancelled,
}

impl From<Diag> for BuildError {
    fn from(d: Diag) -> Self {
        BuildError::Dockerfile(d)
    }
}

type Result<T, E = BuildError> = std::result::Result<T, E>;

fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> BuildError {
    let context = context.into();
    move |source| BuildError::Io { context, source }
}

/// Where a `--secret` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `src=FILE`
    File(PathBuf),
    /// `env=VAR`: the variable's value in the building process's environment.
    Env(String),
}

/// Fetches base images the store lacks: the CLI's registry client (credentials, progress),
/// kept out of the engine so it needs no network code of its own.
pub trait ImagePuller: Send + Sync {
    /// Pulls `name` (a FROM or `--from` reference, expanded) into `store`.
    fn pull(&self, store: &Store, name: &str) -> Result<(), String>;
}

/// What to build and how.
#[derive(Clone)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// Where the Dockerfile is (to find `<Dockerfile>.dockerignore`), if it is a file.
    pub dockerfile_path: Option<PathBuf>,
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    /// Network for RUN (Docker's default: host).
    pub network: Network,
    /// `--label` values, set on the final image.
    pub labels: Vec<(String, String)>,
    pub tags: Vec<Reference>,
    pub compression: Compression,
    /// `--secret id=...`: what `RUN --mount=type=secret,id=...` sees.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `--no-cache`: run every step (the results are still recorded in the cache).
    pub no_cache: bool,
    /// Stops the build when cancelled (the CLI's Ctrl-C): running RUNs are killed, the
    /// layers already written stay cached, and the build returns [`BuildError::Cancelled`].
    pub cancel: Option<CancelHandle>,
    /// `--pull`: fetch every base image again, even one the store has.
    pub pull: bool,
    /// Where missing base images come from; without one they must be in the store.
    pub puller: Option<Arc<dyn ImagePuller>>,
    /// `--no-cache-filter`: stages (names or indexes) whose steps always run.
    pub no_cache_filter: Vec<String>,
}

impl std::fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOptions")
            .field("context", &self.context)
            .field("target", &self.target)
            .field("tags", &self.tags)
            .field("no_cache", &self.no_cache)
            .field("pull", &self.pull)
            .finish_non_exhaustive()
    }
}

impl BuildOptions {
    pub fn new(context: impl Into<PathBuf>) -> Self {
        BuildOptions {
            context: context.into(),
            dockerfile_path: None,
            target: None,
            build_args: BTreeMap::new(),
            network: Network::Host,
            labels: Vec::new(),
            tags: Vec::new(),
            compression: Compression::Gzip,
            secrets: BTreeMap::new(),
            no_cache: false,
            cancel: None,
            pull: false,
            puller: None,
            no_cache_filter: Vec::new(),
        }
    }
}

/// Progress of a build, for the caller to display. Stages run in parallel, so events of
/// different steps interleave; `id` says which step each belongs to.
#[derive(Debug)]
pub enum Event<'a> {
    /// A step starts (once the stages it reads from are built): `#id [stage n/m] INSTR`.
    /// The last step of every build is `exporting to image` (waiting for the layers still
    /// being written, then the commit), whose output lines say what it did.
    Step { id: usize, text: &'a str },
    /// Output of a step (a RUN's raw bytes, as they came).
    Output { id: usize, stream: Stream, data: &'a [u8] },
    /// A step finished; `layer` when it produced one whose digest is known already (a
    /// cached one: fresh layers are written in the background), `cached` when it came
    /// from the build cache without running.
    Done { id: usize, layer: Option<&'a Digest>, cached: bool },
    /// A step failed: its error is the build's, or (`canceled`) it was stopped because
    /// another step failed or the build was cancelled.
    Failed { id: usize, canceled: bool },
}

/// Which of a RUN's output streams bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The committed image.
#[derive(Debug, Clone)]
pub struct BuildResult {
    pub id: Digest,
    pub manifest_digest: Digest,
    pub tags: Vec<Reference>,
}

/// The state of a stage while its instructions run.
#[derive(Clone)]
struct StageState {
    config: ImageConfigBuilder,
    layers: Vec<LayerSlot>,
    /// The layers' dirs: a base image's or cached layer's snapshot, filled in lazily when a
    /// step needs the files; this build's own layer dirs at once.
    lowers: Vec<Option<PathBuf>>,
    /// The directory the current step produced, until the solver queues it for writing.
    new_layer: Option<NewLayer>,
    shell: Vec<String>,
    workdir: String,
    user: String,
    cmd_set: bool,
    /// The ARGs this stage declared so far, in order: BuildKit lists them, with their
    /// values, in a RUN's history entry (a stage does not inherit its base stage's).
    args: Vec<String>,
    /// Cache key of the last step.
    key: String,
    /// `--no-cache-filter` names this stage: its steps skip cache lookups.
    no_cache: bool,
    /// The latest `created` time of this build's steps.
    created: Option<String>,
}

impl StageState {
    fn new(
        config: ImageConfigBuilder,
        shell: Option<Vec<String>>,
        workdir: &str,
        user: &str,
    ) -> Self {
        StageState {
            config,
            layers: Vec::new(),
            lowers: Vec::new(),
            new_layer: None,
            shell: shell.unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]),
            workdir: workdir.to_string(),
            user: user.to_string(),
            cmd_set: false,
            args: Vec::new(),
            key: String::new(),
            no_cache: false,
            created: None,
        }
    }

    fn push_layer(&mut self, layer: LayerSlot, dir: Option<PathBuf>) {
        self.layers.push(layer);
        self.lowers.push(dir);
    }
}

/// One instruction about to run, or to be taken from the cache.
#[derive(Clone, Copy)]
struct StepCtx<'s> {
    ins: &'s Instruction,
    /// The instruction as written (continuation lines joined).
    text: &'s str,
    env: &'s VarEnv,
    id: usize,
    hit: Option<&'s CacheEntry>,
    /// The step's history time.
    created: &'s str,
}

struct VarEnv(BTreeMap<String, String>);

impl Env for VarEnv {
    fn lookup(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// sha256 over the parts, each length-prefixed so no two lists collide.
fn cache_key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking step thread leaves plain data behind; the build reports its error anyway.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Builds the target of `df` and commits it with `opts.tags`.
pub fn build(
    store: &Store,
    df: &Dockerfile,
    opts: &BuildOptions,
    progress: &mut (dyn FnMut(Event) + Send),
) -> Result<BuildResult> {
    let lease = store.lease()?;
    // Opportunistic: make older snapshots durable while it is cheap (see strata-store's
    // snapshots); a failure here only means they stay marked and are checked later.
    let _ = store.settle_snapshots();
    let tmp_root = store.root().join("build-tmp");
    fs::create_dir_all(&tmp_root).map_err(io_ctx(format!("creating {}", tmp_root.display())))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{}-", std::process::id()))
        .tempdir_in(&tmp_root)
        .map_err(io_ctx("creating the build's work directory"))?;
    let b = Builder {
        store,
        lease: &lease,
        df,
        opts,
        tmp: tmp.path().to_path_buf(),
        counter: AtomicUsize::new(0),
        ignore: Mutex::new(None),
        lex: ShellLex::new(df.escape),
        epoch: source_date_epoch(&opts.build_args),
        hasher: ContextHasher::new(&opts.context),
        progress: Mutex::new(progress),
        done: Mutex::new(BTreeMap::new()),
        done_cv: Condvar::new(),
        failed: AtomicBool::new(false),
        errors: Mutex::new(Vec::new()),
        cancel: match &opts.cancel {
            Some(c) => c.clone(),
            None => CancelHandle::new()
                .map_err(|e| BuildError::Other(format!("cannot set up cancellation: {e}")))?,
        },
        layers: LayerQueue::default(),
        pulled: Mutex::new(BTreeSet::new()),
        copy_pool: OnceLock::new(),
        copy_records: Mutex::new(HashMap::new()),
        scheduled: Mutex::new(Vec::new()),
        images: Mutex::new(BTreeMap::new()),
    };
    let result = b.run();
    drop(b);
    drop(tmp);
    result
}

/// Extracts a build context that came as an archive (`strata build - < ctx.tar.xz`): a tar,
/// plain or gzip/bzip2/xz/zstd-compressed, as Docker takes it. As for ADD, entries that
/// would land outside `dir` are refused and decompression is bounded.
pub fn extract_context_archive(archive: &Path, dir: &Path) -> std::result::Result<(), String> {
    copy::archive::extract(archive, dir, None)
}

/// `SOURCE_DATE_EPOCH` from `--build-arg` (BuildKit's way), else from the environment.
fn source_date_epoch(build_args: &BTreeMap<String, String>) -> Option<u64> {
    let raw = build_args.get("SOURCE_DATE_EPOCH").cloned();
    raw.or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok()).and_then(|v| v.trim().parse().ok())
}

fn rfc3339(dt: chrono::DateTime<chrono::Utc>) -> String {
    dt.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

struct Builder<'a> {
    store: &'a Store,
    lease: &'a Lease<'a>,
    df: &'a Dockerfile,
    opts: &'a BuildOptions,
    tmp: PathBuf,
    counter: AtomicUsize,
    /// The .dockerignore matcher, and whether it has any pattern.
    ignore: Mutex<Option<(IgnoreMatcher, bool)>>,
    lex: ShellLex,
    epoch: Option<u64>,
    hasher: ContextHasher,
    progress: Mutex<&'a mut (dyn FnMut(Event) + Send)>,
    /// Finished stages, by index; `done_cv` wakes the stages waiting for them.
    done: Mutex<BTreeMap<usize, StageState>>,
    done_cv: Condvar,
    failed: AtomicBool,
    /// Every failure, first one first: that one is the build's error.
    errors: Mutex<Vec<BuildError>>,
    /// Kills the running RUNs when the build fails.
    cancel: CancelHandle,
    /// The background layer writer's queue.
    layers: LayerQueue,
    /// Images pulled by this build (`--pull` fetches each once).
    pulled: Mutex<BTreeSet<String>>,
    /// Earlier copies of context files, to link (see `filecopy`).
    copy_pool: OnceLock<HashMap<PathBuf, PooledCopy>>,
    /// What each COPY layer directory holds copies of, recorded when it is adopted.
    copy_records: Mutex<HashMap<PathBuf, Vec<CopySource>>>,
    /// The stages this build runs.
    scheduled: Mutex<Vec<usize>>,
    /// Images named by `COPY --from` / `--mount from=`: their ID and layer stack.
    images: Mutex<BTreeMap<String, (Digest, StageState)>>,
}

/// A base image read from the store.
struct BaseImage {
    record: ImageRecord,
    config: ImageConfig,
}

impl<'a> Builder<'a> {
    fn err(&self, span: Span, msg: impl Into<String>) -> BuildError {
        BuildError::Dockerfile(Diag::error("build::step", msg).at(span).in_file(&self.df.source))
    }

    fn emit(&self, e: Event) {
        (lock(&self.progress))(e);
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Records a failure and stops the build: other stages stop at their next step and
    /// running RUNs are killed.
    fn fail(&self, e: BuildError) {
        lock(&self.errors).push(e);
        self.failed.store(true, Ordering::SeqCst);
        self.cancel.cancel();
        // Under the lock, so a stage between its check of `failed` and its wait still wakes.
        let _done = lock(&self.done);
        self.done_cv.notify_all();
    }

    fn fresh_dir(&self, what: &str) -> Result<PathBuf> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let p = self.tmp.join(format!("{what}{n}"));
        fs::create_dir(&p).map_err(io_ctx(format!("creating {}", p.display())))?;
        Ok(p)
    }

    /// A step's `created` time: `SOURCE_DATE_EPOCH`, else the cached step's, else now.
    fn created(&self, hit: Option<&CacheEntry>) -> String {
        match (self.epoch, hit) {
            (Some(s), _) => {
                rfc3339(chrono::DateTime::from_timestamp(s as i64, 0).unwrap_or_default())
            }
            (None, Some(h)) => h.created.clone(),
            (None, None) => rfc3339(chrono::Utc::now()),
        }
    }

    fn expand(&self, word: &str, env: &VarEnv, span: Span) -> Result<String> {
        self.lex
            .process_word(word, env)
            .map_err(|e| self.err(span, format!("cannot expand {word:?}: {e}")))
    }

    /// What a step's cache key needs besides its parent's key, its text and its
    /// environment: the content of the context files it reads, the keys of the stages
    /// (or the IDs of the images) it reads from, its network, its heredocs.
    fn key_inputs(&self, ins: &Instruction, env: &VarEnv) -> Result<String> {
        let span = ins.span;
        let mut out = String::new();
        match &ins.kind {
            InstructionKind::Copy(spec) | InstructionKind::Add(spec) => {
                let add = matches!(ins.kind, InstructionKind::Add(_));
                out.push_str(&self.copy_key_inputs(spec, add, env, span)?);
            }
            InstructionKind::Run { mounts, network, heredocs, .. } => {
                out.push_str(&format!("network {:?} {:?}\n", network, self.opts.network));
                for h in heredocs {
                    out.push_str(&format!("heredoc {} {}\n", h.name, h.content));
                }
                for m in mounts.iter().filter(|m| m.kind == MountType::Bind) {
                    match &m.from {
                        Some(f) => {
                            let f = self.expand(f, env, span)?;
                            out.push_str(&self.source_key(&f, span)?);
                        }
                        None => {
                            let src = self.expand(m.source.as_deref().unwrap_or("."), env, span)?;
                            let rel = fsview::clean_rel(&src);
                            let matches = self.context_matches(&src, &rel, span)?;
                            let rels: Vec<PathBuf> =
                                matches.into_iter().map(|m| m.node.rel).collect();
                            out.push_str(&format!("bind {src} {}\n", self.hash_context(&rels)?));
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(out)
    }

    fn hash_context(&self, rels: &[PathBuf]) -> Result<String> {
        let ignore = self.ignore()?;
        self.hasher.hash(self.store, rels, &ignore)
    }

    fn ignore(&self) -> Result<IgnoreMatcher> {
        let mut slot = lock(&self.ignore);
        if let Some((m, _)) = slot.as_ref() {
            return Ok(m.clone());
        }
        let df_path = self
            .opts
            .dockerfile_path
            .clone()
            .unwrap_or_else(|| self.opts.context.join("Dockerfile"));
        let patterns = match find_ignore_file(&df_path, &self.opts.context) {
            Some(f) => {
                let text =
                    fs::read_to_string(&f).map_err(io_ctx(format!("reading {}", f.display())))?;
                read_dockerignore(&text)
            }
            None => Vec::new(),
        };
        let m = IgnoreMatcher::new(&patterns)
            .map_err(|e| BuildError::Other(format!(".dockerignore: {e}")))?;
        *slot = Some((m.clone(), !patterns.is_empty()));
        Ok(m)
    }

    /// The context directory, canonical (the key of its copy records), if it exists.
    fn context_root(&self) -> Option<PathBuf> {
        fs::canonicalize(&self.opts.context).ok()
    }

    fn has_ignore_patterns(&self) -> Result<bool> {
        self.ignore()?;
        Ok(lock(&self.ignore).as_ref().is_some_and(|(_, any)| *any))
    }
}

/// The instruction as written, continuation lines joined.
pub fn instruction_text(df: &Dockerfile, ins: &Instruction) -> String {
    let s = &ins.node.span;
    let raw = df.source.text.get(s.offset..s.offset + s.len).unwrap_or_default();
    let esc = df.escape;
    let mut out = String::new();
    for line in raw.lines() {
        let t = line.trim_end();
        let t = t.strip_suffix(esc).unwrap_or(t);
        let t = t.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(t);
    }
    out
}
