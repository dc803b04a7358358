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

mod context;
mod fsview;
mod history;
mod mounts;

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use serde_json::json;
use sha2::{Digest as _, Sha256};
use strata_dockerfile::{
    analyze, find_ignore_file, read_dockerignore, stages_needed, BaseRef,
    BuildOptions as ScopeOptions, CopySpec, Diag, Dockerfile, Env, Heredoc, IgnoreMatcher,
    Instruction, InstructionKind, MountType, ShellLex, ShellOrExec, Span, WalkDecision,
};
use strata_layer::{write_layer, Compression, UnpackMode, UnpackOptions, WriteOptions};
use strata_oci::config::{Healthcheck, History, ImageConfig, ImageConfigBuilder};
use strata_oci::media_types::{OCI_CONFIG, OCI_LAYER_TAR, OCI_LAYER_TAR_GZIP, OCI_MANIFEST};
use strata_oci::{Digest, Platform, Reference};
use strata_sandbox::{Config, Process, Rootfs, RunOptions, Sandbox};
use strata_store::{CacheEntry, ImageRecord, LayerRecord, Lease, NewImage, Store, StoreError};

use context::ContextHasher;
use fsview::CopyAttrs;

pub use strata_sandbox::Network;

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

/// What to build and how.
#[derive(Debug, Clone)]
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
        }
    }
}

/// Progress of a build, for the caller to display. Stages run in parallel, so events of
/// different steps interleave; `id` says which step each belongs to.
#[derive(Debug)]
pub enum Event<'a> {
    /// A step starts: `#id [stage n/m] INSTRUCTION`.
    Step { id: usize, text: &'a str },
    /// Output of a RUN step (raw bytes, as they came).
    Output { id: usize, data: &'a [u8] },
    /// A step finished; `layer` when it produced one, `cached` when it came from the build
    /// cache without running.
    Done { id: usize, layer: Option<&'a Digest>, cached: bool },
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
    layers: Vec<LayerRecord>,
    /// The layers' snapshot dirs, filled in lazily: a cached layer has none until a step
    /// needs the files.
    lowers: Vec<Option<PathBuf>>,
    /// Chain ID of the top layer.
    chain: Option<Digest>,
    shell: Vec<String>,
    workdir: String,
    user: String,
    cmd_set: bool,
    /// The ARGs this stage declared so far, in order: BuildKit lists them, with their
    /// values, in a RUN's history entry (a stage does not inherit its base stage's).
    args: Vec<String>,
    /// Cache key of the last step.
    key: String,
    /// The latest `created` time of this build's steps.
    created: Option<String>,
}

impl StageState {
    fn push_layer(&mut self, layer: LayerRecord, dir: Option<PathBuf>) {
        self.chain = Some(match &self.chain {
            None => layer.diff_id.clone(),
            Some(prev) => Digest::sha256_of(format!("{prev} {}", layer.diff_id).as_bytes()),
        });
        self.layers.push(layer);
        self.lowers.push(dir);
    }
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
        epoch: source_date_epoch(),
        hasher: ContextHasher::new(&opts.context),
        progress: Mutex::new(progress),
        done: Mutex::new(BTreeMap::new()),
        done_cv: Condvar::new(),
        failed: AtomicBool::new(false),
        scheduled: Mutex::new(Vec::new()),
        images: Mutex::new(BTreeMap::new()),
    };
    let result = b.run();
    drop(b);
    drop(tmp);
    result
}

fn source_date_epoch() -> Option<u64> {
    std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.parse().ok())
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

    fn load_image(&self, name: &str, span: Span) -> Result<BaseImage> {
        let record = match self.store.resolve(name) {
            Ok(r) => r,
            Err(StoreError::ImageNotFound(_)) => {
                return Err(BuildError::Dockerfile(
                    Diag::error("build::base-image", format!("image {name} is not in the store"))
                        .at(span)
                        .in_file(&self.df.source)
                        .with_help(format!(
                        "pull it or load it first (`strata pull {name}` or `strata load -i FILE`)"
                    )),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let raw = self.store.blobs().read(&record.id)?;
        let config =
            ImageConfig::parse(raw).map_err(|e| BuildError::Other(format!("image {name}: {e}")))?;
        Ok(BaseImage { record, config })
    }

    /// An image named by `--from`: its ID and its layers (snapshots made on first use).
    fn image_stage(&self, name: &str, span: Span) -> Result<(Digest, StageState)> {
        if let Some(v) = lock(&self.images).get(name) {
            return Ok(v.clone());
        }
        let img = self.load_image(name, span)?;
        let st = self.state_from_image(&img);
        let v = (img.record.id.clone(), st);
        lock(&self.images).insert(name.to_string(), v.clone());
        Ok(v)
    }

    /// A stage named by `--from` (name or index), once it has finished: a step that reads
    /// another stage waits for it there, not at the start of its own stage. `None` when
    /// `f` names no stage (so an image).
    fn stage_by_ref(&self, f: &str) -> Option<Option<StageState>> {
        let i = self.df.find_stage(f)?;
        if !lock(&self.scheduled).contains(&i) {
            return Some(None);
        }
        let mut done = lock(&self.done);
        loop {
            if let Some(s) = done.get(&i) {
                return Some(Some(s.clone()));
            }
            if self.failed.load(Ordering::SeqCst) {
                return Some(None);
            }
            done = self.done_cv.wait(done).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn run(&self) -> Result<BuildResult> {
        let df = self.df;
        let order = stages_needed(df, self.opts.target.as_deref())?;
        let mut sopts = ScopeOptions::with_build_args(&self.opts.build_args);
        // First pass: learn the expanded FROM references, then read those images' ENV.
        let first = analyze(df, &sopts);
        let mut bases: BTreeMap<usize, BaseImage> = BTreeMap::new();
        for &i in &order {
            if let BaseRef::Image(name) = &first.stages[i].base {
                let img = self.load_image(name, df.stages[i].span)?;
                let env = img
                    .config
                    .config()
                    .env
                    .iter()
                    .flatten()
                    .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                    .collect();
                sopts.image_env.insert(name.clone(), env);
                bases.insert(i, img);
            }
        }
        let scope = analyze(df, &sopts);
        if let Some(e) =
            scope.warnings.iter().find(|w| w.severity == strata_dockerfile::Severity::Error)
        {
            return Err(BuildError::Dockerfile(e.clone()));
        }
        let last = *order.last().ok_or_else(|| BuildError::Other("nothing to build".into()))?;
        // Step ids are fixed up front (stage by stage, in dependency order), so parallel
        // stages number their steps as a sequential build would.
        let mut first_id = BTreeMap::new();
        let mut next = 1;
        for &si in &order {
            first_id.insert(si, next);
            next += df.stages[si].instructions.len() + 1;
        }
        *lock(&self.scheduled) = order.clone();
        let bases = Mutex::new(bases);
        let errors: Mutex<Vec<BuildError>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for &si in &order {
                // Only a `FROM <stage>` waits up front; `--from` waits at its step.
                let deps: Vec<usize> = match scope.stages[si].base {
                    BaseRef::Stage(p) => vec![p],
                    _ => Vec::new(),
                };
                let (scope, bases, errors, first) = (&scope, &bases, &errors, first_id[&si]);
                s.spawn(move || {
                    if !self.wait_for(&deps) {
                        return;
                    }
                    let base = lock(bases).remove(&si);
                    let r = self.run_stage(si, scope, base, first);
                    let mut done = lock(&self.done);
                    match r {
                        Ok(st) => {
                            done.insert(si, st);
                        }
                        Err(e) => {
                            lock(errors).push(e);
                            self.failed.store(true, Ordering::SeqCst);
                        }
                    }
                    drop(done);
                    self.done_cv.notify_all();
                });
            }
        });
        if let Some(e) = errors.into_inner().unwrap_or_else(|p| p.into_inner()).into_iter().next() {
            return Err(e);
        }
        let mut st = lock(&self.done)
            .remove(&last)
            .ok_or_else(|| BuildError::Other("no final stage".into()))?;
        for (k, v) in &self.opts.labels {
            st.config.set_label(k, v);
        }
        self.commit(st)
    }

    /// Waits until the stages `deps` are done; false when another stage failed.
    fn wait_for(&self, deps: &[usize]) -> bool {
        let mut done = lock(&self.done);
        loop {
            if self.failed.load(Ordering::SeqCst) {
                return false;
            }
            if deps.iter().all(|d| done.contains_key(d)) {
                return true;
            }
            done = self.done_cv.wait(done).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn run_stage(
        &self,
        si: usize,
        scope: &strata_dockerfile::Scope,
        base: Option<BaseImage>,
        first_id: usize,
    ) -> Result<StageState> {
        let df = self.df;
        let sscope = &scope.stages[si];
        let stage = &df.stages[si];
        let label = stage.name.clone().unwrap_or_else(|| format!("stage-{si}"));
        let n = stage.instructions.len() + 1;
        let text = format!("[{label} 1/{n}] FROM {}", sscope.base_expanded);
        self.emit(Event::Step { id: first_id, text: &text });
        let (mut st, from) = match &sscope.base {
            BaseRef::Scratch => (
                StageState {
                    config: ImageConfigBuilder::new(&Platform::host()),
                    layers: Vec::new(),
                    lowers: Vec::new(),
                    chain: None,
                    shell: vec!["/bin/sh".into(), "-c".into()],
                    workdir: String::new(),
                    user: String::new(),
                    cmd_set: false,
                    args: Vec::new(),
                    key: String::new(),
                    created: None,
                },
                "scratch".to_string(),
            ),
            BaseRef::Stage(p) => {
                let mut s = lock(&self.done).get(p).cloned().ok_or_else(|| {
                    BuildError::Other(format!("stage {p} was not built before stage {si}"))
                })?;
                s.cmd_set = false;
                s.args.clear();
                let k = format!("stage {}", s.key);
                (s, k)
            }
            BaseRef::Image(_) => {
                let img = base.ok_or_else(|| {
                    BuildError::Other(format!("base image of stage {si} was not loaded"))
                })?;
                (self.state_from_image(&img), format!("image {}", img.record.id))
            }
        };
        let epoch = self.epoch.map(|e| e.to_string()).unwrap_or_default();
        st.key = cache_key(&["FROM", &from, &epoch]);
        self.emit(Event::Done { id: first_id, layer: None, cached: false });
        for (ii, ins) in stage.instructions.iter().enumerate() {
            if self.failed.load(Ordering::SeqCst) {
                // Another stage failed: its error is the build's; stop here.
                return Err(BuildError::Other("stopped: another stage failed".into()));
            }
            let id = first_id + ii + 1;
            let itext = instruction_text(df, ins);
            let text = format!("[{label} {}/{n}] {itext}", ii + 2);
            self.emit(Event::Step { id, text: &text });
            let env = VarEnv(sscope.env_at(ii).into_iter().collect());
            let extra = self.key_inputs(ins, &env)?;
            let env_json = serde_json::to_string(&env.0).unwrap_or_default();
            let key = cache_key(&[&st.key, &itext, &env_json, &extra]);
            let hit =
                if self.opts.no_cache { None } else { self.store.cache_get(&key, self.lease)? };
            let created = self.created(hit.as_ref());
            let before = st.layers.len();
            let layer = self.instruction(&mut st, ins, &env, id, hit.as_ref(), &created)?;
            st.key = key.clone();
            if st.created.as_ref().is_none_or(|c| *c < created) {
                st.created = Some(created.clone());
            }
            if hit.is_none() {
                let produced = st.layers.len() > before;
                let entry = CacheEntry {
                    layer: if produced { st.layers.last().cloned() } else { None },
                    chain_id: if produced { st.chain.clone() } else { None },
                    created,
                };
                self.store.cache_put(&key, &entry)?;
            }
            self.emit(Event::Done { id, layer: layer.as_ref(), cached: hit.is_some() });
        }
        Ok(st)
    }

    fn state_from_image(&self, img: &BaseImage) -> StageState {
        let c = img.config.config();
        let mut st = StageState {
            config: ImageConfigBuilder::from_parent(&img.config),
            layers: Vec::new(),
            lowers: Vec::new(),
            chain: None,
            shell: c.shell.clone().unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]),
            workdir: c.working_dir.clone().unwrap_or_default(),
            user: c.user.clone().unwrap_or_default(),
            cmd_set: false,
            args: Vec::new(),
            key: String::new(),
            created: None,
        };
        for l in &img.record.layers {
            st.push_layer(l.clone(), None);
        }
        st
    }

    /// The stage's layer dirs, bottom first, making the snapshots that are missing.
    fn lowers(&self, st: &mut StageState) -> Result<Vec<PathBuf>> {
        if st.lowers.iter().any(Option::is_none) {
            let dirs = self.store.layer_snapshots(&st.layers, self.lease)?;
            for (slot, d) in st.lowers.iter_mut().zip(dirs) {
                if slot.is_none() {
                    *slot = Some(d);
                }
            }
        }
        Ok(st.lowers.iter().flatten().cloned().collect())
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
                for h in &spec.heredocs {
                    out.push_str(&format!("heredoc {} {}\n", h.name, h.content));
                }
                match &spec.from {
                    Some(f) => out.push_str(&self.source_key(f, span)?),
                    None => {
                        for s in &spec.srcs {
                            let src = self.expand(s, env, span)?;
                            if src.contains("://") || src.starts_with("git@") {
                                out.push_str(&format!("url {src}\n"));
                                continue;
                            }
                            let rel = fsview::clean_rel(&src);
                            let matches = self.context_matches(&src, &rel, span)?;
                            out.push_str(&format!("src {src} {}\n", self.hash_context(&matches)?));
                        }
                    }
                }
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
                            out.push_str(&format!("bind {src} {}\n", self.hash_context(&matches)?));
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
        self.hasher
            .hash(rels, &ignore)
            .map_err(io_ctx(format!("hashing the build context {}", self.opts.context.display())))
    }

    /// The cache input of a `--from`: the stage's key or the image's ID.
    fn source_key(&self, f: &str, span: Span) -> Result<String> {
        match self.stage_by_ref(f) {
            Some(Some(s)) => Ok(format!("from stage {}\n", s.key)),
            Some(None) => Err(self.err(span, format!("stage {f} was not built (or failed)"))),
            None => Ok(format!("from image {}\n", self.image_stage(f, span)?.0)),
        }
    }

    /// The layer stack a `--from` names, with its snapshots made.
    fn source_stack(&self, f: &str, span: Span) -> Result<Vec<PathBuf>> {
        let mut st = match self.stage_by_ref(f) {
            Some(Some(s)) => s,
            Some(None) => {
                return Err(self.err(span, format!("stage {f} was not built (or failed)")))
            }
            None => self.image_stage(f, span)?.1,
        };
        self.lowers(&mut st)
    }

    /// Records a cached step's result in the stage without running it.
    fn apply_cached(
        &self,
        st: &mut StageState,
        hit: &CacheEntry,
        history: History,
    ) -> Result<Option<Digest>> {
        match &hit.layer {
            Some(l) => {
                st.config.add_layer(&l.diff_id, history);
                st.push_layer(l.clone(), None);
                Ok(Some(l.digest.clone()))
            }
            None => {
                st.config.add_empty_layer_history(history);
                Ok(None)
            }
        }
    }

    fn instruction(
        &self,
        st: &mut StageState,
        ins: &Instruction,
        env: &VarEnv,
        id: usize,
        hit: Option<&CacheEntry>,
        created: &str,
    ) -> Result<Option<Digest>> {
        let span = ins.span;
        let hist = |by: String| History {
            created: Some(created.to_string()),
            created_by: Some(by),
            comment: Some("buildkit.dockerfile.v0".into()),
            ..History::default()
        };
        let text = instruction_text(self.df, ins);
        match &ins.kind {
            InstructionKind::Arg(decls) => {
                // BuildKit: `ARG` and each name with its default as written, expanded;
                // not the value a --build-arg gives it.
                let mut shown = Vec::new();
                for d in decls {
                    let name = self.expand(&d.name, env, span)?;
                    shown.push(match &d.default {
                        Some(v) => format!("{name}={}", self.expand(v, env, span)?),
                        None => name.clone(),
                    });
                    st.args.push(name);
                }
                st.config.add_empty_layer_history(hist(format!("ARG {}", shown.join(" "))));
            }
            InstructionKind::Env { vars, .. } => {
                let mut shown: Vec<(String, String)> = Vec::new();
                for kv in vars {
                    // Later pairs of one ENV see earlier ones: the scope log already holds
                    // the expanded value of each, so take it from there.
                    let key = self.expand(&kv.key, env, span)?;
                    let mut local = VarEnv(env.0.clone());
                    for (k, v) in &shown {
                        local.0.insert(k.clone(), v.clone());
                    }
                    let value = self.expand(&kv.value, &local, span)?;
                    st.config.set_env(&key, &value);
                    shown.push((key, value));
                }
                let s: Vec<String> = shown.iter().map(|(k, v)| format!("{k}={v}")).collect();
                st.config.add_empty_layer_history(hist(format!("ENV {}", s.join(" "))));
            }
            InstructionKind::Label { labels, .. } => {
                let mut shown = Vec::new();
                for kv in labels {
                    let k = self.expand(&kv.key, env, span)?;
                    let v = self.expand(&kv.value, env, span)?;
                    st.config.set_label(&k, &v);
                    shown.push(format!("{k}={v}"));
                }
                st.config.add_empty_layer_history(hist(format!("LABEL {}", shown.join(" "))));
            }
            InstructionKind::User(u) => {
                let u = self.expand(u, env, span)?;
                st.config.set_user(&u);
                st.user = u.clone();
                st.config.add_empty_layer_history(hist(format!("USER {u}")));
            }
            InstructionKind::Workdir(w) => {
                let w = self.expand(w, env, span)?;
                let abs = if w.starts_with('/') {
                    w.clone()
                } else {
                    format!("{}/{w}", st.workdir.trim_end_matches('/'))
                };
                let abs = format!("/{}", fsview::clean_rel(&abs).display());
                st.workdir = abs.clone();
                st.config.set_working_dir(&abs);
                let rel = fsview::clean_rel(&abs);
                if let Some(h) = hit {
                    return self.apply_cached(st, h, hist(format!("WORKDIR {abs}")));
                }
                let lowers = self.lowers(st)?;
                if !rel.as_os_str().is_empty() && !fsview::is_dir(&lowers, &rel) {
                    let dir = self.fresh_dir("workdir")?;
                    // BuildKit's mkdir -p as the USER: every directory it makes is theirs.
                    let owner = self.resolve_owner(&lowers, &st.user, span)?;
                    Mkdirs { lowers: &lowers, owner }.make(&dir, &rel)?;
                    return self.add_layer(st, dir, hist(format!("WORKDIR {abs}"))).map(Some);
                }
                st.config.add_empty_layer_history(hist(format!("WORKDIR {abs}")));
            }
            InstructionKind::Cmd(c) => {
                let v = self.shell_or_exec(st, c);
                st.config.set_cmd(Some(v.clone()));
                st.cmd_set = true;
                st.config
                    .add_empty_layer_history(hist(format!("CMD {}", history::go_quoted_list(&v))));
            }
            InstructionKind::Entrypoint(c) => {
                let v = self.shell_or_exec(st, c);
                st.config.set_entrypoint(Some(v.clone()));
                // Docker: an ENTRYPOINT resets a CMD inherited from the base.
                if !st.cmd_set {
                    st.config.set_cmd(None);
                }
                st.config.add_empty_layer_history(hist(format!(
                    "ENTRYPOINT {}",
                    history::go_quoted_list(&v)
                )));
            }
            InstructionKind::Shell(s) => {
                st.shell = s.clone();
                st.config.set_shell(s.clone());
                st.config.add_empty_layer_history(hist(format!("SHELL {}", history::go_list(s))));
            }
            InstructionKind::Expose(ports) => {
                // Docker's nat.ParsePortSpecs: `8080/TCP`, `08080` and `8080` are one port.
                let mut keys = std::collections::BTreeSet::new();
                for p in ports {
                    for p in
                        self.lex.process_words(p, env).map_err(|e| self.err(span, e.to_string()))?
                    {
                        let k = history::port_keys(&p)
                            .map_err(|e| self.err(span, format!("EXPOSE {p}: {e}")))?;
                        keys.extend(k);
                    }
                }
                for k in &keys {
                    st.config.expose_port(k);
                }
                st.config.add_empty_layer_history(hist(history::expose(&keys)));
            }
            InstructionKind::Volume(vols) => {
                let mut shown = Vec::new();
                for v in vols {
                    let v = self.expand(v, env, span)?;
                    st.config.add_volume(&v);
                    shown.push(v);
                }
                st.config
                    .add_empty_layer_history(hist(format!("VOLUME {}", history::go_list(&shown))));
            }
            InstructionKind::Stopsignal(s) => {
                let s = self.expand(s, env, span)?;
                st.config.set_stop_signal(&s);
                st.config.add_empty_layer_history(hist(format!("STOPSIGNAL {s}")));
            }
            InstructionKind::Healthcheck { test, options } => {
                let hc = match test {
                    None => {
                        Healthcheck { test: Some(vec!["NONE".into()]), ..Healthcheck::default() }
                    }
                    Some(t) => {
                        let test = match t {
                            ShellOrExec::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                            ShellOrExec::Exec(v) => {
                                let mut out = vec!["CMD".to_string()];
                                out.extend(v.iter().cloned());
                                out
                            }
                        };
                        let ns = |d: Option<std::time::Duration>| d.map(|d| d.as_nanos() as i64);
                        Healthcheck {
                            test: Some(test),
                            interval: ns(options.interval),
                            timeout: ns(options.timeout),
                            start_period: ns(options.start_period),
                            start_interval: ns(options.start_interval),
                            retries: options.retries.map(i64::from),
                        }
                    }
                };
                st.config.set_healthcheck(Some(&hc));
                st.config.add_empty_layer_history(hist(history::healthcheck(&hc)));
            }
            InstructionKind::Onbuild(_) => {
                let trigger = text
                    .split_once(char::is_whitespace)
                    .map(|(_, rest)| rest.trim().to_string())
                    .unwrap_or_default();
                // BuildKit records the trigger in the config only: no history entry.
                st.config.add_onbuild(&trigger);
            }
            InstructionKind::Maintainer(m) => {
                st.config.set_author(m);
                st.config.add_empty_layer_history(hist(format!("MAINTAINER {m}")));
            }
            InstructionKind::Run { cmd, mounts, network, security, heredocs } => {
                if security.as_deref() == Some("insecure") {
                    return Err(self.err(span, "RUN --security=insecure is not supported"));
                }
                let net = match network.as_deref() {
                    None | Some("default") => self.opts.network,
                    Some("host") => Network::Host,
                    Some("none") => Network::None,
                    Some(other) => {
                        return Err(self.err(span, format!("unknown RUN --network={other}")))
                    }
                };
                let (args, script) = self.run_args(st, cmd, heredocs);
                let build_args: Vec<(String, String)> = st
                    .args
                    .iter()
                    .map(|k| (k.clone(), env.0.get(k).cloned().unwrap_or_default()))
                    .collect();
                let by = format!("{} # buildkit", history::run(&args, &build_args));
                if let Some(h) = hit {
                    return self.apply_cached(st, h, hist(by));
                }
                let step = RunStep { ins, args, script, mounts, env, network: net, id };
                return self.run_step(st, step, hist(by));
            }
            InstructionKind::Copy(spec) | InstructionKind::Add(spec) => {
                let add = matches!(ins.kind, InstructionKind::Add(_));
                // BuildKit: the keyword, the expanded sources and destination, no flags.
                let mut by = String::from(if add { "ADD" } else { "COPY" });
                for w in spec.srcs.iter().chain([&spec.dest]) {
                    by.push(' ');
                    by.push_str(&self.expand(w, env, span)?);
                }
                by.push_str(" # buildkit");
                if let Some(h) = hit {
                    return self.apply_cached(st, h, hist(by));
                }
                let dir = self.copy_step(st, spec, add, env, span)?;
                return self.add_layer(st, dir, hist(by)).map(Some);
            }
        }
        Ok(None)
    }

    fn shell_or_exec(&self, st: &StageState, c: &ShellOrExec) -> Vec<String> {
        match c {
            ShellOrExec::Exec(v) => v.clone(),
            ShellOrExec::Shell(s) => {
                let mut v = st.shell.clone();
                v.push(s.clone());
                v
            }
        }
    }

    /// A RUN's argv, and the heredoc script to mount when the RUN is one heredoc with a
    /// shebang. As BuildKit: `RUN <<EOF` alone runs the body with the shell (or, with `#!`,
    /// as a script); any other use of heredocs hands the whole text to the shell.
    fn run_args(
        &self,
        st: &StageState,
        cmd: &ShellOrExec,
        heredocs: &[Heredoc],
    ) -> (Vec<String>, Option<(String, String)>) {
        let ShellOrExec::Shell(line) = cmd else {
            return (self.shell_or_exec(st, cmd), None);
        };
        if heredocs.is_empty() {
            return (self.shell_or_exec(st, cmd), None);
        }
        if let [h] = heredocs {
            let word = line.trim().trim_start_matches("<<").trim_start_matches('-');
            if word.trim_matches(['\'', '"']) == h.name {
                let body = h.body();
                if body.starts_with("#!") {
                    let path = format!("/dev/pipes/{}", h.name);
                    return (vec![path.clone()], Some((path, body)));
                }
                let mut v = st.shell.clone();
                v.push(body);
                return (v, None);
            }
        }
        let mut text = line.clone();
        text.push('\n');
        for h in heredocs {
            text.push_str(&h.content);
            text.push_str(&h.name);
            text.push('\n');
        }
        let mut v = st.shell.clone();
        v.push(text);
        (v, None)
    }

    /// Resolves a `USER`/`--chown` spec to numeric ids against the stage's files.
    fn resolve_owner(&self, lowers: &[PathBuf], spec: &str, span: Span) -> Result<(u32, u32)> {
        if spec.is_empty() {
            return Ok((0, 0));
        }
        if lowers.is_empty() {
            let (u, g) = spec.split_once(':').unwrap_or((spec, spec));
            return match (u.parse(), g.parse()) {
                (Ok(u), Ok(g)) => Ok((u, g)),
                _ => Err(self.err(
                    span,
                    format!("cannot resolve user {spec:?}: the stage has no /etc/passwd"),
                )),
            };
        }
        let r = strata_sandbox::resolve_user(&Rootfs::Lowers(lowers.to_vec()), spec)
            .map_err(|e| self.err(span, format!("cannot resolve user {spec:?}: {e}")))?;
        Ok((r.uid, r.gid))
    }

    fn run_step(
        &self,
        st: &mut StageState,
        step: RunStep,
        history: History,
    ) -> Result<Option<Digest>> {
        let RunStep { ins, args, script, mounts, env, network, id } = step;
        let upper = self.fresh_dir("run")?;
        let work = self.fresh_dir("work")?;
        let mut lowers = self.lowers(st)?;
        if lowers.is_empty() {
            lowers.push(self.fresh_dir("empty")?);
        }
        let mut process = Process {
            args: args.clone(),
            env: env.0.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: if st.workdir.is_empty() { "/".into() } else { st.workdir.clone() },
            user: st.user.clone(),
        };
        // Secrets, cache locks and copies live until the run ends (dropped with `prepared`).
        let prepared = self.run_mounts(mounts, env, ins.span, &mut process.env)?;
        let mut config = Config::new(
            Rootfs::Overlay { lowers, upper: upper.clone(), work: work.clone() },
            process,
        );
        config.network = network;
        config.mounts.extend(prepared.mounts.iter().cloned());
        if let Some((target, body)) = script {
            let path = self.fresh_dir("script")?.join("script");
            write_private(&path, body.as_bytes(), 0o755)
                .map_err(io_ctx("writing the RUN heredoc script"))?;
            config.mounts.push(strata_sandbox::Mount::Bind {
                source: path,
                target,
                read_only: true,
            });
        }
        if network == Network::Host {
            // Docker gives RUN the host's resolver configuration; the sandbox takes the
            // mount points back out of the upper dir afterwards.
            for f in ["/etc/resolv.conf", "/etc/hosts"] {
                if Path::new(f).is_file() {
                    config.mounts.push(strata_sandbox::Mount::Bind {
                        source: PathBuf::from(f),
                        target: f.to_string(),
                        read_only: true,
                    });
                }
            }
        }
        config.hostname = "buildkitsandbox".into();
        let sandbox = Sandbox::new(config)
            .map_err(|e| self.err(ins.span, format!("cannot start RUN: {e}")))?;
        let sink = Sink { builder: self, id, tail: RefCell::new(Tail::default()) };
        let status = {
            let mut out = SinkWriter(&sink);
            let mut err = SinkWriter(&sink);
            sandbox.run(&mut out, &mut err, &RunOptions::default())
        };
        drop(prepared);
        let tail = sink.tail.into_inner().lines();
        let status = status.map_err(|e| self.err(ins.span, format!("RUN failed: {e}")))?;
        let _ = fs::remove_dir_all(&work);
        if !status.success() {
            let how = match status {
                strata_sandbox::ExitStatus::Code(c) => format!("exit code: {c}"),
                strata_sandbox::ExitStatus::Signal(s) => format!("killed by signal {s}"),
            };
            let mut d = Diag::error(
                "build::run",
                format!("process \"{}\" did not complete successfully: {how}", args.join(" ")),
            )
            .at(ins.span)
            .in_file(&self.df.source)
            .with_label(how.clone());
            if !tail.is_empty() {
                d = d.with_help(format!("last output lines:\n{}", tail.join("\n")));
            }
            return Err(BuildError::Dockerfile(d));
        }
        let empty = fs::read_dir(&upper).map(|mut d| d.next().is_none()).unwrap_or(false);
        if empty {
            st.config.add_empty_layer_history(history);
            return Ok(None);
        }
        self.add_layer(st, upper, history).map(Some)
    }

    /// Writes `dir` as a layer blob, records it, and makes `dir` the layer's snapshot (the
    /// next step's top lower dir, and a later build's).
    fn add_layer(&self, st: &mut StageState, dir: PathBuf, history: History) -> Result<Digest> {
        let mut ingest = self.store.blobs().ingest()?;
        let wopts = WriteOptions {
            compression: self.opts.compression,
            level: None,
            source_date_epoch: self.epoch,
            overlay_whiteouts: true,
        };
        let desc = write_layer(&dir, &mut ingest, &wopts).map_err(|e| {
            BuildError::Other(format!("writing a layer from {}: {e}", dir.display()))
        })?;
        let staged = ingest.stage(Some(&desc.digest))?;
        self.lease.add([&desc.digest])?;
        staged.publish()?;
        let record = LayerRecord {
            digest: desc.digest.clone(),
            diff_id: desc.diff_id.clone(),
            media_type: desc.media_type.clone(),
            size: desc.size,
            content_size: fsview::content_size(&dir),
        };
        st.config.add_layer(&desc.diff_id, history);
        st.push_layer(record, None);
        let chain = st.chain.clone().ok_or_else(|| BuildError::Other("no chain ID".into()))?;
        let snap = self.store.adopt_snapshot(&chain, &dir, self.lease)?;
        if let Some(slot) = st.lowers.last_mut() {
            *slot = Some(snap);
        }
        Ok(desc.digest)
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

    fn has_ignore_patterns(&self) -> Result<bool> {
        self.ignore()?;
        Ok(lock(&self.ignore).as_ref().is_some_and(|(_, any)| *any))
    }

    fn copy_step(
        &self,
        st: &mut StageState,
        spec: &CopySpec,
        add: bool,
        env: &VarEnv,
        span: Span,
    ) -> Result<PathBuf> {
        if !spec.heredocs.is_empty() || spec.parents || !spec.exclude.is_empty() {
            return Err(
                self.err(span, "COPY heredocs, --parents and --exclude are not supported yet")
            );
        }
        let dest_raw = self.expand(&spec.dest, env, span)?;
        let mut srcs = Vec::new();
        for s in &spec.srcs {
            srcs.push(self.expand(s, env, span)?);
        }
        let dest_abs = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{dest_raw}", st.workdir)
        };
        let dest_rel = fsview::clean_rel(&dest_abs);
        let lowers = self.lowers(st)?;
        let chown = match &spec.chown {
            Some(c) => {
                let c = self.expand(c, env, span)?;
                Some(self.resolve_owner(&lowers, &c, span)?)
            }
            None => None,
        };
        // Directories the copy creates belong to the --chown user, else root.
        let mk = Mkdirs { lowers: &lowers, owner: chown.unwrap_or((0, 0)) };
        let attrs = {
            // BuildKit keeps the owners of files from another stage or image; context
            // files are root's.
            let owner = match (chown, &spec.from) {
                (Some(o), _) => Some(o),
                (None, Some(_)) => None,
                (None, None) => Some((0, 0)),
            };
            let chmod = match &spec.chmod {
                Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| {
                    self.err(span, format!("--chmod={m}: only octal modes are supported"))
                })?),
                None => None,
            };
            CopyAttrs { owner, chmod }
        };
        let layer = self.fresh_dir("copy")?;
        let dest_is_dir = dest_raw.ends_with('/')
            || dest_raw.ends_with("/.")
            || dest_raw == "."
            || srcs.len() > 1
            || fsview::is_dir(&lowers, &dest_rel);
        // Where the sources come from: another stage / an image, or the context.
        let from_stack: Option<Vec<PathBuf>> = match &spec.from {
            None => None,
            Some(f) => Some(self.source_stack(f, span)?),
        };
        for src in &srcs {
            if add
                && (src.starts_with("http://")
                    || src.starts_with("https://")
                    || src.starts_with("git@"))
            {
                return Err(self.err(span, "ADD from a URL or git is not supported yet"));
            }
            let rel = fsview::clean_rel(src);
            match &from_stack {
                Some(stack) => {
                    let Some((top, _)) = fsview::lookup(stack, &rel) else {
                        return Err(self.err(
                            span,
                            format!(
                                "failed to compute cache key: \"/{}\": not found",
                                rel.display()
                            ),
                        ));
                    };
                    let is_dir = top.is_dir() && !top.is_symlink();
                    let target =
                        self.dest_for(&layer, &dest_rel, &rel, is_dir, dest_is_dir, &mk)?;
                    fsview::copy_from_stack(stack, &rel, &target, attrs)
                        .map_err(io_ctx(format!("copying /{}", rel.display())))?;
                }
                None => {
                    let matches = self.context_matches(src, &rel, span)?;
                    for m in matches {
                        let host = self.opts.context.join(&m);
                        let md = fs::symlink_metadata(&host)
                            .map_err(io_ctx(format!("reading {}", host.display())))?;
                        let target =
                            self.dest_for(&layer, &dest_rel, &m, md.is_dir(), dest_is_dir, &mk)?;
                        if add && md.is_file() && is_archive(&host) {
                            mk.make(&layer, &dest_rel)?;
                            let dir = layer.join(&dest_rel);
                            let f = fs::File::open(&host)
                                .map_err(io_ctx(format!("opening {}", host.display())))?;
                            let o = UnpackOptions {
                                mode: UnpackMode::Apply,
                                preserve_ownership: true,
                                ..UnpackOptions::default()
                            };
                            strata_layer::unpack(io::BufReader::new(f), &dir, &o).map_err(|e| {
                                self.err(span, format!("extracting {}: {e}", m.display()))
                            })?;
                            continue;
                        }
                        self.copy_context(&m, &host, &md, &target, attrs)?;
                    }
                }
            }
        }
        Ok(layer)
    }

    /// The path in the layer dir where source `src_rel` lands.
    fn dest_for(
        &self,
        layer: &Path,
        dest_rel: &Path,
        src_rel: &Path,
        src_is_dir: bool,
        dest_is_dir: bool,
        mk: &Mkdirs,
    ) -> Result<PathBuf> {
        let base = layer.join(dest_rel);
        let target = if src_is_dir || !dest_is_dir {
            base.clone()
        } else {
            match src_rel.file_name() {
                Some(n) => base.join(n),
                None => base.clone(),
            }
        };
        let parent = if src_is_dir { Some(target.as_path()) } else { target.parent() };
        if let Some(p) = parent.and_then(|p| p.strip_prefix(layer).ok()) {
            mk.make(layer, p)?;
        }
        Ok(target)
    }

    /// Context paths (relative) a COPY source names: one path, or a glob's matches.
    fn context_matches(&self, src: &str, rel: &Path, span: Span) -> Result<Vec<PathBuf>> {
        let ctx = self.opts.context.clone();
        let is_glob = src.contains(['*', '?', '[']);
        let ignore = self.ignore()?;
        if !is_glob {
            let s = rel.to_string_lossy();
            let excluded = !s.is_empty() && ignore.matches(&s);
            if excluded || fs::symlink_metadata(ctx.join(rel)).is_err() {
                return Err(self.err(
                    span,
                    format!(
                        "failed to compute cache key: \"/{}\": not found in the build context or excluded by .dockerignore",
                        rel.display()
                    ),
                ));
            }
            return Ok(vec![rel.to_path_buf()]);
        }
        let pattern = glob::Pattern::new(&rel.to_string_lossy())
            .map_err(|e| self.err(span, format!("bad pattern {src:?}: {e}")))?;
        let mo = glob::MatchOptions { require_literal_separator: true, ..Default::default() };
        let mut found = Vec::new();
        let depth = rel.components().count();
        let mut stack = vec![(PathBuf::new(), 0usize)];
        while let Some((dir, d)) = stack.pop() {
            let Ok(rd) = fs::read_dir(ctx.join(&dir)) else { continue };
            for e in rd.flatten() {
                let r = dir.join(e.file_name());
                let s = r.to_string_lossy().to_string();
                if ignore.matches(&s) {
                    continue;
                }
                if d + 1 == depth {
                    if pattern.matches_with(&s, mo) {
                        found.push(r);
                    }
                } else if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push((r, d + 1));
                }
            }
        }
        found.sort();
        if found.is_empty() {
            return Err(
                self.err(span, format!("no source files were specified: {src:?} matches nothing"))
            );
        }
        Ok(found)
    }

    /// Copies a context file or directory (honouring .dockerignore inside directories).
    fn copy_context(
        &self,
        rel: &Path,
        host: &Path,
        md: &fs::Metadata,
        target: &Path,
        a: CopyAttrs,
    ) -> Result<()> {
        if !md.is_dir() {
            return fsview::copy_leaf(host, md, target, a)
                .map_err(io_ctx(format!("copying {}", host.display())));
        }
        let ignore = self.ignore()?;
        if !target.is_dir() {
            fsview::make_dir(md, target, a)
                .map_err(io_ctx(format!("creating {}", target.display())))?;
        }
        copy_ctx_dir(&ignore, rel, host, target, a)
            .map_err(io_ctx(format!("copying {}", host.display())))
    }

    fn commit(&self, st: StageState) -> Result<BuildResult> {
        let mut cfgb = st.config;
        // The latest step's time, so a fully cached rebuild gives the same image ID.
        let created = match (self.epoch, st.created) {
            (None, Some(c)) => c,
            _ => self.created(None),
        };
        cfgb.set_created(&created);
        let config = cfgb.build().map_err(|e| BuildError::Other(format!("image config: {e}")))?;
        let config_bytes = config.raw().to_vec();
        let config_digest = Digest::sha256_of(&config_bytes);
        let layers: Vec<serde_json::Value> = st
            .layers
            .iter()
            .map(|l| {
                json!({"mediaType": oci_layer_type(&l.media_type), "digest": l.digest.to_string(), "size": l.size})
            })
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config_bytes.len()},
            "layers": layers,
        });
        let manifest = strata_oci::canonical_json(&manifest)
            .map_err(|e| BuildError::Other(format!("manifest: {e}")))?;
        let manifest_digest = Digest::sha256_of(&manifest);
        self.lease.add([&config_digest, &manifest_digest])?;
        self.store.blobs().put(&config_bytes)?;
        self.store.blobs().put(&manifest)?;
        self.store.commit_image(
            &NewImage {
                config_digest: config_digest.clone(),
                manifest_digest: manifest_digest.clone(),
                manifest_media_type: OCI_MANIFEST.to_string(),
                created: config.created().map(str::to_string),
                layers: st.layers,
            },
            &self.opts.tags,
        )?;
        Ok(BuildResult { id: config_digest, manifest_digest, tags: self.opts.tags.clone() })
    }
}

/// How a COPY creates the directories on the way to its destination.
struct Mkdirs<'l> {
    lowers: &'l [PathBuf],
    owner: (u32, u32),
}

impl Mkdirs<'_> {
    fn make(&self, layer: &Path, rel: &Path) -> Result<()> {
        fsview::make_parents(layer, rel, self.lowers, self.owner)
            .map_err(io_ctx(format!("creating /{} in the layer", rel.display())))
    }
}

fn copy_ctx_dir(
    ignore: &IgnoreMatcher,
    rel: &Path,
    host: &Path,
    target: &Path,
    a: CopyAttrs,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(host)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        let md = e.metadata()?;
        let s = r.to_string_lossy();
        let dst = target.join(e.file_name());
        match ignore.walk_decision(&s, md.is_dir()) {
            WalkDecision::Skip => continue,
            WalkDecision::DescendOnly | WalkDecision::Include if md.is_dir() => {
                fsview::make_dir(&md, &dst, a)?;
                copy_ctx_dir(ignore, &r, &e.path(), &dst, a)?;
            }
            _ => fsview::copy_leaf(&e.path(), &md, &dst, a)?,
        }
    }
    Ok(())
}

/// Whether a local ADD source is an archive to extract (gzip, zstd or a plain tar).
fn is_archive(path: &Path) -> bool {
    let Ok(mut f) = fs::File::open(path) else { return false };
    let mut buf = [0u8; 262];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return false,
        }
    }
    let b = &buf[..n];
    b.starts_with(&[0x1f, 0x8b])
        || b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (n >= 262 && &b[257..262] == b"ustar")
}

fn oci_layer_type(media_type: &str) -> &str {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => OCI_LAYER_TAR_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar" => OCI_LAYER_TAR,
        other => other,
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

/// The last lines a RUN printed, for the error message.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    partial: Vec<u8>,
}

const TAIL_LINES: usize = 10;

impl Tail {
    fn push(&mut self, data: &[u8]) {
        for &b in data {
            if b == b'\n' {
                let l = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                self.lines.push_back(l);
                if self.lines.len() > TAIL_LINES {
                    self.lines.pop_front();
                }
            } else if self.partial.len() < 4096 {
                self.partial.push(b);
            }
        }
    }
    fn lines(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            let l = String::from_utf8_lossy(&self.partial).into_owned();
            self.lines.push_back(l);
            if self.lines.len() > TAIL_LINES {
                self.lines.pop_front();
            }
        }
        self.lines.into()
    }
}

struct Sink<'b, 'a> {
    builder: &'b Builder<'a>,
    id: usize,
    tail: RefCell<Tail>,
}

struct SinkWriter<'s, 'b, 'a>(&'s Sink<'b, 'a>);

impl Write for SinkWriter<'_, '_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.tail.borrow_mut().push(buf);
        self.0.builder.emit(Event::Output { id: self.0.id, data: buf });
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A RUN to execute (the parts [`Builder::run_step`] needs).
struct RunStep<'i> {
    ins: &'i Instruction,
    args: Vec<String>,
    /// A heredoc script: (path in the container, body).
    script: Option<(String, String)>,
    mounts: &'i [strata_dockerfile::Mount],
    env: &'i VarEnv,
    network: Network,
    id: usize,
}

/// Writes a file only its owner can read (secrets, scripts) with `mode` set before any
/// byte lands in it.
fn write_private(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(data)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(())
}
